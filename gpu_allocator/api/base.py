"""The base classes of the allocator's REST handlers.

Authentication is JupyterHub's: a hub token checked by HubAuth. Users see and
change only their own allocations; JupyterHub admins (``admin:users``) and holders
of ``custom:gpu-allocator:admin`` (the spawner's service token) act for anyone.
"""

from __future__ import annotations

from tornado import web

from gpuhub.api import APIHandler as BaseAPIHandler

from ..admin.actions import clean_reason
from ..scopes import ADMIN_SCOPES


class APIHandler(BaseAPIHandler):
    admin_scopes = ADMIN_SCOPES

    @property
    def allocator(self):
        return self.service

    @property
    def pool(self):
        return self.service.pool

    def own_allocation_or_404(self, a, allocation_id: str):
        """Other users' allocation ids are not even confirmed to exist."""
        if a is None or (a.user != self.user_name and not self.is_admin):
            raise web.HTTPError(404, f"no allocation {allocation_id}")
        return a

    def reason(self) -> str:
        """The ``reason`` of an admin's action, from an optional JSON body."""
        data = self.body() if self.request.body else {}
        try:
            return clean_reason(data.get("reason"))
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None


class AdminAPIHandler(APIHandler):
    """Admins only (``admin:users`` or ``custom:gpu-allocator:admin``); everyone
    else gets a 403."""

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
