"""Quotas and usage: a user's, a group's or a vfolder's quota and what it holds
(``quotas/{user|group|vfolder}/{name}``: anyone reads their own and their
groups', admins set them), and one vfolder's measured usage against its quota
(``vfolders/{id}/usage``; ``?refresh=1`` asks for a new scan)."""

from __future__ import annotations

from tornado import web

from ..core.names import InvalidName, check_principal
from ..core.permissions import Action
from ..core.quota import parse_limit
from ..store.schema import Quota
from .base import VID, Base


class UsageHandler(Base):
    async def get(self, vid):
        caller = self.caller

        def usage(db):
            vf, _ = self.manager.get(db, vid, caller, Action.READ)
            return {
                "id": vf.id, "bytes": vf.usage_bytes, "files": vf.usage_files,
                "measured": vf.usage_at.isoformat() + "Z" if vf.usage_at else None,
                "quota": {"bytes": vf.quota_bytes, "files": vf.quota_files},
                "over_quota": self.manager.over_quota(db, vf),
            }

        model = await self.transact(usage)
        if self.get_argument("refresh", "0") == "1":
            self.service.schedule_scan(vid)
        self.send(model)


class QuotaHandler(Base):
    """GET/PUT quotas/user/NAME, quotas/group/NAME, quotas/vfolder/ID."""

    def _check_read(self, kind, name):
        c = self.caller
        if c.admin or (kind == "user" and name == c.name) or (kind == "group" and name in c.groups):
            return
        raise web.HTTPError(403, f"you may read only your own quotas (and your groups'), not {kind} {name}")

    async def get(self, kind, name):
        caller = self.caller
        if kind != "vfolder":
            self._check_read(kind, name)

        def read(db):
            if kind == "vfolder":
                vf, _ = self.manager.get(db, name, caller, Action.READ)
                return {"kind": kind, "name": vf.id, "bytes": vf.quota_bytes, "files": vf.quota_files,
                        "usage": {"bytes": vf.usage_bytes, "files": vf.usage_files}}
            q = db.get(Quota, (kind, name))
            u = self.manager.owner_usage(db, kind, name)
            return {"kind": kind, "name": name, "bytes": q.max_bytes if q else None,
                    "files": q.max_files if q else None, "usage": {"bytes": u.bytes, "files": u.files}}

        self.send(await self.transact(read))

    async def put(self, kind, name):
        self.require_admin()
        body = self.body()
        self.check_fields(body, {"bytes", "files"}, "; a quota is {\"bytes\", \"files\"} (null: unlimited)")
        try:
            max_bytes = parse_limit(body.get("bytes"), "bytes")
            max_files = parse_limit(body.get("files"), "files")
            if kind != "vfolder":
                check_principal(name, kind)
        except (ValueError, InvalidName) as e:
            raise web.HTTPError(400, str(e)) from None
        caller = self.caller

        def write(db):
            if kind == "vfolder":
                vf, _ = self.manager.get(db, name, caller, Action.ADMIN)
                vf.quota_bytes, vf.quota_files = max_bytes, max_files
                self.manager.apply_quota(vf)  # project quotas: the kernel enforces it too
            else:
                q = db.get(Quota, (kind, name)) or Quota(kind=kind, name=name)
                q.max_bytes, q.max_files = max_bytes, max_files
                db.add(q)

        await self.transact(write)
        self.send({"kind": kind, "name": name, "bytes": max_bytes, "files": max_files})


default_handlers = [
    (rf"/vfolders/{VID}/usage", UsageHandler),
    (r"/quotas/(user|group|vfolder)/([^/]+)", QuotaHandler),
]
