"""What every vfolder handler shares: the caller, admin checks, and
:meth:`Base.transact`, the one way a handler reaches the database.

Users see and change only their own vfolders and those shared with them (others
are 404); ``admin:users`` and ``custom:vfolders:admin`` (the spawner's token)
act for anyone. Every refusal is a 4xx ``{"error": …}`` and changes nothing
(each request is one database transaction, run off the event loop by the
manager's :class:`~vfolder_manager.store.Store`).
"""

from __future__ import annotations

from tornado import web

from gpuhub.api import APIHandler

from ..core.permissions import Caller
from ..manager import Refused
from ..storage import fsops

ADMIN_SCOPES = frozenset({"admin:users", "custom:vfolders:admin"})

#: a vfolder id in a URL (the manager answers 404 for one that is not 32 hex digits)
VID = r"([^/]+)"


def refused_as_http(e: Refused | fsops.PathRefused) -> web.HTTPError:
    return web.HTTPError(e.status, e.message)


class Base(APIHandler):
    admin_scopes = ADMIN_SCOPES

    @property
    def manager(self):
        return self.service.manager

    @property
    def caller(self) -> Caller:
        groups = self.current_user.get("groups") or []
        return Caller(self.user_name, frozenset(groups), self.is_admin)

    async def transact(self, fn, *args):
        """``fn(db, *args)`` in one transaction on the store's thread (the event
        loop goes on meanwhile); its Refused and PathRefused become HTTP errors."""
        try:
            return await self.manager.store.run(fn, *args)
        except (Refused, fsops.PathRefused) as e:
            raise refused_as_http(e) from None

    def require_admin(self):
        if not self.is_admin:
            raise web.HTTPError(403, "this needs a vfolders admin (admin:users or custom:vfolders:admin)")

    def check_fields(self, body: dict, allowed: set[str], hint: str) -> None:
        unknown = set(body) - allowed
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}{hint}")

    def no_content(self) -> None:
        self.set_status(204)
        self.finish()
