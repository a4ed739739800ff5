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

from .core.fairshare import FairShare
from .core.fencing import fence
from .core.model import Allocation, AllocationState, Host, HostState, Request
from .core.placement import NoFit
from .core.queue import NO_RULES, Estimate, Queued, QueueView, Rules, Sim, plan, run_of, scaled_running
from .core.quota import WINDOW_S, Held, Limits, Quotas, check
from .core.reservations import (
    NONE, Reservation, ReservationState, Restriction, book, conflicts, hhmm, restriction,
)
from .core.state import PoolState, StateError
from .core.topology import score_matrix
from .store.ledger import (
    CancelReservation, DeleteHost, EndRequest, Enqueue, Extend, Finish, Finished, HostRecord, Insert, Ledger,
    PutHost, PutQuota, Reserve, SetHost, SetPriority,
)


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


class QuotaExceeded(RuntimeError):
    """A request over a hard limit (it alone is more than the user may ever hold)."""


class ExtendRefused(RuntimeError):
    """An extension that is not possible (again, too long, or it would delay the queue)."""


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
        # --- the queue (see core.queue and the "queue" section below) ---
        #: waiting requests by id (each one committed before it is listed here)
        self.queue: dict[str, Queued] = {}
        #: their position and start estimates, from the last scheduling pass
        self.estimates: dict[str, Estimate] = {}
        self.quotas = Quotas.empty()
        self.fairshare = FairShare()
        #: a user's JupyterHub groups, as the spawner last reported them
        self.groups: dict[str, tuple[str, ...]] = {}
        #: shares that ended within the quotas' window, by user (GPU-hours)
        self.finished: dict[str, list[Finished]] = {}
        #: why: held() is on every request's path and a user's finished list grows
        #: with each short session. Per user (that list, its length, the earliest
        #: start in it, its GPU-hours): valid while it is the same list, of that
        #: length (_account extends it as it appends), and every share in it
        #: started inside the window (then each counts whole); else recomputed
        self._finished_hours: dict[str, tuple] = {}
        #: used / declared run time of finished shares (expected start estimates)
        self.ratio = 1.0
        self._ratios: deque = deque(maxlen=500)
        #: allocations extended once; time-limit notices sent ({id: [minutes…]})
        self.extended: set[str] = set()
        self.notices: dict[str, dict] = {}
        #: waiting requests protected from backfill (core.queue.DEPTH)
        self.queue_depth = 32
        #: default longest wait (hours) where no group sets max_wait_hours (None: none)
        self.max_wait_hours: float | None = None
        self._pass_wanted = False
        self._pass_running = False
        self.passes = 0
        #: active advance reservations by id (core.reservations), those not ended
        self.reserved: dict[str, Reservation] = {}
        #: the last pass's QueueView (None: a pass must decide); _epoch counts
        #: the invalidations, so that a pass that raced one installs nothing
        self._view: QueueView | None = None
        self._epoch = 0
        #: grants decided without a pass (QueueView), for the benchmarks
        self.fast_grants = 0
        #: requests the next pass decides: [(Queued, its answer, done for its key)]
        self._arrivals: list[tuple[Queued, asyncio.Future, asyncio.Future]] = []

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
        self.reserved = {r.id: r for r in await self.read(self.ledger.load_reservations, time.time())}
        await self.load_queue()

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
        now = time.time() if now is None else now
        return await self._grant_placed(req, self.restriction(req, now).place(self.state, req), server=server,
                                        hub_server=hub_server, key=key, now=now)

    async def _grant_placed(self, req: Request, found, *, server: str, hub_server: str | None,
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
        self._ended(a, at, state)
        return replace(a, state=state, released=at)

    async def get(self, allocation_id: str) -> Allocation | None:
        live = self.state.allocations.get(allocation_id)
        if live is not None:
            return live
        return await self.read(self.ledger.get, allocation_id)

    async def spans(self, since: float, until: float, user: str | None = None,
                    now: float | None = None) -> list[tuple[str, int, float, float, float]]:
        """(user, units, CPU cores, start, end) of every share held within
        [since, until): the finished ones from the ledger, the live ones from
        memory ending ``now``. The one source of GPU-hours (GET usage,
        the admin panel's usage table)."""
        now = time.time() if now is None else now
        finished = await self.read(self.ledger.finished, since, until, user)
        out = [(f.user, f.units, f.cpu, f.created, f.released) for f in finished]
        out += [(a.user, a.units, a.cpu, a.created, now) for a in self.live(user) if a.created < until]
        return out

    def live(self, user: str | None = None) -> list[Allocation]:
        allocations = self.state.allocations.values()
        if user is not None:
            allocations = (a for a in allocations if a.user == user)
        return sorted(allocations, key=lambda a: (a.created, a.id))

    # --- the queue -------------------------------------------------------------------------
    #
    # A request that does not fit now waits in ``self.queue`` (and in the
    # ledger's requests table, committed before it is listed, so a restart or
    # kill -9 keeps it). A scheduling pass (core.queue.plan) runs synchronously on
    # the event loop whenever capacity may have come back (a release, a host up or
    # undrained, a quota changed, a request cancelled) and on a timer; it grants
    # what may start in memory first and commits after (a grant takes capacity),
    # undoing it if the commit fails. The granted allocation keeps the request's id.

    async def load_queue(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        since = now - max(WINDOW_S, 4 * self.fairshare.half_life)
        loaded = await self.read(self.ledger.load_queue, since)
        self.queue = {q.id: q for q in loaded.queued}
        for q in loaded.queued:
            self.groups.setdefault(q.req.user, q.groups)
        self.quotas = loaded.quotas
        fs = FairShare(self.fairshare.half_life)
        self.fairshare, self.finished, self._finished_hours = fs, {}, {}
        for f in loaded.finished:
            self._account(f)
        self.estimates = {}
        self.kick()

    def _account(self, f: Finished) -> None:
        per = self.units_per_gpu
        self.fairshare.add(f"user:{f.user}", f.units / per, f.created, f.released)
        fin = self.finished.setdefault(f.user, [])
        fin.append(f)
        memo = self._finished_hours.get(f.user)
        if memo is not None and memo[0] is fin and memo[1] == len(fin) - 1:
            self._finished_hours[f.user] = (fin, len(fin), min(memo[2], f.created),
                                            memo[3] + f.units / per * (f.released - f.created) / 3600.0)
        if f.max_hours > 0 and f.state == AllocationState.RELEASED.value:
            self._ratios.append(min(1.0, (f.released - f.created) / (f.max_hours * 3600.0)))
            if len(self._ratios) >= 5:
                self.ratio = max(0.05, sum(self._ratios) / len(self._ratios))

    def _ended(self, a: Allocation, at: float, state: AllocationState) -> None:
        """A live allocation ended (committed): account for it and let the queue move
        (no pass when nobody waits, or when the last pass's view says this release
        cannot change what a pass decides)."""
        self._account(Finished(a.id, a.user, a.units, a.cpu, a.created, at, a.max_hours, state.value))
        self.extended.discard(a.id)
        self.notices.pop(a.id, None)
        if not self.queue:
            return  # a pass over an empty queue decides nothing
        v = self._current_view()
        if v is None or a.host in v.hosts or self._orders_queue(a.user):
            self.kick()

    def ends_at(self, a: Allocation) -> float:
        """When a live share's run time (max_hours, extended or not) is over."""
        return a.created + a.max_hours * 3600.0

    def running(self) -> list[tuple[Allocation, float]]:
        return [(a, self.ends_at(a)) for a in self.state.allocations.values()]

    def held(self, user: str, now: float) -> Held:
        """What the user's quotas count now: GPUs and sessions held, and GPU-hours
        of the last 7 days (finished shares' use within the window, running
        shares' whole declared time)."""
        per = self.units_per_gpu
        start = now - WINDOW_S
        units = sessions = 0
        hours = 0.0
        live = self.state.allocations
        for aid in self.state.by_user.get(user, ()):
            a = live[aid]
            units += a.units
            sessions += 1
            hours += a.units / per * a.max_hours
        fin = self.finished.get(user, ())
        memo = self._finished_hours.get(user)
        if memo is not None and memo[0] is fin and memo[1] == len(fin) and memo[2] >= start:
            return Held(units, sessions, hours + memo[3])
        kept, done, first = [], 0.0, float("inf")
        for f in fin:
            if f.released > start:
                kept.append(f)
                done += f.units / per * (f.released - max(f.created, start)) / 3600.0
                first = min(first, f.created)
        if user in self.finished:
            self.finished[user] = kept
        self._finished_hours[user] = (kept, len(kept), first, done)
        return Held(units, sessions, hours + done)

    def limits(self, user: str) -> Limits:
        return self.quotas.resolve(user, self.groups.get(user, ()))

    def _plan(self, pending: list[Queued], now: float):
        held = {}
        for q in pending:
            if q.req.user not in held:
                held[q.req.user] = self.held(q.req.user, now)
        return plan(
            self.state, self.running(), pending, now=now, quotas=self.quotas,
            fairshare=self.fairshare, held=held, ratio=self.ratio, depth=self.queue_depth,
            groups_of=self.groups.get, previous=self.estimates,
            restrict=self.restriction if self.reserved else None,
        )

    def _current_view(self) -> QueueView | None:
        v = self._view
        return v if v is not None and v.hosts_version == self.state.hosts_version else None

    def _install_view(self, p, epoch: int, now: float) -> None:
        """Keep what pass ``p`` found (see QueueView), unless something changed since
        it was computed (``epoch``)."""
        if epoch != self._epoch:
            return
        self._view = QueueView.build(p, self.queue, self.state, self.queue_depth)

    def _orders_queue(self, user: str) -> bool:
        """Whether ``user``'s usage takes part in ordering a waiting request: they
        wait themselves, or share a charged group with someone who does."""
        charged = self.quotas.charged_group
        mine = {charged(user, self.groups.get(user) or ())}
        for q in self.queue.values():
            if q.req.user == user:
                return True
            found = self.groups.get(q.req.user)
            if mine & {charged(q.req.user, q.groups),
                       charged(q.req.user, found if found is not None else q.groups)} - {""}:
                return True
        return False

    def _starts_at_once(self, q: Queued, now: float):
        """The placement a pass would admit ``q`` with, found from the last pass's
        QueueView without a pass; None: a pass must decide. ``q`` is within quota."""
        v = self._current_view()
        if v is None:
            return None
        try:  # the reservations' rule, as a pass's placement (Rules.place)
            found = self.restriction(q.req, now).place(self.state, q.req)
        except NoFit:
            return None
        if not v.delays_none(found.host, now + q.req.max_hours * 3600.0):
            return None  # it might delay a protected request: the simulation decides
        return found

    def by_request_key(self, key: str) -> Queued | None:
        for q in self.queue.values():
            if q.key == key:
                return q
        return None

    async def submit(
        self, req: Request, *, groups=None, server: str = "", hub_server: str | None = None,
        key: str | None = None, queue: bool = True, now: float | None = None,
    ) -> tuple[Allocation | Queued, bool]:
        """Grant ``req`` now, or queue it: (allocation or queued request, created).
        A retried ``key`` gets what it got before (created False). Raises
        QuotaExceeded (a hard limit), KeyConflict, NoFit (only with queue=False)."""
        clock = now is None  # the real clock (else the caller's: decided here, at that time)
        now = time.time() if now is None else now
        if groups is not None:
            self.groups[req.user] = tuple(sorted(groups))
        groups = self.groups.get(req.user, ())
        if key is not None:
            pending = self._pending_keys.get(key)
            if pending is not None:
                await asyncio.shield(pending)
            found = self.by_key(key) or self.by_request_key(key)
            if found is not None:
                owner = found.req.user if isinstance(found, Queued) else found.user
                if owner != req.user:
                    raise KeyConflict(f"the key {key!r} belongs to another user's request")
                return found, False
        limits = self.quotas.resolve(req.user, groups)
        verdict = check(limits, self.held(req.user, now), req, self.units_per_gpu)
        if verdict.verdict == "hard":
            raise QuotaExceeded(verdict.reason)
        if verdict.ok and not self.queue:
            try:  # nobody waits: the plain grant (group commit, no pass)
                return await self.grant(req, server=server, hub_server=hub_server, key=key, now=now)
            except NoFit:
                if not queue:
                    raise
        q = Queued(secrets.token_hex(8), req, now, groups, server, hub_server, key)
        if verdict.ok and not self._orders_queue(req.user):
            # (a user whose usage orders waiting requests changes their order: a pass)
            found = self._starts_at_once(q, now)
            if found is not None:  # delays nobody: granted as the pass would, without one
                self.fast_grants += 1
                return await self._grant_placed(req, found, server=server, hub_server=hub_server,
                                                key=key, now=now)
        if queue and clock:
            # decided by the next pass, with every request that arrives meanwhile:
            # one pass for a burst, not one each
            loop = asyncio.get_running_loop()
            answer, done = loop.create_future(), loop.create_future()
            self._arrivals.append((q, answer, done))
            if key is not None:
                self._pending_keys[key] = done  # a retry waits for this answer
            self.kick()
            return await answer
        epoch = self._epoch
        p = self._plan([*self.queue.values(), q], now)
        mine = next((a for x, a in p.admitted if x.id == q.id), None)
        others = [(x, a) for x, a in p.admitted if x.id != q.id]
        for x, _ in others:
            self.queue.pop(x.id, None)
        ops = [op for x, a in others for op in (Insert(a, x.hub_server), EndRequest(x.id, "granted", now))]
        est = p.estimates.get(q.id)
        if mine is not None:
            self.hub_server[mine.id] = hub_server
            ops.append(Insert(mine, hub_server))
        elif queue:
            q = replace(q, first_eta=est.expected if est else None, first_latest=est.latest if est else None)
            ops.append(Enqueue(q))
        for x, a in others:
            self.hub_server[a.id] = x.hub_server
        done = asyncio.get_running_loop().create_future()
        if key is not None:
            self._pending_keys[key] = done
        try:
            await self.commit(ops)
        except BaseException:
            for x, a in p.admitted:
                self.state.release(a.id)
                self.hub_server.pop(a.id, None)
            for x, _ in others:
                self.queue[x.id] = x
            raise
        finally:
            if key is not None:
                self._pending_keys.pop(key, None)
            done.set_result(None)
        self._note_plan(p, exclude={q.id})
        if mine is None and queue:
            self.queue[q.id] = q
        self._install_view(p, epoch, now)
        if mine is not None:
            return mine, True
        if not queue:
            try:
                self.restriction(req, now).place(self.state, req)
            except NoFit:
                raise
            raise NoFit(f"{est.reason if est else 'it does not fit now'}: {len(self.queue)} request(s) wait")
        if est is not None:
            self.estimates[q.id] = est
        self.log.info("queued %s of %s (%s): position %s, start %s, at the latest %s", q.id,
                      req.user, est.reason if est else "", est.position if est else "?",
                      _when(est.expected) if est and est.expected else "unknown",
                      _when(est.latest) if est and est.latest else "unknown")
        if epoch != self._epoch:
            self.kick()  # something changed while it was computed: estimates again
        # (else the pass that queued it estimated everyone behind it already)
        return q, True

    def _note_plan(self, p, exclude=()) -> None:
        for x, a in p.admitted:
            if x.id not in exclude:
                self.log.info("granted queued %s of %s on %s after %.0f s", a.id, a.user, a.host,
                              a.created - x.submitted)
        self.estimates.update({k: v for k, v in p.estimates.items() if k in self.queue})

    def kick(self) -> None:
        """Run a scheduling pass soon (passes never overlap; kicks coalesce). Until
        it has run, no grant is decided from the last pass's QueueView."""
        self._view = None
        self._epoch += 1
        self._pass_wanted = True
        if self._pass_running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pass_running = True
        loop.create_task(self._passes())

    async def _passes(self) -> None:
        try:
            while self._pass_wanted:
                self._pass_wanted = False
                await asyncio.sleep(0)  # let the kicks of one event coalesce
                try:
                    await self.schedule()
                except Exception:
                    self.log.exception("a scheduling pass failed")
        finally:
            self._pass_running = False

    async def schedule(self, now: float | None = None) -> list[Allocation]:
        """One pass: decide the requests that arrived since the last one (see
        submit), grant what may start, give up what waited too long or is over a
        hard limit now, refresh every estimate. Returns the grants of waiting requests."""
        arrivals, self._arrivals = self._arrivals, []
        try:
            return await self._schedule(arrivals, now)
        except BaseException as e:
            for _, fut, _ in arrivals:
                if not fut.done():
                    fut.set_exception(e)
            raise
        finally:
            for q, _, done in arrivals:
                if q.key is not None and self._pending_keys.get(q.key) is done:
                    del self._pending_keys[q.key]
                done.set_result(None)

    async def _schedule(self, arrivals: list, now: float | None) -> list[Allocation]:
        now = time.time() if now is None else now
        self.passes += 1
        epoch = self._epoch
        ops = []
        for q in list(self.queue.values()):
            wait = self.limits(q.req.user).max_wait_hours
            wait = self.max_wait_hours if wait is None else wait
            if wait is not None and now - q.submitted > wait * 3600.0:
                ops.append(EndRequest(q.id, "expired", now, f"waited longer than {wait:g} h"))
        if not self.queue and not arrivals:
            self.estimates = {}
            return []
        expired = {op.request_id for op in ops}
        new = {q.id: fut for q, fut, _ in arrivals}
        p = self._plan([q for q in self.queue.values() if q.id not in expired] + [q for q, _, _ in arrivals], now)
        for rid, reason in p.refused.items():
            if rid in new:  # over a hard limit set since it arrived: refused, never queued
                new.pop(rid).set_exception(QuotaExceeded(reason))
            else:
                ops.append(EndRequest(rid, "refused", now, reason))
        for x, a in p.admitted:
            ops.append(Insert(a, x.hub_server))
            if x.id not in new:
                ops.append(EndRequest(x.id, "granted", now))
            self.hub_server[a.id] = x.hub_server
        admitted = {x.id for x, _ in p.admitted}
        waits = []  # arrivals that wait: queued with their first estimate
        for q, _, _ in arrivals:
            if q.id in new and q.id not in admitted:
                est = p.estimates.get(q.id)
                q = replace(q, first_eta=est.expected if est else None,
                            first_latest=est.latest if est else None)
                waits.append(q)
                ops.append(Enqueue(q))
        gone = {op.request_id: self.queue.pop(op.request_id) for op in ops if isinstance(op, EndRequest)}
        self.estimates = dict(p.estimates)
        if not ops:
            self._install_view(p, epoch, now)
            return []
        try:
            await self.commit(ops)
        except BaseException:
            for _, a in p.admitted:
                self.state.release(a.id)
                self.hub_server.pop(a.id, None)
            self.queue.update(gone)
            raise
        for q in waits:
            self.queue[q.id] = q
        self._note_plan(p, exclude=set(new))
        self._install_view(p, epoch, now)
        for op in ops:
            if isinstance(op, EndRequest) and op.state != "granted":
                self.log.warning("request %s left the queue: %s (%s)", op.request_id, op.state, op.reason)
        for x, a in p.admitted:
            if x.id in new:
                new.pop(x.id).set_result((a, True))
        for q in waits:
            est = p.estimates.get(q.id)
            self.log.info("queued %s of %s (%s): position %s, start %s, at the latest %s", q.id,
                          q.req.user, est.reason if est else "", est.position if est else "?",
                          _when(est.expected) if est and est.expected else "unknown",
                          _when(est.latest) if est and est.latest else "unknown")
            new.pop(q.id).set_result((q, True))
        arrived = {q.id for q, _, _ in arrivals}
        return [a for x, a in p.admitted if x.id not in arrived]

    async def cancel(self, request_id: str, now: float | None = None, reason: str | None = None,
                     extra: tuple = ()) -> Queued | None:
        """Take a waiting request out of the queue (None: it is not waiting).
        ``extra``: ledger operations written in the same transaction (an audit entry)."""
        q = self.queue.pop(request_id, None)
        if q is None:
            return None
        self.estimates.pop(request_id, None)
        try:
            await self.commit([EndRequest(request_id, "cancelled", time.time() if now is None else now, reason),
                               *extra])
        except BaseException:
            self.queue[request_id] = q
            raise
        self.kick()
        return q

    async def get_request(self, request_id: str):
        """A request that waited: (Queued, state, ended at, reason), or None."""
        q = self.queue.get(request_id)
        if q is not None:
            return q, "queued", None, None
        return await self.read(self.ledger.get_request, request_id)

    def queued(self, user: str | None = None) -> list[tuple[Queued, Estimate | None]]:
        """Waiting requests in queue order (by the last pass's positions)."""
        items = [(q, self.estimates.get(q.id)) for q in self.queue.values()
                 if user is None or q.req.user == user]
        return sorted(items, key=lambda qe: (qe[1].position if qe[1] else 1 << 30, qe[0].submitted))

    async def set_request_priority(self, request_id: str, priority: int | None,
                                   extra: tuple = ()) -> Queued | None:
        """Set a waiting request's own priority (None: its user's and groups'),
        ``extra`` written in the same transaction; None if it is not waiting."""
        if request_id not in self.queue:
            return None
        await self.commit([SetPriority(request_id, priority), *extra])
        q = self.queue.get(request_id)
        if q is None:  # granted or ended meanwhile: the row kept its state
            return None
        q = self.queue[request_id] = replace(q, priority=priority)
        self.kick()
        return q

    async def set_quota(self, kind: str, name: str, limits: Limits | None, extra: tuple = ()) -> None:
        """Set or (None) remove the quota row of a user or group (``extra``: ledger
        operations written in the same transaction, an audit entry)."""
        await self.commit([PutQuota(kind, name, limits), *extra])
        table = self.quotas.users if kind == "user" else self.quotas.groups
        if limits is None:
            table.pop(name, None)
        else:
            table[name] = limits
        self.kick()

    def estimate(self, req: Request, now: float | None = None) -> tuple[float | None, float | None]:
        """(expected, latest) start of ``req`` if it joined the queue behind every
        waiting request (the spawn form's "expected start"); nothing is held."""
        now = time.time() if now is None else now
        sim = Sim(self.state)
        ahead = [q for q, e in self.queued() if e is not None and e.latest is not None]
        mine = [*ahead, Queued("estimate", req, now)]
        rules = self._rules(now)
        run = self.running()
        latest = rules.simulate(sim, [run_of(a, max(now, end)) for a, end in run], mine, now)[-1]
        if self.ratio >= 1.0 or latest is None:
            return latest, latest
        expected = rules.simulate(sim, scaled_running(run, now, self.ratio), mine, now, self.ratio)[-1]
        return (min(expected, latest) if expected is not None else latest), latest

    def _rules(self, now: float) -> Rules:
        """The reservations' rule for the simulations outside a pass (estimates,
        extensions), the same as a pass applies."""
        return Rules(self.restriction, now) if self.reserved else NO_RULES

    def delays_queue(self, a: Allocation, new_end: float, now: float) -> list[str]:
        """Ids of waiting requests whose latest start would move if ``a`` ran until
        ``new_end`` instead of its current end."""
        waiting = [q for q, e in self.queued() if e is not None and e.latest is not None]
        if not waiting:
            return []
        sim = Sim(self.state)
        base = [run_of(x, max(now, end)) for x, end in self.running()]
        longer = [run_of(x, max(now, new_end)) if x.id == a.id else r
                  for (x, _), r in zip(self.running(), base)]
        rules = self._rules(now)
        before = rules.simulate(sim, base, waiting, now)
        after = rules.simulate(sim, longer, waiting, now)
        return [q.id for q, b, c in zip(waiting, before, after)
                if b is not None and (c is None or c > b + 1e-6)]

    async def extend(self, allocation_id: str, hours: float, limit: float,
                     now: float | None = None) -> Allocation:
        """Extend a live share's run time by ``hours``, once, if no waiting request
        would start later for it. Raises KeyError, ExtendRefused."""
        now = time.time() if now is None else now
        a = self.state.allocations.get(allocation_id)
        if a is None:
            raise KeyError(allocation_id)
        if allocation_id in self.extended:
            raise ExtendRefused("this session was extended once already")
        total = a.max_hours + hours
        if hours <= 0 or total > limit:
            raise ExtendRefused(f"the run time may be extended to at most {limit:g} h in all "
                                f"(it is {a.max_hours:g} h)")
        delayed = self.delays_queue(a, a.created + total * 3600.0, now)
        if delayed:
            raise ExtendRefused(f"extending would delay {len(delayed)} queued request(s)")
        booked = [r for r in conflicts(self.reserved.values(), [s.device_uuid for s in a.shares],
                                       self.ends_at(a), a.created + total * 3600.0) if r.user != a.user]
        if booked:
            raise ExtendRefused(f"its GPUs are reserved from {hhmm(min(r.start for r in booked), now)}")
        self._view = None  # its end moves: the simulated starts may too
        self._epoch += 1
        await self.commit([Extend(allocation_id, total)])
        new = replace(a, max_hours=total)
        if self.state.allocations.get(allocation_id) is a:
            self.state.allocations[allocation_id] = new
            self.state.by_host[a.host][allocation_id] = new
        self.extended.add(allocation_id)
        self.notices.pop(allocation_id, None)
        return new

    async def expire_due(self, now: float | None = None, warn_minutes=(15, 5)) -> tuple[list, list]:
        """Time limits: note the warnings due (``notices``) and end (state
        "expired") the shares past their run time. Returns (warned, expired):
        [(allocation, minutes left)] and [allocation]."""
        now = time.time() if now is None else now
        warned, expired = [], []
        for a in list(self.state.allocations.values()):
            left = self.ends_at(a) - now
            if left <= 0:
                done = await self.finish(a.id, AllocationState.EXPIRED, now)
                if done is not None:
                    expired.append(done)
                continue
            for m in sorted(warn_minutes):
                if left <= m * 60.0:
                    sent = self.notices.setdefault(a.id, {"sent": []})
                    if m not in sent["sent"]:
                        sent["sent"].append(m)
                        sent["message"] = (
                            f"This session ends at {_when(self.ends_at(a))} (its run time of "
                            f"{a.max_hours:g} h): save your work; it is stopped then."
                        )
                        sent["at"] = now
                        warned.append((a, m))
                    break
        return warned, expired


    # --- advance reservations (core.reservations) ------------------------------------------

    def restriction(self, req: Request, now: float) -> Restriction:
        """The reservations' rule for ``req`` starting at ``now``."""
        if not self.reserved:
            return NONE
        return restriction(self.reserved.values(), req.user, now, now + req.max_hours * 3600.0)

    def reservations(self, user: str | None = None, now: float | None = None) -> list[Reservation]:
        """Active reservations not yet ended (``user``: theirs), by start."""
        now = time.time() if now is None else now
        for rid in [rid for rid, r in self.reserved.items() if r.end <= now]:
            del self.reserved[rid]  # over: history (the ledger keeps it)
        out = [r for r in self.reserved.values() if user is None or r.user == user]
        return sorted(out, key=lambda r: (r.start, r.id))

    async def get_reservation(self, reservation_id: str) -> Reservation | None:
        r = self.reserved.get(reservation_id)
        if r is not None:
            return r
        return await self.read(self.ledger.get_reservation, reservation_id)

    async def reserve(self, user: str, host: str, model: str, gpus: int, start: float, end: float, *,
                      created_by: str, note: str = "", now: float | None = None, rid: str | None = None,
                      extra: tuple = ()) -> Reservation:
        """Book ``gpus`` GPUs of ``model`` on ``host`` for ``user`` from ``start`` to
        ``end`` (a start in the past: from now). Raises reservations.Conflict,
        ValueError. Takes capacity: in memory before the commit."""
        now = time.time() if now is None else now
        start = max(start, now)
        if end <= start:
            raise ValueError("the reservation must end after it starts and after now")
        devices = book(self.state, host, model, gpus, start, end, self.reservations(now=now), self.running())
        r = Reservation(rid or secrets.token_hex(8), user, host, model, gpus, devices, start, end,
                        created=now, created_by=created_by, note=note)
        self.reserved[r.id] = r
        try:
            await self.commit([Reserve(r), *extra])
        except BaseException:
            self.reserved.pop(r.id, None)
            raise
        self.log.info("reservation %s: %d × %s on %s for %s from %s to %s (by %s)", r.id, gpus, model, host,
                      user, _when(start), _when(end), created_by)
        self.kick()  # the estimates of what waits change
        return r

    async def cancel_reservation(self, reservation_id: str, now: float | None = None,
                                 extra: tuple = ()) -> Reservation | None:
        """Cancel an active reservation (None: none such). Gives capacity back: after the commit."""
        r = self.reserved.get(reservation_id)
        if r is None:
            return None
        now = time.time() if now is None else now
        await self.commit([CancelReservation(reservation_id, now), *extra])
        if self.reserved.pop(reservation_id, None) is None:
            return None  # a concurrent cancel got there first
        self.kick()
        return replace(r, state=ReservationState.CANCELLED, ended=now)

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
        self.kick()

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
        self.kick()
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
        self.kick()
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
                a = self.state.release(i)
                self.hub_server.pop(i, None)
                if a is not None:
                    self._ended(a, now, AllocationState.LOST)
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


__all__ = ["ExtendRefused", "HostConflict", "KeyConflict", "LivePool", "HostInfo", "QuotaExceeded",
           "StateError"]
