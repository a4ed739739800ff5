"""REST handlers of the vfolder service.

Users see and change only their own vfolders and those shared with them (others
are 404); ``admin:users`` and ``custom:vfolders:admin`` (the spawner's token)
act for anyone. Every refusal is a 4xx ``{"error": …}`` and changes nothing
(each request is one database transaction).
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import stat
import threading
from contextlib import contextmanager
from urllib.parse import quote

from sqlalchemy import select
from tornado import iostream, web

from gpuhub.api import APIHandler

from ..core.mounts import MountSpec, mount_mode, mount_names, select_mounts
from ..core.names import InvalidName, check_principal, parse_range, split_relpath
from ..core.permissions import Action, Caller, Role
from ..core.quota import Limit, Usage, bytes_left, parse_limit, refuse_upload
from ..manager import Refused
from ..storage import fsops
from ..store.schema import Mount, Quota, Upload, VFolder, VFolderState, utcnow

ADMIN_SCOPES = frozenset({"admin:users", "custom:vfolders:admin"})
TUS_VERSION = "1.0.0"


class Base(APIHandler):
    admin_scopes = ADMIN_SCOPES

    @property
    def manager(self):
        return self.service.manager

    @property
    def caller(self) -> Caller:
        groups = self.current_user.get("groups") or []
        return Caller(self.user_name, frozenset(groups), self.is_admin)

    @contextmanager
    def db(self):
        try:
            with self.manager.sessions.begin() as db:
                yield db
        except Refused as e:
            raise web.HTTPError(e.status, e.message) from None
        except fsops.PathRefused as e:
            raise web.HTTPError(e.status, e.message) from None

    def require_admin(self):
        if not self.is_admin:
            raise web.HTTPError(403, "this needs a vfolders admin (admin:users or custom:vfolders:admin)")


class VFoldersHandler(Base):
    def get(self):
        trash = self.get_argument("trash", "0") == "1"
        all_ = self.get_argument("all", "0") == "1"
        if all_:
            self.require_admin()
        caller = self.caller
        with self.db() as db:
            rows = self.manager.accessible(db, caller, include_trash=trash, all_=all_)
            if trash:
                rows = [(vf, r) for vf, r in rows if vf.state == VFolderState.TRASHED.value]
            names = mount_names([(vf.id, vf.name, vf.owner_kind, vf.owner) for vf, _ in rows], caller.name)
            out = []
            for vf, role in rows:
                model = self.manager.json(db, vf, role, caller)
                model["mount_name"] = names[vf.id]
                out.append(model)
        self.send({"vfolders": out})

    def post(self):
        body = self.body()
        unknown = set(body) - {"name", "group", "host", "auto_mount"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; give name, group?, host?, auto_mount?")
        caller = self.caller
        with self.db() as db:
            vf = self.manager.create(db, caller, body.get("name"), body.get("group"), body.get("host"),
                                     body.get("auto_mount", False))
            model = self.manager.json(db, vf, self.manager.role(vf, caller), caller)
        self.service.schedule_scan(vf.id)
        self.send(model, 201)


class VFolderHandler(Base):
    def get(self, vid):
        caller = self.caller
        with self.db() as db:
            vf, role = self.manager.get(db, vid, caller, Action.READ, trashed=caller.admin)
            model = self.manager.json(db, vf, role, caller)
        self.send(model)

    def patch(self, vid):
        body = self.body()
        caller = self.caller
        with self.db() as db:
            vf, role = self.manager.get(db, vid, caller, Action.MANAGE)
            self.manager.update(db, vf, body)
            model = self.manager.json(db, vf, role, caller)
        self.send(model)

    def delete(self, vid):
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, self.caller, Action.MANAGE)
            self.manager.trash(db, vf)
        self.set_status(204)
        self.finish()


class TrashActionHandler(Base):
    """POST vfolders/{id}/restore | purge (admins)."""

    async def post(self, vid, action):
        self.require_admin()
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, self.caller, Action.ADMIN, trashed=True)
            if action == "restore":
                self.manager.restore(db, vf)
                path = None
            else:
                if vf.state != VFolderState.TRASHED.value:
                    raise web.HTTPError(409, "only a vfolder in the trash can be purged; delete it first")
                path = self.manager.path_of(vf)
                db.delete(vf)
        if path is not None:
            await self.service.remove_tree(path)
        self.set_status(204)
        self.finish()


class CloneHandler(Base):
    def post(self, vid):
        body = self.body()
        unknown = set(body) - {"name", "group", "host", "auto_mount"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; give name, group?, host?, auto_mount?")
        caller = self.caller
        with self.db() as db:
            src, _ = self.manager.get(db, vid, caller, Action.READ)
            if src.state != VFolderState.READY.value:
                raise web.HTTPError(409, f"vfolder is {src.state}; only a ready vfolder can be cloned")
            vf = self.manager.create(db, caller, body.get("name"), body.get("group"),
                                     body.get("host", src.host), body.get("auto_mount", False),
                                     state=VFolderState.CLONING.value, cloned_from=src.id)
            src_path, dst_path = self.manager.path_of(src), self.manager.path_of(vf)
            model = self.manager.json(db, vf, self.manager.role(vf, caller), caller)
        self.service.start_clone(vf.id, src_path, dst_path)
        self.send(model, 202)


class SharesHandler(Base):
    def post(self, vid):
        body = self.body()
        caller = self.caller
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, caller, Action.MANAGE)
            s = self.manager.share(db, vf, caller, body)
            model = {"id": s.id, s.kind: s.name, "permission": s.permission, "state": s.state}
        self.send(model, 201)

    def delete(self, vid):
        body = self.body() if self.request.body else {
            k: self.get_argument(k) for k in ("user", "group") if self.get_argument(k, None) is not None
        }
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, self.caller, Action.MANAGE)
            self.manager.unshare(db, vf, body)
        self.set_status(204)
        self.finish()


class InvitationsHandler(Base):
    def get(self):
        with self.db() as db:
            self.send({"invitations": self.manager.invitations(db, self.caller)})


class InvitationAnswerHandler(Base):
    def post(self, sid, answer):
        with self.db() as db:
            s = self.manager.answer(db, self.caller, sid, answer == "accept")
            model = self.manager.invitation_json(s)
        self.send(model)


class UsageHandler(Base):
    def get(self, vid):
        caller = self.caller
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, caller, Action.READ)
            model = {
                "id": vf.id, "bytes": vf.usage_bytes, "files": vf.usage_files,
                "measured": vf.usage_at.isoformat() + "Z" if vf.usage_at else None,
                "quota": {"bytes": vf.quota_bytes, "files": vf.quota_files},
                "over_quota": self.manager.over_quota(db, vf),
            }
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

    def get(self, kind, name):
        with self.db() as db:
            if kind == "vfolder":
                vf, _ = self.manager.get(db, name, self.caller, Action.READ)
                model = {"kind": kind, "name": vf.id, "bytes": vf.quota_bytes, "files": vf.quota_files,
                         "usage": {"bytes": vf.usage_bytes, "files": vf.usage_files}}
            else:
                self._check_read(kind, name)
                q = db.get(Quota, (kind, name))
                u = self.manager.owner_usage(db, kind, name)
                model = {"kind": kind, "name": name, "bytes": q.max_bytes if q else None,
                         "files": q.max_files if q else None, "usage": {"bytes": u.bytes, "files": u.files}}
        self.send(model)

    def put(self, kind, name):
        self.require_admin()
        body = self.body()
        unknown = set(body) - {"bytes", "files"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}; a quota is {{\"bytes\", \"files\"}} (null: unlimited)")
        try:
            max_bytes = parse_limit(body.get("bytes"), "bytes")
            max_files = parse_limit(body.get("files"), "files")
            if kind != "vfolder":
                check_principal(name, kind)
        except (ValueError, InvalidName) as e:
            raise web.HTTPError(400, str(e)) from None
        with self.db() as db:
            if kind == "vfolder":
                vf, _ = self.manager.get(db, name, self.caller, Action.ADMIN)
                vf.quota_bytes, vf.quota_files = max_bytes, max_files
                self.manager.apply_quota(vf)  # project quotas: the kernel enforces it too
            else:
                q = db.get(Quota, (kind, name)) or Quota(kind=kind, name=name)
                q.max_bytes, q.max_files = max_bytes, max_files
                db.add(q)
        self.send({"kind": kind, "name": name, "bytes": max_bytes, "files": max_files})


class HostsHandler(Base):
    def get(self):
        caller = self.caller
        out = []
        for h in self.manager.hosts.values():
            if not caller.admin and h.groups is not None and not (set(h.groups) & caller.groups):
                continue
            model = h.json()
            if not caller.admin:
                model.pop("path")
            model["stats"] = self.service.host_stats(h.name)
            backend = self.manager.quotas.get(h.name)
            model["quota"] = {"backend": getattr(backend, "kind", "scan"),
                              "enforced_by": "filesystem" if backend and backend.enforced_by_filesystem else "service",
                              "why": self.service.quota_why.get(h.name, "")}
            out.append(model)
        self.send({"hosts": out})


class MountsHandler(Base):
    """The spawner's one question: which of the user's vfolders to mount where,
    read-only or not (POST mounts), and that a session ended (DELETE)."""

    def post(self):
        self.require_admin()
        body = self.body()
        unknown = set(body) - {"user", "groups", "session", "vfolders", "dry_run"}
        if unknown:
            raise web.HTTPError(400, f"unknown fields {sorted(unknown)}")
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
        with self.db() as db:
            rows = [(vf, r) for vf, r in self.manager.accessible(db, caller)
                    if vf.state == VFolderState.READY.value]
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
                for old in db.scalars(select(Mount).where(Mount.session == session)):
                    db.delete(old)
                db.flush()
                for m in mounts:
                    db.add(Mount(session=session, vfolder_id=m.id, user=user, mode="ro" if m.read_only else "rw"))
        self.send({"session": session, "mounts": [m.json() for m in mounts],
                   "available": sorted(available, key=lambda a: a["name"])})

    def delete(self):
        self.require_admin()
        session = self.get_argument("session")
        with self.db() as db:
            for old in db.scalars(select(Mount).where(Mount.session == session)):
                db.delete(old)
        self.set_status(204)
        self.finish()


# --- tus 1.0 uploads ------------------------------------------------------------------


def parse_tus_metadata(header: str) -> dict[str, str]:
    out = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPError(400, f"Upload-Metadata {key!r} is not base64 of UTF-8 text") from None
    return out


class TusMixin:
    def tus_headers(self):
        self.set_header("Tus-Resumable", TUS_VERSION)
        self.set_header("Cache-Control", "no-store")

    def check_tus(self):
        if self.request.method != "OPTIONS" and self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            self.set_header("Tus-Version", TUS_VERSION)
            raise web.HTTPError(412, f"send Tus-Resumable: {TUS_VERSION} (this server speaks tus {TUS_VERSION})")


class UploadsHandler(TusMixin, Base):
    def options(self, vid):
        self.tus_headers()
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_header("Tus-Extension", "creation,termination,expiration")
        self.set_header("Tus-Max-Size", str(self.service.max_upload_bytes))
        self.set_status(204)
        self.finish()

    def post(self, vid):
        self.tus_headers()
        self.check_tus()
        try:
            length = int(self.request.headers.get("Upload-Length", ""))
            if length < 0 or length > self.service.max_upload_bytes:
                raise ValueError
        except ValueError:
            raise web.HTTPError(400 if "Upload-Length" in self.request.headers else 400,
                                f"send Upload-Length: the file size in bytes (0 to {self.service.max_upload_bytes})") from None
        meta_raw = self.request.headers.get("Upload-Metadata", "")
        meta = parse_tus_metadata(meta_raw)
        try:
            parts = split_relpath(meta.get("filename", ""))
        except InvalidName as e:
            raise web.HTTPError(400, f"filename metadata: {e}") from None
        if not parts:
            raise web.HTTPError(400, "name the target in the 'filename' metadata (a path inside the vfolder)")
        caller = self.caller
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, caller, Action.WRITE)
            if vf.state != VFolderState.READY.value:
                raise web.HTTPError(409, f"vfolder is {vf.state}")
            fsops.check_target(self.manager.path_of(vf), parts)
            pending = self.manager.pending_upload_bytes(db, vf)
            lims = self.manager.limits(db, vf)
            why = refuse_upload(Usage(vf.usage_bytes + pending, vf.usage_files), lims[:1], length)
            if not why and len(lims) > 1:
                u = self.manager.owner_usage(db, vf.owner_kind, vf.owner)
                why = refuse_upload(Usage(u.bytes + pending, u.files), lims[1:], length)
            if why:
                raise web.HTTPError(413, why)
            up = self.manager.new_upload(db, vf, caller, "/".join(parts), length, meta_raw)
            uid, expires = up.id, up.expires_at
        self.set_header("Location", f"{self.service.service_prefix}api/v1/vfolders/{vid}/uploads/{uid}")
        self.set_header("Upload-Expires", expires.strftime("%a, %d %b %Y %H:%M:%S GMT"))
        self.set_header("Upload-Offset", "0")
        self.set_status(201)
        self.finish()
        if length == 0:
            self.service.finish_upload(uid)


@web.stream_request_body
class UploadHandler(TusMixin, Base):
    """HEAD (offset), PATCH (bytes at the offset), DELETE (give up)."""

    _fd: int | None = None
    _received = 0

    def _load(self, vid, uid, action=Action.WRITE):
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, self.caller, action)
            up = db.get(Upload, uid)
            if up is None or up.vfolder_id != vf.id or (up.user != self.user_name and not self.is_admin):
                raise web.HTTPError(404, "no such upload (finished, expired or never started)")
            return vf, up

    def prepare(self):
        super().prepare()
        self.tus_headers()
        if self.request.method == "OPTIONS":
            return
        self.check_tus()
        vid, uid = self.path_args
        self.vf, self.up = self._load(vid, uid)
        if self.request.method == "PATCH":
            if self.request.headers.get("Content-Type") != "application/offset+octet-stream":
                raise web.HTTPError(415, "PATCH needs Content-Type: application/offset+octet-stream")
            try:
                offset = int(self.request.headers.get("Upload-Offset", ""))
            except ValueError:
                raise web.HTTPError(400, "send Upload-Offset: where these bytes start") from None
            if offset != self.up.offset:
                raise web.HTTPError(409, f"Upload-Offset {offset} does not match the upload's offset "
                                    f"{self.up.offset}; HEAD the upload and continue from there")
            clen = self.request.headers.get("Content-Length")
            if clen is not None and int(clen) > self.up.length - offset:
                raise web.HTTPError(400, f"{clen} bytes would go past Upload-Length {self.up.length}")
            self.request.connection.set_max_body_size(self.up.length - offset)
            self._fd = os.open(self.manager.staging_path(self.vf, self.up.id), os.O_WRONLY | os.O_CLOEXEC)
            self._pos = offset

    def data_received(self, chunk):
        if self._fd is None:
            return
        if self._pos + len(chunk) > self.up.length:
            raise web.HTTPError(400, "more bytes than Upload-Length")
        os.pwrite(self._fd, chunk, self._pos)
        self._pos += len(chunk)

    def _save_offset(self):
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        with self.manager.sessions.begin() as db:
            up = db.get(Upload, self.up.id)
            if up is not None and self._pos > up.offset:
                up.offset = self._pos
        self.up.offset = max(self.up.offset, self._pos)

    def on_connection_close(self):
        # an interrupted PATCH keeps what arrived: the client resumes from there
        self._save_offset()

    def on_finish(self):
        self._save_offset()

    def head(self, vid, uid):
        self.set_header("Upload-Offset", str(self.up.offset))
        self.set_header("Upload-Length", str(self.up.length))
        self.set_header("Upload-Metadata", self.up.metadata_)
        self.set_status(200)
        self.finish()

    async def patch(self, vid, uid):
        self._save_offset()
        self.set_header("Upload-Offset", str(self.up.offset))
        self.set_header("Upload-Expires", self.up.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT"))
        if self.up.offset == self.up.length:
            try:
                await self.service.finish_upload(uid)
            except Refused as e:
                raise web.HTTPError(e.status, e.message) from None
            except fsops.PathRefused as e:
                raise web.HTTPError(e.status, e.message) from None
        self.set_status(204)
        self.finish()

    def delete(self, vid, uid):
        self.service.drop_upload(uid)
        self.set_status(204)
        self.finish()

    def options(self, vid, uid):
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_status(204)
        self.finish()


# --- downloads ------------------------------------------------------------------------


class FilesHandler(Base):
    """GET vfolders/{id}/files/{path}: a file (with Range) or a directory as a
    streamed tar archive."""

    def set_default_headers(self):
        super().set_default_headers()

    async def get(self, vid, path):
        try:
            parts = split_relpath(path)
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None
        with self.db() as db:
            vf, _ = self.manager.get(db, vid, self.caller, Action.READ)
            base = self.manager.path_of(vf)
            name = vf.name
        try:
            fd, st = fsops.open_entry(base, parts)
        except fsops.PathRefused as e:
            raise web.HTTPError(e.status, e.message) from None
        if stat.S_ISDIR(st.st_mode):
            await self._tar(fd, parts[-1] if parts else name)
        else:
            try:
                await self._file(fd, st, parts[-1])
            finally:
                os.close(fd)

    async def _file(self, fd, st, name):
        size = st.st_size
        start, end = 0, size
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Type", mimetypes.guess_type(name)[0] or "application/octet-stream")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name)}")
        rng = self.request.headers.get("Range")
        if rng:
            try:
                parsed = parse_range(rng, size)
            except ValueError as e:
                raise web.HTTPError(416, str(e)) from None
            if parsed is None:
                self.set_header("Content-Range", f"bytes */{size}")
                raise web.HTTPError(416, f"the file has {size} bytes")
            start, end = parsed
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.set_header("Content-Length", str(end - start))
        loop = asyncio.get_running_loop()
        pos = start
        while pos < end:
            data = await loop.run_in_executor(None, os.pread, fd, min(1 << 20, end - pos), pos)
            if not data:
                break
            pos += len(data)
            self.write(data)
            try:
                await self.flush()
            except iostream.StreamClosedError:
                return
        self.finish()

    async def _tar(self, fd, name):
        self.set_header("Content-Type", "application/x-tar")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name)}.tar")
        cancelled = threading.Event()
        q = fsops.tar_stream(fd, name, cancelled)
        loop = asyncio.get_running_loop()
        try:
            while True:
                piece = await loop.run_in_executor(None, q.get)
                if piece is None:
                    break
                if isinstance(piece, Exception):
                    raise piece
                self.write(piece)
                await self.flush()
        except iostream.StreamClosedError:
            return
        finally:
            cancelled.set()
        self.finish()


def routes(service) -> list:
    prefix = service.service_prefix.rstrip("/") + "/api/v1"
    vid = r"([^/]+)"
    kw = {"service": service}
    from gpuhub.api import HealthHandler

    return [
        (prefix + r"/health", HealthHandler),
        (prefix + r"/vfolders", VFoldersHandler, kw),
        (prefix + rf"/vfolders/{vid}", VFolderHandler, kw),
        (prefix + rf"/vfolders/{vid}/(restore|purge)", TrashActionHandler, kw),
        (prefix + rf"/vfolders/{vid}/clone", CloneHandler, kw),
        (prefix + rf"/vfolders/{vid}/shares", SharesHandler, kw),
        (prefix + rf"/vfolders/{vid}/usage", UsageHandler, kw),
        (prefix + rf"/vfolders/{vid}/uploads/?", UploadsHandler, kw),
        (prefix + rf"/vfolders/{vid}/uploads/([0-9a-f]{{32}})", UploadHandler, kw),
        (prefix + rf"/vfolders/{vid}/files/?(.*)", FilesHandler, kw),
        (prefix + r"/invitations", InvitationsHandler, kw),
        (prefix + r"/invitations/([^/]+)/(accept|reject)", InvitationAnswerHandler, kw),
        (prefix + r"/quotas/(user|group|vfolder)/([^/]+)", QuotaHandler, kw),
        (prefix + r"/storage/hosts", HostsHandler, kw),
        (prefix + r"/mounts", MountsHandler, kw),
    ]
