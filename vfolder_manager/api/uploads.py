"""Uploads, tus 1.0 (creation, termination, expiration): create an upload
(``vfolders/{id}/uploads``), then HEAD its offset, PATCH bytes at that offset
or DELETE it (``vfolders/{id}/uploads/{upload}``). Bytes go to a staging file
beside the vfolders; the last PATCH moves it into the vfolder. An interrupted
PATCH keeps what arrived, so the client resumes from the offset HEAD reports."""

from __future__ import annotations

import asyncio
import base64
import os

from tornado import web

from ..core.names import InvalidName, split_relpath
from ..core.permissions import Action
from ..core.quota import Usage, refuse_upload
from ..manager import Refused
from ..storage import fsops
from ..store.schema import Upload, VFolderState
from .base import VID, Base, refused_as_http

TUS_VERSION = "1.0.0"


def parse_tus_metadata(header: str) -> dict[str, str]:
    out = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPError(400, f"Upload-Metadata {key!r} is not base64 of UTF-8 text") from None
    return out


def http_date(when) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def record_offset(db, uid: str, fd: int, offset: int) -> None:
    """Close the staging file, then record how far it is written (never back)."""
    os.close(fd)
    up = db.get(Upload, uid)
    if up is not None and offset > up.offset:
        up.offset = offset


class TusBase(Base):
    def tus_headers(self):
        self.set_header("Tus-Resumable", TUS_VERSION)
        self.set_header("Cache-Control", "no-store")

    def check_tus(self):
        if self.request.method != "OPTIONS" and self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            self.set_header("Tus-Version", TUS_VERSION)
            raise web.HTTPError(412, f"send Tus-Resumable: {TUS_VERSION} (this server speaks tus {TUS_VERSION})")

    async def _finish_upload(self, uid: str) -> None:
        """Move the complete upload into its vfolder."""
        try:
            await self.service.finish_upload(uid)
        except (Refused, fsops.PathRefused) as e:
            raise refused_as_http(e) from None


class UploadsHandler(TusBase):
    def upload_location(self, vid: str, uid: str) -> str:
        """Where the new upload answers (the Data page's uploads answer under its own path)."""
        return f"{self.service.service_prefix}api/v1/vfolders/{vid}/uploads/{uid}"

    def options(self, vid):
        self.tus_headers()
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_header("Tus-Extension", "creation,termination,expiration")
        self.set_header("Tus-Max-Size", str(self.service.max_upload_bytes))
        self.no_content()

    async def post(self, vid):
        self.tus_headers()
        self.check_tus()
        try:
            length = int(self.request.headers.get("Upload-Length", ""))
            if length < 0 or length > self.service.max_upload_bytes:
                raise ValueError
        except ValueError:
            raise web.HTTPError(400, f"send Upload-Length: the file size in bytes (0 to {self.service.max_upload_bytes})") from None
        meta_raw = self.request.headers.get("Upload-Metadata", "")
        meta = parse_tus_metadata(meta_raw)
        try:
            parts = split_relpath(meta.get("filename", ""))
        except InvalidName as e:
            raise web.HTTPError(400, f"filename metadata: {e}") from None
        if not parts:
            raise web.HTTPError(400, "name the target in the 'filename' metadata (a path inside the vfolder)")
        caller = self.caller

        def create(db):
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
            return up.id, up.expires_at

        uid, expires = await self.transact(create)
        if length == 0:  # complete already: the empty file is in place when the client hears 201
            await self._finish_upload(uid)
        self.set_header("Location", self.upload_location(vid, uid))
        self.set_header("Upload-Expires", http_date(expires))
        self.set_header("Upload-Offset", "0")
        self.set_status(201)
        self.finish()


@web.stream_request_body
class UploadHandler(TusBase):
    """HEAD (offset), PATCH (bytes at the offset), DELETE (give up)."""

    _fd: int | None = None
    _pos = 0

    async def prepare(self):
        super().prepare()
        self.tus_headers()
        if self.request.method == "OPTIONS":
            return
        self.check_tus()
        vid, uid = self.path_args
        caller, is_admin = self.caller, self.is_admin

        def load(db):
            vf, _ = self.manager.get(db, vid, caller, Action.WRITE)
            up = db.get(Upload, uid)
            if up is None or up.vfolder_id != vf.id or (up.user != caller.name and not is_admin):
                raise web.HTTPError(404, "no such upload (finished, expired or never started)")
            return up, self.manager.staging_path(vf, up.id)

        self.up, staging = await self.transact(load)
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
            self._fd = await asyncio.get_running_loop().run_in_executor(
                None, os.open, staging, os.O_WRONLY | os.O_CLOEXEC)
            self._pos = offset

    def data_received(self, chunk):
        if self._fd is None:
            return
        if self._pos + len(chunk) > self.up.length:
            raise web.HTTPError(400, "more bytes than Upload-Length")
        os.pwrite(self._fd, chunk, self._pos)
        self._pos += len(chunk)

    def _save_offset(self) -> asyncio.Future | None:
        """Hand the staging file's closing and the new offset to the store (in
        that order, and before any later request's transaction)."""
        if self._fd is None:
            return None
        fd, self._fd = self._fd, None
        self.up.offset = max(self.up.offset, self._pos)
        return self.manager.store.run(record_offset, self.up.id, fd, self._pos)

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
        saved = self._save_offset()
        if saved is not None:
            await saved
        self.set_header("Upload-Offset", str(self.up.offset))
        self.set_header("Upload-Expires", http_date(self.up.expires_at))
        if self.up.offset == self.up.length:
            await self._finish_upload(uid)
        self.no_content()

    async def delete(self, vid, uid):
        await self.service.drop_upload(uid)
        self.no_content()

    def options(self, vid, uid):
        self.set_header("Tus-Version", TUS_VERSION)
        self.no_content()


default_handlers = [
    (rf"/vfolders/{VID}/uploads/?", UploadsHandler),
    (rf"/vfolders/{VID}/uploads/([0-9a-f]{{32}})", UploadHandler),
]
