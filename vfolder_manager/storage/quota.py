"""Quota backends: how a storage host measures (and, where the filesystem can,
enforces) a vfolder's usage.

- :class:`ScanQuota` (the default, and the only one this project's machines can
  run: their kernel has no filesystem quotas): usage measured by the ptools
  ``du`` engine; the service refuses uploads and mounts read-only.
- :class:`ProjectQuota`: XFS (``xfs_quota``) or ext4 (``setquota -P`` /
  ``repquota -P``) project quotas, one project id per vfolder. Its command lines
  are built and its reports parsed by pure functions, tested against recorded
  outputs (tests/vfolders/test_quota_backend.py) — not against a live kernel.

Which one a storage host gets (:func:`choose_backend`): its ``quota_backend``
(else ``VFolderService.quota_backend``) is ``scan``, ``project`` (XFS or ext4,
found from the filesystem type; refused at start-up when the probe fails),
``xfs``/``ext4`` (that kind; probed too) or ``auto`` (project quotas when the
filesystem is XFS or ext4 *and* the probe works, else scan, with the reason in
``GET storage/hosts``). The probe is the report command itself: it fails when the
tools are missing, quotas are off, or we are not root. NFS mounts of a NAS are
scanned: project quotas are set on the NAS, not through its clients.
"""

from __future__ import annotations

import os
import subprocess
import time
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
    def __init__(self, threads: int | None = None):  # None: by filesystem type
        self.threads = threads

    def usage(self, path: str, project: int) -> Usage:
        import os

        from ..ptools import api

        du = api.du(path, threads=self.threads)
        return Usage(du.bytes - os.lstat(path).st_size, du.files)


def project_id(vid: str) -> int:
    """A stable 31-bit project id from a vfolder id (never 0)."""
    return int(vid[:8], 16) % 0x7FFFFFFF or 1


def run_command(argv: list[str]) -> str:
    """Run a quota tool; its stdout (CalledProcessError/OSError when it fails)."""
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@dataclass
class ProjectQuota(QuotaBackend):
    kind: str  # "xfs" | "ext4"
    mountpoint: str
    run: Callable[[list[str]], str] = run_command

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

    #: seconds a report is reused: a scan of every vfolder runs the tool once, not once per vfolder
    report_ttl: float = 5.0

    def usage(self, path: str, project: int) -> Usage:
        now = time.monotonic()
        cached = self.__dict__.get("_report")
        if cached is None or now - cached[0] > self.report_ttl:
            cached = self.__dict__["_report"] = (now, self.parse_report(self.kind, self.run(self.report_command())))
        return cached[1].get(project, Usage())

    def set_limit(self, path: str, project: int, max_bytes: int | None, max_files: int | None) -> None:
        for argv in self.setup_commands(path, project) + self.limit_commands(project, max_bytes, max_files):
            self.run(argv)


# --- choosing a backend -----------------------------------------------------------

MODES = ("scan", "project", "auto", "xfs", "ext4")


@dataclass(frozen=True)
class MountEntry:
    mountpoint: str
    fstype: str
    source: str
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return field.encode().decode("unicode_escape") if "\\" in field else field


def parse_mountinfo(text: str) -> list[MountEntry]:
    """``/proc/self/mountinfo`` (proc(5)): ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS
    [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS``."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if "-" not in words:
            continue
        sep = words.index("-")
        if sep < 5 or len(words) < sep + 3:
            continue
        out.append(MountEntry(_unescape(words[4]), words[sep + 1], _unescape(words[sep + 2]),
                              tuple(words[sep + 3].split(",")) if len(words) > sep + 3 else ()))
    return out


def read_mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def mount_entry(path: str, mountinfo_text: str | None = None) -> MountEntry | None:
    """The mount that holds ``path`` (the last mounted of the longest matching mount point)."""
    if mountinfo_text is None:
        mountinfo_text = read_mountinfo()
    path = os.path.realpath(path)
    best = None
    for m in parse_mountinfo(mountinfo_text):
        mp = m.mountpoint.rstrip("/") or "/"
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/"):
                best = m
    return best


class QuotaConfigError(ValueError):
    pass


def probe_project(kind: str, mount: MountEntry, run: Callable[[list[str]], str]) -> ProjectQuota | str:
    """A working ProjectQuota for the mount, or why not (a sentence)."""
    if kind == "xfs" and not {"prjquota", "pquota", "pqnoenforce"} & set(mount.super_options):
        return f"XFS at {mount.mountpoint} is mounted without prjquota"
    backend = ProjectQuota(kind, mount.mountpoint, run=run)
    try:
        backend.parse_report(kind, run(backend.report_command()))
    except FileNotFoundError as e:
        return f"{e.filename or 'the quota tool'} is not installed"
    except subprocess.CalledProcessError as e:
        why = (e.stderr or e.stdout or "").strip().splitlines()
        return f"{' '.join(e.cmd[:1])} failed on {mount.mountpoint}: {why[-1] if why else f'exit {e.returncode}'}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"the project quota probe failed: {e}"
    return backend


def choose_backend(mode: str, path: str, *, mountinfo_text: str | None = None,
                   run: Callable[[list[str]], str] | None = None, scan_threads: int | None = None
                   ) -> tuple[QuotaBackend, str]:
    """(backend, why) for a storage host at ``path``; QuotaConfigError when
    ``mode`` asks for project quotas that the filesystem cannot give. ``run``
    (default :func:`run_command`) runs the quota tools."""
    run = run or (lambda argv: run_command(argv))  # looked up at call time (tests replace it)
    if mode not in MODES:
        raise QuotaConfigError(f"quota backend {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "scan":
        return ScanQuota(scan_threads), "configured: scan"
    mount = mount_entry(path, mountinfo_text)
    fstype = mount.fstype if mount else "unknown"
    kind = mode if mode in ("xfs", "ext4") else fstype
    if kind not in ("xfs", "ext4") or (mode in ("xfs", "ext4") and fstype != mode):
        why = f"{path} is on {fstype}; project quotas need XFS or ext4"
        if fstype.startswith("nfs"):
            why += " on this machine (for an NFS mount, set them on the NAS)"
        result: ProjectQuota | str = why
    else:
        result = probe_project(kind, mount, run)
    if isinstance(result, ProjectQuota):
        return result, f"{mode}: {kind} project quotas on {mount.mountpoint}"
    if mode == "auto":
        return ScanQuota(scan_threads), f"auto: scan ({result})"
    raise QuotaConfigError(f"quota backend {mode!r} for {path}: {result}")
