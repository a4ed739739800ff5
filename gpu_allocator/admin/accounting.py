"""Usage and accounting: GPU-hours per user and per group over a period, from
the shares held in it (``LivePool.spans``, which GET usage reads too: live ones
count up to now, ended ones up to their release), and the groups from the
hub's REST API."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gpuhub.client import hub_api_items
from ..core.jobs import is_job_server


DAY = 86400.0


class PeriodError(ValueError):
    pass


def parse_time(value: str | None, *, end: bool = False) -> float | None:
    """An ISO date (2025-01-31: its start, or with ``end`` its end), an ISO time,
    or epoch seconds → epoch seconds (UTC for naive values)."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        if len(value) == 10:
            d = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return (d + timedelta(days=1)).timestamp() if end else d.timestamp()
        t = datetime.fromisoformat(value)
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    except ValueError:
        raise PeriodError(f"not a date or time: {value!r} (use YYYY-MM-DD, ISO 8601 or epoch seconds)") from None


def period(since: str | None, until: str | None, now: float | None = None) -> tuple[float, float]:
    """The period asked for; default the last 7 days up to now."""
    now = time.time() if now is None else now
    end = parse_time(until, end=True)
    end = now if end is None else end
    start = parse_time(since)
    start = end - 7 * DAY if start is None else start
    if start >= end:
        raise PeriodError("the period's start must be before its end")
    if end - start > 366 * DAY:
        raise PeriodError("a period is at most 366 days")
    return start, end


@dataclass
class Usage:
    name: str
    gpu_hours: float = 0.0
    allocations: int = 0
    #: of those, batch jobs' (``gpuhub run``: the servers job-…)
    job_gpu_hours: float = 0.0


def user_hours(spans, start: float, end: float, per: int) -> dict[str, Usage]:
    """GPU-hours each user held within [start, end): per share (``LivePool.spans``:
    user, units, CPU, began, ended, server), the overlap of its time with the period ×
    its GPUs; batch jobs' also as ``job_gpu_hours``."""
    out: dict[str, Usage] = {}
    for user, units, _cpu, began, ended, server in spans:
        seconds = min(ended, end) - max(began, start)
        if seconds <= 0:
            continue
        u = out.get(user) or out.setdefault(user, Usage(user))
        hours = seconds / 3600.0 * units / per
        u.gpu_hours += hours
        if is_job_server(server):
            u.job_gpu_hours += hours
        u.allocations += 1
    return out


def group_hours(users: dict[str, Usage], groups: dict[str, list[str]]) -> dict[str, Usage]:
    """A group's GPU-hours: the sum of its members' (a user in two groups counts in both)."""
    out = {}
    for group, members in groups.items():
        g = Usage(group)
        for m in members:
            u = users.get(m)
            if u is not None:
                g.gpu_hours += u.gpu_hours
                g.job_gpu_hours += u.job_gpu_hours
                g.allocations += u.allocations
        out[group] = g
    return out


def rows(usages: dict[str, Usage]) -> list[dict]:
    return [
        {"name": u.name, "gpu_hours": round(u.gpu_hours, 6), "job_gpu_hours": round(u.job_gpu_hours, 6),
         "allocations": u.allocations}
        for u in sorted(usages.values(), key=lambda u: (-u.gpu_hours, u.name))
    ]


def to_csv(kind: str, table: list[dict], start: float, end: float) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    w.writerow([kind, "gpu_hours", "job_gpu_hours", "allocations", "period_start", "period_end"])
    for r in table:
        w.writerow([r["name"], f"{r['gpu_hours']:.4f}", f"{r['job_gpu_hours']:.4f}", r["allocations"], iso(start),
                    iso(end)])
    return buf.getvalue()


async def hub_groups(app) -> dict[str, list[str]]:
    """Every hub group and its members (the allocator's token needs
    list:groups and read:groups); empty when not run under a hub."""
    if not app.under_hub:
        return {}
    return {g["name"]: list(g.get("users") or [])
            async for g in hub_api_items(app.hub_api_url, app.api_token, "groups")}


async def usage_table(app, since: str | None, until: str | None, by: str) -> tuple[list[dict], float, float]:
    """GPU-hours per user (``by="user"``) or per hub group over the period asked
    for, with the period: the admin panel's Usage tab, its CSV and
    ``GET usage/summary``. Raises PeriodError."""
    start, end = period(since, until)
    spans = await app.pool.spans(start, end)
    users = user_hours(spans, start, end, app.pool.units_per_gpu)
    if by == "group":
        groups = await hub_groups(app)
        return rows(group_hours(users, groups)), start, end
    return rows(users), start, end
