"""Admins' actions on the queue and on quotas, each written with its audit entry
in one transaction (as admin.actions). The admin panel's forms and the REST API
(api.queue, api.quotas; admins only) call them:

- ``PATCH queue/{id}`` ``{"priority": n | null, "reason": "…"}``: change a
  waiting request's own priority (issue #13). Where set, it replaces its user's
  and groups' priority in the queue's order (core.queue.Ordering); null gives
  it back theirs. The user's other requests do not move (a user's priority is
  their quota row's: ``PUT quotas/user/NAME``). Audited as ``priority`` of
  ``request:ID``, with the previous value. A promise already given to another
  request still holds (core.queue): priority reorders what is not promised.
- ``POST queue/{id}/cancel`` ``{"reason": "…"}``: take a waiting request out of
  the queue (state ``cancelled``; the reason is the request's). Audited as
  ``cancel`` of ``request:ID``. (``DELETE allocations/{id}`` does the same
  for the request's owner, unaudited.)
- quotas: ``PUT``/``DELETE quotas/{user|group}/{name}`` (api.quotas) go through
  :func:`set_quota`, audited as ``quota`` of ``user:NAME`` / ``group:NAME``.
"""

from __future__ import annotations

import time

from ..core.quota import Limits, Quotas
from ..store.ledger import Audit


class NotQueued(LookupError):
    pass


def _limits_detail(limits: Limits | None, per: int) -> dict | None:
    if limits is None:
        return None
    return {k: v for k, v in limits.as_dict(per).items() if v is not None}


async def set_quota(app, actor: str, kind: str, name: str, limits: Limits | None, reason: str = "",
                    pool: str = "") -> None:
    """Set (or, with None, remove) the quota row of a user or group — over every
    host pool, or in ``pool`` (there kind "default" too) — audited (target
    ``kind:name``, ``kind:name@pool`` for a pool's row)."""
    live = app.pool
    per = live.units_per_gpu
    rows = live.quotas.pools.get(pool, Quotas.empty()) if pool else live.quotas
    if kind == "default":
        previous = rows.default if rows.default != Limits() else None
    else:
        previous = (rows.users if kind == "user" else rows.groups).get(name)
    detail = {"limits": _limits_detail(limits, per), "previous": _limits_detail(previous, per)}
    if pool:
        detail["pool"] = pool
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "quota", f"{kind}:{name}" + (f"@{pool}" if pool else ""), detail)
    await live.set_quota(kind, name, limits, extra=(entry,), pool=pool)
    app.log.info("quota of %s %s%s set by %s: %s", kind, name, f" in pool {pool}" if pool else "", actor, limits)


async def set_priority(app, actor: str, request_id: str, priority: int | None, reason: str = "") -> dict:
    """Give a waiting request its own queue priority (None: its user's and
    groups' again), audited. Raises NotQueued."""
    pool = app.pool
    q = pool.queue.get(request_id)
    if q is None:
        raise NotQueued(request_id)
    user = q.req.user
    detail = {"user": user, "priority": priority, "previous": q.priority,
              "user_priority": pool.quotas.resolve(user, q.groups).priority or 0}
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "priority", f"request:{request_id}", detail)
    if await pool.set_request_priority(request_id, priority, extra=(entry,)) is None:
        raise NotQueued(request_id)
    app.log.info("priority of %s's request %s set to %s by %s", user, request_id, priority, actor)
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


def parse_priority(value, allow_none: bool = False) -> int | None:
    """A whole number in [-1000, 1000]; with ``allow_none``, None (or "") too."""
    if allow_none and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("priority must be a whole number") from None
    if not isinstance(value, int) or isinstance(value, bool) or not -1000 <= value <= 1000:
        raise ValueError("priority must be a whole number between -1000 and 1000")
    return value
