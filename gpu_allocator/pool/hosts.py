"""GPU hosts: registration (an agent's, or the inventory's and NVML's sync),
heartbeats, fencing of sessions the allocator does not hold, drain, lost hosts,
and the MPS daemon state of fractional shares.

What takes capacity (a host lost or drained) is applied to memory before the
commit and undone if it fails; what gives it back (a host registered or
undrained) after the commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..core.fencing import fence
from ..core.model import Allocation, AllocationState, Host, HostState
from ..core.pools import DEFAULT
from ..core.topology import score_matrix
from ..store.ledger import DeleteHost, Finish, HostRecord, PutHost, SetHost
from .commit import GroupCommit
from .errors import HostConflict
from .grants import Grants
from .metrics import PoolMetrics
from .state import LiveState, when

#: fenced sessions kept per host (HostInfo.fenced)
FENCE_LOG = 50


def with_details(host: Host, details: dict | None) -> Host:
    """The host as its agent (or the inventory) described it: the link-score
    matrix of its topology (placement prefers well-connected sets of devices;
    without it, the islands), whether it can enforce fractional shares (CUDA
    MPS), and its host pools (``details["pools"]``, where it names some)."""
    details = details or {}
    matrix = score_matrix(details.get("topology"), len(host.devices))
    if matrix is not None:
        host = replace(host, topology=matrix)
    if details.get("pools"):
        host = replace(host, pools=tuple(sorted(details["pools"])))
    return replace(host, fractions=details.get("mps_available", True) is not False)


def pools_details(host: Host, details: dict | None) -> dict | None:
    """``details`` with the host's pools, as the ledger keeps them (a host in
    "default" only keeps none)."""
    if host.pools == (DEFAULT,):
        return details
    return {**(details or {}), "pools": list(host.pools)}


@dataclass
class HostInfo(HostRecord):
    """A host's record plus what its agent last reported (memory only)."""

    usage: dict | None = None
    unknown: list[str] = field(default_factory=list)
    mps: dict | None = None
    #: the last FENCE_LOG sessions fenced on this host (newest last):
    #: {"allocation", "at", "reason", "stopped"} — "stopped" is when the agent's
    #: report stopped listing it (None: still running)
    fenced: deque = field(default_factory=lambda: deque(maxlen=FENCE_LOG))


