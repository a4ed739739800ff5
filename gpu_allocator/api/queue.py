"""REST handlers of the queue, quotas, usage accounting and run-time extension,
under ``{service_prefix}api/v1/``.

- ``GET queue``: waiting requests in order with position and start estimates
  (admins: everyone's; users: their own);
- ``GET quota`` (``?user=`` for admins): the limits that apply to a user (their own
  row, else the most generous of their groups', else the default), what they
  hold and what is left;
- ``GET quotas``, ``PUT``/``DELETE quotas/{user|group}/{name}``: admins set limits
  and queue policy (``gpus``, ``sessions``, ``gpu_hours`` per rolling 7 days,
  ``priority``, ``share``, ``max_wait_hours``; null or absent: not set);
- ``GET usage`` (``?since=&until=`` epoch s or ISO dates, ``?user=``, ``?group=``,
  ``?format=csv``): GPU-hours and CPU-hours per user and day, from the ledger;
- ``POST allocations/{id}/extend`` ``{"hours": h}``: once, if no queued request
  would start later for it.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from datetime import datetime, timezone

from tornado import web

from ..core.model import format_gpus
from ..core.quota import FIELDS, WINDOW_S, Limits
from ..core.validation import RequestError, parse_gpus, parse_user
from ..pool import ExtendRefused
from .allocations import APIHandler
from .shapes import queued_json


class QueueHandler(APIHandler):
    def get(self):
        user = None if self.is_admin else self.user_name
        pool = self.pool
        per = pool.units_per_gpu
        self.send({
            "queued": [queued_json(q, e, per) for q, e in pool.queued(user)],
            "waiting": len(pool.queue),
            # used / declared run time of finished shares: scales the expected starts
            "runtime_ratio": round(pool.ratio, 3),
        })


def _limits_json(limits: Limits, per: int) -> dict:
    return limits.as_dict(per)


def quota_json(pool, user: str, groups=None, now: float | None = None) -> dict:
    """A user's limits (for ``groups``, default: as the spawner last reported
    them), what they hold and what is left: GET quota, and the spawn form."""
    per = pool.units_per_gpu
    now = time.time() if now is None else now
    groups = tuple(groups) if groups is not None else tuple(pool.groups.get(user, ()))
    limits = pool.quotas.resolve(user, groups)
    held = pool.held(user, now)
    left = {
        "gpus": None if limits.gpus is None else format_gpus(max(0, limits.gpus - held.units), per),
        "sessions": None if limits.sessions is None else max(0, limits.sessions - held.sessions),
        "gpu_hours": None if limits.gpu_hours is None else round(max(0.0, limits.gpu_hours - held.gpu_hours), 3),
    }
    return {
        "user": user,
        "groups": list(groups),
        "limits": _limits_json(limits, per),
        "held": {"gpus": format_gpus(held.units, per), "sessions": held.sessions,
                 "gpu_hours": round(held.gpu_hours, 3)},
        "left": left,
        "window_hours": WINDOW_S / 3600,
    }


class QuotaHandler(APIHandler):
    def get(self):
        user = self.get_argument("user", self.user_name)
        if user != self.user_name and not self.is_admin:
            raise web.HTTPError(403, "you can only read your own quota")
        self.send(quota_json(self.pool, user))


class QuotasHandler(APIHandler):
    def get(self):
        if not self.is_admin:
            raise web.HTTPError(403, "only admins list quotas")
        per = self.pool.units_per_gpu
        q = self.pool.quotas
        self.send({
            "users": {n: _limits_json(v, per) for n, v in sorted(q.users.items())},
            "groups": {n: _limits_json(v, per) for n, v in sorted(q.groups.items())},
            "default": _limits_json(q.default, per),
        })


def parse_limits(data: dict, per: int) -> Limits:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    out = {}
    for name in FIELDS:
        v = data.get(name)
        if v is None:
            out[name] = None
        elif name == "gpus":
            out[name] = parse_gpus(v, per, allow_zero=True)
        elif name in ("sessions", "priority"):
            if not isinstance(v, int) or isinstance(v, bool) or (name == "sessions" and v < 0):
                raise RequestError(f"{name} must be a whole number" + (" ≥ 0" if name == "sessions" else ""))
            out[name] = v
        else:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
                raise RequestError(f"{name} must be a number ≥ 0")
            if name == "share" and v <= 0:
                raise RequestError("share must be more than 0")
            out[name] = float(v)
    return Limits(**out)


class QuotaRowHandler(APIHandler):
    def _check(self, kind: str, name: str) -> str:
        if not self.is_admin:
            raise web.HTTPError(403, "only admins set quotas")
        try:
            return parse_user(name)
        except RequestError as e:
            raise web.HTTPError(400, str(e).replace("user", kind, 1)) from None

    async def put(self, kind, name):
        name = self._check(kind, name)
        try:
            limits = parse_limits(self.body(), self.pool.units_per_gpu)
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        from ..admin.queue_actions import set_quota  # audited (admin.queue_actions)

        await set_quota(self.allocator, self.user_name, kind, name, limits)
        self.send({"kind": kind, "name": name, "limits": _limits_json(limits, self.pool.units_per_gpu)})

    async def delete(self, kind, name):
        name = self._check(kind, name)
        from ..admin.queue_actions import set_quota

        await set_quota(self.allocator, self.user_name, kind, name, None)
        self.set_status(204)
        self.finish()


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
    midnights, clipped to [since, until)."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for user, units, cpu, start, end in shares:
        s, e = max(start, since), min(end, until)
        while s < e:
            day = datetime.fromtimestamp(s, timezone.utc).date()
            midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() + 86400
            chunk = min(e, midnight) - s
            row = acc[(day.isoformat(), user)]
            row[0] += units / per * chunk / 3600
            row[1] += cpu * chunk / 3600
            s += chunk
        if start >= since and start < until:
            acc[(datetime.fromtimestamp(start, timezone.utc).date().isoformat(), user)][2] += 1
    return [
        {"day": d, "user": u, "groups": list(groups_of(u)), "gpu_hours": round(g, 4),
         "cpu_hours": round(c, 4), "sessions_started": n}
        for (d, u), (g, c, n) in sorted(acc.items())
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
            w.writerow(["day", "user", "groups", "gpu_hours", "cpu_hours", "sessions_started"])
            for r in rows:
                w.writerow([r["day"], r["user"], " ".join(r["groups"]), r["gpu_hours"], r["cpu_hours"],
                            r["sessions_started"]])
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


class ExtendHandler(APIHandler):
    async def post(self, allocation_id):
        a = self.own_allocation_or_404(self.pool.state.allocations.get(allocation_id), allocation_id)
        hours = self.body().get("hours")
        if not isinstance(hours, (int, float)) or isinstance(hours, bool) or not hours > 0:
            raise web.HTTPError(400, "hours must be a number of hours more than 0")
        try:
            a = await self.pool.extend(allocation_id, float(hours), self.allocator.max_hours)
        except ExtendRefused as e:
            raise web.HTTPError(409, str(e)) from None
        self.allocator.log.info("extended %s of %s to %g h (by %s)", a.id, a.user, a.max_hours, self.user_name)
        self.send(self.allocator.live_json(a))
