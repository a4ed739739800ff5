"""The live pool: the allocator's authoritative, in-memory PoolState, kept in
step with the ledger.

Every decision is made on the event loop against memory; what it changes is
written to the ledger as one short transaction, and several callers' writes
share a transaction when they arrive together (group commit, one writer thread).
A caller is answered only after its commit. The order of memory and commit is
chosen so that memory never promises more than the database holds:

- what *takes* capacity (a grant, a host lost or drained) is applied to memory
  first — later decisions already see it — and undone if the commit fails;
- what *gives* capacity back (a release, a host registered or undrained) is
  applied after the commit.

So a crash at any point loses no granted share (it was committed before the 201)
and never counts one twice (a fresh load is the committed state).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from .core.fencing import fence
from .core.model import Allocation, AllocationState, Host, HostState, Request
from .core.placement import place
from .core.state import PoolState, StateError
from .core.topology import score_matrix
from .store.ledger import DeleteHost, Finish, HostRecord, Insert, Ledger, PutHost, SetHost


def with_details(host: Host, details: dict | None) -> Host:
    """The host as its agent described it: the link-score matrix of its topology
    (placement prefers well-connected sets of devices; without it, the islands),
    and whether it can enforce fractional shares (CUDA MPS)."""
    details = details or {}
    matrix = score_matrix(details.get("topology"), len(host.devices))
    if matrix is not None:
        host = replace(host, topology=matrix)
    return replace(host, fractions=details.get("mps_available", True) is not False)


class HostConflict(RuntimeError):
    """A registration clashes with what another host holds (e.g. a device UUID)."""


class KeyConflict(RuntimeError):
    """An idempotency key that another user's allocation carries."""


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


FENCE_LOG = 50


