"""REST handlers of allocations, under ``{service_prefix}api/v1/``:

- ``GET allocations`` (admins: ``?user=``): live allocations and waiting
  requests, in queue order;
- ``POST allocations``: grant a share, queue it, or (``"dry_run": true``) say
  whether it would fit; only on hosts in pools open to the user (``"pool"``:
  one of them; a pool not open to them is a 400 naming those that are);
- ``GET``/``DELETE allocations/{id}``: an allocation, or a request that waits or
  waited in the queue; DELETE releases it (or takes it out of the queue);
- ``POST allocations/{id}/extend`` ``{"hours": h}``: once, if no queued request
  would start later for it;
- ``POST allocations/{id}/revoke`` ``{"reason": "…"}`` (admins): end a live
  share, audited (admin.actions).
"""

from __future__ import annotations

from tornado import web

from ..admin import actions
from ..core.model import AllocationState
from ..core.placement import NoFit
from ..core.pools import PoolError
from ..core.queue import Queued
from ..core.validation import (
    RequestError, check_capacity, parse_groups, parse_key, parse_request, parse_text,
)
from ..pool import ExtendRefused, KeyConflict, QuotaExceeded
from ..shapes import allocation_json, queued_json
from .base import AdminAPIHandler, APIHandler


class AllocationsHandler(APIHandler):
    def get(self):
        user = self.get_argument("user", None)
        if not self.is_admin:
            if user not in (None, self.user_name):
                raise web.HTTPError(403, "you can only list your own allocations")
            user = self.user_name
        state = self.pool.state
        per = state.units_per_gpu
        self.send({
            "allocations": [self.allocator.live_json(a) for a in self.pool.live(user)],
            # requests waiting in the queue, in queue order
            "queued": [queued_json(q, e, per) for q, e in self.pool.queued(user)],
        })

    async def post(self):
        """Grant a share: 201 with the allocation; 200 with the same allocation for
        a retried idempotency ``key``; with ``"dry_run": true``, 200 with the
        validated request and whether it fits now (nothing is held); 400 for what
        can never be granted, 409 for what does not fit now."""
        data = self.body()
        app = self.allocator
        state = self.pool.state
        try:
            user = data.get("user", self.user_name)
            req = parse_request(
                data, user=user, units_per_gpu=state.units_per_gpu, max_hours=app.max_hours,
            )
            server = parse_text(data.get("server", ""), "server")
            key = parse_key(data.get("key"))
            dry_run = data.get("dry_run", False)
            if not isinstance(dry_run, bool):
                raise RequestError("dry_run must be true or false")
            groups = parse_groups(data.get("groups"))
            queue = data.get("queue", True)
            if not isinstance(queue, bool):
                raise RequestError("queue must be true or false")
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        if req.user != self.user_name and not self.is_admin:
            raise web.HTTPError(403, "you can only allocate for yourself")
        try:
            check_capacity(state, req)
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        if groups is not None and not self.is_admin:
            groups = None  # a user's own word on their groups is not taken
        if dry_run:
            try:
                answer = app.pool.dry_run(req, groups)
            except PoolError as e:
                raise web.HTTPError(400, str(e)) from None
            if answer.get("quota", {}).get("verdict") == "hard":
                raise web.HTTPError(403, answer["quota"]["reason"])
            self.send(answer)
            return
        hub_server = server if "server" in data and self.is_admin else None
        try:
            allocation, created = await self.pool.submit(
                req, groups=groups, server=server, hub_server=hub_server, key=key, queue=queue
            )
        except QuotaExceeded as e:
            raise web.HTTPError(403, str(e)) from None
        except PoolError as e:  # a host pool not open to the user: never granted
            raise web.HTTPError(400, str(e)) from None
        except NoFit as e:
            raise web.HTTPError(409, str(e)) from None
        except KeyConflict as e:
            raise web.HTTPError(409, str(e)) from None
        if isinstance(allocation, Queued):
            est = self.pool.estimates.get(allocation.id)
            self.send(queued_json(allocation, est, state.units_per_gpu), status=202 if created else 200)
            return
        # per-request lines at debug: the ledger records every grant and release
        if created:
            app.log.debug(
                "granted %s to %s on %s: %s", allocation.id, req.user, allocation.host,
                [(s.device_uuid, s.units) for s in allocation.shares],
            )
        else:
            app.log.debug("answered a retried request (key %s) with %s", key, allocation.id)
        self.send(app.live_json(allocation), status=201 if created else 200)


class AllocationHandler(APIHandler):
    async def waited(self, allocation_id):
        """A request that is (or was) in the queue and holds no allocation, as JSON."""
        found = await self.pool.get_request(allocation_id)
        if found is None:
            return None
        q, state, ended, reason = found
        if q.req.user != self.user_name and not self.is_admin:
            return None
        est = self.pool.estimates.get(q.id) if state == "queued" else None
        return queued_json(q, est, self.pool.units_per_gpu, state, ended, reason)

    async def allocation_or_answer(self, allocation_id):
        """The caller's allocation; None when the id is a request that waited (or
        still waits) in the queue — then its state has been answered."""
        a = await self.pool.get(allocation_id)
        if a is None:
            body = await self.waited(allocation_id)
            if body is None:
                raise web.HTTPError(404, f"no allocation {allocation_id}")
            self.send(body)
            return None
        return self.own_allocation_or_404(a, allocation_id)

    async def get(self, allocation_id):
        a = await self.allocation_or_answer(allocation_id)
        if a is None:
            return
        out = self.allocator.live_json(a)
        if a.state == AllocationState.REVOKED:  # who revoked it and why (the audit log)
            entry = await self.pool.read(actions.revoke_reason, self.pool.ledger, a.id)
            out["reason"] = ((entry or {}).get("detail") or {}).get("reason", "")
            out["revoked_by"] = (entry or {}).get("actor")
        self.send(out)

    async def delete(self, allocation_id):
        """Release a share, or take a waiting request out of the queue."""
        q = self.pool.queue.get(allocation_id)
        if q is not None and (q.req.user == self.user_name or self.is_admin):
            await self.pool.cancel(allocation_id)
            self.allocator.log.info("cancelled queued %s of %s (by %s)", q.id, q.req.user, self.user_name)
            self.send(await self.waited(allocation_id) or {"id": allocation_id, "state": "cancelled"})
            return
        a = await self.allocation_or_answer(allocation_id)
        if a is None:
            return
        released = await self.pool.finish(allocation_id)
        if released is not None:
            self.allocator.log.debug("released %s of %s (by %s)", a.id, a.user, self.user_name)
            a = released
        self.send(allocation_json(a, self.pool.state))


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


class RevokeHandler(AdminAPIHandler):
    async def post(self, allocation_id):
        reason = self.reason()
        done = await actions.revoke(self.service, self.user_name, allocation_id, reason)
        if done is None:
            raise web.HTTPError(404, f"no live allocation {allocation_id}")
        out = allocation_json(done, self.pool.state)
        out["reason"] = reason
        self.send(out)


default_handlers = [
    (r"/allocations", AllocationsHandler),
    (r"/allocations/([^/]+)", AllocationHandler),
    (r"/allocations/([^/]+)/extend", ExtendHandler),
    (r"/allocations/([^/]+)/revoke", RevokeHandler),
]
