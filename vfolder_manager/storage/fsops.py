"""Filesystem work inside a vfolder that can never leave it.

Every path is walked one component at a time from the vfolder's directory with
``O_NOFOLLOW | O_DIRECTORY`` and ``dir_fd``: a ``..``, an absolute path or a
symlink (also one swapped in while an upload runs) cannot lead outside, because
no step ever resolves a name the kernel would follow. The upload's bytes go to
a staging file next to the vfolders and are renamed into place relative to the
pinned parent directory."""

from __future__ import annotations

import errno
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(Exception):
    """A path that may not be used; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _refuse(e: OSError, name: str) -> PathRefused:
    if e.errno in (errno.ELOOP, errno.EMLINK):
        return PathRefused(400, f"{name!r} is a symbolic link; links are never followed")
    if e.errno == errno.ENOTDIR:
        return PathRefused(400, f"{name!r} is not a directory (or is a symbolic link)")
    if e.errno == errno.ENOENT:
        return PathRefused(404, f"{name!r} does not exist in the vfolder")
    if e.errno == errno.EROFS:
        return PathRefused(409, "the vfolder is read-only")
    return PathRefused(400, f"cannot use {name!r}: {e.strerror}")


def open_root(vfolder_dir: str) -> int:
    return os.open(vfolder_dir, _DIR_FLAGS)


def open_dirs(root_fd: int, parts: tuple[str, ...], create: bool = False, mode: int = 0o777) -> int:
    """A new fd of the directory ``parts`` below ``root_fd``, never following a
    link; with ``create``, missing directories are made."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise _refuse(e, part) from None
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                raise _refuse(e, part) from None
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_target(vfolder_dir: str, parts: tuple[str, ...]) -> None:
    """Refuse an upload target early: an existing parent that is a link or not a
    directory, or a target that is a directory or a link to one."""
    if not parts:
        raise PathRefused(400, "give a file name inside the vfolder in the 'filename' metadata")
    root = open_root(vfolder_dir)
    try:
        fd = root
        opened = []
        for part in parts[:-1]:
            try:
                fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                opened.append(fd)
            except FileNotFoundError:
                return  # will be created
            except OSError as e:
                raise _refuse(e, part) from None
        try:
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise PathRefused(409, f"{'/'.join(parts)!r} is a directory")
        if stat.S_ISLNK(st.st_mode):
            raise PathRefused(400, f"{'/'.join(parts)!r} is a symbolic link; links are never written through")
    finally:
        for f in opened:
            os.close(f)
        os.close(root)


def place_file(vfolder_dir: str, parts: tuple[str, ...], staging: str, mode: int = 0o666) -> None:
    """Move the finished ``staging`` file to ``parts`` inside the vfolder
    (replacing a file or a link of that name, never writing through one)."""
    root = open_root(vfolder_dir)
    try:
        parent = open_dirs(root, parts[:-1], create=True)
    finally:
        os.close(root)
    try:
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise PathRefused(409, f"{'/'.join(parts)!r} is a directory")
            if stat.S_ISLNK(st.st_mode):
                raise PathRefused(400, f"{'/'.join(parts)!r} is a symbolic link; links are never written through")
        except FileNotFoundError:
            pass
        os.chmod(staging, mode)
        try:
            os.rename(staging, name, dst_dir_fd=parent)
        except OSError as e:
            raise _refuse(e, name) from None
    finally:
        os.close(parent)


def open_entry(vfolder_dir: str, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
    """An fd of the file or directory at ``parts`` (the vfolder itself for ())
    and its stat; links are refused at every step, the last one included."""
    root = open_root(vfolder_dir)
    if not parts:
        return root, os.fstat(root)
    try:
        parent = open_dirs(root, parts[:-1])
    finally:
        os.close(root)
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        except OSError as e:
            raise _refuse(e, parts[-1]) from None
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)
        raise PathRefused(400, f"{'/'.join(parts)!r} is not a regular file or directory")
    return fd, st


class _QueueSink:
    """A write-only file object for tarfile that hands ~1 MiB pieces to a
    bounded queue (the producer thread blocks while the client is slow)."""

    def __init__(self, q: queue.Queue, cancelled: threading.Event, piece: int = 1 << 20):
        self.q, self.cancelled, self.piece = q, cancelled, piece
        self.buf = bytearray()

    def write(self, data) -> int:
        if self.cancelled.is_set():
            raise BrokenPipeError("download cancelled")
        self.buf += data
        if len(self.buf) >= self.piece:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            while True:
                try:
                    self.q.put(bytes(self.buf), timeout=1)
                    break
                except queue.Full:
                    if self.cancelled.is_set():
                        raise BrokenPipeError("download cancelled") from None
            self.buf.clear()


def _tar_tree(tf: tarfile.TarFile, dir_fd: int, arcname: str) -> None:
    st = os.fstat(dir_fd)
    ti = tarfile.TarInfo(arcname)
    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, stat.S_IMODE(st.st_mode), int(st.st_mtime)
    tf.addfile(ti)
    for entry in sorted(os.listdir(dir_fd)):
        try:
            est = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        name = f"{arcname}/{entry}"
        if stat.S_ISDIR(est.st_mode):
            try:
                sub = os.open(entry, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                _tar_tree(tf, sub, name)
            finally:
                os.close(sub)
        elif stat.S_ISREG(est.st_mode):
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(fd)
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime = fst.st_size, stat.S_IMODE(fst.st_mode), int(fst.st_mtime)
                tf.addfile(ti, f)
        elif stat.S_ISLNK(est.st_mode):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(entry, dir_fd=dir_fd)
            tf.addfile(ti)  # the link itself, never what it points to


def tar_stream(dir_fd: int, arcname: str, cancelled: threading.Event) -> queue.Queue:
    """Start a thread that writes a tar of the directory to a queue of byte
    pieces; ``None`` ends the stream, an exception object reports a failure.
    The thread owns (and closes) ``dir_fd``."""
    q: queue.Queue = queue.Queue(maxsize=8)

    def produce():
        sink = _QueueSink(q, cancelled)
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                _tar_tree(tf, dir_fd, arcname)
            sink.flush()
            q.put(None)
        except BrokenPipeError:
            pass
        except Exception as e:  # reported to the handler, which ends the response
            q.put(e)
        finally:
            os.close(dir_fd)

    threading.Thread(target=produce, daemon=True, name="vfolders-tar").start()
    return q


def read_range(fd: int, start: int, end: int, piece: int = 1 << 20) -> Iterator[bytes]:
    pos = start
    while pos < end:
        data = os.pread(fd, min(piece, end - pos), pos)
        if not data:
            break
        pos += len(data)
        yield data
