"""Quota backends: how a storage host measures (and, where the filesystem can,
enforces) a vfolder's usage.

- :class:`ScanQuota` (the default, and the only one this project's machines can
  run: their kernel has no filesystem quotas): usage measured by the ptools
  ``du`` engine; the service refuses uploads and mounts read-only.
- :class:`ProjectQuota`: XFS (``xfs_quota``) or ext4 (``setquota -P`` /
  ``repquota -P``) project quotas, one project id per vfolder. Its command lines
  are built and its reports parsed by pure functions, tested against recorded
  outputs (tests/vfolders/test_quota_backend.py) — not against a live kernel.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Callable

from ..core.quota import Usage


class QuotaBackend:
    """usage(path, project) → Usage; set_limit(path, project, bytes, files)."""

    enforced_by_filesystem = False

    def usage(self, path: str, project: int) -> Usage:
        raise NotImplementedError

    def set_limit(self, path: str, project: int, max_bytes: int | None, max_files: int | None) -> None:
        """Filesystem enforcement; the scan backend enforces in the service."""


class ScanQuota(QuotaBackend):
    def __init__(self, threads: int = 8):
        self.threads = threads

    def usage(self, path: str, project: int) -> Usage:
        import os

        from ..ptools import api

        du = api.du(path, threads=self.threads)
        return Usage(du.bytes - os.lstat(path).st_size, du.files)


def project_id(vid: str) -> int:
    """A stable 31-bit project id from a vfolder id (never 0)."""
    return int(vid[:8], 16) % 0x7FFFFFFF or 1


@dataclass
class ProjectQuota(QuotaBackend):
    kind: str  # "xfs" | "ext4"
    mountpoint: str
    run: Callable[[list[str]], str] = lambda argv: subprocess.run(
        argv, check=True, capture_output=True, text=True).stdout

    enforced_by_filesystem = True

    def setup_commands(self, path: str, project: int) -> list[list[str]]:
        if self.kind == "xfs":
            return [["xfs_quota", "-x", "-c", f"project -s -p {path} {project}", self.mountpoint]]
        return [["chattr", "-R", "+P", "-p", str(project), path]]

    def limit_commands(self, project: int, max_bytes: int | None, max_files: int | None) -> list[list[str]]:
        kib = 0 if max_bytes is None else -(-max_bytes // 1024)
        files = 0 if max_files is None else max_files
        if self.kind == "xfs":
            return [["xfs_quota", "-x", "-c",
                     f"limit -p bhard={kib}k ihard={files} {project}", self.mountpoint]]
        return [["setquota", "-P", str(project), "0", str(kib), "0", str(files), self.mountpoint]]

    def report_command(self) -> list[str]:
        if self.kind == "xfs":
            return ["xfs_quota", "-x", "-c", "report -p -b -i -N -n", self.mountpoint]
        return ["repquota", "-P", "-n", "-p", self.mountpoint]

    @staticmethod
    def parse_report(kind: str, text: str) -> dict[int, Usage]:
        """project id → Usage (bytes from 1 KiB blocks) from a report."""
        out = {}
        for line in text.splitlines():
            words = line.split()
            if not words or not words[0].startswith("#"):
                continue
            try:
                pid = int(words[0][1:])
                # xfs: #ID used soft hard warn [grace] used soft hard warn [grace]
                # ext4: #ID -- used soft hard grace used soft hard grace
                nums = [int(w) for w in words[1:] if w.isdigit()]
                blocks, inodes = nums[0], nums[4]
            except (ValueError, IndexError):
                continue
            out[pid] = Usage(blocks * 1024, inodes)
        return out

    def usage(self, path: str, project: int) -> Usage:
        return self.parse_report(self.kind, self.run(self.report_command())).get(project, Usage())

    def set_limit(self, path: str, project: int, max_bytes: int | None, max_files: int | None) -> None:
        for argv in self.setup_commands(path, project) + self.limit_commands(project, max_bytes, max_files):
            self.run(argv)
