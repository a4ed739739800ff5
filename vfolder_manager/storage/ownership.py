"""Who may write a vfolder's files: one group per vfolder.

A vfolder's directory is ``SERVICE_UID:GID 2770`` where GID is the vfolder's own
group id (:func:`vfolder_gid`: ``VFolderService.vfolder_gid_base`` plus 20 bits
of its id, unique among the service's vfolders; a number, no /etc/group entry is
needed). Sessions that mount the vfolder get GID as a supplementary group (local:
``setpriv --groups``; Docker: ``group_add``), whatever uid they run as (the
users' system accounts, the container's uid 1000). Nobody else can enter it; the
storage host's root stays 0711.

So that every session can change every other session's files whatever its
umask, the directory carries a *default POSIX ACL* ``u::rwx,g::rwx,o::---``:
files and directories created below get the group's bits from it instead of
from the umask (a file from ``open(…, 'w')`` is 0660, a directory 2770), and the
setgid bit gives them the vfolder's group. On a filesystem without POSIX ACLs
(e.g. an NFSv4 mount, which has its own ACL model) :func:`make_group_dir` says
so and the umask decides again; ``rw`` sharing then needs umask 002 in the
sessions.

The service sets all this up as root. It is what a ``ro`` mount does not need:
read-only binds are refused writes by the kernel (EROFS) whatever the modes say.
"""

from __future__ import annotations

import errno
import os
import struct

#: POSIX ACL xattr (linux/posix_acl_xattr.h): version 2, entries (tag, perm, id)
_ACL_VERSION = 2
_USER_OBJ, _GROUP_OBJ, _OTHER = 0x01, 0x04, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
GID_BITS = 20


def default_acl() -> bytes:
    """``system.posix_acl_default`` of ``u::rwx,g::rwx,o::---``."""
    entries = [(_USER_OBJ, 7), (_GROUP_OBJ, 7), (_OTHER, 0)]
    return struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, _UNDEFINED_ID) for tag, perm in entries)


def vfolder_gid(vid: str, base: int) -> int:
    return base + int(vid[: GID_BITS // 4], 16)


def set_default_acl(path: str) -> bool:
    """True when the directory now has the default ACL; False where the
    filesystem has no POSIX ACLs."""
    try:
        os.setxattr(path, "system.posix_acl_default", default_acl(), follow_symlinks=False)
        return True
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise


def make_group_dir(path: str, gid: int) -> bool:
    """The vfolder's directory: owner the service, group ``gid``, 2770, default
    ACL. Returns whether the ACL could be set."""
    os.chown(path, -1, gid)
    os.chmod(path, 0o2770)
    return set_default_acl(path)


def adopt_tree(path: str, gid: int) -> list:
    """A tree that came from elsewhere (a clone's copy) joins the vfolder's group:
    group ``gid`` and group rw(x) on everything, setgid and the default ACL on
    every directory. Returns the per-path errors of the walks."""
    from ..ptools import api as ptools

    errors = ptools.chown_tree(path, -1, gid) + ptools.chmod_tree(path, "g+rwX,o-rwx")
    for root, _, _ in os.walk(path):  # links to directories are not entered
        try:
            os.chmod(root, os.lstat(root).st_mode & 0o7777 | 0o2000)
            set_default_acl(root)
        except OSError as e:
            errors.append(e)
    os.chmod(path, 0o2770)
    return errors
