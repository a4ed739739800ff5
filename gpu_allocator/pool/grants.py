"""Grants and releases of live shares.

What *takes* capacity (a grant) is applied to memory first — later decisions
already see it — and undone if the commit fails; what *gives* capacity back (a
release) is applied after the commit. So memory never promises more than the
ledger holds."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from ..core import external
from ..core.model import Allocation, AllocationState, Request
from ..store.ledger import Finish, Finished, Insert
from .commit import GroupCommit
from .errors import KeyConflict
from .metrics import PoolMetrics
from .reservations import Reservations
from .state import LiveState
from .usage import Usage


class Grants:
    """Places and records shares, ends them, and reads them back."""

    def __init__(self, live: LiveState, commit: GroupCommit, usage: Usage, bookings: Reservations,
                 metrics: PoolMetrics, ended: Callable[[Allocation], None]):
        self.live = live
        self.commit = commit
        self.usage = usage
        self.bookings = bookings
        self.metrics = metrics
        #: called with each share that ended, once accounted (the queue may move)
        self.ended = ended

    async def grant(
        self, req: Request, *, server: str = "", hub_server: str | None = None,
        key: str | None = None, now: float | None = None,
    ) -> tuple[Allocation, bool]:
        """Place and record ``req``. Returns (allocation, created): a request whose
        ``key`` is already live gets that allocation back (created False).
        Raises placement.NoFit, KeyConflict, or the ledger's error."""
        if key is not None:
            await self.live.key_settled(key)
            existing = self.live.by_key(key)
            if existing is not None:
                if existing.user != req.user:
                    raise KeyConflict(f"the key {key!r} belongs to another user's allocation")
                return existing, False
        now = time.time() if now is None else now
        found = self.bookings.restriction(req, now).place(self.live.state, req)
        return await self.record(req, found, server=server, hub_server=hub_server, key=key, now=now)

    async def record(self, req: Request, found, *, server: str, hub_server: str | None,
                     key: str | None, now: float | None) -> tuple[Allocation, bool]:
        """Record ``req`` where ``found`` (a placement on the current state, under the
        reservations' rule) puts it."""
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
            created=now,
            key=key,
        )
        live = self.live
        live.state.grant(a)  # takes capacity: before the commit
        live.hub_server[a.id] = hub_server
        done = asyncio.get_running_loop().create_future()
        if key is not None:
            live.pending_keys[key] = done
        try:
            await self.commit.commit([Insert(a, hub_server)])
        except BaseException:
            live.state.release(a.id)
            live.hub_server.pop(a.id, None)
            raise
        finally:
            if key is not None:
                live.pending_keys.pop(key, None)
            done.set_result(None)
        return a, True

    async def record_external(self, grant, user: str, *, cpu: float, mem_mb: int, max_hours: float,
                              server: str = "", hub_server: str | None = None,
                              now: float | None = None) -> tuple[Allocation, bool]:
        """Mirror what another scheduler granted (core.external.Grant) as a live
        allocation; (allocation, created): a job already mirrored gets its
        mirror back. Raises RequestError (not its host, no such devices) or
        StateError (the devices are not free here: a mirror that is stale)."""
        state = self.live.state
        existing = external.mirrored(state, grant.source, grant.job)
        if existing is not None:
            return existing, False
        shares = external.shares_of(state, grant)
        a = Allocation(
            id=secrets.token_hex(8), user=user, host=grant.host, units=sum(s.units for s in shares),
            cpu=cpu, mem_mb=mem_mb, max_hours=max_hours, shares=shares, server=server,
            created=time.time() if now is None else now, source=grant.source, job=grant.job,
        )
        state.grant(a)  # takes capacity: before the commit (StateError: nothing changed)
        self.live.hub_server[a.id] = hub_server
        try:
            await self.commit.commit([Insert(a, hub_server)])
        except BaseException:
            state.release(a.id)
            self.live.hub_server.pop(a.id, None)
            raise
        return a, True

    async def finish(self, allocation_id: str, state: AllocationState = AllocationState.RELEASED,
                     now: float | None = None, extra: tuple = ()) -> Allocation | None:
        """Release a live allocation (or mark it lost, revoked or expired); None when
        it is not live. ``extra``: ledger operations written in the same transaction
        (an audit entry). Gives capacity back: applied after the commit."""
        a = self.live.state.allocations.get(allocation_id)
        if a is None:
            return None
        at = time.time() if now is None else now
        await self.commit.commit([Finish(allocation_id, state, at), *extra])
        if self.released(allocation_id, at, state) is None:
            return None  # a concurrent release got there first
        self.metrics.released.labels(AllocationState(state).value).inc()
        return replace(a, state=state, released=at)

    def released(self, allocation_id: str, at: float, state: AllocationState) -> Allocation | None:
        """Give back the capacity of a share whose end is committed, and account for
        it; None when it was not live any more."""
        a = self.live.state.release(allocation_id)
        self.live.hub_server.pop(allocation_id, None)
        if a is None:
            return None
        self.usage.account(Finished(a.id, a.user, a.units, a.cpu, a.created, at, a.max_hours, state.value))
        self.live.extended.discard(a.id)
        self.live.notices.pop(a.id, None)
        self.ended(a)
        return a

    async def get(self, allocation_id: str) -> Allocation | None:
        live = self.live.state.allocations.get(allocation_id)
        if live is not None:
            return live
        return await self.commit.read(self.commit.ledger.get, allocation_id)

    async def spans(self, since: float, until: float, user: str | None = None,
                    now: float | None = None) -> list[tuple[str, int, float, float, float, str]]:
        """(user, units, CPU cores, start, end, hub server) of every share held within
        [since, until): the finished ones from the ledger, the live ones from
        memory ending ``now``. The one source of GPU-hours (GET usage,
        the admin panel's usage table)."""
        now = time.time() if now is None else now
        finished = await self.commit.read(self.commit.ledger.finished, since, until, user)
        out = [(f.user, f.units, f.cpu, f.created, f.released, f.server) for f in finished]
        out += [(a.user, a.units, a.cpu, a.created, now, a.server) for a in self.live.live(user) if a.created < until]
        return out
