"""The panel's API under ``{base_url}gpuhub/``.

- ``GET  gpuhub/status``: everything the panel shows, in one answer per poll; each
  section carries its own ``error`` instead of failing the whole answer.
- ``POST gpuhub/extend``: ask the allocator for more time (when it allows it).
- ``POST gpuhub/vfolders``, ``POST gpuhub/vfolders/{id}/shares``,
  ``POST gpuhub/invitations/{id}/(accept|reject)``: vfolder actions, passed on.
- ``gpuhub/vfolders/{id}/uploads/…``: a tus 1.0 pass-through to the vfolder
  service, so the browser uploads resumably with the session's cookie while the
  server adds its own hub token.
- ``GET|POST gpuhub/jobs``, ``GET|DELETE gpuhub/jobs/{id}``: the allocator's batch
  jobs API (``GET jobs[?limit=]``, ``POST jobs``, ``GET``/``DELETE jobs/ID``) as
  this session's user, JSON in and out (the panel's *Run as job*); the status
  lists the newest few (``jobs``).

The server calls the services through :mod:`gpuhub.client` with its own hub
token (``GPUHubLab.api_token``, whose scopes ``c.Spawner.server_token_scopes``
widens to the two services); what it asks and how is configured on
:class:`gpuhub.lab.config.GPUHubLab`. Errors are the services' own shape,
``{"error": "…"}`` (:class:`gpuhub.api.JSONErrors`).
Requests reach these handlers only through jupyter_server's authentication: under
JupyterHub that is the hub's, so another user's token is refused before any of
this runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from ..api import JSONErrors
from ..numbers import gpu_hours_text
from ..client import ServiceClient, ServiceError
from .config import GPUHubLab

#: how often a point of the sparklines' history is kept (seconds)
MIN_SAMPLE_GAP = 1.5
TUS_HEADERS = ("Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata",
               "Upload-Defer-Length", "Upload-Concat", "Content-Type")
TUS_ANSWER_HEADERS = ("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size",
                      "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Expires",
                      "Cache-Control")


class Backend:
    """The two services, as this session's user (the server's own hub token):
    one :class:`gpuhub.client.ServiceClient` each."""

    #: the services' names in the panel's messages, and the trait with each one's URL
    SERVICES = {"allocator": "allocator_url", "vfolders": "vfolders_url"}

    def __init__(self, lab: GPUHubLab):
        self.lab = lab
        self.user = lab.user
        self.clients = {
            name: ServiceClient(getattr(lab, trait), lab.api_token, timeout=lab.request_timeout)
            for name, trait in self.SERVICES.items() if getattr(lab, trait)
        }
        for name, client in self.clients.items():
            client.what = name

    def client(self, service: str) -> ServiceClient:
        if service not in self.clients:
            raise ServiceError(503, f"{service}: not configured in this session "
                                    f"(c.GPUHubLab.{self.SERVICES[service]} is empty)")
        return self.clients[service]

    async def raw(self, service: str, method: str, path: str, *, body: bytes | None = None,
                  headers: dict | None = None):
        """One request; returns the tornado response, any status (no raise)."""
        timeout = self.lab.upload_timeout if method == "PATCH" else None
        return await self.client(service).fetch(method, path, body, headers, timeout=timeout,
                                                follow_redirects=False)

    async def json(self, service: str, method: str, path: str, data=None):
        """The service's JSON answer; a refusal is a ServiceError whose message names
        the service ("allocator: …")."""
        client = self.client(service)
        try:
            return await client.call(method, path, data)
        except ServiceError as e:
            message = e.message if e.message.startswith(f"{service} ") else f"{service}: {e.message}"
            raise ServiceError(e.status, message, e.body) from None


# --- what the panel shows ----------------------------------------------------------


def _epoch(value) -> float | None:
    """An ISO 8601 time (the allocator's ends_at, eta) or epoch seconds → epoch seconds."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


#: hours one press of *Extend* asks for (at most what the allocator's limit leaves)
EXTEND_HOURS = 1.0


def extend_view(allocation: dict | None, max_hours) -> dict:
    """Whether the allocator would consider an extension: a live share extended
    never before, below the longest run time (its last word — whether a queued
    request would be delayed — comes when asked: POST allocations/{id}/extend)."""
    if not allocation or allocation.get("state", "granted") != "granted":
        return {"allowed": False, "reason": "this session holds no live GPU share", "hours": None}
    if "extended" not in allocation:
        return {"allowed": False, "reason": "this allocator does not extend shares", "hours": None}
    if allocation.get("extended"):
        return {"allowed": False, "reason": "this session was extended once already", "hours": None}
    hours = allocation.get("max_hours")
    if max_hours and hours is not None and float(hours) >= float(max_hours) - 1e-9:
        return {"allowed": False, "hours": None,
                "reason": f"the run time is already the longest allowed ({float(max_hours):g} h)"}
    room = float(max_hours) - float(hours) if max_hours and hours is not None else EXTEND_HOURS
    return {"allowed": True, "reason": "", "hours": round(min(EXTEND_HOURS, room), 4)}


def share_view(allocation: dict | None, env: dict, now: float, max_hours=None) -> dict:
    """The share, its end (the allocator's ``ends_at``), the time left, the
    allocator's time-limit ``notice`` and whether *Extend* is offered."""
    out = {
        "allocation": allocation,
        "env": env,
        "ends_at": None, "time_left_s": None, "notice": None,
        "extend": extend_view(allocation, max_hours),
    }
    if allocation:
        ends = _epoch(allocation.get("ends_at"))
        hours = allocation.get("max_hours")
        created = allocation.get("created")
        if ends is None and hours and created:
            ends = float(created) + float(hours) * 3600
        if ends is not None:
            out["ends_at"] = ends
            out["time_left_s"] = max(0.0, ends - now)
        out["notice"] = allocation.get("notice")
    return out


def quota_view(data: dict) -> dict:
    """GET quota → the panel's rows: used / limit of concurrent GPUs, sessions
    and GPU-hours in the rolling window (limit None: not limited)."""
    limits, held = data.get("limits") or {}, data.get("held") or {}
    window = data.get("window_hours") or 168
    days = f"{window / 24:g} days" if window % 24 == 0 else f"{window:g} h"
    items = []
    for key, name in (("gpus", "GPUs at once"), ("sessions", "Sessions"),
                      ("gpu_hours", f"GPU-hours (last {days})")):
        used, limit = held.get(key), limits.get(key)
        try:
            frac = None if limit in (None, "") or float(limit) == 0 else min(1.0, float(used or 0) / float(limit))
        except (TypeError, ValueError):
            frac = None
        item = {"key": key, "name": name, "used": used if used is not None else 0, "limit": limit,
                "left": (data.get("left") or {}).get(key), "fraction": frac}
        if key == "gpu_hours":  # used and reserved, each labelled, as the spawn form says them
            item["text"] = gpu_hours_text(float(held.get("gpu_hours_used", used) or 0),
                                          float(held.get("gpu_hours_reserved") or 0),
                                          None if limit in (None, "") else float(limit))
        items.append(item)
    return {"available": True, "items": items, "groups": data.get("groups") or [],
            "window_hours": window}


def queue_view(data: dict, own: str | None = None) -> dict:
    """GET queue (a user sees their own requests) → the panel's rows, in order,
    with position and start estimates as epoch seconds; ``own``: this session's
    allocation id (not listed)."""
    items = []
    for q in data.get("queued") or ():
        if q.get("id") == own:
            continue
        items.append({"id": q.get("id"), "gpus": q.get("gpus"), "gpu_model": q.get("gpu_model") or [],
                      "server": q.get("server") or "", "position": q.get("position"),
                      "eta": _epoch(q.get("eta")), "eta_latest": _epoch(q.get("eta_latest")),
                      "reason": q.get("reason") or ""})
    return {"available": True, "items": items, "waiting": data.get("waiting")}


#: how many of the user's jobs the panel lists, newest first
PANEL_JOBS = 5


def notebook_of(command) -> str | None:
    """The notebook (relative to the home) that a job of the panel's *Run as job*
    executes: its command is ``["sh", "-c", "… nbconvert … \"$1\" …", "sh",
    NOTEBOOK]`` (labextension/src/sections/jobs.ts, notebookJob); else None."""
    c = list(command or ())
    if (len(c) == 5 and c[:2] == ["sh", "-c"] and "nbconvert" in str(c[2]) and c[3] == "sh"
            and isinstance(c[4], str) and c[4].endswith(".ipynb")):
        return c[4]
    return None


def jobs_view(data: dict, home: Path, root: Path | None) -> dict:
    """GET jobs (newest first) → the panel's rows: the newest PANEL_JOBS, each with
    its notebook (a *Run as job* job) and, once it exists, the executed copy
    ``~/jobs/ID/NAME.ipynb`` as a path under the server's root directory
    (``output``, what the document manager opens; None: not there (yet), or
    outside the root)."""
    items = []
    for j in (data.get("jobs") or ())[:PANEL_JOBS]:
        notebook = notebook_of(j.get("command"))
        output = None
        if notebook:
            path = home / (j.get("folder") or f"jobs/{j.get('id')}") / PurePosixPath(notebook).name
            if root is not None and path.is_file():
                try:
                    output = Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
                except ValueError:
                    output = None
        queue = j.get("queue") or {}
        items.append({
            "id": j.get("id"), "state": j.get("state"), "exit_code": j.get("exit_code"),
            "reason": j.get("reason") or "", "submitted": _epoch(j.get("submitted")),
            "started": _epoch(j.get("started")), "ended": _epoch(j.get("ended")),
            "gpus": (j.get("options") or {}).get("gpus"),
            "command": " ".join(j.get("command") or ()), "notebook": notebook, "output": output,
            "position": queue.get("position"), "eta": _epoch(queue.get("eta")),
        })
    return {"available": True, "items": items}


def share_memory_limit_mb(allocation: dict | None) -> float | None:
    """The share's GPU memory: each device's memory times the share's fraction of it."""
    if not allocation or not allocation.get("devices"):
        return None
    per_gpu = allocation.get("units_per_gpu") or 1
    total = 0.0
    for d in allocation["devices"]:
        if d.get("memory_mb") is None:
            return None
        total += d["memory_mb"] * d.get("units", per_gpu) / per_gpu
    return total


def simulated_sample(allocation_id: str, now: float, limit_mb: float) -> tuple[float, float]:
    """A smooth, deterministic stand-in for a declared (mock) GPU: no device to
    measure, so the demo shows plausible numbers, labelled as simulated."""
    seed = sum(map(ord, allocation_id or "x")) % 97
    t = now / 60.0
    util = 45 + 30 * math.sin(t * 1.7 + seed) + 15 * math.sin(t * 5.3 + seed / 3)
    mem = limit_mb * (0.42 + 0.18 * math.sin(t * 0.9 + seed / 7))
    return round(max(0.0, min(100.0, util)), 1), round(max(0.0, mem))


def own_use(allocation: dict | None) -> dict | None:
    """The share's own GPU use as its host's agent reports it (GET
    allocations/{id} ``use``: its processes', told apart by the agent through
    their cgroups, so right in a container too); None where no agent reports it."""
    use = (allocation or {}).get("use")
    return use if isinstance(use, dict) and use.get("memory_used_mb") is not None else None


def session_pids() -> set[int]:
    """This server and everything it started (kernels, terminals)."""
    try:
        import psutil

        me = psutil.Process()
        return {me.pid, *(p.pid for p in me.children(recursive=True))}
    except Exception:
        return {os.getpid()}


def nvml_sample(uuids: list[str], pids: set[int]) -> tuple[float, float] | None:
    """Per-process readings of this session's processes on the share's devices,
    when this host has NVML (a real GPU); None otherwise."""
    try:
        import pynvml as nv

        nv.nvmlInit()
    except Exception:
        return None
    try:
        util, mem = 0.0, 0.0
        for uuid in uuids:
            h = nv.nvmlDeviceGetHandleByUUID(uuid)
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h) or []:
                if p.pid in pids and isinstance(getattr(p, "usedGpuMemory", None), int):
                    mem += p.usedGpuMemory / 2**20
            try:
                since = int((time.time() - 10) * 1e6)
                for s in nv.nvmlDeviceGetProcessUtilization(h, since) or []:
                    if s.pid in pids:
                        util += s.smUtil
            except Exception:
                pass
        return min(100.0, util), mem
    except Exception:
        return None
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:
            pass


