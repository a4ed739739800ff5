"""Mounts (``mounts``): the spawner's one question, which of a user's vfolders
to mount where, read-only or not (POST, recorded per session; with ``"home":
true`` also the user's home vfolder, made on first use), that a session ended
(DELETE), and that a home got its first content from an older per-host home
(``mounts/home``, PUT, once). Admins only (the spawner's token)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from tornado import web

from ..manager import Refused
from ..core.mounts import MountSpec, mount_mode, mount_names, select_mounts
from ..core.names import InvalidName, check_principal
from ..core.permissions import Caller
from ..core.quota import Usage, bytes_left
from ..store.schema import Mount, VFolderKind, VFolderState
from .base import Base


def forget_session(db, session: str) -> None:
    for old in db.scalars(select(Mount).where(Mount.session == session)):
        db.delete(old)


class MountsHandler(Base):
    async def post(self):
        self.require_admin()
        body = self.body()
        self.check_fields(body, {"user", "groups", "session", "vfolders", "dry_run", "home"}, "")
        if not isinstance(body.get("home", False), bool):
            raise web.HTTPError(400, "home must be true or false")
        try:
            user = check_principal(body.get("user"), "user")
            groups = body.get("groups") or []
            if not isinstance(groups, list):
                raise InvalidName("groups must be a list of group names")
            groups = frozenset(check_principal(g, "group") for g in groups)
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None
        session = body.get("session") or user
        if not isinstance(session, str) or len(session) > 255:
            raise web.HTTPError(400, "session must be a string (user/server)")
        caller = Caller(user, groups)

        def choose(db):
            home = None
            if body.get("home") and not body.get("dry_run"):
                vf, made = self.manager.home(db, user)
                home = {"id": vf.id, "name": vf.name, "path": self.manager.path_of(vf),
                        "gid": self.manager.gid_of(vf), "made": made, "migrated_from": vf.migrated_from}
            rows = [(vf, r) for vf, r in self.manager.accessible(db, caller)
                    if vf.state == VFolderState.READY.value and vf.kind != VFolderKind.HOME.value]
            names = mount_names([(vf.id, vf.name, vf.owner_kind, vf.owner) for vf, _ in rows], user)
            try:
                chosen = select_mounts(body.get("vfolders"), names,
                                       {names[vf.id] for vf, _ in rows if vf.auto_mount})
            except ValueError as e:
                raise web.HTTPError(400, str(e)) from None
            by_name = {names[vf.id]: (vf, r) for vf, r in rows}
            available = []
            for vf, role in rows:
                ro, reason = mount_mode(role, self.manager.over_quota(db, vf))
                # the spawn form shows the space left (the tighter of the vfolder's and its owner's quota)
                left, limit = bytes_left([Usage(vf.usage_bytes, vf.usage_files),
                                          self.manager.owner_usage(db, vf.owner_kind, vf.owner)],
                                         self.manager.limits(db, vf))
                available.append({"name": names[vf.id], "id": vf.id, "auto_mount": vf.auto_mount,
                                  "mode": "ro" if ro else "rw", "reason": reason,
                                  "used_bytes": vf.usage_bytes, "free_bytes": left, "quota_bytes": limit})
            mounts = []
            for n in chosen:
                vf, role = by_name[n]
                ro, reason = mount_mode(role, self.manager.over_quota(db, vf))
                mounts.append(MountSpec(vf.id, n, self.manager.path_of(vf), ro, reason, self.manager.gid_of(vf)))
            if not body.get("dry_run"):
                forget_session(db, session)
                db.flush()
                for m in mounts:
                    db.add(Mount(session=session, vfolder_id=m.id, user=user, mode="ro" if m.read_only else "rw"))
                if home is not None:
                    db.add(Mount(session=session, vfolder_id=home["id"], user=user, mode="rw"))
            return mounts, available, home

        mounts, available, home = await self.transact(choose)
        answer = {"session": session, "mounts": [m.json() for m in mounts],
                  "available": sorted(available, key=lambda a: a["name"])}
        if home is not None:
            answer["home"] = home
        self.send(answer)

    async def delete(self):
        self.require_admin()
        await self.transact(forget_session, self.get_argument("session"))
        self.no_content()


class HomeHandler(Base):
    async def put(self):
        """``{"user", "migrated_from"}``: the spawner copied an older home (a
        per-host Docker volume, a local home directory; "nothing" when there was
        none) into the user's home vfolder. Its files join the vfolder's group
        (storage/ownership.py) and the copy is recorded, so it never happens
        twice; 409 when it already happened."""
        self.require_admin()
        body = self.body()
        self.check_fields(body, {"user", "migrated_from"}, "")
        try:
            user = check_principal(body.get("user"), "user")
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None
        source = body.get("migrated_from")
        if not isinstance(source, str) or not source or len(source) > 1000:
            raise web.HTTPError(400, "migrated_from must say what was copied (or \"nothing\")")

        def record(db):
            vf, _ = self.manager.home(db, user)
            if vf.migrated_from is not None:
                raise Refused(409, f"{user}'s home was already filled from {vf.migrated_from}")
            vf.migrated_from = source
            return vf.id, self.manager.path_of(vf)

        vid, path = await self.transact(record)
        errors = await asyncio.to_thread(self.manager.adopt, vid, path)
        self.send({"id": vid, "migrated_from": source, "errors": [str(e) for e in errors[:20]]})


default_handlers = [
    (r"/mounts", MountsHandler),
    (r"/mounts/home", HomeHandler),
]
