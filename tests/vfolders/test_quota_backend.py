"""The project-quota backend against recorded command outputs (this machine's
kernel has no filesystem quotas), and the scan backend on a real directory."""

from vfolder_manager.core.quota import Usage
from vfolder_manager.storage.quota import ProjectQuota, ScanQuota, project_id

# recorded: xfs_quota -x -c 'report -p -b -i -N -n' /mnt/nas (xfsprogs 6.1)
XFS_REPORT = """#0                 1024          0          0     00 [--------]         12          0          0     00 [--------]
#1234567         2097152          0    4194304     00 [--------]       1500          0     100000     00 [--------]
#42                  16          0          8     00  [7 days]          3          0          0     00 [--------]
"""
# recorded: repquota -P -n -p /mnt/ext (quota-tools 4.09)
EXT4_REPORT = """*** Report for project quotas on device /dev/sdb1
Block grace time: 7days; Inode grace time: 7days
                        Block limits                File limits
Project         used    soft    hard  grace    used  soft  hard  grace
----------------------------------------------------------------------
#0        --      20       0       0      0       2     0     0      0
#1234567  --  524288       0 1048576      0     321     0  5000      0
"""


def test_xfs_report_and_commands():
    calls = []

    def run(argv):
        calls.append(argv)
        return XFS_REPORT

    b = ProjectQuota("xfs", "/mnt/nas", run=run)
    assert b.usage("/mnt/nas/ab/x", 1234567) == Usage(2097152 * 1024, 1500)
    assert b.usage("/mnt/nas/ab/x", 99) == Usage()
    assert len(calls) == 1  # one report serves every vfolder of a scan pass (report_ttl)
    b.set_limit("/mnt/nas/ab/x", 42, 10 * 1024 * 1024, 1000)
    assert calls[-2] == ["xfs_quota", "-x", "-c", "project -s -p /mnt/nas/ab/x 42", "/mnt/nas"]
    assert calls[-1] == ["xfs_quota", "-x", "-c", "limit -p bhard=10240k ihard=1000 42", "/mnt/nas"]


def test_ext4_report_and_commands():
    calls = []
    b = ProjectQuota("ext4", "/mnt/ext", run=lambda argv: calls.append(argv) or EXT4_REPORT)
    assert b.usage("/mnt/ext/ab/x", 1234567) == Usage(524288 * 1024, 321)
    b.set_limit("/mnt/ext/ab/x", 7, None, 50)
    assert calls[-1] == ["setquota", "-P", "7", "0", "0", "0", "50", "/mnt/ext"]
    assert calls[-2] == ["chattr", "-R", "+P", "-p", "7", "/mnt/ext/ab/x"]


def test_project_id_and_scan_backend(tmp_path):
    assert 0 < project_id("ffffffff" + "0" * 24) < 2**31
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 24)
    u = ScanQuota().usage(str(tmp_path), 0)
    assert u.files == 3 and u.bytes >= 1024


# --- choosing a backend (filesystem type + probe) ----------------------------------

import subprocess  # noqa: E402

import pytest  # noqa: E402

from vfolder_manager.storage import quota  # noqa: E402
from vfolder_manager.storage.quota import QuotaConfigError, choose_backend, mount_entry  # noqa: E402

# /proc/self/mountinfo lines in the kernel's format (proc(5)); the XFS one as a
# prjquota mount shows it, the NFS one as a NAS mount from the README
MOUNTINFO = """\
29 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
97 29 8:16 / /mnt/nas rw,noatime shared:50 - xfs /dev/sdb rw,attr2,inode64,logbufs=8,logbsize=32k,prjquota
98 29 8:17 / /mnt/ext rw,relatime shared:51 - ext4 /dev/sdc1 rw,prjquota
99 29 0:52 / /mnt/nas1 rw,relatime shared:52 - nfs4 nas1:/vfolders rw,vers=4.2,rsize=1048576,wsize=1048576,hard,proto=tcp
100 29 8:32 / /mnt/plain rw,relatime shared:53 - xfs /dev/sdd rw,attr2,inode64,logbufs=8,logbsize=32k,noquota
101 29 8:48 / /mnt/my\\040disk rw,relatime shared:54 - ext4 /dev/sde rw
"""