class History:
    """Timestamped points of the last ``seconds``, at most one per MIN_SAMPLE_GAP."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.points: deque = deque()

    def add(self, now: float, *values) -> None:
        if self.points and now - self.points[-1][0] < MIN_SAMPLE_GAP:
            self.points[-1] = [self.points[-1][0], *values]
        else:
            self.points.append([now, *values])
        while self.points and now - self.points[0][0] > self.seconds:
            self.points.popleft()

    def json(self) -> list:
        return [list(p) for p in self.points]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(mountinfo: str | None = None) -> dict[str, str]:
    """This process's mount points and their mode: {path: "ro"|"rw"}. From
    /proc/self/mountinfo (a bind mount from the same filesystem has the same
    st_dev as its parent, so os.path.ismount cannot see it)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return {}
    out = {}
    for line in mountinfo.splitlines():
        f = line.split(" ")
        if len(f) > 6:
            out[_unescape(f[4])] = "ro" if "ro" in f[5].split(",") else "rw"
    return out


def mount_state(mount_name: str, home: Path, table: dict[str, str] | None = None,
                live: bool = True) -> dict:
    """Whether ~/vfolders/NAME is mounted in this session, and ro or rw; ``live``:
    whether a vfolder made during the session is mounted into it (the spawner's
    GPUHUB_VFOLDERS_LIVE), else a restart is what mounts it."""
    table = mounts() if table is None else table
    path = str(home / "vfolders" / mount_name)
    mode = table.get(path) or table.get(os.path.realpath(path))
    return {"path": f"~/vfolders/{mount_name}", "mounted": mode is not None, "mode": mode, "live": live}


