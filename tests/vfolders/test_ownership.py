"""One group per vfolder (vfolder_manager/storage/ownership.py): the directory
is SERVICE:GID 2770 with a default ACL, so two accounts that both have the
vfolder's group can change each other's files whatever their umask; strangers
cannot enter. Accounts here are bare uids (setpriv), as a session gets them."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from spawner.vfolders import docker_binds, local_mount_wrapper, vfolder_gids
from tests.support import wait_for
from vfolder_manager.storage.ownership import default_acl, vfolder_gid
from vfolder_manager.store.schema import VFolder

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="giving files to other accounts needs root")
A, B, STRANGER = 64001, 64002, 64003  # no such accounts: uids and gids are numbers


def as_user(uid: int, groups: list[int], script: str, umask: str = "022") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={','.join(map(str, groups)) or uid}",
         "--", "/bin/sh", "-c", f"umask {umask}; {script}"],
        capture_output=True, text=True, timeout=30)


def path_of(svc, vid: str) -> str:
    """The vfolder's directory, reachable by other uids (sessions reach it through a
    bind mount; here pytest's 0700 temp directories must let them pass)."""
    with svc.service.manager.sessions.begin() as db:
        path = svc.service.manager.path_of(db.get(VFolder, vid))
    d = str(svc.tmp)
    while d not in ("/", "/tmp"):
        os.chmod(d, os.stat(d).st_mode | 0o711)
        d = os.path.dirname(d)
    return path


def test_rw_share_between_two_accounts_whatever_their_umask(svc):
    vf = svc.create("alice", "team")
    base = svc.service.vfolder_gid_base
    gid = vfolder_gid(vf["id"], base)
    path = path_of(svc, vf["id"])
    st = os.stat(path)
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (gid, 0o2770)
    assert os.getxattr(path, "system.posix_acl_default") == default_acl()

    # the spawner learns the group from POST mounts
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "vfolders": ["team"], "dry_run": True})
    (m,) = r.json()["mounts"]
    assert m["gid"] == gid and vfolder_gids([m]) == [gid]

    # A writes with umask 022 (a file, a directory, a file in it); B changes all of it
    r = as_user(A, [gid], f"cd {path} && echo a > a.txt && mkdir d && echo x > d/x && ls -ln . d")
    assert r.returncode == 0, r.stderr
    for rel, mode in (("a.txt", 0o660), ("d", 0o2770), ("d/x", 0o660)):
        st = os.stat(os.path.join(path, rel))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (A, gid, mode), rel
    r = as_user(B, [gid], f"cd {path} && echo b >> a.txt && echo y > d/y && rm d/x && mv a.txt d/")
    assert r.returncode == 0, r.stderr
    assert open(os.path.join(path, "d", "a.txt")).read() == "a\nb\n"
    r = as_user(A, [gid], f"cd {path}/d && echo again >> y && rm a.txt")
    assert r.returncode == 0, r.stderr
    # an account without the group cannot even look
    r = as_user(STRANGER, [], f"ls {path}")
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_clone_joins_its_own_group(svc):
    vf = svc.create("alice", "team")
    src = path_of(svc, vf["id"])
    gid = vfolder_gid(vf["id"], svc.service.vfolder_gid_base)
    r = as_user(A, [gid], f"cd {src} && mkdir -p d/e && echo 1 > d/e/f && chmod 600 d/e/f")
    assert r.returncode == 0, r.stderr
    r = svc.call("alice", "POST", f"/vfolders/{vf['id']}/clone", json={"name": "copy"})
    cid = r.json()["id"]
    wait_for(lambda: svc.call("alice", "GET", f"/vfolders/{cid}").json()["state"] == "ready", 20,
             "the clone to be ready", 0.05)
    cgid = vfolder_gid(cid, svc.service.vfolder_gid_base)
    assert cgid != gid
    dst = path_of(svc, cid)
    for rel in ("", "d", "d/e", "d/e/f"):
        st = os.stat(os.path.join(dst, rel))
        assert st.st_gid == cgid, rel
        assert st.st_mode & 0o060 == 0o060, rel  # group read-write, even the 0600 file
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o2770
    # a member of the clone's group writes below; one of the source's group cannot enter
    assert as_user(B, [cgid], f"echo 2 >> {dst}/d/e/f && echo n > {dst}/d/e/new").returncode == 0
    assert as_user(B, [gid], f"ls {dst}").returncode != 0


def test_builders_carry_the_groups():
    mounts = [{"name": "a", "path": "/n/a", "mode": "rw", "gid": 1900000007},
              {"name": "b", "path": "/n/b", "mode": "ro", "gid": 1900000003},
              {"name": "c", "path": "/n/c", "mode": "rw", "gid": None}]
    assert vfolder_gids(mounts) == [1900000003, 1900000007]
    script = local_mount_wrapper("/run/s/@x/@", "/home/x", 1001, 1001, [1001, 27, 1900000003, 1900000007])[7]
    assert script.strip().endswith(
        'exec setpriv --reuid=1001 --regid=1001 --groups=1001,27,1900000003,1900000007 -- "$@"')
    assert "gid" not in str(docker_binds(mounts, "/home/j"))


def test_the_open_model_when_configured(svc):
    svc.service.manager.gid_base = None  # VFolderService.vfolder_gid_base = 0
    vf = svc.create("alice", "open")
    assert stat.S_IMODE(os.stat(path_of(svc, vf["id"])).st_mode) == 0o777
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "vfolders": ["open"], "dry_run": True})
    assert r.json()["mounts"][0]["gid"] is None
