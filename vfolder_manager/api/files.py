"""Downloads (``vfolders/{id}/files/{path}``): a file (with Range) or a
directory as a streamed tar archive. Every filesystem step runs off the event
loop (opening the path, reading, the archive's walk)."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import threading
from urllib.parse import quote

from tornado import iostream, web

from ..core.names import InvalidName, parse_range, split_relpath
from ..core.permissions import Action
from ..storage import fsops
from .base import VID, Base, refused_as_http


class FilesHandler(Base):
    """GET vfolders/{id}/files/{path}: a file (with Range) or a directory as a
    streamed tar archive."""

    async def get(self, vid, path):
        try:
            parts = split_relpath(path)
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None
        caller = self.caller

        def locate(db):
            vf, _ = self.manager.get(db, vid, caller, Action.READ)
            return self.manager.path_of(vf), vf.name

        base, name = await self.transact(locate)
        try:
            fd, st = await asyncio.get_running_loop().run_in_executor(None, fsops.open_entry, base, parts)
        except fsops.PathRefused as e:
            raise refused_as_http(e) from None
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


default_handlers = [
    (rf"/vfolders/{VID}/files/?(.*)", FilesHandler),
]
