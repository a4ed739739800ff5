"""REST handlers of batch jobs (core.jobs, gpu_allocator.jobs), under
``{service_prefix}api/v1/``:

- ``POST jobs`` ``{"command": [...], "gpus"?, "cpu"?, "mem"?, "gpu_model"?,
  "max_hours"?, "pool"?, "profile"?, "vfolders"?, "workdir"?}``: 201 with the
  job (queued; ``queue`` says its position and expected start once it waits);
  the share is checked as a session's (the hub's spawn of its server), so a bad
  amount, profile or quota is the same 4xx and no job is kept;
- ``GET jobs`` (admins: ``?user=``; ``?limit=``, default 50): newest first;
- ``GET jobs/{id}``, ``DELETE jobs/{id}`` (cancel, while queued or running):
  the owner or an admin (others: 404);
- ``GET jobs/{id}/logs?offset=N&follow=1``: the job's output (stdout and
  stderr, ``jobs/ID/output.log`` of the home vfolder) from byte N, as
  text/plain; ``X-Log-Offset`` is where the next read starts and
  ``X-Job-State`` the job's state. With ``follow=1`` it waits (up to 20 s) for
  new output or the job's end;
- ``POST jobs/{id}/started`` ``{"host", "home_vfolder"}`` (admins: the spawner):
  the job's server runs.
"""

from __future__ import annotations

import asyncio
import time

from tornado import web

from gpuhub.client import ServiceError

from ..core.jobs import Job, JobState, check_id, parse_job
from ..core.validation import RequestError, parse_text
from ..jobs import SubmitRefused
from ..shapes import iso, queued_json
from .base import APIHandler

#: the longest a follow=1 read of the logs waits for something new
FOLLOW_WAIT = 20.0


def job_json(job: Job, queued: dict | None = None, allocation: dict | None = None) -> dict:
    return {
        "id": job.id, "user": job.user, "server": job.server, "command": list(job.command),
        "options": dict(job.options), "workdir": job.workdir, "state": job.state.value,
        "submitted": iso(job.submitted), "started": iso(job.started), "ended": iso(job.ended),
        "exit_code": job.exit_code, "reason": job.reason or None, "host": job.host or None,
        "folder": job.folder, "home_vfolder": job.home_vfolder or None,
        # while it waits in the queue: its position and expected start
        "queue": queued,
        # while it runs: its share
        "allocation": allocation,
    }


class JobBase(APIHandler):
    @property
    def jobs(self):
        return self.service.jobs

    async def own_job(self, job_id: str) -> Job:
        try:
            check_id(job_id)
        except RequestError as e:
            raise web.HTTPError(404, str(e)) from None
        job = await self.jobs.get(job_id)
        if job is None or (job.user != self.user_name and not self.is_admin):
            raise web.HTTPError(404, f"no job {job_id}")
        return job

    def describe(self, job: Job) -> dict:
        """The job with its queue entry or live share (from the pool in memory)."""
        queued = allocation = None
        if job.state is JobState.QUEUED:
            per = self.pool.state.units_per_gpu
            for q, est in self.pool.queued(job.user):
                if q.server == job.server:
                    queued = queued_json(q, est, per)
        elif job.state is JobState.RUNNING:
            for a in self.pool.live(job.user):
                if a.server == job.server:
                    allocation = self.allocator.live_json(a)
        return job_json(job, queued, allocation)


class JobsHandler(JobBase):
    async def get(self):
        user = self.get_argument("user", None)
        if not self.is_admin:
            if user not in (None, self.user_name):
                raise web.HTTPError(403, "you can only list your own jobs")
            user = self.user_name
        try:
            limit = int(self.get_argument("limit", "50"))
        except ValueError:
            raise web.HTTPError(400, "limit must be a whole number from 1 to 1000") from None
        if not 1 <= limit <= 1000:
            raise web.HTTPError(400, "limit must be a whole number from 1 to 1000")
        jobs = await self.jobs.list(user, limit)
        self.send({"jobs": [self.describe(self.jobs.active.get(j.id, j)) for j in jobs]})

    async def post(self):
        if not self.service.under_hub:
            raise web.HTTPError(503, "batch jobs need the allocator to run as a JupyterHub service")
        try:
            command, options, workdir = parse_job(self.body())
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            job = await self.jobs.submit(self.user_name, command, options, workdir)
        except SubmitRefused as e:
            raise web.HTTPError(e.status if 400 <= e.status < 500 else 400, e.message) from None
        self.send(self.describe(job), status=201)


class JobHandler(JobBase):
    async def get(self, job_id):
        self.send(self.describe(await self.own_job(job_id)))

    async def delete(self, job_id):
        job = await self.own_job(job_id)
        if job.state.final:
            raise web.HTTPError(409, f"job {job.id} already {job.state.value}; nothing to cancel")
        job = await self.jobs.cancel(job, self.user_name)
        self.send(self.describe(job))


class JobStartedHandler(JobBase):
    async def post(self, job_id):
        if not self.is_admin:
            raise web.HTTPError(403, "only the spawner (custom:gpu-allocator:admin) reports a job's start")
        job = await self.own_job(job_id)
        data = self.body()
        try:
            host = parse_text(data.get("host", ""), "host")
            home = parse_text(data.get("home_vfolder", ""), "home_vfolder", 64)
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        self.send(self.describe(await self.jobs.started(job, host, home)))


class JobLogsHandler(JobBase):
    async def get(self, job_id):
        job = await self.own_job(job_id)
        try:
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            raise web.HTTPError(400, "offset must be a byte count (0 or more)") from None
        if offset < 0:
            raise web.HTTPError(400, "offset must be a byte count (0 or more)")
        follow = self.get_argument("follow", "0") in ("1", "true")
        deadline = time.monotonic() + FOLLOW_WAIT
        while True:
            job = await self.jobs.get(job.id) or job
            final = job.state.final
            try:
                data = await self.jobs.read_log(job, offset)
            except ServiceError as e:
                raise web.HTTPError(502, f"the job's log could not be read: {e.message}") from None
            if data or final or not follow or time.monotonic() >= deadline:
                break
            changed = self.jobs.changed
            try:
                await asyncio.wait_for(changed.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        if not job.home_vfolder and job.state is not JobState.QUEUED:
            self.set_header("X-Log-Note", "no home vfolder: the log is in ~/jobs/ID on the job's host")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Log-Offset", str(offset + len(data)))
        self.set_header("X-Job-State", job.state.value)
        if job.exit_code is not None:
            self.set_header("X-Job-Exit-Code", str(job.exit_code))
        self.finish(data)


default_handlers = [
    (r"/jobs", JobsHandler),
    (r"/jobs/([^/]+)", JobHandler),
    (r"/jobs/([^/]+)/started", JobStartedHandler),
    (r"/jobs/([^/]+)/logs", JobLogsHandler),
]
