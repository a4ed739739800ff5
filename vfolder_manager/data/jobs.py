"""The Data page's batch jobs: the allocator's jobs API (``gpuhub run``; see
gpu_allocator/api/jobs.py), called by the vfolder service with the signed-in
user's own OAuth token (VFolderService.allocator_url), so the allocator shows
and cancels only that user's jobs. A client of the allocator of its own: the
two services never import each other (gpuhub/__init__.py)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from urllib.parse import urlencode

from gpuhub.client import ServiceClient, ServiceError

#: the states of a job that is not over (it can be cancelled; its log grows)
ACTIVE = ("queued", "running")
#: the newest jobs the Data page lists
LIST_LIMIT = 20
#: how much of a job's output its log page shows: the last this many bytes
LOG_TAIL = 1 << 20
#: Bootstrap badge classes by state (JupyterHub's theme makes success its primary blue:
#: a running job is cyan, the ends blue, red, yellow)
BADGES = {
    "queued": "text-bg-secondary",
    "running": "text-bg-info",
    "succeeded": "text-bg-success",
    "failed": "text-bg-danger",
    "cancelled": "text-bg-warning",
    "expired": "text-bg-warning",
}


class AllocatorJobs(ServiceClient):
    """``AllocatorJobs(url, user_token)``: one user's jobs at the allocator."""

    what = "the GPU allocator"

    async def list(self, limit: int = LIST_LIMIT) -> list[dict]:
        return (await self.call("GET", f"jobs?limit={limit}"))["jobs"]

    async def get(self, job_id: str) -> dict:
        return await self.call("GET", f"jobs/{job_id}")

    async def cancel(self, job_id: str) -> dict:
        return await self.call("DELETE", f"jobs/{job_id}")

    async def logs(self, job_id: str, offset: int = 0) -> tuple[bytes, dict]:
        """The job's output from byte ``offset`` (at most 1 MiB, the allocator's
        limit) and the answer's headers (X-Log-Offset, X-Job-State, …)."""
        resp = await self.fetch("GET", f"jobs/{job_id}/logs?" + urlencode({"offset": offset}))
        if resp.code >= 400:
            try:
                message = json.loads(resp.body).get("error") or resp.reason
            except (ValueError, AttributeError):
                message = f"HTTP {resp.code}: {resp.reason}"
            raise ServiceError(resp.code, message)
        return resp.body, dict(resp.headers)


def short_command(argv: list[str], width: int = 40) -> str:
    """The command as one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(a if a and not any(c in a for c in " \t\"'") else repr(a) for a in argv)
    return line if len(line) <= width else line[: width - 1] + "…"


def clock(iso: str | None) -> str:
    """An ISO time of the allocator as the page shows its other times (the
    service's local time, to the minute)."""
    if not iso:
        return "—"
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t.timestamp()))


def gpus(job: dict) -> str:
    """The GPUs it asked for (its share, while it runs)."""
    a = job.get("allocation") or {}
    asked = (job.get("options") or {}).get("gpus")
    got = a.get("gpus")
    value = got if got is not None else asked
    return "—" if value in (None, "") else str(value)


def unreachable_message(e: ServiceError) -> str:
    """What the page says when the allocator says no to the list."""
    if e.status == 403:
        return ("the GPU allocator refused this page's sign-in (it needs "
                "access:services!service=gpu-allocator): sign out and in again, or ask an administrator")
    return e.message
