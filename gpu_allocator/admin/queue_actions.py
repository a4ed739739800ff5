"""Admins' actions on the queue and on quotas, each written with its audit entry
in one transaction (as admin.actions), and their REST API (admins only):

- ``PATCH queue/{id}`` ``{"priority": n, "reason": "…"}``: change a waiting
  request's priority. The queue orders by the priority of the request's *user*
  (core.queue: their quota row, else their groups'), so this sets the
  ``priority`` of the user's quota row, keeping its other limits: every request
  of that user moves with it. Audited as ``priority`` of ``request:ID``.
- ``POST queue/{id}/cancel`` ``{"reason": "…"}``: take a waiting request out of
  the queue (state ``cancelled``; the reason is the request's). Audited as
  ``cancel`` of ``request:ID``. (``DELETE allocations/{id}`` does the same
  for the request's owner, unaudited.)
- quotas: ``PUT``/``DELETE quotas/{user|group}/{name}`` (api.queue) go through
  :func:`set_quota`, audited as ``quota`` of ``user:NAME`` / ``group:NAME``.
"""

from __future__ import annotations

import dataclasses
import time

from tornado import web

from ..core.quota import Limits
from ..store.ledger import Audit
from . import actions
from .api import AdminAPIHandler


class NotQueued(LookupError):
    pass


def _limits_detail(limits: Limits | None, per: int) -> dict | None:
    if limits is None:
        return None
    return {k: v for k, v in limits.as_dict(per).items() if v is not None}


async def set_quota(app, actor: str, kind: str, name: str, limits: Limits | None, reason: str = "") -> None:
    """Set (or, with None, remove) the quota row of a user or group, audited."""
    pool = app.pool
    per = pool.units_per_gpu
    table = pool.quotas.users if kind == "user" else pool.quotas.groups
    detail = {"limits": _limits_detail(limits, per), "previous": _limits_detail(table.get(name), per)}
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "quota", f"{kind}:{name}", detail)
    await pool.set_quota(kind, name, limits, extra=(entry,))
    app.log.info("quota of %s %s set by %s: %s", kind, name, actor, limits)


async def set_priority(app, actor: str, request_id: str, priority: int, reason: str = "") -> dict:
    """Give the user of a waiting request the queue priority ``priority`` (their
    quota row's, other limits kept). Raises NotQueued."""
    pool = app.pool
    q = pool.queue.get(request_id)
    if q is None:
        raise NotQueued(request_id)
    user = q.req.user
    before = pool.quotas.resolve(user, q.groups).priority
    row = pool.quotas.users.get(user) or Limits()
    new = dataclasses.replace(row, priority=priority)
    detail = {"user": user, "priority": priority, "previous": before}
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "priority", f"request:{request_id}", detail)
    await pool.set_quota("user", user, new, extra=(entry,))
    app.log.info("priority of %s's requests (from %s) set to %d by %s", user, request_id, priority, actor)
    return detail


async def cancel(app, actor: str, request_id: str, reason: str = ""):
    """Take a waiting request out of the queue, audited. Raises NotQueued."""
    pool = app.pool
    q = pool.queue.get(request_id)
    if q is None:
        raise NotQueued(request_id)
    detail = {"user": q.req.user, "gpus": f"{q.req.units / pool.units_per_gpu:g}"}
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "cancel", f"request:{request_id}", detail)
    done = await pool.cancel(request_id, reason=f"cancelled by an admin: {reason}" if reason
                             else "cancelled by an admin", extra=(entry,))
    if done is None:
        raise NotQueued(request_id)
    app.log.warning("queued request %s of %s cancelled by %s%s", request_id, done.req.user, actor,
                    f": {reason}" if reason else "")
    return done


def parse_priority(value) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("priority must be a whole number") from None
    if not isinstance(value, int) or isinstance(value, bool) or not -1000 <= value <= 1000:
        raise ValueError("priority must be a whole number between -1000 and 1000")
    return value


class QueueRequestHandler(AdminAPIHandler):
    async def patch(self, request_id):
        data = self.body()
        try:
            priority = parse_priority(data.get("priority"))
            reason = actions.clean_reason(data.get("reason"))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            detail = await set_priority(self.service, self.user_name, request_id, priority, reason)
        except NotQueued:
            raise web.HTTPError(404, f"no queued request {request_id}") from None
        self.send({"id": request_id, **detail})


class QueueCancelHandler(AdminAPIHandler):
    async def post(self, request_id):
        data = self.body() if self.request.body else {}
        try:
            reason = actions.clean_reason(data.get("reason"))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            q = await cancel(self.service, self.user_name, request_id, reason)
        except NotQueued:
            raise web.HTTPError(404, f"no queued request {request_id}") from None
        self.send({"id": q.id, "user": q.req.user, "state": "cancelled", "reason": reason})
