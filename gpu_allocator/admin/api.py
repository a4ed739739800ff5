"""The admin panel's REST API (token-authenticated, under ``api/v1/``): every
action the panel offers is also an API call. Admins only (``admin:users`` or
``custom:gpu-allocator:admin``); everyone else gets a 403.

- ``POST allocations/{id}/revoke`` ``{"reason": "…"}``: end a live share
- ``GET audit?limit=&offset=&action=&target=&actor=``: the audit log, newest first
- ``GET usage?since=&until=&by=user|group&format=json|csv``: GPU-hours
- ``GET utilisation?window=24h|7d&buckets=``: allocated and measured, per model
- ``GET pool/hosts?page=&per_page=&model=&host=&user=&state=``: a page of the map
- ``GET pool/summary``: per-model totals with fragmentation, hosts by state
(``POST hosts/{name}/drain|undrain`` are in api.hosts, with the audit entry.)
"""

from __future__ import annotations

from tornado import web

from ..api.allocations import APIHandler
from ..api.shapes import allocation_json
from . import accounting, actions, poolview
from .samples import WINDOWS


class AdminAPIHandler(APIHandler):
    def prepare(self):
        super().prepare()
        if not self.is_admin:
            raise web.HTTPError(403, "only GPU pool admins (admin:users or custom:gpu-allocator:admin) may do this")

    def int_arg(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.get_argument(name, None)
        if raw is None:
            return default
        try:
            v = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"{name} must be a whole number") from None
        if not lo <= v <= hi:
            raise web.HTTPError(400, f"{name} must be between {lo} and {hi}")
        return v


class RevokeHandler(AdminAPIHandler):
    async def post(self, allocation_id):
        data = self.body() if self.request.body else {}
        try:
            reason = actions.clean_reason(data.get("reason"))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        done = await actions.revoke(self.service, self.user_name, allocation_id, reason)
        if done is None:
            raise web.HTTPError(404, f"no live allocation {allocation_id}")
        out = allocation_json(done, self.pool.state)
        out["reason"] = reason
        self.send(out)


class AuditHandler(AdminAPIHandler):
    async def get(self):
        limit = self.int_arg("limit", 100, 1, 1000)
        offset = self.int_arg("offset", 0, 0, 10**9)
        entries, total = await self.pool.read(
            lambda: actions.read_audit(
                self.pool.ledger, limit, offset, self.get_argument("action", None),
                self.get_argument("target", None), self.get_argument("actor", None)))
        self.send({"entries": entries, "total": total, "offset": offset, "limit": limit})


async def usage_table(app, since, until, by: str) -> tuple[list[dict], float, float]:
    start, end = accounting.period(since, until)
    spans = await app.pool.spans(start, end)
    users = accounting.user_hours(spans, start, end, app.pool.units_per_gpu)
    if by == "group":
        groups = await accounting.hub_groups(app)
        return accounting.rows(accounting.group_hours(users, groups)), start, end
    return accounting.rows(users), start, end


class UsageHandler(AdminAPIHandler):
    async def get(self):
        by = self.get_argument("by", "user")
        fmt = self.get_argument("format", "json")
        if by not in ("user", "group") or fmt not in ("json", "csv"):
            raise web.HTTPError(400, "by is user or group; format is json or csv")
        try:
            table, start, end = await usage_table(
                self.service, self.get_argument("since", None), self.get_argument("until", None), by)
        except accounting.PeriodError as e:
            raise web.HTTPError(400, str(e)) from None
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="gpu-hours-by-{by}.csv"')
            self.finish(accounting.to_csv(by, table, start, end))
            return
        self.send({"by": by, "since": start, "until": end, "rows": table})


class UtilisationHandler(AdminAPIHandler):
    def get(self):
        window = self.get_argument("window", "24h")
        if window not in WINDOWS:
            raise web.HTTPError(400, f"window is one of {sorted(WINDOWS)}")
        buckets = self.int_arg("buckets", 96 if window == "24h" else 168, 1, 2000)
        self.send(self.service.samples.series(window, buckets))


class PoolHostsHandler(AdminAPIHandler):
    def get(self):
        f = poolview.Filters(
            model=self.get_argument("model", ""), host=self.get_argument("host", ""),
            user=self.get_argument("user", ""), state=self.get_argument("state", ""),
            page=self.int_arg("page", 1, 1, 10**6),
            per_page=self.int_arg("per_page", poolview.PER_PAGE, 1, poolview.MAX_PER_PAGE),
        )
        p = poolview.host_page(self.pool.state, self.pool.info, f)
        self.send({"hosts": p.hosts, "matched": p.matched, "page": p.page, "pages": p.pages,
                   "per_page": p.per_page})


class PoolSummaryHandler(AdminAPIHandler):
    def get(self):
        state = self.pool.state
        self.send({
            "units_per_gpu": state.units_per_gpu,
            "models": [t.json(state.units_per_gpu) for t in poolview.model_totals(state)],
            "hosts": poolview.host_counts(state),
            "allocations": len(state.allocations),
        })
