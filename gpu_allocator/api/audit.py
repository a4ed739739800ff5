"""``GET audit?limit=&offset=&action=&target=&actor=`` (admins), under
``{service_prefix}api/v1/``: the audit log of admins' actions (admin.actions),
newest first."""

from __future__ import annotations

from ..admin import actions
from .base import AdminAPIHandler


class AuditHandler(AdminAPIHandler):
    async def get(self):
        limit = self.int_arg("limit", 100, 1, 1000)
        offset = self.int_arg("offset", 0, 0, 10**9)
        entries, total = await self.pool.read(
            lambda: actions.read_audit(
                self.pool.ledger, limit, offset, self.get_argument("action", None),
                self.get_argument("target", None), self.get_argument("actor", None)))
        self.send({"entries": entries, "total": total, "offset": offset, "limit": limit})


default_handlers = [
    (r"/audit", AuditHandler),
]
