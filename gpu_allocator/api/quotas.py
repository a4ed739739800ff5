"""REST handlers of quotas, under ``{service_prefix}api/v1/``:

- ``GET quota`` (``?user=`` for admins): the limits that apply to a user (their own
  row, else the most generous of their groups', else the default), what they
  hold and what is left;
- ``GET quotas``, ``PUT``/``DELETE quotas/{user|group}/{name}``: admins set limits
  and queue policy (``gpus``, ``sessions``, ``gpu_hours`` per rolling 7 days,
  ``priority``, ``share``, ``max_wait_hours``; null or absent: not set), audited
  (admin.queue_actions.set_quota). With ``?pool=NAME`` the row limits what the
  user (each user of the group) holds in that host pool: ``gpus``,
  ``sessions``, ``gpu_hours`` only; there ``quotas/default/*`` sets every
  user's (core.quota, docs/source/howto/pools.md).
"""

from __future__ import annotations

from tornado import web

from ..admin import queue_actions
from ..core.quota import FIELDS, POOL_FIELDS, Quotas
from ..core.validation import RequestError, parse_limits, parse_user
from ..shapes import quota_json
from .base import APIHandler


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
        self.send({**rows_json(q, per, FIELDS),
                   # per host pool: the rows that limit what a user holds there
                   "pools": {p: rows_json(r, per, POOL_FIELDS) for p, r in sorted(q.pools.items())}})


def rows_json(q: Quotas, per: int, fields) -> dict:
    """A table of quota rows (over every pool, or one pool's: ``fields`` only)."""
    def row(v):
        d = v.as_dict(per)
        return {f: d[f] for f in fields}
    return {"users": {n: row(v) for n, v in sorted(q.users.items())},
            "groups": {n: row(v) for n, v in sorted(q.groups.items())},
            "default": row(q.default)}


class QuotaRowHandler(APIHandler):
    def _check(self, kind: str, name: str) -> tuple[str, str]:
        """(name, pool): ``?pool=`` a configured host pool ("": every pool)."""
        if not self.is_admin:
            raise web.HTTPError(403, "only admins set quotas")
        pool = self.get_argument("pool", "")
        if pool and pool not in self.pool.pools:
            raise web.HTTPError(400, f"no pool {pool!r}; GPUAllocator.pools has "
                                     f"{', '.join(self.pool.pools)}"[:500])
        if kind == "default":
            if not pool or name != "*":
                raise web.HTTPError(400, "a default quota is per pool: quotas/default/*?pool=NAME")
            return name, pool
        try:
            return parse_user(name), pool
        except RequestError as e:
            raise web.HTTPError(400, str(e).replace("user", kind, 1)) from None

    async def put(self, kind, name):
        name, pool = self._check(kind, name)
        try:
            limits = parse_limits(self.body(), self.pool.units_per_gpu, POOL_FIELDS if pool else FIELDS)
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        await queue_actions.set_quota(self.allocator, self.user_name, kind, name, limits, pool=pool)
        out = {"kind": kind, "name": name, "limits": limits.as_dict(self.pool.units_per_gpu)}
        if pool:
            out["pool"] = pool
            out["limits"] = {f: out["limits"][f] for f in POOL_FIELDS}
        self.send(out)

    async def delete(self, kind, name):
        name, pool = self._check(kind, name)
        await queue_actions.set_quota(self.allocator, self.user_name, kind, name, None, pool=pool)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"/quota", QuotaHandler),
    (r"/quotas", QuotasHandler),
    (r"/quotas/(user|group|default)/([^/]+)", QuotaRowHandler),
]