def fails(stderr: str, argv0: str = "repquota"):
    def run(argv):
        raise subprocess.CalledProcessError(1, argv, "", stderr)
    return run


def test_mount_entry_is_the_longest_matching_mount_point():
    assert mount_entry("/mnt/nas/ab/abcd", MOUNTINFO).fstype == "xfs"
    assert mount_entry("/mnt/nasty/x", MOUNTINFO).mountpoint == "/"  # a prefix of the name is not a parent
    assert mount_entry("/mnt/nas1", MOUNTINFO).fstype == "nfs4"
    assert mount_entry("/mnt/my disk/v", MOUNTINFO).mountpoint == "/mnt/my disk"  # \040 unescaped


@pytest.mark.parametrize("mode, path, run, expect", [
    ("scan", "/mnt/nas/v", None, ("scan", "configured: scan")),
    ("auto", "/mnt/nas/v", lambda argv: XFS_REPORT, ("xfs", "auto: xfs project quotas on /mnt/nas")),
    ("project", "/mnt/nas/v", lambda argv: XFS_REPORT, ("xfs", "project: xfs project quotas on /mnt/nas")),
    ("xfs", "/mnt/nas/v", lambda argv: XFS_REPORT, ("xfs", "xfs: xfs project quotas on /mnt/nas")),
    ("auto", "/mnt/ext/v", lambda argv: EXT4_REPORT, ("ext4", "auto: ext4 project quotas on /mnt/ext")),
    ("auto", "/mnt/plain/v", None, ("scan", "auto: scan (XFS at /mnt/plain is mounted without prjquota)")),
    ("auto", "/mnt/nas1/v", None,
     ("scan", "auto: scan (/mnt/nas1/v is on nfs4; project quotas need XFS or ext4 on this machine "
              "(for an NFS mount, set them on the NAS))")),
    ("auto", "/srv/v", fails("repquota: Mountpoint (or device) / not found or has no quota enabled."),
     ("scan", "auto: scan (repquota failed on /: repquota: Mountpoint (or device) / not found or has no "
              "quota enabled.)")),
])
def test_choose_backend(mode, path, run, expect):
    def no_calls(argv):
        raise AssertionError(f"no quota tool should run here: {argv}")

    backend, why = choose_backend(mode, path, mountinfo_text=MOUNTINFO, run=run or no_calls)
    assert (getattr(backend, "kind", "scan"), why) == expect
    assert backend.enforced_by_filesystem == (expect[0] != "scan")


@pytest.mark.parametrize("mode, path, run, message", [
    ("project", "/mnt/nas1/v", None, "is on nfs4"),
    ("xfs", "/mnt/ext/v", None, "is on ext4"),
    ("project", "/mnt/ext/v", fails("repquota: Not all specified mountpoints are using quota."),
     "Not all specified mountpoints are using quota"),
    ("project", "/mnt/nas/v", "missing", "xfs_quota is not installed"),
    ("bogus", "/mnt/nas/v", None, "choose one of scan, project, auto, xfs, ext4"),
])
def test_asking_for_project_quotas_where_there_are_none_is_refused(mode, path, run, message):
    if run == "missing":
        def run(argv):
            raise FileNotFoundError(2, "No such file or directory", argv[0])
    with pytest.raises(QuotaConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose_backend(mode, path, mountinfo_text=MOUNTINFO, run=run or (lambda argv: ""))


def test_this_machine_falls_back_to_scan(tmp_path):
    """The real probe here (no quota support in this kernel): auto → scan, with why."""
    backend, why = choose_backend("auto", str(tmp_path))
    assert isinstance(backend, ScanQuota) and why.startswith("auto: scan ("), why


# --- the service with project quotas (the quota tools faked, their output recorded) ----


class FakeXfs:
    """xfs_quota as the service drives it: remembers projects and limits, and
    answers the report in XFS_REPORT's format with usage the test sets."""

    def __init__(self):
        self.calls, self.paths, self.limits, self.used = [], {}, {}, {}

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0] != "xfs_quota":  # this "machine" has XFS tools only
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        assert argv[1:3] == ["-x", "-c"], argv
        words = argv[3].split()
        if words[0] == "project":  # project -s -p PATH ID
            self.paths[int(words[4])] = words[3]
            return ""
        if words[0] == "limit":  # limit -p bhard=Nk ihard=N ID
            self.limits[int(words[-1])] = (words[2], words[3])
            return ""
        assert words[0] == "report", argv
        return "".join(f"#{pid} {kib} 0 0 00 [--------] {files} 0 0 00 [--------]\n"
                       for pid, (kib, files) in self.used.items())