class State:
    """What the server remembers between polls: the sparklines' history."""

    def __init__(self, lab: GPUHubLab, backend: Backend | None = None, root_dir: str | None = None):
        self.lab = lab
        #: the server's root directory (the contents API's paths are relative to it)
        self.root_dir = Path(root_dir) if root_dir else None
        self.backend = backend or Backend(lab)
        self.gpu = History(lab.history_seconds)
        self.storage: dict[str, History] = {}

    async def status(self) -> dict:
        now = time.time()
        b = self.backend
        alloc_id = self.lab.allocation

        async def section(coro):
            try:
                return await coro
            except ServiceError as e:
                return {"error": e.message, "status": e.status}
            except Exception as e:  # a panel section must never take the others down
                return {"error": f"{type(e).__name__}: {e}", "status": 500}

        share, pool, vfolders, invitations, hosts, user_quota, quotas, queue, jobs = await asyncio.gather(
            section(self._allocation(alloc_id)),
            section(b.json("allocator", "GET", "pool")),
            section(b.json("vfolders", "GET", "vfolders")),
            section(b.json("vfolders", "GET", "invitations")),
            section(b.json("vfolders", "GET", "storage/hosts")),
            section(b.json("vfolders", "GET", f"quotas/user/{quote(b.user, safe='')}")),
            section(self._future("allocator", "quota", quota_view)),
            section(self._future("allocator", "queue", lambda d: queue_view(d, alloc_id))),
            section(self._future("allocator", f"jobs?limit={PANEL_JOBS}",
                                 lambda d: jobs_view(d, Path.home(), self.root_dir))),
        )
        allocation = share.get("allocation") if "error" not in share else None
        nvml = None
        if allocation and self.lab.nvml and not own_use(allocation):
            # the fallback where no agent reports the share's own use: this
            # session's pids (right for a local session, not in a container)
            # NVML and the process tree block: off the event loop
            uuids = [d["uuid"] for d in allocation.get("devices") or ()]
            nvml = await asyncio.get_running_loop().run_in_executor(
                None, lambda: nvml_sample(uuids, session_pids()))
        out = {
            "user": b.user,
            "now": now,
            "share": (share_view(allocation, self.lab.session_env(), now, pool.get("max_hours") if "error" not in pool else None)
                      if "error" not in share else share),
            "live": self._live(allocation, pool, now, nvml),
            "quotas": quotas,
            "queue": queue,
            "jobs": jobs,
            "vfolders": self._vfolders(vfolders, invitations, user_quota),
            "storage": self._storage(hosts, now),
        }
        return out

    async def _allocation(self, alloc_id: str | None) -> dict:
        if not alloc_id:
            return {"allocation": None}
        return {"allocation": await self.backend.json("allocator", "GET", f"allocations/{quote(alloc_id)}")}

    async def _future(self, service: str, path: str, view) -> dict:
        """Quotas, the queue (issue #10) and jobs (#21): an allocator without them answers 404,
        which is "nothing set" for the panel."""
        try:
            data = await self.backend.json(service, "GET", path)
        except ServiceError as e:
            if e.status == 404:
                return {"available": False, "items": []}
            raise
        return view(data)

    def _live(self, allocation: dict | None, pool: dict, now: float,
              sample: tuple[float, float] | None = None) -> dict:
        if not allocation:
            return {"source": "none", "label": "no GPU share in this session", "history": []}
        uuids = [d["uuid"] for d in allocation.get("devices") or ()]
        limit = share_memory_limit_mb(allocation)
        host = None
        if "error" not in pool:
            host = next((h for h in pool.get("hosts") or () if h.get("name") == allocation.get("host")), None)
        use = own_use(allocation)
        if use is not None:
            sample = (float(use.get("utilization_gpu") or 0), float(use.get("memory_used_mb") or 0))
            source, label = "share", "this session's processes (the host agent's samples)"
        elif sample is not None:
            source, label = "nvml", "this session's processes (NVML)"
        else:
            usage = (host or {}).get("usage") or {}
            mine = [d for d in usage.get("devices") or () if d.get("uuid") in uuids]
            if mine:
                util = sum(d.get("utilization_gpu") or 0 for d in mine) / len(mine)
                mem = sum(d.get("memory_used_mb") or 0 for d in mine)
                sample = (util, mem)
                source, label = "agent", "the host agent's device samples (whole device)"
            elif host is not None and host.get("source") == "inventory":
                sample = simulated_sample(allocation.get("id", ""), now, limit or 0)
                source, label = "simulated", "simulated: a declared (mock) GPU has nothing to measure"
            else:
                return {"source": "none", "label": "no samples from this host yet",
                        "memory_limit_mb": limit, "history": self.gpu.json(),
                        **({"error": pool["error"]} if "error" in pool else {})}
        util, mem = sample
        self.gpu.add(now, util, mem)
        return {"source": source, "label": label, "utilization_gpu": util, "memory_used_mb": mem,
                "memory_limit_mb": limit, "history": self.gpu.json()}

    def _vfolders(self, vfolders: dict, invitations: dict, user_quota: dict) -> dict:
        if "error" in vfolders:
            return vfolders
        home = Path.home()
        table = mounts()
        items = []
        for vf in vfolders.get("vfolders") or ():
            name = vf.get("mount_name") or vf.get("name")
            if vf.get("kind") == "home":  # mounted at ~ itself
                mode = table.get(str(home)) or table.get(os.path.realpath(home))
                here = {"path": "~", "mounted": mode is not None, "mode": mode, "live": self.lab.vfolders_live}
            else:
                here = mount_state(name, home, table, self.lab.vfolders_live)
            items.append({
                "id": vf.get("id"), "name": vf.get("name"), "mount_name": name,
                "owner": vf.get("owner"), "access": vf.get("access"), "state": vf.get("state"),
                "usage": vf.get("usage"), "quota": vf.get("quota"), "over_quota": vf.get("over_quota"),
                "shares": vf.get("shares"), "here": here, "kind": vf.get("kind"),
            })
        return {
            "items": items,
            "invitations": invitations.get("invitations", []) if "error" not in invitations else [],
            "invitations_error": invitations.get("error"),
            "quota": user_quota if "error" not in user_quota else None,
        }

    def _storage(self, hosts: dict, now: float) -> dict:
        if "error" in hosts:
            return hosts
        out = []
        for h in hosts.get("hosts") or ():
            stats = h.get("stats") or {}
            name = h.get("name")
            entry = {"name": name, **{k: stats.get(k) for k in (
                "capacity_bytes", "used_bytes", "free_bytes", "used_percent", "read_bytes", "write_bytes",
                "io_bytes_read", "io_bytes_write", "iops_read", "iops_write", "source", "sampled")}}
            if "error" in stats:
                entry["error"] = stats["error"]
            hist = self.storage.setdefault(name, History(self.lab.history_seconds))
            if stats.get("io_bytes_read") is not None:
                hist.add(now, stats.get("io_bytes_read"), stats.get("io_bytes_write"))
            entry["history"] = hist.json()
            out.append(entry)
        return {"hosts": out}