class LivePool:
    def __init__(self, ledger: Ledger, units_per_gpu: int, log: logging.Logger | None = None):
        self.ledger = ledger
        self.state = PoolState(units_per_gpu)
        self.info: dict[str, HostInfo] = {}
        #: allocation id → the hub server it is for (None: not a hub server's)
        self.hub_server: dict[str, str | None] = {}
        self.log = log or logging.getLogger("gpu-allocator")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="gpu-allocator-db")
        self._reader = ThreadPoolExecutor(2, thread_name_prefix="gpu-allocator-read")
        self._queue: list[tuple[list, asyncio.Future]] = []
        self._flushing = False
        self._pending_keys: dict[str, asyncio.Future] = {}
        #: commits so far and the operations they carried (group commit at work)
        self.commits = 0
        self.committed_ops = 0

    @property
    def units_per_gpu(self) -> int:
        return self.state.units_per_gpu

    # --- loading and committing -----------------------------------------------------

    async def load(self) -> None:
        loaded = await self.read(self.ledger.load)
        state = PoolState(self.units_per_gpu)
        info = {}
        for host, record in loaded.hosts:
            state.put_host(with_details(host, record.details))
            info[host.name] = HostInfo(**vars(record))
        hub_server = {}
        for a, server in loaded.allocations:
            state.grant(a)
            hub_server[a.id] = server
        self.state, self.info, self.hub_server = state, info, hub_server

    async def read(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def commit(self, ops: list) -> None:
        """Write ``ops`` in a transaction (perhaps shared with other callers'),
        returning once it is committed."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((ops, fut))
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush())
        await fut

    async def _write(self, ops: list) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self.ledger.write, ops)
        self.commits += 1
        self.committed_ops += len(ops)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._write([op for ops, _ in batch for op in ops])
                except Exception:
                    if len(batch) == 1:
                        raise
                    # one caller's bad write must not fail the others: alone, each
                    for ops, fut in batch:
                        try:
                            await self._write(ops)
                        except Exception as e:
                            fut.set_exception(e)
                        else:
                            fut.set_result(None)
                    continue
                for _, fut in batch:
                    fut.set_result(None)
        except Exception as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self._flushing = False
            if self._queue:  # arrived while the last write failed
                self._flushing = True
                asyncio.ensure_future(self._flush())

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=False)

    # --- allocations -------------------------------------------------------------------

    def by_key(self, key: str) -> Allocation | None:
        aid = self.state.by_key.get(key)
        return self.state.allocations.get(aid) if aid else None

    async def grant(
        self, req: Request, *, server: str = "", hub_server: str | None = None,
        key: str | None = None, now: float | None = None,
    ) -> tuple[Allocation, bool]:
        """Place and record ``req``. Returns (allocation, created): a request whose
        ``key`` is already live gets that allocation back (created False).
        Raises placement.NoFit, KeyConflict, or the ledger's error."""
        if key is not None:
            pending = self._pending_keys.get(key)
            if pending is not None:
                await asyncio.shield(pending)
            existing = self.by_key(key)
            if existing is not None:
                if existing.user != req.user:
                    raise KeyConflict(f"the key {key!r} belongs to another user's allocation")
                return existing, False
        found = place(self.state, req)
        a = Allocation(
            id=secrets.token_hex(8),
            user=req.user,
            host=found.host,
            units=req.units,
            cpu=req.cpu,
            mem_mb=req.mem_mb,
            max_hours=req.max_hours,
            shares=found.shares,
            server=server,
            created=time.time() if now is None else now,
            key=key,
        )
        self.state.grant(a)  # takes capacity: before the commit
        self.hub_server[a.id] = hub_server
        done = asyncio.get_running_loop().create_future()
        if key is not None:
            self._pending_keys[key] = done
        try:
            await self.commit([Insert(a, hub_server)])
        except BaseException:
            self.state.release(a.id)
            self.hub_server.pop(a.id, None)
            raise
        finally:
            if key is not None:
                self._pending_keys.pop(key, None)
            done.set_result(None)
        return a, True

    async def finish(self, allocation_id: str, state: AllocationState = AllocationState.RELEASED,
                     now: float | None = None, extra: tuple = ()) -> Allocation | None:
        """Release a live allocation (or mark it lost or revoked); None when it is
        not live. ``extra``: ledger operations written in the same transaction
        (an audit entry). Gives capacity back: applied after the commit."""
        a = self.state.allocations.get(allocation_id)
        if a is None:
            return None
        at = time.time() if now is None else now
        await self.commit([Finish(allocation_id, state, at), *extra])
        if self.state.release(allocation_id) is None:
            return None  # a concurrent release got there first
        self.hub_server.pop(allocation_id, None)
        return replace(a, state=state, released=at)

    async def get(self, allocation_id: str) -> Allocation | None:
        live = self.state.allocations.get(allocation_id)
        if live is not None:
            return live
        return await self.read(self.ledger.get, allocation_id)

    def live(self, user: str | None = None) -> list[Allocation]:
        allocations = self.state.allocations.values()
        if user is not None:
            allocations = (a for a in allocations if a.user == user)
        return sorted(allocations, key=lambda a: (a.created, a.id))

    # --- hosts ---------------------------------------------------------------------------

    def _record(self, name: str) -> HostInfo:
        return self.info.setdefault(name, HostInfo())

    async def sync_hosts(self, hosts: list[Host], source: str) -> None:
        """Make the hosts of ``source`` (inventory, nvml) match ``hosts``. Hosts that
        disappeared are removed unless they carry live shares (then they are kept
        as lost); hosts whose agent registered them stay the agent's."""
        wanted = {h.name: h for h in hosts}
        ops, lost, removed, put = [], [], [], []
        for name, host in list(self.state.hosts.items()):
            rec = self.info.get(name) or HostInfo()
            if rec.source != source or name in wanted:
                continue
            if self.state.by_host.get(name):
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
            h = replace(h, state=HostState.DRAINED if drained else HostState.UP)
            self._check_devices(h)
            ops.append(PutHost(h, source, drained=drained))
            put.append((h, drained))
        for name in lost:
            self.state.set_host_state(name, HostState.LOST)
        await self.commit(ops)
        for name in removed:
            self.state.remove_host(name)
            self.info.pop(name, None)
        for h, drained in put:
            self.state.put_host(h)
            rec = self._record(h.name)
            rec.source, rec.drained = source, drained

    def _check_devices(self, host: Host) -> None:
        for d in host.devices:
            other = self.state.devices.get(d.uuid)
            if other is not None and other.host != host.name:
                raise HostConflict(f"device {d.uuid} is already registered by host {other.host!r}")
        old = self.state.hosts.get(host.name)
        if old is not None:
            held = {s.device_uuid for a in self.state.by_host.get(host.name, {}).values() for s in a.shares}
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
        held = sorted(self.state.by_host.get(name, {}).values(), key=lambda a: (a.created, a.id))
        rec = self._record(name)
        host = self.state.hosts[name]
        state, unknown = fence([a.id for a in held], running, drained=rec.drained)
        if host.state != HostState.LOST and state != host.state:
            self.state.set_host_state(name, state)
            self.log.warning(
                "host %s is %s: %s", name, state,
                "it runs sessions the allocator does not hold there; no placements until "
                "its agent has stopped them" if state == HostState.FENCING
                else "its agent reports nothing unaccounted any more",
            )
        self._note_fenced(name, unknown, now)
        rec.unknown = unknown
        return {"state": self.state.hosts[name].state, "shares": held, "unknown": unknown,
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
            a = await self.get(entry["allocation"])
        except Exception as e:  # the reason stays the generic one
            self.log.debug("cannot read allocation %s: %s", entry["allocation"], e)
            return
        if a is None:
            entry["reason"] = f"allocation unknown to the allocator, running on {name}"
        elif a.state == AllocationState.LOST:
            entry["reason"] = f"lost with the host {a.host} at {_when(a.released)}"
        elif a.state == AllocationState.RELEASED:
            entry["reason"] = f"released at {_when(a.released)}"
        elif a.state == AllocationState.REVOKED:
            entry["reason"] = f"revoked by an admin at {_when(a.released)}"
        elif a.host != name:
            entry["reason"] = f"granted on {a.host}, not on {name}"

    async def register_host(
        self, host: Host, *, running: list[str], docker: dict | None = None,
        details: dict | None = None, mps: dict | None = None, now: float | None = None,
    ) -> dict:
        """An agent (re)registers its host: up again unless an admin drained it.
        Raises HostConflict."""
        now = time.time() if now is None else now
        self._check_devices(host)
        rec = self.info.get(host.name)
        drained = bool(rec and rec.drained)
        held = self.state.by_host.get(host.name, {})
        state, unknown = fence(held, running, drained=drained)
        if mps is not None:
            details = {**(details or {}), "mps_available": mps["available"]}
        host = with_details(replace(host, state=state), details)
        await self.commit([PutHost(host, "agent", drained, now, docker, details)])
        self._check_devices(host)  # (a concurrent registration may have won)
        self.state.put_host(host)
        rec = self._record(host.name)
        rec.source, rec.drained, rec.last_heartbeat = "agent", drained, now
        rec.docker, rec.details, rec.usage, rec.mps = docker, details, None, mps
        view = self.view(host.name, running, now)
        for e in view["fenced"]:  # the agent logs why: have the reason first
            await self._explain(host.name, e)
        return view

    def heartbeat(self, name: str, *, running: list[str], usage: dict | None,
                  mps: dict | None = None, now: float | None = None) -> dict | None:
        """A heartbeat: memory only, O(this host). None when the host is unknown,
        not an agent's, or lost (the agent must register again)."""
        host = self.state.hosts.get(name)
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
        host = self.state.hosts.get(name)
        if host is None:
            return False
        rec = self._record(name)
        state = host.state if host.state in (HostState.LOST, HostState.FENCING) else (
            HostState.DRAINED if drained else HostState.UP
        )
        before = (host.state, rec.drained)
        if drained:  # takes capacity: first
            self.state.set_host_state(name, state)
            rec.drained = True
        try:
            await self.commit([SetHost(name, state, drained), *extra])
        except BaseException:
            self.state.set_host_state(name, before[0])
            rec.drained = before[1]
            raise
        self.state.set_host_state(name, state)
        rec.drained = drained
        return True

    async def mark_lost(self, cutoff: float, now: float | None = None) -> list[tuple[str, list[str]]]:
        """Agent hosts whose last heartbeat is older than ``cutoff`` are lost, in
        one transaction: the host and each of its live allocations (their shares
        are free). Returns [(host, [allocation ids])]."""
        now = time.time() if now is None else now
        lost = []
        for name, host in self.state.hosts.items():
            rec = self.info.get(name)
            if rec is None or rec.source != "agent" or host.state == HostState.LOST:
                continue
            if (rec.last_heartbeat or 0.0) < cutoff:
                lost.append((name, host.state, list(self.state.by_host.get(name, {}))))
        if not lost:
            return []
        ops = []
        for name, _, ids in lost:
            self.state.set_host_state(name, HostState.LOST)  # no new placements: first
            ops.append(SetHost(name, HostState.LOST, self.info[name].drained))
            ops.extend(Finish(i, AllocationState.LOST, now) for i in ids)
        try:
            await self.commit(ops)
        except BaseException:
            for name, before, _ in lost:
                self.state.set_host_state(name, before)
            raise
        for _, _, ids in lost:
            for i in ids:
                self.state.release(i)
                self.hub_server.pop(i, None)
        return [(name, ids) for name, _, ids in lost]

    def mps_state(self, a: Allocation) -> dict | None:
        """For a fractional share on an agent's host: whether the host's MPS daemon
        (which enforces the share's limits) is ``ready``, ``starting`` or
        ``unavailable``, and where its pipes are. None: nothing to wait for (whole
        GPUs, or a declared host without an agent)."""
        rec = self.info.get(a.host)
        if (
            rec is None or rec.source != "agent" or rec.mps is None
            or len(a.shares) != 1 or a.shares[0].units >= self.units_per_gpu
        ):
            return None
        if not rec.mps.get("available"):
            state = "unavailable"
        else:
            state = "ready" if rec.mps.get("running") else "starting"
        return {"state": state, "pipe_dir": rec.mps.get("pipe_dir")}

    def oldest_heartbeat(self) -> float | None:
        beats = [
            rec.last_heartbeat or 0.0
            for name, rec in self.info.items()
            if rec.source == "agent" and name in self.state.hosts
            and self.state.hosts[name].state != HostState.LOST
        ]
        return min(beats) if beats else None


def _when(t: float | None) -> str:
    if t is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


__all__ = ["HostConflict", "KeyConflict", "LivePool", "HostInfo", "StateError"]