class Hosts:
    """The hosts' records beside the PoolState's hosts, and what changes them."""

    def __init__(self, live: LiveState, commit: GroupCommit, grants: Grants, metrics: PoolMetrics,
                 log: logging.Logger, changed: Callable[[], None]):
        self.live = live
        self.commit = commit
        self.grants = grants
        self.metrics = metrics
        self.log = log
        #: called when a host's capacity may have come back (the queue's kick)
        self.changed = changed
        #: host name → its record and its agent's last report
        self.info: dict[str, HostInfo] = {}

    def _record(self, name: str) -> HostInfo:
        return self.info.setdefault(name, HostInfo())

    async def sync(self, hosts: list[Host], source: str) -> None:
        """Make the hosts of ``source`` (inventory, nvml) match ``hosts``. Hosts that
        disappeared are removed unless they carry live shares (then they are kept
        as lost); hosts whose agent registered them stay the agent's."""
        state = self.live.state
        wanted = {h.name: h for h in hosts}
        ops, lost, removed, put = [], [], [], []
        for name in list(state.hosts):
            rec = self.info.get(name) or HostInfo()
            if rec.source != source or name in wanted:
                continue
            if state.by_host.get(name):
                ops.append(SetHost(name, HostState.LOST, rec.drained))
                lost.append(name)
            else:
                ops.append(DeleteHost(name))
                removed.append(name)
        for h in hosts:
            rec = self.info.get(h.name)
            if rec is not None and rec.source == "agent" and source != "agent":
                continue
            drained = rec.drained if rec else False
            if h.state != HostState.EXTERNAL:  # another scheduler's host stays its own
                h = replace(h, state=HostState.DRAINED if drained else HostState.UP)
            self._check_devices(h)
            ops.append(PutHost(h, source, drained=drained, details=pools_details(h, None)))
            put.append((h, drained))
        for name in lost:
            state.set_host_state(name, HostState.LOST)
        await self.commit.commit(ops)
        for name in removed:
            state.remove_host(name)
            self.info.pop(name, None)
        for h, drained in put:
            state.put_host(h)
            rec = self._record(h.name)
            rec.source, rec.drained = source, drained
        self.changed()

    def _check_devices(self, host: Host) -> None:
        state = self.live.state
        for d in host.devices:
            other = state.devices.get(d.uuid)
            if other is not None and other.host != host.name:
                raise HostConflict(f"device {d.uuid} is already registered by host {other.host!r}")
        old = state.hosts.get(host.name)
        if old is not None:
            held = {s.device_uuid for a in state.by_host.get(host.name, {}).values() for s in a.shares}
            gone = held - {d.uuid for d in host.devices}
            if gone:
                raise HostConflict(
                    f"host {host.name}: devices {', '.join(sorted(gone))} carry live shares "
                    "and are missing from the registration"
                )

    def view(self, name: str, running: list[str], now: float | None = None) -> dict:
        """What the allocator holds on a host, and which of the allocation ids the
        agent says it runs the allocator does not hold there (``unknown``: the
        agent stops them — fencing). A host that runs such sessions takes no
        placements until a report shows none (core.fencing); heartbeats change
        that state in memory only (the ledger's host state is the registration's;
        a restarted allocator re-derives it from the next heartbeat)."""
        now = time.time() if now is None else now
        pool = self.live.state
        held = sorted(pool.by_host.get(name, {}).values(), key=lambda a: (a.created, a.id))
        rec = self._record(name)
        host = pool.hosts[name]
        state, unknown = fence([a.id for a in held], running, drained=rec.drained)
        if host.state != HostState.LOST and state != host.state:
            pool.set_host_state(name, state)
            self.log.warning(
                "host %s is %s: %s", name, state,
                "it runs sessions the allocator does not hold there; no placements until "
                "its agent has stopped them" if state == HostState.FENCING
                else "its agent reports nothing unaccounted any more",
            )
        self._note_fenced(name, unknown, now)
        rec.unknown = unknown
        return {"state": pool.hosts[name].state, "shares": held, "unknown": unknown,
                "fenced": [e for e in rec.fenced if e["allocation"] in unknown]}

    def _note_fenced(self, name: str, unknown: list[str], now: float) -> None:
        """Keep the host's fence log: a new entry for each newly unknown session,
        "stopped" for those no longer reported."""
        rec = self._record(name)
        open_ = {e["allocation"]: e for e in rec.fenced if e["stopped"] is None}
        for aid, e in open_.items():
            if aid not in unknown:
                e["stopped"] = now
                self.log.info("host %s: fenced allocation %s is stopped", name, aid)
        for aid in unknown:
            if aid not in open_:
                entry = {"allocation": aid, "at": now, "stopped": None,
                         "reason": f"runs on {name}, where the allocator does not hold it"}
                rec.fenced.append(entry)
                self.log.warning("host %s: fencing allocation %s (%s)", name, aid, entry["reason"])
                asyncio.ensure_future(self._explain(name, entry))

    async def _explain(self, name: str, entry: dict) -> None:
        """Fill in why a fenced session is not held: its allocation's record."""
        try:
            a = await self.grants.get(entry["allocation"])
        except Exception as e:  # the reason stays the generic one
            self.log.debug("cannot read allocation %s: %s", entry["allocation"], e)
            return
        if a is None:
            entry["reason"] = f"allocation unknown to the allocator, running on {name}"
        elif a.state == AllocationState.LOST:
            entry["reason"] = f"lost with the host {a.host} at {when(a.released)}"
        elif a.state == AllocationState.RELEASED:
            entry["reason"] = f"released at {when(a.released)}"
        elif a.state == AllocationState.REVOKED:
            entry["reason"] = f"revoked by an admin at {when(a.released)}"
        elif a.host != name:
            entry["reason"] = f"granted on {a.host}, not on {name}"

    async def register(
        self, host: Host, *, running: list[str], docker: dict | None = None,
        details: dict | None = None, mps: dict | None = None, now: float | None = None,
    ) -> dict:
        """An agent (re)registers its host: up again unless an admin drained it.
        Raises HostConflict."""
        now = time.time() if now is None else now
        self._check_devices(host)
        rec = self.info.get(host.name)
        drained = bool(rec and rec.drained)
        held = self.live.state.by_host.get(host.name, {})
        state, unknown = fence(held, running, drained=drained)
        if mps is not None:
            details = {**(details or {}), "mps_available": mps["available"]}
        details = pools_details(host, details)
        host = with_details(replace(host, state=state), details)
        await self.commit.commit([PutHost(host, "agent", drained, now, docker, details)])
        self._check_devices(host)  # (a concurrent registration may have won)
        self.live.state.put_host(host)
        rec = self._record(host.name)
        rec.source, rec.drained, rec.last_heartbeat = "agent", drained, now
        rec.docker, rec.details, rec.usage, rec.mps = docker, details, None, mps
        view = self.view(host.name, running, now)
        self.changed()
        for e in view["fenced"]:  # the agent logs why: have the reason first
            await self._explain(host.name, e)
        return view

    def heartbeat(self, name: str, *, running: list[str], usage: dict | None,
                  mps: dict | None = None, now: float | None = None) -> dict | None:
        """A heartbeat: memory only, O(this host). None when the host is unknown,
        not an agent's, or lost (the agent must register again)."""
        host = self.live.state.hosts.get(name)
        rec = self.info.get(name)
        if host is None or rec is None or rec.source != "agent" or host.state == HostState.LOST:
            return None
        rec.last_heartbeat = time.time() if now is None else now
        rec.usage = usage
        if mps is not None:
            rec.mps = mps
        return self.view(name, running, rec.last_heartbeat)

    async def set_drained(self, name: str, drained: bool, extra: tuple = ()) -> bool:
        """Drain (no new placements; running allocations untouched) or undrain a
        host. A lost host stays lost (and comes back drained). False: no such host.
        ``extra``: ledger operations written in the same transaction (an audit entry)."""
        pool = self.live.state
        host = pool.hosts.get(name)
        if host is None:
            return False
        rec = self._record(name)
        state = host.state if host.state in (HostState.LOST, HostState.FENCING) else (
            HostState.DRAINED if drained else HostState.UP
        )
        before = (host.state, rec.drained)
        if drained:  # takes capacity: first
            pool.set_host_state(name, state)
            rec.drained = True
        try:
            await self.commit.commit([SetHost(name, state, drained), *extra])
        except BaseException:
            pool.set_host_state(name, before[0])
            rec.drained = before[1]
            raise
        pool.set_host_state(name, state)
        rec.drained = drained
        self.changed()
        return True

    async def mark_lost(self, cutoff: float, now: float | None = None) -> list[tuple[str, list[str]]]:
        """Agent hosts whose last heartbeat is older than ``cutoff`` are lost, in
        one transaction: the host and each of its live allocations (their shares
        are free). Returns [(host, [allocation ids])]."""
        now = time.time() if now is None else now
        pool = self.live.state
        lost = []
        for name, host in pool.hosts.items():
            rec = self.info.get(name)
            if rec is None or rec.source != "agent" or host.state == HostState.LOST:
                continue
            if (rec.last_heartbeat or 0.0) < cutoff:
                lost.append((name, host.state, list(pool.by_host.get(name, {}))))
        if not lost:
            return []
        ops = []
        for name, _, ids in lost:
            pool.set_host_state(name, HostState.LOST)  # no new placements: first
            ops.append(SetHost(name, HostState.LOST, self.info[name].drained))
            ops.extend(Finish(i, AllocationState.LOST, now) for i in ids)
        try:
            await self.commit.commit(ops)
        except BaseException:
            for name, before, _ in lost:
                pool.set_host_state(name, before)
            raise
        for _, _, ids in lost:
            self.metrics.hosts_lost.inc()
            if ids:
                self.metrics.released.labels("lost").inc(len(ids))
            for i in ids:
                self.grants.released(i, now, AllocationState.LOST)
        return [(name, ids) for name, _, ids in lost]

    def mps_state(self, a: Allocation) -> dict | None:
        """For a fractional share on an agent's host: whether the host's MPS daemon
        (which enforces the share's limits) is ``ready``, ``starting`` or
        ``unavailable``, and where its pipes are. None: nothing to wait for (whole
        GPUs, or a declared host without an agent)."""
        rec = self.info.get(a.host)
        if (
            rec is None or rec.source != "agent" or rec.mps is None
            or len(a.shares) != 1 or a.shares[0].units >= self.live.units_per_gpu
        ):
            return None
        if not rec.mps.get("available"):
            state = "unavailable"
        else:
            state = "ready" if rec.mps.get("running") else "starting"
        return {"state": state, "pipe_dir": rec.mps.get("pipe_dir")}

    def oldest_heartbeat(self) -> float | None:
        hosts = self.live.state.hosts
        beats = [
            rec.last_heartbeat or 0.0
            for name, rec in self.info.items()
            if rec.source == "agent" and name in hosts and hosts[name].state != HostState.LOST
        ]
        return min(beats) if beats else None
