"""Whose GPU processes: NVML's host pids mapped to allocations, and each
allocation's own use of its devices.

NVML names a process by its pid in the host's pid namespace; a session in a
container sees other pids (NVIDIA/nvidia-docker #1483), so only the host's agent
can tell whose a process is. It reads ``/proc/PID/cgroup``:

- a Docker container's cgroup path ends in its id (cgroup v1 and v2, the
  ``cgroupfs`` driver's ``/docker/ID`` and the systemd driver's
  ``…/docker-ID.scope``); the container's ``gpuhub.allocation`` label names the
  allocation (the label, set by the spawner, is the proof, not the container's
  environment);
- a cgroup path component ``gpuhub-ID`` (``.scope`` / ``.slice``) names the
  allocation directly, for sites that start sessions in a unit of their own
  (``systemd-run --scope --unit gpuhub-ID``);
- else a local session's process (spawner/local.py: a process tree in its own
  session, whose kernels start sessions of their own, so neither the session id
  nor a cgroup marks it) is known by ``GPUHUB_ALLOCATION`` in its environment
  (``/proc/PID/environ``, inherited by every process the server starts), taken
  only from a process that runs as the allocation's user where that user has an
  account here.

The parsing functions are pure (over the files' text); ``read_owner`` is the one
that reads ``/proc``.
"""

from __future__ import annotations

import functools
import pwd
import re
from collections.abc import Mapping

DOCKER_ID = re.compile(r"(?:^|/)docker[-/]([0-9a-f]{64})(?:\.scope)?(?=/|$)")
SCOPE = re.compile(r"(?:^|/)gpuhub-([A-Za-z0-9_]+)(?:\.scope|\.slice)?(?=/|$)")
ENV = b"GPUHUB_ALLOCATION="


def _paths(cgroup: str) -> list[str]:
    """The cgroup paths of a /proc/PID/cgroup text (``ID:controllers:path`` lines)."""
    return [line.split(":", 2)[2] for line in cgroup.splitlines() if line.count(":") >= 2]


def container_id(cgroup: str) -> str | None:
    """The Docker container a process runs in (its 64-hex id), from its
    /proc/PID/cgroup text; the innermost one when containers nest."""
    for path in _paths(cgroup):
        found = DOCKER_ID.findall(path)
        if found:
            return found[-1]
    return None


def scope_allocation(cgroup: str) -> str | None:
    """The allocation a ``gpuhub-ID`` cgroup component names, if any."""
    for path in _paths(cgroup):
        found = SCOPE.findall(path)
        if found:
            return found[-1]
    return None


def environ_allocation(environ: bytes | None) -> str | None:
    """``GPUHUB_ALLOCATION`` of a /proc/PID/environ text (NUL-separated)."""
    for entry in (environ or b"").split(b"\0"):
        if entry.startswith(ENV):
            return entry[len(ENV):].decode(errors="replace") or None
    return None


def allocation_of(cgroup: str, containers: Mapping[str, str],
                  environ: bytes | None = None, home: str | None = None) -> str | None:
    """The allocation a process belongs to: its container's label (``containers``:
    container id → allocation id), else its cgroup's ``gpuhub-ID``, else its
    environment's GPUHUB_ALLOCATION. A process in a container that is not a
    gpuhub session's belongs to none (its environment is not evidence).
    ``home``: the container the agent itself runs in, if any; a process in it
    is one of the agent's host processes, not a container's."""
    cid = in_container(cgroup, home)
    if cid is not None:
        return containers.get(cid)
    return scope_allocation(cgroup) or environ_allocation(environ)


def in_container(cgroup: str, home: str | None = None) -> str | None:
    """The container a process runs in, None when it runs on the host, or in
    ``home``, the container the agent itself runs in (an agent deployed in a
    container, or a CI job's: its own processes and local sessions are the host's
    to it)."""
    cid = container_id(cgroup)
    return None if cid is not None and cid == home else cid


@functools.cache
def own_container() -> str | None:
    """The container this process runs in (from /proc/self/cgroup), if any; read
    once: a process does not change containers."""
    try:
        with open("/proc/self/cgroup") as f:
            return container_id(f.read())
    except OSError:
        return None


def _uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_owner(pid: int, containers: Mapping[str, str], users: Mapping[str, str],
               home: str | None = None) -> str | None:
    """The allocation of host process ``pid`` (None: none, or it cannot be told);
    ``users``: allocation id → its user, to check an environment's claim against
    the account the process runs as; ``home``: the agent's own container
    (``own_container()``). Blocking (reads /proc)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            cgroup = f.read()
    except OSError:
        return None
    aid = allocation_of(cgroup, containers, home=home)
    if aid is not None or in_container(cgroup, home) is not None:
        return aid
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            aid = environ_allocation(f.read())
    except OSError:
        return None
    if aid is None:
        return None
    user = users.get(aid)
    if user is None:
        return None  # not an allocation this host holds
    try:
        account = pwd.getpwnam(user).pw_uid
    except KeyError:
        return aid  # sessions run as the hub's own account (no account per user)
    return aid if _uid(pid) == account else None


def allocation_use(samples: list[dict], owners: Mapping[int, str | None],
                   holds: Mapping[str, list[str]]) -> dict[str, dict]:
    """Each allocation's own use, from one sample of the devices (the
    NVMLSampler's, processes with ``memory_mb`` and ``sm_util``): its processes'
    memory (MB, summed) and SM utilisation (%, summed per device, at most 100;
    the allocation's figure is its busiest device's, as idle reclaim judges a
    share by its busiest device). ``owners``: pid → allocation; ``holds``: the
    allocations this host runs → the devices they hold (each is reported, 0
    when none of its processes computes). ``complete`` is false when a device
    it holds runs a process the agent could not attribute, which may be its own:
    then its figure is a lower bound."""
    per: dict[str, dict[str, dict]] = {aid: {} for aid in holds}
    unattributed: set[str] = set()
    no_util: set[str] = set()
    for d in samples:
        uuid = d.get("uuid")
        if not d.get("process_utilization", True):
            no_util.add(uuid)
        for p in d.get("processes") or ():
            aid = owners.get(p.get("pid"))
            if aid is None:
                unattributed.add(uuid)
                continue
            slot = per.setdefault(aid, {}).setdefault(uuid, {"utilization_gpu": 0.0, "memory_used_mb": 0.0,
                                                               "processes": 0})
            slot["utilization_gpu"] += p.get("sm_util") or 0
            slot["memory_used_mb"] += p.get("memory_mb") or 0
            slot["processes"] += 1
    sampled = {d.get("uuid") for d in samples}
    out = {}
    for aid, devices in per.items():
        for uuid in holds.get(aid, ()):
            if uuid in sampled:
                devices.setdefault(uuid, {"utilization_gpu": 0.0, "memory_used_mb": 0.0, "processes": 0})
        rows = []
        for uuid, s in sorted(devices.items()):
            util = None if uuid in no_util else min(100.0, float(s["utilization_gpu"]))
            rows.append({"uuid": uuid, "utilization_gpu": util,
                         "memory_used_mb": float(s["memory_used_mb"]), "processes": s["processes"]})
        utils = [r["utilization_gpu"] for r in rows]
        out[aid] = {
            "utilization_gpu": None if any(u is None for u in utils) else max(utils, default=0.0),
            "memory_used_mb": sum(r["memory_used_mb"] for r in rows),
            "processes": sum(r["processes"] for r in rows),
            "complete": not any(r["uuid"] in unattributed for r in rows)
                        and not any(u in unattributed for u in holds.get(aid, ())),
            "devices": rows,
        }
    return out