# --- handlers ------------------------------------------------------------------------------


class Base(JSONErrors, APIHandler):
    """The panel's API handlers: errors as the services answer them, ``{"error": "…"}``."""

    def initialize(self, state: State):
        self.state = state

    @property
    def backend(self) -> Backend:
        return self.state.backend

    def fail(self, e: ServiceError):
        self.set_status(e.status if 400 <= e.status < 600 else 502)
        self.finish(json.dumps({"error": e.message}))

    def body_json(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "send a JSON object") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "send a JSON object")
        return data

    async def pass_json(self, service: str, method: str, path: str, data=None, status: int = 200):
        try:
            answer = await self.backend.json(service, method, path, data)
        except ServiceError as e:
            return self.fail(e)
        self.set_status(status)
        self.finish(json.dumps(answer))


class StatusHandler(Base):
    @web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.state.status()))


class ExtendHandler(Base):
    @web.authenticated
    async def post(self):
        alloc_id = self.state.lab.allocation
        if not alloc_id:
            raise web.HTTPError(409, "this session holds no GPU share")
        data = self.body_json()
        hours = data.get("hours")
        if hours is None:  # what one press asks for: an hour, or what the longest run time leaves
            try:
                a = await self.backend.json("allocator", "GET", f"allocations/{quote(alloc_id)}")
                pool = await self.backend.json("allocator", "GET", "pool")
            except ServiceError as e:
                return self.fail(e)
            offer = extend_view(a, pool.get("max_hours"))
            if not offer["allowed"]:
                raise web.HTTPError(409, offer["reason"])
            hours = offer["hours"]
        await self.pass_json("allocator", "POST", f"allocations/{quote(alloc_id)}/extend", {"hours": hours})


