"""A simulated NAS: a FUSE passthrough filesystem that delays every request.

Why: this machine has no NFS server, yet the p-commands exist for NAS round
trips.  Every FUSE request (lookup, getattr, readdir, unlink, ...) sleeps
``delay`` seconds before it is served, attribute and entry caching are off,
and requests are served concurrently (one trio task per request, up to
``--max-tasks``), so a client with many calls in flight wins and a serial
client pays the delay once per call.  The server records how many requests it
saw and the most it had in flight at once; the test uses that to prove the
p-commands really run in parallel, the benchmark to report the ceiling.

Usage (foreground until unmounted with ``fusermount3 -u MNT``)::

    python -m vfolder_manager.ptools.testing.latencyfs SOURCE MNT --delay-ms 1 --stats stats.json
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import stat as stat_mod
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import pyfuse3
import trio

from .mount import Mount  # noqa: F401  (kept importable from here)

ROOT = pyfuse3.ROOT_INODE


class LatencyFS(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, source: str, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.paths: dict[int, bytes] = {ROOT: os.fsencode(source)}
        self.inflight = 0
        self.max_inflight = 0
        self.ops = 0
        self.started = time.monotonic()

    # ------------------------------------------------------------ helpers
    @asynccontextmanager
    async def _rtt(self) -> AsyncIterator[None]:
        self.ops += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.delay > 0:
                await trio.sleep(self.delay)
            yield
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        finally:
            self.inflight -= 1

    def _path(self, inode: int) -> bytes:
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _attrs(self, st: os.stat_result, inode: int | None = None) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode if inode is not None else st.st_ino
        a.generation = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        for f in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize", "st_blocks",
                  "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(a, f, getattr(st, f))
        return a

    def _entry(self, path: bytes) -> pyfuse3.EntryAttributes:
        st = os.lstat(path)
        self.paths[st.st_ino] = path
        return self._attrs(st)

    def _child(self, parent: int, name: bytes) -> bytes:
        return os.path.join(self._path(parent), name)

    # ------------------------------------------------------------ metadata
    async def lookup(self, parent_inode, name, ctx=None):
        async with self._rtt():
            if name == b".":
                return self._attrs(os.lstat(self._path(parent_inode)), parent_inode)
            if name == b"..":
                return self._entry(os.path.dirname(self._path(parent_inode)))
            return self._entry(self._child(parent_inode, name))

    async def forget(self, inode_list):
        pass

    async def getattr(self, inode, ctx=None):
        async with self._rtt():
            return self._attrs(os.lstat(self._path(inode)), inode)

    async def setattr(self, inode, attr, fields, fh, ctx):
        async with self._rtt():
            path = self._path(inode)
            if fields.update_size:
                os.truncate(path, attr.st_size)
            if fields.update_mode:
                os.chmod(path, stat_mod.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                os.chown(path, attr.st_uid if fields.update_uid else -1, attr.st_gid if fields.update_gid else -1,
                         follow_symlinks=False)
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(path)
                os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                                   attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns),
                         follow_symlinks=False)
            return self._attrs(os.lstat(path), inode)

    async def readlink(self, inode, ctx):
        async with self._rtt():
            return os.readlink(self._path(inode))

    async def statfs(self, ctx):
        async with self._rtt():
            s = os.statvfs(self.paths[ROOT])
            d = pyfuse3.StatvfsData()
            for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
                setattr(d, f, getattr(s, f))
            d.f_namemax = s.f_namemax
            return d

    # ------------------------------------------------------------ directories
    async def opendir(self, inode, ctx):
        async with self._rtt():
            path = self._path(inode)
            if not os.path.isdir(path):
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            return inode

    async def readdir(self, fh, start_id, token):
        async with self._rtt():
            path = self._path(fh)
            entries = []
            with os.scandir(path) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    entries.append((st.st_ino, os.fsencode(e.name), st))
            entries.sort()
            for ino, name, st in entries:
                if ino <= start_id:
                    continue
                if not pyfuse3.readdir_reply(token, name, self._attrs(st), ino):
                    break
                self.paths[ino] = os.path.join(path, name)

    async def releasedir(self, fh):
        pass

    async def mkdir(self, parent_inode, name, mode, ctx):
        async with self._rtt():
            path = self._child(parent_inode, name)
            os.mkdir(path, mode)
            os.chown(path, ctx.uid, ctx.gid)
            return self._entry(path)

    async def rmdir(self, parent_inode, name, ctx):
        async with self._rtt():
            os.rmdir(self._child(parent_inode, name))

    async def unlink(self, parent_inode, name, ctx):
        async with self._rtt():
            os.unlink(self._child(parent_inode, name))

    async def symlink(self, parent_inode, name, target, ctx):
        async with self._rtt():
            path = self._child(parent_inode, name)
            os.symlink(target, path)
            os.chown(path, ctx.uid, ctx.gid, follow_symlinks=False)
            return self._entry(path)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        async with self._rtt():
            path = self._child(parent_inode, name)
            os.mknod(path, mode, rdev)
            os.chown(path, ctx.uid, ctx.gid)
            return self._entry(path)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        async with self._rtt():
            path = self._child(new_parent_inode, new_name)
            os.link(self._path(inode), path)
            return self._entry(path)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        async with self._rtt():
            if flags:
                raise pyfuse3.FUSEError(errno.EINVAL)
            old = self._child(parent_inode_old, name_old)
            new = self._child(parent_inode_new, name_new)
            os.rename(old, new)
            st = os.lstat(new)
            self.paths[st.st_ino] = new

    # ------------------------------------------------------------ files
    async def open(self, inode, flags, ctx):
        async with self._rtt():
            fd = os.open(self._path(inode), flags & ~os.O_CREAT)
            return pyfuse3.FileInfo(fh=fd)

    async def create(self, parent_inode, name, mode, flags, ctx):
        async with self._rtt():
            path = self._child(parent_inode, name)
            fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC, mode)
            os.fchown(fd, ctx.uid, ctx.gid)
            return pyfuse3.FileInfo(fh=fd), self._entry(path)

    async def read(self, fh, off, size):
        async with self._rtt():
            return os.pread(fh, size, off)

    async def write(self, fh, off, buf):
        async with self._rtt():
            return os.pwrite(fh, buf, off)

    async def flush(self, fh):
        pass

    async def fsync(self, fh, datasync):
        pass

    async def release(self, fh):
        os.close(fh)

    def stats(self) -> dict[str, float]:
        return {"ops": self.ops, "max_inflight": self.max_inflight,
                "seconds": time.monotonic() - self.started, "delay": self.delay}


def serve(source: str, mountpoint: str, delay: float, stats_path: str | None, max_tasks: int) -> None:
    fs = LatencyFS(source, delay)
    opts = set(pyfuse3.default_options)
    opts.discard("default_permissions")
    opts |= {"fsname=latencyfs", "allow_other"} if os.geteuid() == 0 else {"fsname=latencyfs"}
    pyfuse3.init(fs, mountpoint, opts)

    def dump(*_: object) -> None:
        if stats_path:
            with open(stats_path + ".tmp", "w") as f:
                json.dump(fs.stats(), f)
            os.replace(stats_path + ".tmp", stats_path)

    signal.signal(signal.SIGUSR1, dump)
    try:
        trio.run(pyfuse3.main, 1, max_tasks)
    finally:
        pyfuse3.close(unmount=True)
        dump()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--delay-ms", type=float, default=1.0)
    p.add_argument("--stats", help="write {ops, max_inflight, seconds} here at unmount (and on SIGUSR1)")
    p.add_argument("--max-tasks", type=int, default=1024, help="requests served concurrently")
    a = p.parse_args()
    serve(a.source, a.mountpoint, a.delay_ms / 1000.0, a.stats, a.max_tasks)


if __name__ == "__main__":
    main()
