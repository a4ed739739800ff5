"""Batch jobs at run time (core.jobs decides): the allocator's record of each job,
the hub calls that start and remove its server, and the watch that follows it.

- :meth:`Jobs.submit`: the job is recorded, then the hub is asked to start its
  server ``job-ID`` (``POST users/{user}/servers/job-ID {"job": ID}``); the
  spawner validates the share as any spawn's, so a refusal (a bad amount, an
  unknown profile, a quota) comes back as the hub's 4xx and the job is dropped.
- :meth:`Jobs.watch` (every ``job_poll_seconds``): the hub's active servers
  tell which jobs run and which ended; an ended job's ``exit.json`` (written
  by ``gpuhub.jobrun`` into ``jobs/ID/`` of the home vfolder) gives its exit
  code, else what became of its share gives the reason; ended jobs' servers
  are removed from the hub.
- Logs are ``jobs/ID/output.log`` in the home vfolder, read through the vfolder
  service (its Range downloads).

Everything is in the allocator's database, so a restarted allocator (kill -9)
picks every job up where it was: a job that ended meanwhile is found ended.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import replace
from urllib.parse import quote

from gpuhub.client import HubClient, ServiceClient, ServiceError, hub_api_items

from .core.jobs import Job, JobState, Next, cancelled, ended, is_job_server, on_hub, over_limit
from .store.ledger import DeleteJob, PutJob


class SubmitRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class VFolderReader(ServiceClient):
    what = "the vfolder service"


class Jobs:
    """The allocator's batch jobs: ``app.jobs``."""

    def __init__(self, app):
        self.app = app
        self.log = app.log
        #: jobs not ended or not yet removed from the hub, by id
        self.active: dict[str, Job] = {}
        self._tasks: set[asyncio.Task] = set()
        #: jobs whose server the hub is being asked for right now
        self._spawning: set[str] = set()
        #: set when something changed (a log follower or the watch wakes up)
        self.changed = asyncio.Event()

    @property
    def writer(self):
        return self.app.pool.writer

    @property
    def hub(self) -> HubClient:
        return HubClient(self.app.hub_api_url, self.app.api_token)

    @property
    def vfolders(self) -> VFolderReader | None:
        url = self.app.vfolders_url
        # short: the watch waits for each answer (an unanswered read is tried again)
        return VFolderReader(url, self.app.api_token, timeout=5.0) if url else None

    async def load(self) -> None:
        self.active = {j.id: j for j in await self.writer.read(self.writer.ledger.load_jobs)}
        if self.active:
            self.log.info("jobs: %i to follow (not ended, or not yet removed from the hub)", len(self.active))

    async def get(self, job_id: str) -> Job | None:
        if job_id in self.active:
            return self.active[job_id]
        return await self.writer.read(self.writer.ledger.get_job, job_id)

    async def list(self, user: str | None, limit: int = 100) -> list[Job]:
        return await self.writer.read(self.writer.ledger.jobs, user, limit)

    async def put(self, job: Job) -> Job:
        await self.writer.commit([PutJob(job)])
        if job.state.final and job.removed:
            self.active.pop(job.id, None)
        else:
            self.active[job.id] = job
        self.changed.set()
        self.changed = asyncio.Event()
        return job

    # --- submit and cancel --------------------------------------------------------------

    async def submit(self, user: str, command: tuple, options: dict, workdir: str,
                     wait: float = 3.0) -> Job:
        """Record the job and ask the hub for its server; a 4xx from the hub
        within ``wait`` seconds (the spawner's validation) is a SubmitRefused and
        the job is dropped; otherwise the spawn goes on in the background."""
        active = sum(1 for j in self.active.values() if j.user == user and not j.state.final)
        why = over_limit(active, self.app.max_jobs_per_user)
        if why:
            raise SubmitRefused(429, why)
        now = time.time()
        job = Job(secrets.token_hex(6), user, tuple(command), dict(options), workdir, JobState.QUEUED, now)
        await self.put(job)
        task = self._spawn(job)
        done, _ = await asyncio.wait({task}, timeout=wait)
        if task in done and task.result() is not None:
            status, message = task.result()
            await self.writer.commit([DeleteJob(job.id)])
            self.active.pop(job.id, None)
            raise SubmitRefused(status, message)
        return self.active.get(job.id, job)

    def _spawn(self, job: Job) -> asyncio.Task | None:
        if job.id in self._spawning:
            return None
        self._spawning.add(job.id)
        task = asyncio.ensure_future(self._spawn_now(job))
        self._tasks.add(task)

        def done(t):
            self._tasks.discard(t)
            self._spawning.discard(job.id)

        task.add_done_callback(done)
        return task

    async def _spawn_now(self, job: Job) -> tuple[int, str] | None:
        """POST the server; (status, message) when the hub refuses it (4xx)."""
        job = await self.put(replace(self.active.get(job.id, job), spawned=time.time()))
        path = f"users/{quote(job.user)}/servers/{job.server}"
        try:
            resp = await self.hub.fetch("POST", path, json.dumps({"job": job.id}).encode(),
                                        {"Content-Type": "application/json"}, timeout=120)
        except ServiceError as e:
            self.log.warning("job %s: the hub did not answer its spawn (%s); the watch retries", job.id, e.message)
            await self.put(replace(self.active.get(job.id, job), spawned=None))
            return None
        if resp.code < 400:
            return None
        message = _hub_message(resp)
        current = self.active.get(job.id, job)
        if 400 <= resp.code < 500 and resp.code != 409:
            if current.state is JobState.QUEUED and current.started is None:
                await self.put(replace(current, state=JobState.FAILED, ended=time.time(),
                                       reason=f"its server could not start: {message}"))
            return resp.code, message
        self.log.warning("job %s: the hub answered its spawn with %s: %s", job.id, resp.code, message)
        return None

    async def cancel(self, job: Job, by: str) -> Job:
        """Cancel a queued or running job: recorded first, then its server stopped
        (a spawn waiting in the queue leaves it; a running command gets SIGTERM)."""
        if job.state.final:
            return job
        job = await self.put(cancelled(self.active.get(job.id, job), by, time.time()))
        await self._remove(job)
        return self.active.get(job.id, job)

    async def _remove(self, job: Job) -> None:
        """Stop and remove the job's server at the hub; recorded once it is gone."""
        path = f"users/{quote(job.user)}/servers/{job.server}"
        try:
            resp = await self.hub.fetch("DELETE", path, json.dumps({"remove": True}).encode(),
                                        {"Content-Type": "application/json"}, timeout=60)
        except ServiceError as e:
            self.log.warning("job %s: could not remove its server (%s); the watch retries", job.id, e.message)
            return
        if resp.code in (202, 204, 404):
            if resp.code != 202:
                await self.put(replace(self.active.get(job.id, job), removed=True))
        else:
            self.log.warning("job %s: removing its server answered %s: %s", job.id, resp.code, _hub_message(resp))

    # --- what the spawner reports ----------------------------------------------------------

    async def started(self, job: Job, host: str, home_vfolder: str) -> Job:
        if job.state.final:
            return job
        return await self.put(replace(self.active.get(job.id, job), state=JobState.RUNNING,
                                      started=job.started or time.time(), host=host or job.host,
                                      home_vfolder=home_vfolder or job.home_vfolder))

    # --- the watch ---------------------------------------------------------------------------

    async def hub_job_servers(self) -> dict[tuple[str, str], dict]:
        """The hub's active job servers: (user, name) → its server model."""
        users = {j.user for j in self.active.values()}
        out = {}
        async for u in hub_api_items(self.app.hub_api_url, self.app.api_token, "users", {"state": "active"}):
            if u["name"] not in users:
                continue
            for name, server in (u.get("servers") or {}).items():
                if is_job_server(name):
                    out[(u["name"], name)] = server
        return out

    async def watch_once(self) -> None:
        if not self.active:
            return
        servers = await self.hub_job_servers()
        now = time.time()
        for job in list(self.active.values()):
            step = on_hub(job, servers.get((job.user, job.server)), now)
            try:
                if step is Next.SPAWN:
                    self._spawn(job)
                elif step is Next.STARTED:
                    await self.started(job, "", "")
                elif step is Next.ENDED:
                    await self.finish(job)
                elif step is Next.REMOVE:
                    await self._remove(job)
            except ServiceError as e:
                self.log.warning("job %s: %s must wait: %s", job.id, step.value, e.message)
            except Exception:
                self.log.exception("job %s: %s failed; trying again", job.id, step.value)

    async def finish(self, job: Job) -> Job:
        record = await self.exit_record(job)
        allocation = await self.writer.read(self.writer.ledger.job_allocation, job.user, job.server)
        alloc = None if allocation is None else {"state": allocation.state.value, "host": allocation.host,
                                                  "max_hours": allocation.max_hours}
        done = ended(self.active.get(job.id, job), record, alloc, time.time())
        self.log.info("job %s of %s %s%s", job.id, job.user, done.state.value,
                      f": {done.reason}" if done.reason else "")
        done = await self.put(done)
        await self._remove(done)
        return done

    async def exit_record(self, job: Job) -> dict | None:
        """The runner's exit.json, through the vfolder service; None if there is
        none. Raises ServiceError when the vfolder service cannot say (it is
        down): the end is then recorded at a later look, never guessed."""
        client = self.vfolders
        if client is None or not job.home_vfolder:
            return None
        resp = await client.fetch("GET", f"vfolders/{job.home_vfolder}/files/{job.folder}/exit.json")
        if resp.code == 404:
            return None
        if resp.code != 200:
            raise ServiceError(resp.code, f"the vfolder service answered {resp.code} for {job.folder}/exit.json")
        try:
            record = json.loads(resp.body)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    async def watch(self) -> None:
        interval = self.app.job_poll_seconds
        while True:
            try:
                await self.watch_once()
            except Exception as e:
                self.log.warning("jobs: could not follow them this time: %s", e)
            await asyncio.sleep(interval)

    # --- logs ----------------------------------------------------------------------------------

    async def read_log(self, job: Job, offset: int, limit: int = 1 << 20) -> bytes:
        """Bytes of output.log from ``offset`` (b"" when there is nothing new or no
        log yet)."""
        client = self.vfolders
        if client is None or not job.home_vfolder:
            return b""
        # from the byte before: a file with nothing new answers that byte, not a 416
        start = max(offset - 1, 0)
        resp = await client.fetch("GET", f"vfolders/{job.home_vfolder}/files/{job.folder}/output.log",
                                  headers={"Range": f"bytes={start}-{offset + limit - 1}"})
        if resp.code in (200, 206):
            body = resp.body if resp.code == 206 else resp.body[start:offset + limit]
            return body[offset - start:]
        if resp.code in (404, 416):
            return b""
        raise ServiceError(resp.code, _hub_message(resp))


def _hub_message(resp) -> str:
    try:
        body = json.loads(resp.body)
        return str(body.get("message") or body.get("error") or resp.reason)
    except (ValueError, AttributeError, TypeError):
        return f"HTTP {resp.code}: {resp.reason}"

