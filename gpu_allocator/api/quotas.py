"""REST handlers of quotas, under ``{service_prefix}api/v1/``:

- ``GET quota`` (``?user=`` for admins): the limits that apply to a user (their own
  row, else the most generous of their groups', else the default), what they
  hold and what is left;
- ``GET quotas``, ``PUT``/``DELETE quotas/{user|group}/{name}``: admins set limits
  and queue policy (``gpus``, ``sessions``, ``gpu_hours`` per rolling 7 days,
  ``priority``, ``share``, ``max_wait_hours``; null or absent: not set), audited
  (admin.queue_actions.set_quota).
"""

from __future__ import annotations

from tornado import web

from ..admin import queue_actions
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
        self.send({
            "users": {n: v.as_dict(per) for n, v in sorted(q.users.items())},
            "groups": {n: v.as_dict(per) for n, v in sorted(q.groups.items())},
            "default": q.default.as_dict(per),
        })


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
        await queue_actions.set_quota(self.allocator, self.user_name, kind, name, limits)
        self.send({"kind": kind, "name": name, "limits": limits.as_dict(self.pool.units_per_gpu)})

    async def delete(self, kind, name):
        name = self._check(kind, name)
        await queue_actions.set_quota(self.allocator, self.user_name, kind, name, None)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"/quota", QuotaHandler),
    (r"/quotas", QuotasHandler),
    (r"/quotas/(user|group)/([^/]+)", QuotaRowHandler),
]
