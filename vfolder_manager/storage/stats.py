"""I/O statistics of storage hosts, sampled in the background.

- NFS mounts: ``/proc/self/mountstats`` (format: the kernel's
  fs/nfs/super.c nfs_show_stats and net/sunrpc/stats.c; parsed the same way as
  prometheus/procfs mountstats.go). Per-operation lines are
  ``OP: ops transmissions major_timeouts bytes_sent bytes_recv queue_ms rtt_ms execute_ms``.
- anything else: ``/proc/diskstats`` through psutil, for the block device that
  holds the directory (all disks when it has none, e.g. overlayfs).

:func:`rates` turns two samples into the served shape: ``iops_read/write``
(operations per second), ``io_bytes_read/write`` (bytes per second) and
``io_usec_read/write`` (mean latency per operation, microseconds).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Counters:
    """Cumulative I/O counters of one storage host at time ``t`` (monotonic s)."""

    t: float
    read_ops: int = 0
    write_ops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    read_ms: float = 0.0  # total time spent on reads
    write_ms: float = 0.0
    source: str = ""


def parse_mountstats(text: str) -> dict[str, dict]:
    """``/proc/self/mountstats`` → {mountpoint: {"fstype", "device", "ops": {OP: [8 ints]}}}
    for the NFS mounts (other mounts carry no statistics)."""
    mounts: dict[str, dict] = {}
    current = None
    in_ops = False
    for line in text.splitlines():
        if line.startswith("device "):
            # device SERVER:/export mounted on /mnt/nas with fstype nfs4 statvers=1.1
            words = line.split()
            try:
                mp = words[words.index("on") + 1]
                fstype = words[words.index("fstype") + 1]
            except (ValueError, IndexError):
                current = None
                continue
            if fstype.startswith("nfs"):
                current = mounts[mp] = {"device": words[1], "fstype": fstype, "ops": {}}
            else:
                current = None
            in_ops = False
            continue
        if current is None:
            continue
        s = line.strip()
        if s.startswith("per-op statistics"):
            in_ops = True
            continue
        if in_ops and ":" in s:
            op, _, rest = s.partition(":")
            nums = rest.split()
            if op.isupper() and nums and all(n.isdigit() for n in nums):
                current["ops"][op] = [int(n) for n in nums[:8]] + [0] * (8 - len(nums[:8]))
    return mounts


def nfs_counters(mount: dict, t: float) -> Counters:
    ops = mount["ops"]
    r = ops.get("READ", [0] * 8)
    w = ops.get("WRITE", [0] * 8)
    return Counters(t, read_ops=r[0], write_ops=w[0], read_bytes=r[4], write_bytes=w[3],
                    read_ms=float(r[7]), write_ms=float(w[7]), source="mountstats")


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def block_device(path: str) -> str | None:
    """The /proc/diskstats name of the device holding ``path`` (None: no block
    device, e.g. overlayfs or tmpfs)."""
    dev = os.stat(path).st_dev
    link = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    if os.major(dev) == 0 or not os.path.exists(link):
        return None
    return os.path.basename(os.path.realpath(link))


def disk_counters(path: str, t: float) -> Counters:
    import psutil

    name = block_device(path)
    per = psutil.disk_io_counters(perdisk=True) or {}
    c = per.get(name) if name else None
    source = f"diskstats:{name}" if c is not None else "diskstats:all"
    if c is None:
        c = psutil.disk_io_counters()
    if c is None:
        return Counters(t, source="none")
    return Counters(t, c.read_count, c.write_count, c.read_bytes, c.write_bytes,
                    float(c.read_time), float(c.write_time), source)


def sample(path: str, mountstats_text: str | None = None) -> Counters:
    t = time.monotonic()
    if mountstats_text is None:
        try:
            with open("/proc/self/mountstats") as f:
                mountstats_text = f.read()
        except OSError:
            mountstats_text = ""
    nfs = parse_mountstats(mountstats_text)
    mp = mount_point(path)
    if mp in nfs:
        return nfs_counters(nfs[mp], t)
    return disk_counters(path, t)


def rates(prev: Counters, cur: Counters) -> dict:
    dt = max(cur.t - prev.t, 1e-9)

    def per_s(a, b):
        return max(b - a, 0) / dt

    def usec(ms_a, ms_b, ops_a, ops_b):
        ops = ops_b - ops_a
        return (ms_b - ms_a) * 1000.0 / ops if ops > 0 else 0.0

    return {
        "iops_read": per_s(prev.read_ops, cur.read_ops),
        "iops_write": per_s(prev.write_ops, cur.write_ops),
        "io_bytes_read": per_s(prev.read_bytes, cur.read_bytes),
        "io_bytes_write": per_s(prev.write_bytes, cur.write_bytes),
        "io_usec_read": usec(prev.read_ms, cur.read_ms, prev.read_ops, cur.read_ops),
        "io_usec_write": usec(prev.write_ms, cur.write_ms, prev.write_ops, cur.write_ops),
    }


def used_percent(used: int, free: int) -> float:
    """How full a disk is, as ``df`` says it (its Use%): used / (used + what users
    may still write). Blocks reserved for root count in neither, so a disk whose
    users cannot write any more reads 100%. The one definition that the admin
    panel's Storage tab and the lab panel both show."""
    return round(100.0 * used / (used + free), 1) if used + free else 0.0


def capacity(path: str) -> dict:
    """The storage host's disk as ``df`` reports it: size (all blocks), used,
    free (available to users, ``df``'s Avail) and used_percent (``df``'s Use%)."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    return {"capacity_bytes": total, "free_bytes": free, "used_bytes": used,
            "used_percent": used_percent(used, free),
            "files_total": st.f_files, "files_free": st.f_favail}
