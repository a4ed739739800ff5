"""Pure builders of what runtimes create (Docker binds, the local mount
wrapper, the form block), the storage statistics parsers, and the stats API
changing after a write."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spawner import mounts as host_mounts
from spawner.vfolders import docker_binds, docker_session_bind, form_block, live_changes, local_mount_wrapper
from tests.support import wait_for
from vfolder_manager.storage import stats

MOUNTS = [{"name": "data", "path": "/srv/nas/ab/abc", "mode": "rw"},
          {"name": "refs@bob", "path": "/srv/nas/cd/cde", "mode": "ro"}]


def test_docker_binds():
    assert docker_binds(MOUNTS, "/home/jovyan") == {
        "/srv/nas/ab/abc": {"bind": "/home/jovyan/vfolders/data", "mode": "rw"},
        "/srv/nas/cd/cde": {"bind": "/home/jovyan/vfolders/refs@bob", "mode": "ro"},
    }
    with pytest.raises(ValueError):
        docker_binds([{"name": "../x", "path": "/a", "mode": "rw"}], "/home/j")


def test_local_wrapper_shape():
    argv = local_mount_wrapper("/run/gpuhub/sessions/@alice/@", "/home/alice", 1001, 1001)
    # slave: what the hub mounts into the session directory later reaches the session
    assert argv[:5] == ["unshare", "--mount", "--propagation", "slave", "--"]
    script = argv[7]
    assert "mount --rbind /run/gpuhub/sessions/@alice/@ /home/alice/vfolders" in script
    assert "-type d -empty -delete" in script  # leftovers of older versions, never data
    assert script.strip().endswith('exec setpriv --reuid=1001 --regid=1001 --init-groups -- "$@"')


def test_local_wrapper_binds_the_home_vfolder_first():
    argv = local_mount_wrapper("/run/s/@alice/@", "/home/alice", 1001, 1001, None, "/srv/nas/ho/home1")
    lines = argv[7].split("\n")
    assert lines[1] == "mount --bind /srv/nas/ho/home1 /home/alice"  # before ~/vfolders is made in it
    assert lines.index("cd /home/alice") == len(lines) - 2  # the mounted home, not the one below


def test_docker_session_bind():
    assert docker_session_bind("/run/s/@a/@", "/home/jovyan") == {
        "/run/s/@a/@": {"bind": "/home/jovyan/vfolders", "mode": "rw,rslave"}}


def test_live_changes():
    avail = [{"id": "1", "name": "data"}, {"id": "2", "name": "refs"}, {"id": "3", "name": "new"},
             {"id": "4", "name": "data"}]
    # 1 and 2 were there at start (2 not chosen); 3 is new; 4's name is taken; 9 was lost
    new, gone = live_changes(avail, {"1", "2", "9"}, {"1": "data", "9": "old"})
    assert new == ["new"] and gone == ["9"]
    assert live_changes(avail, {"1", "2", "3", "4"}, {"1": "data"}) == ([], [])


@pytest.mark.skipif(os.getuid() != 0, reason="mount namespaces need root")
def test_local_wrapper_really_read_only(tmp_path):
    """The wrapper as a process over a session directory: the rw vfolder takes a
    write, the ro one refuses it even to root, and nothing leaks to the host's
    mount table."""
    rw, ro, home, root = tmp_path / "rw", tmp_path / "ro", tmp_path / "home", tmp_path / "sessions"
    for d in (rw, ro, home):
        d.mkdir()
    sd = host_mounts.session_dir(str(root), "u", "")
    host_mounts.make_session_dir(str(root), sd)
    try:
        host_mounts.add(sd, "rw", str(rw), False)
        host_mounts.add(sd, "ro", str(ro), True)
        argv = local_mount_wrapper(sd, str(home), 0, 0)
        cmd = argv + ["/bin/sh", "-c", f"echo ok > {home}/vfolders/rw/f; echo no > {home}/vfolders/ro/f; echo rc=$?"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert "rc=0" not in out.stdout and "Read-only file system" in out.stderr, (out.stdout, out.stderr)
        assert (rw / "f").read_text() == "ok\n" and not (ro / "f").exists()
        assert not host_mounts.is_mount_point(str(home / "vfolders"))
    finally:
        host_mounts.remove_session_dir(sd, str(root))
    assert not os.path.exists(sd) and not host_mounts.is_mount_point(sd)
    assert not host_mounts.is_mount_point(str(root))  # the last one gone: the root's own mount too


@pytest.mark.skipif(os.getuid() != 0, reason="mount namespaces need root")
def test_a_vfolder_mounted_later_reaches_the_running_session(open_tmp):
    """Mount propagation and an idmapped mount: a session started as uid 65534
    with no supplementary group sees a vfolder (SERVICE:GID 2770, as
    storage/ownership.py makes them) that the hub mounts after it started,
    writes into it (the file lands in the vfolder's group on disk), and loses
    it when the hub unmounts it."""
    gid, tmp_path = 1900000042, open_tmp
    vf, home, root = tmp_path / "vf", tmp_path / "home", tmp_path / "sessions"
    vf.mkdir()
    home.mkdir()
    os.chown(home, 65534, 65534)
    os.chown(vf, 0, gid)
    os.chmod(vf, 0o2770)
    (vf / "old.txt").write_text("from before\n")
    os.chown(vf / "old.txt", 0, gid)
    os.chmod(vf / "old.txt", 0o660)
    sd = host_mounts.session_dir(str(root), "u", "s")
    host_mounts.make_session_dir(str(root), sd)
    flag = tmp_path / "go"
    probe = (f"while [ ! -e {flag} ]; do sleep 0.05; done; cat {home}/vfolders/new/old.txt; "
             f"echo hi > {home}/vfolders/new/mine.txt && echo wrote; id -G; "
             f"while [ -e {flag} ]; do sleep 0.05; done; ls {home}/vfolders; echo end")
    try:
        proc = subprocess.Popen(local_mount_wrapper(sd, str(home), 65534, 65534, [65534]) + ["/bin/sh", "-c", probe],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)  # the session runs (its namespace is made) before the vfolder is mounted
        host_mounts.add(sd, "new", str(vf), False, gids=(gid, 65534))
        flag.touch()
        wait_for(lambda: (vf / "mine.txt").exists(), timeout=15, what="the session's write")
        host_mounts.drop(sd, "new")
        flag.unlink()
        out, _ = proc.communicate(timeout=15)
    finally:
        host_mounts.remove_session_dir(sd, str(root))
    lines = out.split()
    assert lines[:4] == ["from", "before", "wrote", "65534"], out  # no vfolder group in the session
    assert os.stat(vf / "mine.txt").st_gid == gid  # on disk: the vfolder's group
    assert lines[-1] == "end" and "new" not in lines[4:-1], out  # unmounted: gone from the session
    assert not os.path.exists(sd)


@pytest.fixture
def open_tmp():
    """A directory that other accounts can enter (pytest's tmp_path is under a
    0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="gpuhub-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@given(st.integers(0, host_mounts.MAX_ID - 1), st.integers(0, host_mounts.MAX_ID - 1))
def test_gid_map_is_a_valid_mapping(disk, seen):
    """The kernel's rules for gid_map: no overlap inside or outside; at most 340
    lines. disk reads as seen; every other group as itself, but seen and disk's
    own ids, which are left unmapped."""
    lines = host_mounts.gid_map(disk, seen)
    assert len(lines) <= 340
    for side in (0, 1):
        spans = sorted((line[side], line[side] + line[2]) for line in lines)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    def seen_as(g):
        return next((o + g - i for i, o, n in lines if i <= g < i + n), None)
    assert seen_as(disk) == seen
    for g in {0, 1000, disk - 1, disk + 1, seen - 1, seen + 1, host_mounts.MAX_ID - 1} - {disk, seen}:
        if 0 <= g < host_mounts.MAX_ID:
            assert seen_as(g) == g
    if disk != seen:
        assert seen_as(seen) is None


def test_session_dir_cannot_climb_out():
    root = "/run/gpuhub/sessions"
    for user, server in [("..", ".."), ("a/../../b", ""), ("/", "."), ("alice", "")]:
        path = host_mounts.session_dir(root, user, server)
        assert os.path.dirname(os.path.dirname(path)) == root and ".." not in path.split("/")


def test_form_block():
    html = form_block([{"name": "data", "auto_mount": True, "mode": "rw"},
                       {"name": "<x>", "auto_mount": False, "mode": "ro", "reason": "shared read-only"}])
    assert 'value="data" checked' in html and "&lt;x&gt;" in html and "read-only" in html
    assert 'name="vfolders_form"' in html and form_block([]) == ""


# recorded from a Linux 6.1 NFSv4.2 client (format: kernel fs/nfs/super.c, as in prometheus/procfs)
MOUNTSTATS = """device rootfs mounted on / with fstype rootfs
device nas:/export mounted on /mnt/nas with fstype nfs4 statvers=1.1
\topts:\trw,vers=4.2,rsize=1048576,wsize=1048576
\tage:\t3600
\tevents:\t1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
\tbytes:\t1 2 3 4 5 6 7 8
\tRPC iostats version: 1.1  p/v: 100003/4 (nfs)
\txprt:\ttcp 0 0 1 0 2 3 3 0 3 0 0 0 0
\tper-op statistics
\t        NULL: 0 0 0 0 0 0 0 0
\t        READ: 1200 1200 0 192000 1048576000 150 9000 9500 0
\t       WRITE: 800 800 0 524288000 128000 80 7000 8200 0
\t      COMMIT: 10 10 0 1000 1000 0 10 12 0
device proc mounted on /proc with fstype proc
"""


def test_parse_mountstats():
    nfs = stats.parse_mountstats(MOUNTSTATS)
    assert list(nfs) == ["/mnt/nas"] and nfs["/mnt/nas"]["fstype"] == "nfs4"
    c1 = stats.nfs_counters(nfs["/mnt/nas"], t=0.0)
    assert (c1.read_ops, c1.read_bytes, c1.write_ops, c1.write_bytes) == (1200, 1048576000, 800, 524288000)
    c2 = stats.Counters(10.0, 1300, 900, c1.read_bytes + 10_000_000, c1.write_bytes + 5_000_000,
                        c1.read_ms + 100, c1.write_ms + 200)
    r = stats.rates(c1, c2)
    assert r["iops_read"] == 10 and r["iops_write"] == 10
    assert r["io_bytes_read"] == 1_000_000 and r["io_bytes_write"] == 500_000
    assert r["io_usec_read"] == 1000 and r["io_usec_write"] == 2000


def test_storage_stats_change_after_a_write(svc):
    def hosts():
        return {h["name"]: h for h in svc.call("alice", "GET", "/storage/hosts").json()["hosts"]}

    before = wait_for(lambda: hosts()["local"]["stats"], 10, "the storage host's first stats", 0.1)
    assert {"iops_read", "iops_write", "io_bytes_read", "io_bytes_write", "io_usec_read", "io_usec_write",
            "capacity_bytes", "free_bytes"} <= set(before)
    assert "path" not in hosts()["local"]  # users do not learn where the NAS is mounted
    vf = svc.create("alice", "io")
    path = svc.tmp / "hosts" / "local" / vf["id"][:2] / vf["id"] / "blob"
    with open(path, "wb") as f:
        f.write(os.urandom(32 << 20))
        f.flush()
        os.fsync(f.fileno())

    def changed():
        after = hosts()["local"]["stats"]
        return after["write_bytes"] > before["write_bytes"] or after["used_bytes"] != before["used_bytes"]

    wait_for(changed, 10, f"the stats to show the write (before: {before})", 0.3)
