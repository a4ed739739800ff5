"""Pure builders of what runtimes create (Docker binds, the local mount
wrapper, the form block), the storage statistics parsers, and the stats API
changing after a write."""

import os
import subprocess

import pytest

from spawner.vfolders import docker_binds, form_block, local_mount_wrapper
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
    argv = local_mount_wrapper(MOUNTS, "/home/alice", 1001, 1001)
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    script = argv[7]
    assert "mount --bind /srv/nas/ab/abc /home/alice/vfolders/data" in script
    assert "mount -o remount,bind,ro /home/alice/vfolders/refs@bob" in script
    assert "remount,bind,ro /home/alice/vfolders/data" not in script
    assert script.strip().endswith('exec setpriv --reuid=1001 --regid=1001 --init-groups -- "$@"')


@pytest.mark.skipif(os.getuid() != 0, reason="mount namespaces need root")
def test_local_wrapper_really_read_only(tmp_path):
    """The wrapper as a process: the rw vfolder takes a write, the ro one refuses
    it even to root, and nothing leaks to the host's mount table."""
    rw, ro, home = tmp_path / "rw", tmp_path / "ro", tmp_path / "home"
    for d in (rw, ro, home):
        d.mkdir()
    mounts = [{"name": "rw", "path": str(rw), "mode": "rw"}, {"name": "ro", "path": str(ro), "mode": "ro"}]
    argv = local_mount_wrapper(mounts, str(home), 0, 0)
    cmd = argv + ["/bin/sh", "-c", f"echo ok > {home}/vfolders/rw/f; echo no > {home}/vfolders/ro/f; echo rc=$?"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert "rc=0" not in out.stdout and "Read-only file system" in out.stderr, (out.stdout, out.stderr)
    assert (rw / "f").read_text() == "ok\n" and not (ro / "f").exists()
    assert not os.path.ismount(home / "vfolders" / "rw")


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