class VFoldersHandler(Base):
    @web.authenticated
    async def post(self):
        data = self.body_json()
        await self.pass_json("vfolders", "POST", "vfolders",
                             {k: data[k] for k in ("name", "auto_mount", "host", "group") if k in data}, 201)


class SharesHandler(Base):
    @web.authenticated
    async def post(self, vid):
        data = self.body_json()
        await self.pass_json("vfolders", "POST", f"vfolders/{vid}/shares",
                             {k: data[k] for k in ("user", "group", "permission") if k in data}, 201)


class InvitationHandler(Base):
    @web.authenticated
    async def post(self, sid, answer):
        await self.pass_json("vfolders", "POST", f"invitations/{sid}/{answer}")


class JobsHandler(Base):
    """The allocator's ``jobs`` as this session's user: list (``?limit=``) and submit."""

    @web.authenticated
    async def get(self):
        limit = self.get_argument("limit", None)
        await self.pass_json("allocator", "GET", "jobs" + (f"?{urlencode({'limit': limit})}" if limit else ""))

    @web.authenticated
    async def post(self):
        await self.pass_json("allocator", "POST", "jobs", self.body_json(), 201)


class JobHandler(Base):
    """One job: its record, or cancel it (DELETE)."""

    @web.authenticated
    async def get(self, job_id):
        await self.pass_json("allocator", "GET", f"jobs/{job_id}")

    @web.authenticated
    async def delete(self, job_id):
        await self.pass_json("allocator", "DELETE", f"jobs/{job_id}")