@pytest.fixture
def fake_xfs(tmp_path, monkeypatch):
    fake = FakeXfs()
    monkeypatch.setattr(quota, "run_command", fake)
    monkeypatch.setattr(quota, "read_mountinfo", lambda: MOUNTINFO + (
        f"200 29 8:64 / {tmp_path}/hosts/local rw,noatime - xfs /dev/sdf rw,attr2,inode64,prjquota\n"))
    return fake


@pytest.fixture
def svc_config(fake_xfs, tmp_path):
    # local: project (XFS, faked); nas2: auto on this machine's filesystem → scan
    return {"quota_backend": "auto", "storage_hosts": {
        "local": {"path": str(tmp_path / "hosts" / "local"), "default": True, "quota_backend": "project"},
        "nas2": {"path": str(tmp_path / "hosts" / "nas2"), "groups": ["ml"]}}}


def test_service_uses_project_quotas_where_the_filesystem_has_them(svc, fake_xfs, tmp_path):
    hosts = {h["name"]: h["quota"] for h in svc.call("admin", "GET", "/storage/hosts").json()["hosts"]}
    assert hosts["local"] == {"backend": "xfs", "enforced_by": "filesystem",
                              "why": f"project: xfs project quotas on {tmp_path}/hosts/local"}
    assert hosts["nas2"] == {"backend": "scan", "enforced_by": "service",
                             "why": "auto: scan (repquota is not installed)"}  # / is ext4 in MOUNTINFO

    vf = svc.create("alice", "data")
    pid = project_id(vf["id"])
    path = fake_xfs.paths[pid]  # the new directory was put into its project at once
    assert path.startswith(f"{tmp_path}/hosts/local/") and path.endswith(vf["id"])
    assert fake_xfs.limits[pid] == ("bhard=0k", "ihard=0")  # no limit yet

    r = svc.call("admin", "PUT", f"/quotas/vfolder/{vf['id']}", json={"bytes": 10 * 1024 * 1024, "files": 1000})
    assert r.status_code == 200, r.text
    assert fake_xfs.limits[pid] == ("bhard=10240k", "ihard=1000")  # the kernel enforces it

    # usage comes from the quota report, not from a walk of the directory
    fake_xfs.used[pid] = (2048, 7)
    svc.service.manager.quotas["local"].report_ttl = 0
    svc.run(svc.service.scan, vf["id"])
    u = svc.call("alice", "GET", f"/vfolders/{vf['id']}/usage").json()
    assert (u["bytes"], u["files"]) == (2048 * 1024, 7)

    # a vfolder on the scan host never calls the tools
    before = len(fake_xfs.calls)
    other = svc.create("alice", "elsewhere", host="nas2")
    svc.run(svc.service.scan, other["id"])
    assert len(fake_xfs.calls) == before

    # a clone's copy joins its own project when it is ready
    r = svc.call("alice", "POST", f"/vfolders/{vf['id']}/clone", json={"name": "copy"})
    assert r.status_code == 202
    cid = project_id(r.json()["id"])
    deadline = __import__("time").monotonic() + 10
    while svc.call("alice", "GET", f"/vfolders/{r.json()['id']}").json()["state"] != "ready":
        assert __import__("time").monotonic() < deadline
    assert fake_xfs.paths[cid].endswith(r.json()["id"])


def test_a_refused_limit_changes_nothing(svc, fake_xfs):
    vf = svc.create("alice", "data")

    def refuse(argv):
        if "limit" in argv[3]:
            raise subprocess.CalledProcessError(1, argv, "", "xfs_quota: cannot set limits: Operation not permitted\n")
        return ""

    svc.service.manager.quotas["local"].run = refuse
    r = svc.call("admin", "PUT", f"/quotas/vfolder/{vf['id']}", json={"bytes": 1024, "files": None})
    assert r.status_code == 503 and "Operation not permitted" in r.json()["error"], r.text
    assert svc.call("admin", "GET", f"/quotas/vfolder/{vf['id']}").json()["bytes"] is None
