"""The queue and its scheduling passes.

A request that does not fit now waits in ``Scheduler.queue`` (and in the
ledger's requests table, committed before it is listed, so a restart or kill -9
keeps it). A scheduling pass (core.queue.plan) runs synchronously on the event
loop whenever capacity may have come back (a release, a host up or undrained, a
quota changed, a request cancelled) and on a timer; it grants what may start in
memory first and commits after (a grant takes capacity), undoing it if the
commit fails. The granted allocation keeps the request's id."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import replace

from ..core.model import Allocation, Placement, Request
from ..core.placement import NoFit
from ..core.queue import DEPTH, Estimate, Queued, QueueView, plan, within_quota
from ..core.quota import Decision, Limits
from ..store.ledger import EndRequest, Enqueue, Insert, PutQuota, SetPriority
from .commit import GroupCommit
from .errors import KeyConflict, QuotaExceeded
from .grants import Grants
from .metrics import PoolMetrics
from .reservations import Reservations
from .state import LiveState, when
from .usage import Usage


class Scheduler:
    """The waiting requests, their estimates, and the passes that start them."""

    def __init__(self, live: LiveState, commit: GroupCommit, usage: Usage, grants: Grants,
                 bookings: Reservations, metrics: PoolMetrics, log: logging.Logger, *,
                 depth: int = DEPTH, max_wait_hours: float | None = None):
        self.live = live
        self.commit = commit
        self.usage = usage
        self.grants = grants
        self.bookings = bookings
        self.metrics = metrics
        self.log = log
        #: waiting requests protected from backfill (core.queue.DEPTH)
        self.depth = depth
        #: default longest wait (hours) where no group sets max_wait_hours (None: none)
        self.max_wait_hours = max_wait_hours
        #: waiting requests by id (each one committed before it is listed here)
        self.queue: dict[str, Queued] = {}
        #: their position and start estimates, from the last scheduling pass
        self.estimates: dict[str, Estimate] = {}
        self._pass_wanted = False
        self._pass_running = False
        self.passes = 0
        #: the last pass's QueueView (None: a pass must decide); _epoch counts
        #: the invalidations, so that a pass that raced one installs nothing
        self._view: QueueView | None = None
        self._epoch = 0
        #: grants decided without a pass (QueueView), for the benchmarks
        self.fast_grants = 0
        #: requests the next pass decides: [(Queued, its answer, done for its key)]
        self._arrivals: list[tuple[Queued, asyncio.Future, asyncio.Future]] = []

    async def load(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        loaded = await self.commit.read(self.commit.ledger.load_queue, self.usage.since(now))
        for q in loaded.queued:
            self.usage.groups.setdefault(q.req.user, q.groups)
        # the host pools each may land in, as the pools are configured now (a
        # pool named that closed since: none, and its reason says so)
        self.queue = {q.id: replace(q, req=self.usage.resolve_pools(q.req, q.groups, strict=False))
                      for q in loaded.queued}
        self.usage.load(loaded.quotas, loaded.finished)
        self.estimates = {}
        self.kick()

    # --- what a pass decides, and what the last one found -------------------------------

    def _plan(self, pending: list[Queued], now: float):
        usage = self.usage
        held = {}
        for q in pending:
            if q.req.user not in held:
                held[q.req.user] = usage.held(q.req.user, now)
        return plan(
            self.live.state, self.live.running(), pending, now=now, quotas=usage.quotas,
            fairshare=usage.fairshare, held=held, ratio=usage.ratio, depth=self.depth,
            groups_of=usage.groups.get, previous=self.estimates,
            restrict=self.bookings.restriction if self.bookings.reserved else None,
        )

    def quota_verdict(self, req: Request, groups: tuple, now: float) -> tuple[Decision, Request]:
        """``req``'s quotas against what its user holds at ``now``, as a pass
        decides them (core.queue.within_quota): the verdict, and ``req`` kept off
        the host pools over its user's quota (``Request.closed_pools``: to place
        it, never to store it)."""
        usage = self.usage
        verdict, q = within_quota(usage.quotas, Queued("", req, now, tuple(groups)),
                                  usage.held(req.user, now), self.live.units_per_gpu, self.live.state)
        return verdict, q.req

    def _current_view(self) -> QueueView | None:
        v = self._view
        return v if v is not None and v.hosts_version == self.live.state.hosts_version else None

    def _install_view(self, p, epoch: int) -> None:
        """Keep what pass ``p`` found (see QueueView), unless something changed since
        it was computed (``epoch``)."""
        if epoch != self._epoch:
            return
        self._view = QueueView.build(p, self.queue, self.live.state, self.depth)

    def invalidate(self) -> None:
        """No grant is decided from the last pass's QueueView any more."""
        self._view = None
        self._epoch += 1

    def orders_queue(self, user: str) -> bool:
        """Whether ``user``'s usage takes part in ordering a waiting request: they
        wait themselves, or share a charged group with someone who does."""
        groups = self.usage.groups
        charged = self.usage.quotas.charged_group
        mine = {charged(user, groups.get(user) or ())}
        for q in self.queue.values():
            if q.req.user == user:
                return True
            found = groups.get(q.req.user)
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
            found = self.bookings.restriction(q.req, now).place(self.live.state, q.req)
        except NoFit:
            return None
        if not v.delays_none(found.host, now + q.req.max_hours * 3600.0):
            return None  # it might delay a protected request: the simulation decides
        return found

    def placement_now(self, req: Request, groups: tuple, now: float) -> Placement | None:
        """Where ``submit(req, queue=False)`` would grant ``req`` at ``now``, holding
        nothing (``req``'s pools resolved as submit does: Usage.resolve_pools);
        None: it would be refused (over a quota, or it waits). The same
        decisions in the same order as submit's: within quota; nobody waiting, the
        plain placement under the reservations' rule; else the last pass's view;
        else a pass of its own, whose grants are undone (the shape statistics
        frozen meanwhile, so that nothing a placement learns from moves)."""
        state = self.live.state
        verdict, placed = self.quota_verdict(req, groups, now)
        if not verdict.ok:
            return None
        if not self.queue:
            try:
                return self.bookings.restriction(placed, now).place(state, placed)
            except NoFit:
                return None
        q = Queued("placement-now", req, now, groups)
        if not self.orders_queue(req.user):
            found = self._starts_at_once(replace(q, req=placed), now)
            if found is not None:
                return found
        frozen, state.shapes.frozen = state.shapes.frozen, True
        admitted: list = []
        try:
            admitted = self._plan([*self.queue.values(), q], now).admitted
        finally:
            for _, a in admitted:
                state.release(a.id)
            state.shapes.frozen = frozen
        mine = next((a for x, a in admitted if x.id == q.id), None)
        return Placement(mine.host, mine.shares) if mine is not None else None

    def released(self, a: Allocation) -> None:
        """A live allocation ended (committed, accounted): let the queue move (no
        pass when nobody waits, or when the last pass's view says this release
        cannot change what a pass decides)."""
        if not self.queue:
            return  # a pass over an empty queue decides nothing
        v = self._current_view()
        if v is None or a.host in v.hosts or self.orders_queue(a.user):
            self.kick()

    # --- requests -------------------------------------------------------------------------

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
        A retried ``key`` gets what it got before (created False). It lands only
        in the host pools open to its user (Usage.resolve_pools). Raises
        QuotaExceeded (a hard limit), KeyConflict, NoFit (only with queue=False),
        core.pools.PoolError (it named a pool not open to its user).
        Each answer is timed, and each grant and refusal counted."""
        m = self.metrics
        t0 = time.perf_counter()
        try:
            got, created = await self._submit(req, groups, server, hub_server, key, queue, now)
        except NoFit:
            m.decision.observe(time.perf_counter() - t0)
            m.refused.labels("capacity").inc()
            raise
        except QuotaExceeded:
            m.decision.observe(time.perf_counter() - t0)
            m.refused.labels("quota").inc()
            raise
        if created:
            m.decision.observe(time.perf_counter() - t0)
            if isinstance(got, Allocation):
                m.granted.inc()
        return got, created

    async def _submit(self, req: Request, groups, server: str, hub_server: str | None, key: str | None,
                      queue: bool, now: float | None) -> tuple[Allocation | Queued, bool]:
        clock = now is None  # the real clock (else the caller's: decided here, at that time)
        now = time.time() if now is None else now
        live, usage = self.live, self.usage
        if groups is not None:
            usage.groups[req.user] = tuple(sorted(groups))
        groups = usage.groups.get(req.user, ())
        req = usage.resolve_pools(req, groups)  # PoolError: a pool not open to them
        if key is not None:
            await live.key_settled(key)
            found = live.by_key(key) or self.by_request_key(key)
            if found is not None:
                owner = found.req.user if isinstance(found, Queued) else found.user
                if owner != req.user:
                    raise KeyConflict(f"the key {key!r} belongs to another user's request")
                return found, False
        # (placed: kept off the pools over its user's quota; q keeps req as asked)
        verdict, placed = self.quota_verdict(req, groups, now)
        if verdict.verdict == "hard":
            raise QuotaExceeded(verdict.reason)
        if verdict.ok and not self.queue:
            try:  # nobody waits: the plain grant (group commit, no pass)
                return await self.grants.grant(placed, server=server, hub_server=hub_server, key=key, now=now)
            except NoFit:
                if not queue:
                    raise
        q = Queued(secrets.token_hex(8), req, now, groups, server, hub_server, key)
        if verdict.ok and not self.orders_queue(req.user):
            # (a user whose usage orders waiting requests changes their order: a pass)
            found = self._starts_at_once(replace(q, req=placed), now)
            if found is not None:  # delays nobody: granted as the pass would, without one
                self.fast_grants += 1
                return await self.grants.record(req, found, server=server, hub_server=hub_server,
                                                 key=key, now=now)
        if queue and clock:
            # decided by the next pass, with every request that arrives meanwhile:
            # one pass for a burst, not one each
            loop = asyncio.get_running_loop()
            answer, done = loop.create_future(), loop.create_future()
            self._arrivals.append((q, answer, done))
            if key is not None:
                live.pending_keys[key] = done  # a retry waits for this answer
            self.kick()
            return await answer
        return await self._decide_now(q, queue, now)

    async def _decide_now(self, q: Queued, queue: bool, now: float) -> tuple[Allocation | Queued, bool]:
        """A pass of its own for ``q`` at the caller's ``now`` (or not to be queued)."""
        live, req, key, hub_server = self.live, q.req, q.key, q.hub_server
        epoch = self._epoch
        p = self._plan([*self.queue.values(), q], now)
        mine = next((a for x, a in p.admitted if x.id == q.id), None)
        others = [(x, a) for x, a in p.admitted if x.id != q.id]
        for x, _ in others:
            self.queue.pop(x.id, None)
        ops = [op for x, a in others for op in (Insert(a, x.hub_server), EndRequest(x.id, "granted", now))]
        est = p.estimates.get(q.id)
        if mine is not None:
            live.hub_server[mine.id] = hub_server
            ops.append(Insert(mine, hub_server))
        elif queue:
            q = replace(q, first_eta=est.expected if est else None, first_latest=est.latest if est else None)
            ops.append(Enqueue(q))
        for x, a in others:
            live.hub_server[a.id] = x.hub_server
        done = asyncio.get_running_loop().create_future()
        if key is not None:
            live.pending_keys[key] = done
        try:
            await self._commit_plan(ops, p, {x.id: x for x, _ in others})
        finally:
            if key is not None:
                live.pending_keys.pop(key, None)
            done.set_result(None)
        self._note_plan(p, exclude={q.id})
        if mine is None and queue:
            self.queue[q.id] = q
        self._install_view(p, epoch)
        if mine is not None:
            return mine, True
        if not queue:
            _, placed = self.quota_verdict(req, q.groups, now)
            self.bookings.restriction(placed, now).place(live.state, placed)  # NoFit: why it does not fit
            raise NoFit(f"{est.reason if est else 'it does not fit now'}: {len(self.queue)} request(s) wait")
        if est is not None:
            self.estimates[q.id] = est
        self._log_queued(q, est)
        if epoch != self._epoch:
            self.kick()  # something changed while it was computed: estimates again
        # (else the pass that queued it estimated everyone behind it already)
        return q, True

    async def _commit_plan(self, ops: list, p, back: dict[str, Queued]) -> None:
        """Commit what pass ``p`` decided; if that fails, undo its grants in memory
        and put ``back`` in the queue the requests it took out."""
        try:
            await self.commit.commit(ops)
        except BaseException:
            for _, a in p.admitted:
                self.live.state.release(a.id)
                self.live.hub_server.pop(a.id, None)
            self.queue.update(back)
            raise

    def _log_queued(self, q: Queued, est: Estimate | None) -> None:
        self.log.info("queued %s of %s (%s): position %s, start %s, at the latest %s", q.id,
                      q.req.user, est.reason if est else "", est.position if est else "?",
                      when(est.expected) if est and est.expected else "unknown",
                      when(est.latest) if est and est.latest else "unknown")

    def _note_plan(self, p, exclude=()) -> None:
        """Log and count the grants of requests that waited (``exclude``: those
        answered by their own submit, which counts them), keep the estimates."""
        for x, a in p.admitted:
            if x.id not in exclude:
                self.metrics.granted.inc()
                self.metrics.queue_wait.observe(max(0.0, a.created - x.submitted))
                self.log.info("granted queued %s of %s on %s after %.0f s", a.id, a.user, a.host,
                              a.created - x.submitted)
        self.estimates.update({k: v for k, v in p.estimates.items() if k in self.queue})

    # --- passes ---------------------------------------------------------------------------

    def kick(self) -> None:
        """Run a scheduling pass soon (passes never overlap; kicks coalesce). Until
        it has run, no grant is decided from the last pass's QueueView."""
        self.invalidate()
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
                if q.key is not None and self.live.pending_keys.get(q.key) is done:
                    del self.live.pending_keys[q.key]
                done.set_result(None)

    async def _schedule(self, arrivals: list, now: float | None) -> list[Allocation]:
        now = time.time() if now is None else now
        self.passes += 1
        epoch = self._epoch
        live = self.live
        ops = []
        for q in list(self.queue.values()):
            wait = self.usage.limits(q.req.user).max_wait_hours
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
            live.hub_server[a.id] = x.hub_server
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
            self._install_view(p, epoch)
            return []
        await self._commit_plan(ops, p, gone)
        for q in waits:
            self.queue[q.id] = q
        self._note_plan(p, exclude=set(new))
        self._install_view(p, epoch)
        for op in ops:
            if isinstance(op, EndRequest) and op.state != "granted":
                self.log.warning("request %s left the queue: %s (%s)", op.request_id, op.state, op.reason)
        for x, a in p.admitted:
            if x.id in new:
                new.pop(x.id).set_result((a, True))
        for q in waits:
            self._log_queued(q, p.estimates.get(q.id))
            new.pop(q.id).set_result((q, True))
        arrived = {q.id for q, _, _ in arrivals}
        return [a for x, a in p.admitted if x.id not in arrived]

    # --- waiting requests: read, cancel, priorities, quotas ------------------------------------

    async def cancel(self, request_id: str, now: float | None = None, reason: str | None = None,
                     extra: tuple = ()) -> Queued | None:
        """Take a waiting request out of the queue (None: it is not waiting).
        ``extra``: ledger operations written in the same transaction (an audit entry)."""
        q = self.queue.pop(request_id, None)
        if q is None:
            return None
        self.estimates.pop(request_id, None)
        try:
            await self.commit.commit([EndRequest(request_id, "cancelled", time.time() if now is None else now,
                                                 reason), *extra])
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
        return await self.commit.read(self.commit.ledger.get_request, request_id)

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
        await self.commit.commit([SetPriority(request_id, priority), *extra])
        q = self.queue.get(request_id)
        if q is None:  # granted or ended meanwhile: the row kept its state
            return None
        q = self.queue[request_id] = replace(q, priority=priority)
        self.kick()
        return q

    async def set_quota(self, kind: str, name: str, limits: Limits | None, extra: tuple = (),
                        pool: str = "") -> None:
        """Set or (None) remove the quota row of a user or group, over every pool
        or in ``pool`` (there also kind "default"; ``extra``: ledger operations
        written in the same transaction, an audit entry)."""
        await self.commit.commit([PutQuota(kind, name, limits, pool), *extra])
        self.usage.set_limits(kind, name, limits, pool)
        self.kick()
