"""The vfolders themselves: list and create (``vfolders``), read, rename and
trash one (``vfolders/{id}``), restore or purge it from the trash (admins), and
clone it (``vfolders/{id}/clone``: 202, the copy runs in the background)."""

from __future__ import annotations

from tornado import web

from ..core.mounts import mount_names
from ..core.permissions import Action
from ..store.schema import VFolderState
from .base import VID, Base

#: the body of a new vfolder (POST vfolders and POST vfolders/{id}/clone)
CREATE_FIELDS = {"name", "group", "host", "auto_mount"}
CREATE_HINT = "; give name, group?, host?, auto_mount?"


class VFoldersHandler(Base):
    async def get(self):
        trash = self.get_argument("trash", "0") == "1"
        all_ = self.get_argument("all", "0") == "1"
        if all_:
            self.require_admin()
        caller = self.caller

        def listing(db):
            rows = self.manager.accessible(db, caller, include_trash=trash, all_=all_)
            if trash:
                rows = [(vf, r) for vf, r in rows if vf.state == VFolderState.TRASHED.value]
            names = mount_names([(vf.id, vf.name, vf.owner_kind, vf.owner) for vf, _ in rows], caller.name)
            out = []
            for vf, role in rows:
                model = self.manager.json(db, vf, role, caller)
                model["mount_name"] = names[vf.id]
                out.append(model)
            return out

        self.send({"vfolders": await self.transact(listing)})

    async def post(self):
        body = self.body()
        self.check_fields(body, CREATE_FIELDS, CREATE_HINT)
        caller = self.caller

        def create(db):
            vf = self.manager.create(db, caller, body.get("name"), body.get("group"), body.get("host"),
                                     body.get("auto_mount", False))
            return vf.id, self.manager.json(db, vf, self.manager.role(vf, caller), caller)

        vid, model = await self.transact(create)
        self.service.schedule_scan(vid)
        self.send(model, 201)


class VFolderHandler(Base):
    async def get(self, vid):
        caller = self.caller

        def read(db):
            vf, role = self.manager.get(db, vid, caller, Action.READ, trashed=caller.admin)
            return self.manager.json(db, vf, role, caller)

        self.send(await self.transact(read))

    async def patch(self, vid):
        body = self.body()
        caller = self.caller

        def update(db):
            vf, role = self.manager.get(db, vid, caller, Action.MANAGE)
            self.manager.update(db, vf, body)
            return self.manager.json(db, vf, role, caller)

        self.send(await self.transact(update))

    async def delete(self, vid):
        caller = self.caller

        def trash(db):
            vf, _ = self.manager.get(db, vid, caller, Action.MANAGE)
            self.manager.trash(db, vf)

        await self.transact(trash)
        self.no_content()


class TrashActionHandler(Base):
    """POST vfolders/{id}/restore | purge (admins)."""

    async def post(self, vid, action):
        self.require_admin()
        caller = self.caller

        def restore_or_purge(db):
            vf, _ = self.manager.get(db, vid, caller, Action.ADMIN, trashed=True)
            if action == "restore":
                self.manager.restore(db, vf)
                return None
            if vf.state != VFolderState.TRASHED.value:
                raise web.HTTPError(409, "only a vfolder in the trash can be purged; delete it first")
            path = self.manager.path_of(vf)
            db.delete(vf)
            return path

        path = await self.transact(restore_or_purge)
        if path is not None:
            await self.service.remove_tree(path)
        self.no_content()


class CloneHandler(Base):
    async def post(self, vid):
        body = self.body()
        self.check_fields(body, CREATE_FIELDS, CREATE_HINT)
        caller = self.caller

        def clone(db):
            src, _ = self.manager.get(db, vid, caller, Action.READ)
            if src.state != VFolderState.READY.value:
                raise web.HTTPError(409, f"vfolder is {src.state}; only a ready vfolder can be cloned")
            vf = self.manager.create(db, caller, body.get("name"), body.get("group"),
                                     body.get("host", src.host), body.get("auto_mount", False),
                                     state=VFolderState.CLONING.value, cloned_from=src.id)
            model = self.manager.json(db, vf, self.manager.role(vf, caller), caller)
            return vf.id, self.manager.path_of(src), self.manager.path_of(vf), model

        new_id, src_path, dst_path, model = await self.transact(clone)
        self.service.start_clone(new_id, src_path, dst_path)
        self.send(model, 202)


default_handlers = [
    (r"/vfolders", VFoldersHandler),
    (rf"/vfolders/{VID}", VFolderHandler),
    (rf"/vfolders/{VID}/(restore|purge)", TrashActionHandler),
    (rf"/vfolders/{VID}/clone", CloneHandler),
]