class TusHandler(Base):
    """tus 1.0 passed through to the vfolder service (its Location rewritten here)."""

    async def _pass(self, vid: str, uid: str | None):
        path = f"vfolders/{vid}/uploads/" + (uid or "")
        headers = {k: self.request.headers[k] for k in TUS_HEADERS if k in self.request.headers}
        method = self.request.method
        body = self.request.body if method in ("POST", "PATCH") else None
        try:
            r = await self.backend.raw("vfolders", method, path, body=body, headers=headers)
        except ServiceError as e:
            return self.fail(e)
        self.set_status(r.code)
        for k in TUS_ANSWER_HEADERS:
            if k in r.headers:
                self.set_header(k, r.headers[k])
        loc = r.headers.get("Location")
        if loc:
            new_uid = loc.rstrip("/").rsplit("/", 1)[-1]
            base = self.settings.get("base_url", "/")
            self.set_header("Location", url_path_join(base, "gpuhub", "vfolders", vid, "uploads", new_uid))
        if r.code in (204, 304) or method == "HEAD":
            return self.finish()
        if r.body:
            self.set_header("Content-Type", r.headers.get("Content-Type", "application/json"))
            self.write(r.body)
        self.finish()

    @web.authenticated
    async def options(self, vid, uid=None):
        await self._pass(vid, uid)

    @web.authenticated
    async def post(self, vid, uid=None):
        await self._pass(vid, uid)

    @web.authenticated
    async def head(self, vid, uid=None):
        await self._pass(vid, uid)

    @web.authenticated
    async def patch(self, vid, uid=None):
        await self._pass(vid, uid)

    @web.authenticated
    async def delete(self, vid, uid=None):
        await self._pass(vid, uid)


def setup_handlers(serverapp, lab: GPUHubLab) -> State:
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    state = State(lab, root_dir=serverapp.root_dir)
    kw = {"state": state}
    vid = r"([A-Za-z0-9_.-]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "gpuhub/status"), StatusHandler, kw),
        (url_path_join(base, "gpuhub/extend"), ExtendHandler, kw),
        (url_path_join(base, "gpuhub/vfolders"), VFoldersHandler, kw),
        (url_path_join(base, rf"gpuhub/vfolders/{vid}/shares"), SharesHandler, kw),
        (url_path_join(base, r"gpuhub/invitations/([A-Za-z0-9_.-]+)/(accept|reject)"), InvitationHandler, kw),
        (url_path_join(base, "gpuhub/jobs"), JobsHandler, kw),
        (url_path_join(base, r"gpuhub/jobs/([0-9a-f]{12})"), JobHandler, kw),
        (url_path_join(base, rf"gpuhub/vfolders/{vid}/uploads/?"), TusHandler, kw),
        (url_path_join(base, rf"gpuhub/vfolders/{vid}/uploads/([0-9a-f]{{32}})"), TusHandler, kw),
    ])
    return state
