"""The storage numbers both panels show agree with ``df`` (issue #19: the lab panel
said 12% used and the admin Storage tab 72% of the same disk)."""

from __future__ import annotations

import subprocess

from vfolder_manager.storage.stats import capacity, used_percent


def test_used_percent_is_dfs_use_percent():
    assert used_percent(30, 70) == 30.0
    assert used_percent(0, 0) == 0.0
    # root-reserved blocks count in neither: a disk users cannot write to is full
    assert used_percent(95, 0) == 100.0


def test_capacity_agrees_with_df(tmp_path):
    """Size, used, available and Use% as ``df`` prints them for the same path."""
    got = capacity(str(tmp_path))
    out = subprocess.run(["df", "-B1", "--output=size,used,avail,pcent", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()[1].split()
    size, used, avail, pcent = int(out[0]), int(out[1]), int(out[2]), int(out[3].rstrip("%"))
    # the disk may change between the two reads by what others write meanwhile
    slack = 64 << 20
    assert got["capacity_bytes"] == size
    assert abs(got["used_bytes"] - used) <= slack and abs(got["free_bytes"] - avail) <= slack
    # df rounds Use% up to a whole percent
    assert pcent - 1 <= got["used_percent"] <= pcent, (got, out)
