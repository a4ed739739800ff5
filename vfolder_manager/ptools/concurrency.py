"""How many requests to keep in flight, chosen from the filesystem type.

On a network filesystem every metadata call is a round trip, so throughput
grows with the number of calls in flight until the server saturates; on a
local disk with a warm cache the CPU is the limit and more threads than cores
only add contention.  statfs(2) tells the two apart by the f_type magic.
"""
from __future__ import annotations

import os
from collections import namedtuple

TYPE_CHECKING = False   # typing is not imported at run time: it costs the CLIs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Iterable

from . import _core

#: statfs f_type magic numbers of filesystems where calls cost a round trip.
NETWORK_FS: dict[int, str] = {
    0x6969: "nfs",
    0x65735546: "fuse",
    0x0BD00BD0: "lustre",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x517B: "smb",
    0x00C36400: "ceph",
    0x47504653: "gpfs",
    0x01021997: "9p",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x013111A8: "ibrix",
    0x19830326: "fhgfs",
    0x61756673: "aufs",
}

NETWORK_THREADS = 256   # requests in flight on a NAS: round trips, not CPU, are the limit
NETWORK_CHUNK = 16      # entries of one directory handed to a thread at a time
LOCAL_CHUNK = 512       # only huge local directories are split


class Plan(namedtuple("Plan", "fs network threads max_inflight chunk")):
    """fs (name), network (bool), threads, max_inflight, chunk."""
    __slots__ = ()


def fs_type(path: bytes) -> tuple[int, str]:
    """Magic and a short name for the filesystem holding path (or its parent)."""
    probe = path
    while True:
        try:
            magic = _core.fs_magic(probe)
            return magic, NETWORK_FS.get(magic, f"local:{magic:#x}")
        except OSError:
            parent = os.path.dirname(probe.rstrip(b"/")) or b"."
            if parent == probe:
                return 0, "unknown"
            probe = parent


def plan_for(paths: Iterable[bytes], threads: int | None = None, max_inflight: int | None = None) -> Plan:
    """Concurrency for a walk over paths; explicit knobs always win."""
    magic, name = 0, "unknown"
    network = False
    for p in paths:
        magic, name = fs_type(p)
        network = magic in NETWORK_FS
        if network:
            break
    cores = os.cpu_count() or 2
    if threads is None:
        threads = NETWORK_THREADS if network else max(2, min(cores, 16))
    if max_inflight is None or max_inflight <= 0:
        max_inflight = threads
    return Plan(fs=name, network=network, threads=max(1, threads), max_inflight=max_inflight,
                chunk=NETWORK_CHUNK if network else LOCAL_CHUNK)
