"""REST handlers of GPU usage accounting, under ``{service_prefix}api/v1/``:

- ``GET usage`` (``?since=&until=`` epoch s or ISO dates, ``?user=``, ``?group=``,
  ``?format=csv``): GPU-hours and CPU-hours per user and day, from the ledger;
  users read their own;
- ``GET usage/summary?since=&until=&by=user|group&format=json|csv`` (admins):
  GPU-hours per user or hub group over a period (admin.accounting, as the admin
  panel's Usage tab).
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from datetime import datetime, timezone

from tornado import web

from ..admin import accounting
from ..core.jobs import is_job_server
from .base import AdminAPIHandler, APIHandler


def _when(value: str | None, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPError(400, f"not a time: {value!r} (epoch seconds or ISO 8601)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def usage_rows(shares, since: float, until: float, per: int, groups_of) -> list[dict]:
    """GPU-hours and CPU-hours per (day in UTC, user): each share's time split at
    midnights, clipped to [since, until); batch jobs' GPU-hours also apart."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0.0])
    for user, units, cpu, start, end, server in shares:
        s, e = max(start, since), min(end, until)
        while s < e:
            day = datetime.fromtimestamp(s, timezone.utc).date()
            midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() + 86400
            chunk = min(e, midnight) - s
            row = acc[(day.isoformat(), user)]
            row[0] += units / per * chunk / 3600
            row[1] += cpu * chunk / 3600
            if is_job_server(server):
                row[3] += units / per * chunk / 3600
            s += chunk
        if start >= since and start < until:
            acc[(datetime.fromtimestamp(start, timezone.utc).date().isoformat(), user)][2] += 1
    return [
        {"day": d, "user": u, "groups": list(groups_of(u)), "gpu_hours": round(g, 4),
         "cpu_hours": round(c, 4), "sessions_started": n, "job_gpu_hours": round(j, 4)}
        for (d, u), (g, c, n, j) in sorted(acc.items())
    ]


class UsageHandler(APIHandler):
    async def get(self):
        now = time.time()
        since = _when(self.get_argument("since", None), now - 30 * 86400)
        until = _when(self.get_argument("until", None), now)
        user = self.get_argument("user", None)
        group = self.get_argument("group", None)
        if not self.is_admin:
            if user not in (None, self.user_name) or group is not None:
                raise web.HTTPError(403, "you can only read your own usage")
            user = self.user_name
        pool = self.pool
        shares = await pool.spans(since, until, user, now=now)
        groups_of = lambda u: pool.groups.get(u, ())  # noqa: E731
        if group is not None:
            shares = [s for s in shares if group in groups_of(s[0])]
        rows = usage_rows(shares, since, until, pool.units_per_gpu, groups_of)
        if self.get_argument("format", "json") == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["day", "user", "groups", "gpu_hours", "cpu_hours", "sessions_started", "job_gpu_hours"])
            for r in rows:
                w.writerow([r["day"], r["user"], " ".join(r["groups"]), r["gpu_hours"], r["cpu_hours"],
                            r["sessions_started"], r["job_gpu_hours"]])
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="gpu-usage.csv"')
            self.finish(buf.getvalue())
            return
        totals = defaultdict(lambda: {"gpu_hours": 0.0, "cpu_hours": 0.0})
        for r in rows:
            totals[r["user"]]["gpu_hours"] += r["gpu_hours"]
            totals[r["user"]]["cpu_hours"] += r["cpu_hours"]
        self.send({
            "since": datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds"),
            "until": datetime.fromtimestamp(until, timezone.utc).isoformat(timespec="seconds"),
            "days": rows,
            "users": {u: {k: round(v, 4) for k, v in t.items()} for u, t in sorted(totals.items())},
        })


class UsageSummaryHandler(AdminAPIHandler):
    async def get(self):
        by = self.get_argument("by", "user")
        fmt = self.get_argument("format", "json")
        if by not in ("user", "group") or fmt not in ("json", "csv"):
            raise web.HTTPError(400, "by is user or group; format is json or csv")
        try:
            table, start, end = await accounting.usage_table(
                self.service, self.get_argument("since", None), self.get_argument("until", None), by)
        except accounting.PeriodError as e:
            raise web.HTTPError(400, str(e)) from None
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="gpu-hours-by-{by}.csv"')
            self.finish(accounting.to_csv(by, table, start, end))
            return
        self.send({"by": by, "since": start, "until": end, "rows": table})


default_handlers = [
    (r"/usage", UsageHandler),
    (r"/usage/summary", UsageSummaryHandler),
]
