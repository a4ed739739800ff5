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
