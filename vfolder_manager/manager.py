"""The vfolder service's operations: database rows plus the directories they
stand for. Decisions come from :mod:`vfolder_manager.core`; this module does the
I/O and raises :class:`Refused` (an HTTP status and a message) for the API."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .core.names import InvalidName, check_principal, check_vfolder_name, split_relpath
from .core.paths import UPLOADS_DIR, vfolder_relpath
from .core.permissions import (
    Action, Caller, OwnerKind, Permission, Role, ShareState, ShareView, VFolderView,
    can_create_for_group, denial, host_allowed, role_of,
)
from .core.quota import Limit, Usage, over_quota
from .storage.hosts import StorageHost, default_host
from .storage import ownership
from .storage.quota import QuotaBackend, ScanQuota, project_id
from .store import Store
from .store.schema import Mount, Quota, Share, Upload, VFolder, VFolderKind, VFolderState, utcnow


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def new_id() -> str:
    return uuid.uuid4().hex


def view(vf: VFolder) -> VFolderView:
    return VFolderView(
        owner_kind=vf.owner_kind, owner=vf.owner, creator=vf.creator,
        shares=tuple(ShareView(s.kind, s.name, s.permission, s.state) for s in vf.shares),
    )


class Manager:
    def __init__(self, sessions: sessionmaker, hosts: dict[str, StorageHost],
                 group_managers: dict | None = None, upload_expiry: float = 86400):
        self.sessions = sessions
        #: every transaction of the service's event loop runs through it (off the loop)
        self.store = Store(sessions)
        self.hosts = hosts
        self.group_managers = group_managers or {}
        self.upload_expiry = upload_expiry
        #: host name → its quota backend (the service chooses them; scan by default)
        self.quotas: dict[str, QuotaBackend] = {name: ScanQuota() for name in hosts}
        #: storage/ownership.py: vfolder groups from this gid on; None: vfolders are 0777
        self.gid_base: int | None = None
        #: set by make_dir: False where a host has no POSIX ACLs (umask decides there)
        self.acl_ok: dict[str, bool] = {}
        for h in hosts.values():
            os.makedirs(h.path, exist_ok=True)
            # only the service (and bind mounts made as root) reach the vfolders
            os.chmod(h.path, 0o711)
            os.makedirs(os.path.join(h.path, UPLOADS_DIR), mode=0o700, exist_ok=True)

    # --- paths ----------------------------------------------------------------------

    def path_of(self, vf: VFolder) -> str:
        host = self.hosts.get(vf.host)
        if host is None:
            raise Refused(503, f"storage host {vf.host!r} of this vfolder is not configured")
        return os.path.join(host.path, str(vfolder_relpath(vf.id)))

    def staging_path(self, vf: VFolder, upload_id: str) -> str:
        return os.path.join(self.hosts[vf.host].path, UPLOADS_DIR, upload_id)

    def apply_quota(self, vf: VFolder) -> None:
        """Put the vfolder's directory in its project and set its limits where the
        filesystem enforces them (scan backends: nothing to do). Raises Refused(503)."""
        backend = self.quotas.get(vf.host)
        if backend is None or not backend.enforced_by_filesystem:
            return
        try:
            backend.set_limit(self.path_of(vf), project_id(vf.id), vf.quota_bytes, vf.quota_files)
        except Exception as e:  # CalledProcessError, OSError
            detail = getattr(e, "stderr", None) or str(e)
            raise Refused(503, f"the storage host refused the project quota: {str(detail).strip()}") from None

    def gid_of(self, vf: VFolder) -> int | None:
        return None if self.gid_base is None else ownership.vfolder_gid(vf.id, self.gid_base)

    def _free_id(self, db: Session) -> str:
        """A new vfolder id whose group id no other vfolder has."""
        vid = new_id()
        if self.gid_base is not None:
            taken = {ownership.vfolder_gid(v, self.gid_base) for v in db.scalars(select(VFolder.id))}
            while ownership.vfolder_gid(vid, self.gid_base) in taken:
                vid = new_id()
        return vid

    def make_dir(self, vf: VFolder, path: str) -> None:
        """The vfolder's directory with its ownership (storage/ownership.py)."""
        if self.gid_base is None:
            os.mkdir(path, 0o777)
            os.chmod(path, 0o777)  # the old, open model: any account that reaches it writes
            return
        os.mkdir(path, 0o700)
        try:
            self.acl_ok[vf.host] = ownership.make_group_dir(path, self.gid_of(vf))
        except PermissionError as e:  # an NFS export with root_squash, typically
            os.rmdir(path)
            raise Refused(503, f"storage host {vf.host!r} does not let the service give the vfolder its "
                          f"group ({e.strerror}); export it with no_root_squash to the hub host, or set "
                          "VFolderService.vfolder_gid_base = 0 (mode 0777 vfolders)") from None

    def adopt(self, vid: str, path: str) -> list:
        """A finished clone's copy gets the vfolder's ownership; per-path errors."""
        if self.gid_base is None:
            os.chmod(path, 0o777)
            return []
        return ownership.adopt_tree(path, ownership.vfolder_gid(vid, self.gid_base))

    # --- lookup and access ------------------------------------------------------------

    def role(self, vf: VFolder, caller: Caller) -> Role:
        return role_of(view(vf), caller, self.group_managers)

    def get(self, db: Session, vid: str, caller: Caller, action: Action, trashed: bool = False) -> tuple[VFolder, Role]:
        vf = db.get(VFolder, vid) if isinstance(vid, str) and len(vid) == 32 else None
        role = self.role(vf, caller) if vf is not None else Role.NONE
        if vf is not None and vf.state == VFolderState.TRASHED.value and not trashed and role < Role.ADMIN:
            role = Role.NONE if role < Role.OWNER else role
            if role >= Role.OWNER:
                raise Refused(409, "this vfolder is in the trash; an admin can restore it")
        no = denial(action, role)
        if no:
            raise Refused(*no)
        return vf, role

    def accessible(self, db: Session, caller: Caller, include_trash: bool = False, all_: bool = False) -> list[tuple[VFolder, Role]]:
        """Every vfolder the caller has a role on (admins with ``all_``: all)."""
        rows = db.scalars(select(VFolder).order_by(VFolder.created_at)).all()
        plain = Caller(caller.name, caller.groups)  # what is theirs, not what admins reach
        out = []
        for vf in rows:
            if vf.state == VFolderState.TRASHED.value and not include_trash:
                continue
            role = self.role(vf, caller if all_ else plain)
            if role > Role.NONE:
                out.append((vf, role))
        return out

    # --- limits -----------------------------------------------------------------------

    def limits(self, db: Session, vf: VFolder) -> list[Limit]:
        lims = [Limit(vf.quota_bytes, vf.quota_files, "vfolder")]
        q = db.get(Quota, (vf.owner_kind, vf.owner))
        if q is not None:
            lims.append(Limit(q.max_bytes, q.max_files, f"{vf.owner_kind} {vf.owner}"))
        return lims

    def owner_usage(self, db: Session, kind: str, name: str) -> Usage:
        rows = db.scalars(select(VFolder).where(VFolder.owner_kind == kind, VFolder.owner == name)).all()
        return Usage(sum(r.usage_bytes for r in rows), sum(r.usage_files for r in rows))

    def over_quota(self, db: Session, vf: VFolder) -> str | None:
        own = over_quota(Usage(vf.usage_bytes, vf.usage_files), self.limits(db, vf)[:1])
        if own:
            return own
        return over_quota(self.owner_usage(db, vf.owner_kind, vf.owner), self.limits(db, vf)[1:])

    def pending_upload_bytes(self, db: Session, vf: VFolder) -> int:
        return sum(u.length - u.offset for u in db.scalars(select(Upload).where(Upload.vfolder_id == vf.id)))

    # --- JSON ---------------------------------------------------------------------

    def json(self, db: Session, vf: VFolder, role: Role, caller: Caller) -> dict:
        model = {
            "id": vf.id, "name": vf.name, "owner": vf.owner, "owner_kind": vf.owner_kind,
            "creator": vf.creator, "host": vf.host, "auto_mount": vf.auto_mount, "state": vf.state,
            "created": vf.created_at.isoformat() + "Z",
            "deleted": vf.deleted_at.isoformat() + "Z" if vf.deleted_at else None,
            "access": {Role.RO: "ro", Role.RW: "rw"}.get(role, "owner" if role == Role.OWNER else "admin"),
            "usage": {"bytes": vf.usage_bytes, "files": vf.usage_files,
                      "measured": vf.usage_at.isoformat() + "Z" if vf.usage_at else None},
            "quota": {"bytes": vf.quota_bytes, "files": vf.quota_files},
            "over_quota": self.over_quota(db, vf),
            "cloned_from": vf.cloned_from, "progress": vf.progress, "kind": vf.kind,
        }
        if role >= Role.OWNER:
            model["shares"] = [self.share_json(s) for s in vf.shares]
            model["mounted_in"] = sorted(m.session for m in db.scalars(select(Mount).where(Mount.vfolder_id == vf.id)))
        return model

    # --- create, change, delete ------------------------------------------------------

    def create(self, db: Session, caller: Caller, name, group=None, host=None, auto_mount=False,
               state: str = VFolderState.READY.value, cloned_from: str | None = None,
               vfolder_kind: str = VFolderKind.VFOLDER.value) -> VFolder:
        try:
            name = check_vfolder_name(name)
            if group is not None:
                group = check_principal(group, "group")
        except InvalidName as e:
            raise Refused(400, str(e)) from None
        if not isinstance(auto_mount, bool):
            raise Refused(400, "auto_mount must be true or false")
        if group is not None:
            why = can_create_for_group(caller, group, self.group_managers)
            if why:
                raise Refused(403, why)
            kind, owner = OwnerKind.GROUP.value, group
        else:
            kind, owner = OwnerKind.USER.value, caller.name
        if host is None:
            h = default_host(self.hosts)
        else:
            h = self.hosts.get(host) if isinstance(host, str) else None
            if h is None:
                raise Refused(400, f"unknown storage host {host!r}; known: {sorted(self.hosts)}")
        if not host_allowed(list(h.groups) if h.groups is not None else None, kind, owner, caller):
            raise Refused(403, f"storage host {h.name!r} is only for the groups {list(h.groups)}")
        self._check_name_free(db, kind, owner, name)
        vf = VFolder(id=self._free_id(db), name=name, owner_kind=kind, owner=owner, creator=caller.name,
                     host=h.name, auto_mount=auto_mount, state=state, cloned_from=cloned_from,
                     usage_bytes=0, usage_files=0, kind=vfolder_kind)
        path = os.path.join(h.path, str(vfolder_relpath(vf.id)))
        os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
        if state == VFolderState.READY.value:
            self.make_dir(vf, path)
        db.add(vf)
        try:
            db.flush()
        except IntegrityError:
            db.rollback()
            if os.path.isdir(path):
                os.rmdir(path)
            raise Refused(409, f"{kind} {owner} already has a vfolder named {name!r}") from None
        if state == VFolderState.READY.value:
            try:
                self.apply_quota(vf)
            except Refused:
                os.rmdir(path)
                raise
        return vf

    def home(self, db: Session, user: str) -> tuple[VFolder, bool]:
        """The user's home vfolder, made now if it is the first use: (vfolder,
        made now). It is called ``home`` (``home-2``… where the user already has a
        vfolder of that name), on the default storage host, and counts against
        the user's storage quota like any of theirs."""
        vf = db.scalars(select(VFolder).where(
            VFolder.owner_kind == "user", VFolder.owner == user, VFolder.kind == VFolderKind.HOME.value,
            VFolder.state != VFolderState.TRASHED.value)).first()
        if vf is not None:
            return vf, False
        taken = set(db.scalars(select(VFolder.name).where(
            VFolder.owner_kind == "user", VFolder.owner == user, VFolder.state != VFolderState.TRASHED.value)))
        name = next(n for n in ("home", *(f"home-{i}" for i in range(2, 1000))) if n not in taken)
        return self.create(db, Caller(user, frozenset()), name, vfolder_kind=VFolderKind.HOME.value), True

    @staticmethod
    def refuse_for_home(vf: VFolder, what: str) -> None:
        if vf.kind == VFolderKind.HOME.value:
            raise Refused(400, f"{vf.name!r} is your home folder (mounted at ~ in every session); it cannot be "
                          f"{what}. Clone it (POST vfolders/{{id}}/clone) or copy files into another vfolder.")

    def _check_name_free(self, db: Session, kind: str, owner: str, name: str, but: str | None = None):
        clash = db.scalars(select(VFolder).where(
            VFolder.owner_kind == kind, VFolder.owner == owner, VFolder.name == name,
            VFolder.state != VFolderState.TRASHED.value)).first()
        if clash is not None and clash.id != but:
            raise Refused(409, f"{kind} {owner} already has a vfolder named {name!r}; pick another name")

    def update(self, db: Session, vf: VFolder, body: dict) -> None:
        self.refuse_for_home(vf, "renamed or auto-mounted")
        unknown = set(body) - {"name", "auto_mount"}
        if unknown:
            raise Refused(400, f"unknown fields {sorted(unknown)}; PATCH takes name and auto_mount")
        if "name" in body:
            try:
                name = check_vfolder_name(body["name"])
            except InvalidName as e:
                raise Refused(400, str(e)) from None
            self._check_name_free(db, vf.owner_kind, vf.owner, name, but=vf.id)
            vf.name = name
        if "auto_mount" in body:
            if not isinstance(body["auto_mount"], bool):
                raise Refused(400, "auto_mount must be true or false")
            vf.auto_mount = body["auto_mount"]

    def mounted_in(self, db: Session, vf: VFolder) -> list[str]:
        return sorted(m.session for m in db.scalars(select(Mount).where(Mount.vfolder_id == vf.id)))

    def trash(self, db: Session, vf: VFolder) -> None:
        self.refuse_for_home(vf, "deleted")
        sessions = self.mounted_in(db, vf)
        if sessions:
            raise Refused(409, f"vfolder {vf.name!r} is mounted in the running session(s) "
                          f"{', '.join(sessions)}; stop them first, then delete it")
        vf.state = VFolderState.TRASHED.value
        vf.deleted_at = utcnow()

    def restore(self, db: Session, vf: VFolder) -> None:
        if vf.state != VFolderState.TRASHED.value:
            raise Refused(409, "this vfolder is not in the trash")
        self._check_name_free(db, vf.owner_kind, vf.owner, vf.name)
        vf.state = VFolderState.READY.value
        vf.deleted_at = None

    # --- shares ---------------------------------------------------------------------

    def share(self, db: Session, vf: VFolder, caller: Caller, body: dict) -> Share:
        self.refuse_for_home(vf, "shared")
        unknown = set(body) - {"user", "group", "permission"}
        if unknown:
            raise Refused(400, f"unknown fields {sorted(unknown)}; a share is {{\"user\" or \"group\", \"permission\"}}")
        kind, name = self._target(body)
        perm = body.get("permission")
        if perm not in (Permission.RO.value, Permission.RW.value):
            raise Refused(400, "permission must be \"ro\" or \"rw\"")
        if kind == "user" and vf.owner_kind == "user" and name == vf.owner:
            raise Refused(400, "the owner already has full access")
        existing = next((s for s in vf.shares if s.kind == kind and s.name == name), None)
        if existing is not None:
            existing.permission = perm
            if existing.state == ShareState.REJECTED.value:
                existing.state = ShareState.PENDING.value
            return existing
        # user shares are invitations until accepted; group shares apply at once
        state = ShareState.PENDING.value if kind == "user" else ShareState.ACCEPTED.value
        s = Share(id=new_id(), vfolder_id=vf.id, kind=kind, name=name, permission=perm,
                  state=state, created_by=caller.name)
        vf.shares.append(s)
        return s

    @staticmethod
    def share_json(s: Share) -> dict:
        return {"id": s.id, s.kind: s.name, "permission": s.permission, "state": s.state}

    @staticmethod
    def _target(body: dict) -> tuple[str, str]:
        if ("user" in body) == ("group" in body):
            raise Refused(400, "name exactly one of \"user\" or \"group\"")
        kind = "user" if "user" in body else "group"
        try:
            return kind, check_principal(body[kind], kind)
        except InvalidName as e:
            raise Refused(400, str(e)) from None

    def unshare(self, db: Session, vf: VFolder, body: dict) -> None:
        kind, name = self._target({k: v for k, v in body.items() if k in ("user", "group")})
        s = next((s for s in vf.shares if s.kind == kind and s.name == name), None)
        if s is None:
            raise Refused(404, f"vfolder {vf.name!r} is not shared with {kind} {name}")
        vf.shares.remove(s)
        db.delete(s)

    def invitations(self, db: Session, caller: Caller) -> list[dict]:
        rows = db.scalars(select(Share).where(Share.kind == "user", Share.name == caller.name,
                                              Share.state == ShareState.PENDING.value)).all()
        return [self.invitation_json(s) for s in rows if s.vfolder.state != VFolderState.TRASHED.value]

    @staticmethod
    def invitation_json(s: Share) -> dict:
        return {"id": s.id, "vfolder": {"id": s.vfolder.id, "name": s.vfolder.name, "owner": s.vfolder.owner,
                                        "owner_kind": s.vfolder.owner_kind},
                "permission": s.permission, "state": s.state, "inviter": s.created_by,
                "created": s.created_at.isoformat() + "Z"}

    def answer(self, db: Session, caller: Caller, share_id: str, accept: bool) -> Share:
        s = db.get(Share, share_id) if isinstance(share_id, str) else None
        if s is None or s.kind != "user" or s.name != caller.name:
            raise Refused(404, "no such invitation for you")
        if s.state != ShareState.PENDING.value:
            raise Refused(409, f"this invitation was already {s.state}")
        s.state = ShareState.ACCEPTED.value if accept else ShareState.REJECTED.value
        return s

    # --- uploads ----------------------------------------------------------------------

    def new_upload(self, db: Session, vf: VFolder, caller: Caller, path: str, length: int, metadata: str) -> Upload:
        up = Upload(id=new_id(), vfolder_id=vf.id, user=caller.name, path=path, length=length, offset=0,
                    metadata_=metadata, expires_at=utcnow() + timedelta(seconds=self.upload_expiry))
        db.add(up)
        with open(self.staging_path(vf, up.id), "xb"):
            pass
        return up

    def upload_target(self, db: Session, uid: str) -> tuple[str, str, str, tuple[str, ...]] | None:
        """A finished upload's vfolder id, vfolder directory, staging file and
        path inside the vfolder (None: it is gone)."""
        up = db.get(Upload, uid)
        if up is None:
            return None
        vf = db.get(VFolder, up.vfolder_id)
        return vf.id, self.path_of(vf), self.staging_path(vf, uid), split_relpath(up.path)

    def drop_upload(self, db: Session, uid: str, keep_file: bool = False) -> None:
        """Forget an upload and remove its staging file (``keep_file``: it was
        moved into the vfolder)."""
        up = db.get(Upload, uid)
        if up is None:
            return
        vf = db.get(VFolder, up.vfolder_id)
        if vf is not None and not keep_file:
            try:
                os.unlink(self.staging_path(vf, uid))
            except FileNotFoundError:
                pass
        db.delete(up)

    def expire_uploads(self, db: Session) -> int:
        """Drop the uploads past their expiry; how many."""
        expired = db.scalars(select(Upload.id).where(Upload.expires_at < utcnow())).all()
        for uid in expired:
            self.drop_upload(db, uid)
        return len(expired)

    # --- background work's rows ---------------------------------------------------------

    def vfolder_ids(self, db: Session) -> list[str]:
        return list(db.scalars(select(VFolder.id)))

    def scan_target(self, db: Session, vid: str) -> tuple[str, QuotaBackend | None] | None:
        """The directory of a vfolder whose usage a scan measures, and its quota
        backend (None: not a ready or trashed vfolder)."""
        vf = db.get(VFolder, vid)
        if vf is None or vf.state not in (VFolderState.READY.value, VFolderState.TRASHED.value):
            return None
        return self.path_of(vf), self.quotas.get(vf.host)

    def record_usage(self, db: Session, vid: str, usage_bytes: int, usage_files: int) -> None:
        vf = db.get(VFolder, vid)
        if vf is not None:
            vf.usage_bytes, vf.usage_files, vf.usage_at = usage_bytes, usage_files, utcnow()

    def set_progress(self, db: Session, vid: str, text: str) -> None:
        vf = db.get(VFolder, vid)
        if vf is not None:
            vf.progress = text
