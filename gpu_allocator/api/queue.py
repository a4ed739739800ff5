"""REST handlers of the queue, under ``{service_prefix}api/v1/``:

- ``GET queue``: waiting requests in order with position and start estimates
  (admins: everyone's; users: their own);
- ``PATCH queue/{id}`` ``{"priority": n | null, "reason": "…"}`` (admins): a
  waiting request's own priority (admin.queue_actions.set_priority), audited;
- ``POST queue/{id}/cancel`` ``{"reason": "…"}`` (admins): take a waiting
  request out of the queue, audited. (``DELETE allocations/{id}`` does the same
  for the request's owner, unaudited.)
"""

from __future__ import annotations

from tornado import web

from ..admin import actions, queue_actions
from ..shapes import queued_json
from .base import AdminAPIHandler, APIHandler


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


class QueueRequestHandler(AdminAPIHandler):
    async def patch(self, request_id):
        data = self.body()
        try:
            if "priority" not in data:
                raise ValueError("priority is required (a whole number, or null for the user's)")
            priority = queue_actions.parse_priority(data["priority"], allow_none=True)
            reason = actions.clean_reason(data.get("reason"))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            detail = await queue_actions.set_priority(self.service, self.user_name, request_id, priority, reason)
        except queue_actions.NotQueued:
            raise web.HTTPError(404, f"no queued request {request_id}") from None
        self.send({"id": request_id, **detail})


class QueueCancelHandler(AdminAPIHandler):
    async def post(self, request_id):
        reason = self.reason()
        try:
            q = await queue_actions.cancel(self.service, self.user_name, request_id, reason)
        except queue_actions.NotQueued:
            raise web.HTTPError(404, f"no queued request {request_id}") from None
        self.send({"id": q.id, "user": q.req.user, "state": "cancelled", "reason": reason})


default_handlers = [
    (r"/queue", QueueHandler),
    (r"/queue/([^/]+)", QueueRequestHandler),
    (r"/queue/([^/]+)/cancel", QueueCancelHandler),
]
