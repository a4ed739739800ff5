"""A session's vfolder directory on its host, and the mounts in it (root only).

Each session that mounts vfolders gets one directory on the host it runs on,
``VFolderMixin.vfolders_session_root/…`` (the *session directory*), which is a
mount point of its own with **shared** propagation. The hub binds each vfolder
into it; the session sees the whole directory at ``~/vfolders`` through a
**slave** bind (local runtime: ``unshare --propagation slave`` and
``mount --rbind``; Docker: a bind with ``rslave``). So a vfolder the hub mounts
into the session directory *later* — one the user created or accepted during
the session — appears at ``~/vfolders/NAME`` in the running session, and one
unmounted there disappears from it: mount propagation, the kernel's
(``Documentation/filesystems/sharedsubtree.rst``).

A running process cannot gain a supplementary group, so a vfolder mounted
during a session, whose group (storage/ownership.py) the session was not started
with, is bound through an **idmapped mount** (Linux ≥ 5.12, ``mount_setattr``
with ``MOUNT_ATTR_IDMAP``): through that mount, the vfolder's group reads as a
group the session has. On disk nothing changes; what the session creates there
is in the vfolder's group, as anywhere else. :func:`gid_map` is the mapping
(pure); the syscalls are here because this is the edge where the I/O happens.

The session directory's parent (the root) is 0700 root: nobody reaches a
session's mounts through the host's paths, only through the session's own
``~/vfolders``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
import time
from urllib.parse import quote

MAX_ID = 4294967295  # ids 0 … 2**32 - 2 (-1 is "no id")

_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and arm64 alike
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, 0o2000000
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_IDMAP = 0x1, 0x00100000


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


# --- pure ------------------------------------------------------------------------------


def session_dir(root: str, user: str, server: str) -> str:
    """The session directory of ``user``'s server ``server`` ("" the default one)
    under ``root``: one path segment per name, quoted so that no name can climb
    out (``..`` and ``/`` included)."""
    def seg(s: str) -> str:
        return "@" + quote(s, safe="")  # never "", "." or ".."
    return os.path.join(root, seg(user), seg(server))


def gid_map(disk: int, seen: int) -> list[tuple[int, int, int]]:
    """``/proc/PID/gid_map`` lines (inside, outside, count) of the user
    namespace an idmapped mount uses so that files of group ``disk`` read as
    group ``seen`` through it, and back (a file created there gets ``disk``);
    every other group reads as itself. The ranges never overlap on either side
    (the kernel refuses that): ``seen`` on disk and ``disk`` as seen are left
    unmapped, and read as the overflow group (nogroup)."""
    if disk == seen:
        return [(0, 0, MAX_ID)]
    lo, hi = sorted((disk, seen))
    lines = [(a, a, b - a) for a, b in ((0, lo), (lo + 1, hi), (hi + 1, MAX_ID)) if b > a]
    return sorted(lines + [(disk, seen, 1)])


# --- the edge: syscalls and mount(8) -------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_root_lock = threading.Lock()  # one hub: sessions start and stop in threads at once


def _check(result: int, what: str, path: str) -> int:
    if result < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}", path)
    return result


def _userns(gid_lines: list[tuple[int, int, int]]) -> int:
    """An fd of a new user namespace with identity uids and ``gid_lines``."""
    proc = subprocess.Popen(["unshare", "--user", "--", "sleep", "30"], stdin=subprocess.DEVNULL)
    try:
        own = os.readlink("/proc/self/ns/user")
        for _ in range(500):  # until the child is in its own namespace
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/user") != own:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        with open(f"/proc/{proc.pid}/uid_map", "w") as f:
            f.write(f"0 0 {MAX_ID}\n")
        with open(f"/proc/{proc.pid}/gid_map", "w") as f:
            f.write("".join(f"{a} {b} {n}\n" for a, b, n in gid_lines))
        return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        proc.kill()
        proc.wait()


def bind(source: str, target: str, read_only: bool = False, gids: tuple[int, int] | None = None) -> None:
    """Bind ``source`` at ``target`` (an existing directory) in one step, read-only
    from the start when ``read_only`` (no window in which it is writable, and the
    flag travels with the mount to the session's copies). ``gids`` = (disk,
    seen): an idmapped mount of :func:`gid_map`."""
    fd = _check(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(source),
                              _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC), "open_tree", source)
    userns = None
    try:
        flags = _MOUNT_ATTR_RDONLY if read_only else 0
        if gids is not None:
            userns = _userns(gid_map(*gids))
            flags |= _MOUNT_ATTR_IDMAP
        if flags:
            attr = _MountAttr(flags, 0, 0, userns or 0)
            _check(_libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, ctypes.byref(attr),
                                 ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr", source)
        _check(_libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, os.fsencode(target),
                             _MOVE_MOUNT_F_EMPTY_PATH), "move_mount", target)
    finally:
        os.close(fd)
        if userns is not None:
            os.close(userns)


def is_mount_point(path: str) -> bool:
    """From /proc/self/mountinfo: a bind from the same filesystem has its
    parent's st_dev, so os.path.ismount cannot tell."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


def _mount(*args: str) -> None:
    out = subprocess.run(["mount", *args], capture_output=True, text=True)
    if out.returncode:
        raise OSError(errno.EIO, f"mount {' '.join(args)}: {out.stderr.strip()}")


def unmount(path: str) -> None:
    """Lazily unmount ``path`` and everything below it (busy files in a session
    keep working until closed); no error when nothing is mounted there."""
    subprocess.run(["umount", "--recursive", "--lazy", path], capture_output=True)


def make_session_dir(root: str, path: str) -> None:
    """A fresh session directory: ``root`` 0700 and a private mount of its own
    while any session directory exists (so that nothing in it propagates to the
    host's other mounts), the session directory 0755 and a shared mount of its
    own. What an earlier run left there (a hub killed with its sessions) is
    unmounted and removed first."""
    with _root_lock:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
        if not is_mount_point(root):
            _mount("--bind", root, root)
            _mount("--make-private", root)
        _remove(path)
        os.makedirs(path, mode=0o755)
        os.chmod(os.path.dirname(path), 0o755)
        _mount("--bind", path, path)
        _mount("--make-shared", path)


def remove_session_dir(path: str, root: str | None = None) -> None:
    """Unmount and remove a session directory; and ``root``'s own mount when
    no session directory is left in it."""
    with _root_lock:
        _remove(path)
        if root is not None and is_mount_point(root) and not any(
                os.listdir(os.path.join(root, d)) for d in os.listdir(root)
                if os.path.isdir(os.path.join(root, d))):
            for d in os.listdir(root):
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass
            unmount(root)


def _remove(path: str) -> None:
    if not os.path.lexists(path):
        return
    unmount(path)
    for name in os.listdir(path):  # the mount points of the vfolders, all empty now
        try:
            os.rmdir(os.path.join(path, name))
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def add(path: str, name: str, source: str, read_only: bool, gids: tuple[int, int] | None = None) -> None:
    """Mount ``source`` at ``path/name`` (the session directory)."""
    target = os.path.join(path, name)
    os.makedirs(target, mode=0o755, exist_ok=True)
    try:
        bind(source, target, read_only, gids)
    except OSError:
        os.rmdir(target)
        raise


def drop(path: str, name: str) -> None:
    """Unmount ``path/name``: it leaves the running session too."""
    target = os.path.join(path, name)
    unmount(target)
    try:
        os.rmdir(target)
    except OSError:
        pass
