"""The queue: which waiting requests start now, and when the others will. Pure
(no I/O, no clock: ``now`` is an argument), separate from placement.

Order (:func:`order`) is a function of the pending requests, the running shares
and the policy only:

1. priority (per group, admin-set; see core.quota), higher first;
2. fair share: the group, then the user, with the smaller decayed GPU usage
   relative to their entitlement first (core.fairshare);
3. arrival, then id.

Admission (:func:`plan`) walks that order once, with no per-pass cap:

- a request over a quota now waits (its reason is the quota's); it reserves
  nothing;
- a request that fits now starts if it cannot delay the estimated start of
  any request ahead of it that is waiting for capacity (conservative backfill):
  either it ends (at its declared ``max_hours``) before the earliest of their
  starts, or a forward simulation with it running gives each of them the same
  start as without it;
- otherwise it waits, and requests behind it must not delay it in turn. The
  first ``depth`` such waiting requests are protected this way (as Slurm's
  bf_max_job_test); requests behind that many do not start ahead of them.

Estimates (:func:`simulate`): the schedule simulated forward, as Slurm's
``squeue --start``: running shares end at their declared end (created +
max_hours), waiting requests start in order as soon as they fit and run their
whole ``max_hours``. That gives ``latest``: the start if every share uses its full
time (a bound that holds unless a request of higher priority or smaller usage
arrives ahead). ``expected`` runs the same simulation with every run time
scaled by ``ratio`` (the observed used / declared run time of finished shares).

The simulation (:class:`Sim`) fits requests on free units, CPU and memory per
host with a simple tightest-fit rule; the start *now* uses the real placement
(core.placement) on the real PoolState.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .fairshare import FairShare
from .model import Allocation, Request, format_gpus, milli
from .placement import NoFit, place
from .quota import Held, Quotas, add, check

#: waiting requests whose estimated start later ones must not delay
DEPTH = 32


@dataclass(frozen=True)
class Queued:
    """A request waiting in the queue (its id becomes the allocation's id)."""

    id: str
    req: Request
    submitted: float
    groups: tuple[str, ...] = ()
    server: str = ""
    hub_server: str | None = None
    key: str | None = None
    #: the first estimate given (expected, latest), for the record
    first_eta: float | None = None
    first_latest: float | None = None


@dataclass(frozen=True)
class Estimate:
    position: int  # 1-based place in the queue's order
    expected: float | None  # estimated start (epoch s); None: unknown
    latest: float | None  # start if every share runs its full time
    reason: str


@dataclass
class Plan:
    #: (queued request, allocation granted in the state passed to plan)
    admitted: list[tuple[Queued, Allocation]] = field(default_factory=list)
    estimates: dict[str, Estimate] = field(default_factory=dict)
    #: requests refused for good while waiting (a quota became a hard limit)
    refused: dict[str, str] = field(default_factory=dict)
    #: ids of the requests waiting for capacity whose start later ones must not
    #: delay (at most ``depth``), in order (LivePool's fast path checks against them)
    protected: list[str] = field(default_factory=list)


# --- the simulated pool ----------------------------------------------------------------


class Sim:
    """Free GPU units per device and CPU / memory per up host: cheap to copy."""

    __slots__ = ("upg", "hosts", "model", "host_of", "free", "cpu", "mem", "_for", "_pos")

    def __init__(self, state=None):
        if state is None:
            return
        self.upg = state.units_per_gpu
        self.hosts = {}
        self.model, self.host_of, self.free, self.cpu, self.mem = {}, {}, {}, {}, {}
        for name in state.up_names():
            h = state.hosts[name]
            self.hosts[name] = tuple(d.uuid for d in h.devices)
            for d in h.devices:
                self.model[d.uuid], self.host_of[d.uuid] = d.model, name
                self.free[d.uuid] = state.free[d.uuid]
            self.cpu[name], self.mem[name] = state.host_room(name)
        # why: fit() looks only at the hosts a request could use, and after a
        # failed fit only at the hosts whose room grew since. Shared by copies;
        # what it holds (hosts, models) never changes in a Sim or its copies.
        self._for: dict = {}
        self._pos = {h: i for i, h in enumerate(self.hosts)}

    def copy(self) -> Sim:
        s = Sim()
        s.upg, s.hosts, s.model, s.host_of = self.upg, self.hosts, self.model, self.host_of
        s._for, s._pos = self._for, self._pos
        s.free, s.cpu, s.mem = dict(self.free), dict(self.cpu), dict(self.mem)
        return s

    def _candidates(self, req: Request) -> tuple[tuple[str, ...], frozenset]:
        """The up hosts ``req`` could ever use here, in host order (and as a set)."""
        key = (req.units == 0, req.models)
        found = self._for.get(key)
        if found is None:
            models = req.models
            hosts = tuple(h for h, devs in self.hosts.items()
                          if req.units == 0 or (devs and (not models or any(self.model[u] in models for u in devs))))
            found = self._for[key] = (hosts, frozenset(hosts))
        return found

    def fit(self, req: Request, only=None):
        """(host, ((uuid, units), …)) where ``req`` fits now, or None. ``only``: the
        hosts to look at (the others are known not to fit); None: all."""
        c, m, per = milli(req.cpu), req.mem_mb, self.upg
        hosts, can = self._candidates(req)
        if only is not None:
            hosts = sorted((h for h in only if h in can), key=self._pos.__getitem__)
        best = None
        if req.units == 0:
            for h in hosts:
                if self.cpu[h] >= c and self.mem[h] >= m:
                    return h, ()
            return None
        free, model, models = self.free, self.model, req.models
        if req.units < per:
            for h in hosts:
                if self.cpu[h] < c or self.mem[h] < m:
                    continue
                for u in self.hosts[h]:
                    f = free[u]
                    if f >= req.units and (not models or model[u] in models):
                        k = (f, h, u)
                        if best is None or k < best[0]:
                            best = (k, h, ((u, req.units),))
            return None if best is None else best[1:]
        n = req.units // per
        for h in hosts:
            if self.cpu[h] < c or self.mem[h] < m:
                continue
            idle = [u for u in self.hosts[h] if free[u] == per and (not models or model[u] in models)]
            if len(idle) >= n:
                k = (len(idle), h)
                if best is None or k < best[0]:
                    best = (k, h, tuple((u, per) for u in idle[:n]))
        return None if best is None else best[1:]

    def take(self, host: str, shares, cpu_milli: int, mem: int, sign: int = -1) -> None:
        if host not in self.cpu:
            return  # a host that is not up: nothing to give or take
        for u, units in shares:
            if u in self.free:
                self.free[u] += sign * units
        self.cpu[host] += sign * cpu_milli
        self.mem[host] += sign * mem


@dataclass(frozen=True)
class Run:
    """A share in the simulation: where it is and when it ends."""

    end: float
    host: str
    shares: tuple
    cpu: int
    mem: int


def run_of(a: Allocation, end: float) -> Run:
    return Run(end, a.host, tuple((s.device_uuid, s.units) for s in a.shares), milli(a.cpu), a.mem_mb)


def simulate(sim: Sim, running: list[Run], waiting: list[Request], now: float,
             ratio: float = 1.0) -> list[float | None]:
    """Start times of ``waiting`` (in order: none starts before the one ahead),
    running shares ending at their ``end`` (with ``ratio`` < 1, at their start +
    ratio × their time; see the module docstring); None: never (with what is
    up now). ``sim`` is not changed."""
    sim = sim.copy()
    heap = [(max(now, r.end), i, r) for i, r in enumerate(running)]
    heapq.heapify(heap)
    seq = len(running)
    t, out = now, []
    for req in waiting:
        grew = None  # after a failed fit: the hosts whose room grew since (only they can fit)
        while True:
            found = sim.fit(req, grew)
            if found is not None:
                host, shares = found
                sim.take(host, shares, milli(req.cpu), req.mem_mb)
                seq += 1
                heapq.heappush(heap, (t + ratio * req.max_hours * 3600.0, seq,
                                      Run(0, host, shares, milli(req.cpu), req.mem_mb)))
                out.append(t)
                break
            if not heap:
                out.extend([None] * (len(waiting) - len(out)))
                return out
            t = max(t, heap[0][0])
            grew = set()
            while heap and heap[0][0] <= t:
                _, _, r = heapq.heappop(heap)
                sim.take(r.host, r.shares, r.cpu, r.mem, sign=+1)
                grew.add(r.host)
    return out


def scaled_running(running: list[tuple[Allocation, float]], now: float, ratio: float) -> list[Run]:
    """Running shares with their ends scaled: start + ratio × (declared end − start)."""
    out = []
    for a, end in running:
        e = end if ratio >= 1.0 else a.created + ratio * (end - a.created)
        out.append(run_of(a, max(now, e)))
    return out


# --- order ----------------------------------------------------------------------------


class Ordering:
    """The queue's sort key: priority, then fair share (the charged group's — the
    sum of its members' — then the user's decayed GPU-seconds / entitlement; a running share counts its
    whole declared time — what it was granted — so that long shares do not look
    cheap while they run), then arrival. A user's groups: ``groups_of(user)``
    where it knows them, else those of their waiting requests. :meth:`charge`
    counts a request admitted during a pass, so that the rest of the pass sees
    its user's usage grow."""

    def __init__(self, pending, running, quotas: Quotas, fairshare: FairShare, now: float,
                 units_per_gpu: int, groups_of=None):
        self.quotas, self.fairshare, self.now, self.per = quotas, fairshare, now, units_per_gpu
        self.by_user: dict[str, list[tuple[Allocation, float]]] = {}
        for a, end in running:
            self.by_user.setdefault(a.user, []).append((a, end))
        seen = {q.req.user: q.groups for q in pending}
        self.members: dict[str, set] = {}
        self.group: dict[str, str] = {}
        for u in set(self.by_user) | set(seen):
            found = groups_of(u) if groups_of is not None else None
            g = quotas.charged_group(u, found if found is not None else seen.get(u, ()))
            self.group[u] = g
            self.members.setdefault(g, set()).add(u)
        self.usage: dict[str, float] = {}
        self._prefix: dict[tuple, tuple] = {}

    def _user(self, u: str) -> float:
        key = f"user:{u}"
        if key not in self.usage:
            run = [(a.units / self.per, a.created, end) for a, end in self.by_user.get(u, ())]
            self.usage[key] = self.fairshare.usage(key, self.now, run)
        return self.usage[key]

    def _usage(self, kind: str, name: str, users) -> float:
        """A user's usage; a group's: the sum of its members'."""
        if kind == "user":
            return self._user(name)
        key = f"group:{name}"
        if key not in self.usage:
            self.usage[key] = sum(self._user(u) for u in users)
        return self.usage[key]

    def key(self, q: Queued) -> tuple:
        u = q.req.user
        pk = (u, q.groups)
        prefix = self._prefix.get(pk)
        if prefix is None:
            lim = self.quotas.resolve(u, q.groups)
            g = self.quotas.charged_group(u, q.groups)
            row = self.quotas.groups.get(g)
            gshare = row.share if row is not None and row.share else 1.0
            gu = self._usage("group", g, self.members.get(g, {u})) / gshare if g else 0.0
            uu = self._usage("user", u, (u,)) / (lim.share or 1.0)
            prefix = self._prefix[pk] = (-(lim.priority or 0), round(gu, 3), round(uu, 3))
        return prefix + (q.submitted, q.id)

    def charge(self, q: Queued) -> None:
        u = q.req.user
        more = q.req.units / self.per * q.req.max_hours * 3600.0
        self.usage[f"user:{u}"] = self._user(u) + more
        for k in [k for k in self.usage if k.startswith("group:")]:
            del self.usage[k]
        self._prefix.clear()


def order(pending: list[Queued], running: list[tuple[Allocation, float]], quotas: Quotas,
          fairshare: FairShare, now: float, units_per_gpu: int, groups_of=None) -> list[Queued]:
    """The queue in order (see :class:`Ordering`)."""
    return sorted(pending, key=Ordering(pending, running, quotas, fairshare, now,
                                        units_per_gpu, groups_of).key)


# --- admission ------------------------------------------------------------------------


def describe(req: Request, units_per_gpu: int) -> str:
    """"2 × A100" or "0.5 GPU" or "0.5 × L4": what a request waits for."""
    model = "/".join(sorted(req.models)) if req.models else ""
    if req.units >= units_per_gpu:
        n = req.units // units_per_gpu
        return f"{n} × {model}" if model else f"{n} GPU" + ("s" if n > 1 else "")
    g = format_gpus(req.units, units_per_gpu)
    return f"{g} × {model}" if model else f"{g} GPU"


def plan(state, running: list[tuple[Allocation, float]], pending: list[Queued], *,
         now: float, quotas: Quotas, fairshare: FairShare, held: dict[str, Held],
         ratio: float = 1.0, depth: int = DEPTH, groups_of=None,
         fair: bool = True, backfill: bool = True) -> Plan:
    """Admit what may start now and estimate the rest (see the module docstring).

    ``fair=False``: arrival order only (no priority, no fair share);
    ``backfill=False``: nothing starts behind a request that waits for capacity
    (strict FIFO with ``fair=False``). The defaults are gpuhub's policy; the
    others exist for comparison (benchmarks/queue_replay.py).

    The admitted requests are *granted in ``state``* (their allocations carry the
    request's id, ``now`` as created, and the real placement); the caller records
    them or releases them again. ``running``: live allocations with their
    declared end. ``held``: per user, what quotas count (updated here)."""
    per = state.units_per_gpu
    out = Plan()
    ordering = Ordering(pending, running, quotas, fairshare, now, per, groups_of)
    key = ordering.key if fair else (lambda x: (x.submitted, x.id))
    queue = sorted(pending, key=key)
    sim = Sim(state)
    runs = [run_of(a, max(now, e)) for a, e in running]
    blocked: list[Queued] = []  # waiting for capacity, protected (≤ depth)
    starts: list[float | None] = []  # their simulated starts (declared times)
    stale = False  # starts must be simulated again (computed only when needed)
    reasons: dict[str, str] = {}
    i = 0
    while i < len(queue):
        q = queue[i]
        i += 1
        req = q.req
        if not backfill and len(blocked) >= depth:  # strict order: nothing behind moves
            reasons[q.id] = f"waiting behind {depth} requests"
            continue
        limits = quotas.resolve(req.user, q.groups)
        h = held.get(req.user, Held())
        verdict = check(limits, h, req, per)
        if verdict.verdict == "hard":
            out.refused[q.id] = verdict.reason
            continue
        if not verdict.ok:
            reasons[q.id] = verdict.reason
            continue
        if len(blocked) >= depth:
            reasons[q.id] = f"waiting behind {depth} requests"
            continue
        if blocked and not backfill:
            reasons[q.id] = "waiting for the requests ahead"
            blocked.append(q)
            stale = True
            continue
        p = None
        if sim.fit(req) is not None:
            try:
                p = place(state, req)
            except NoFit:  # the simulation's fit is looser than placement's
                p = None
        if p is not None:
            end = now + req.max_hours * 3600.0
            shares = tuple((s.device_uuid, s.units) for s in p.shares)
            mine = Run(end, p.host, shares, milli(req.cpu), req.mem_mb)
            if stale:
                starts, stale = simulate(sim, runs, [b.req for b in blocked], now), False
            known = [s for s in starts if s is not None]
            if not known or end <= min(known):
                admit = True
            else:
                trial = sim.copy()
                trial.take(p.host, shares, milli(req.cpu), req.mem_mb)
                after = simulate(trial, runs + [mine], [b.req for b in blocked], now)
                admit = all(b is None or (a is not None and a <= b + 1e-6) for a, b in zip(after, starts))
            if admit:
                a = Allocation(
                    id=q.id, user=req.user, host=p.host, units=req.units, cpu=req.cpu,
                    mem_mb=req.mem_mb, max_hours=req.max_hours, shares=p.shares,
                    server=q.server, created=now, key=q.key,
                )
                state.grant(a)
                sim.take(p.host, shares, milli(req.cpu), req.mem_mb)
                runs.append(mine)
                held[req.user] = add(h, req, per)
                out.admitted.append((q, a))
                if fair:
                    ordering.charge(q)  # the rest of the pass sees the user's usage grow
                    queue[i:] = sorted(queue[i:], key=key)
                stale = bool(blocked)
                continue
            reasons[q.id] = "waiting: starting now would delay requests ahead"
        if q.id not in reasons:
            reasons[q.id] = f"waiting for {describe(req, per)} to be free"
        blocked.append(q)
        stale = True
    if stale:
        starts = simulate(sim, runs, [b.req for b in blocked], now)
    # estimates for what still waits
    latest = dict(zip((b.id for b in blocked), starts))
    expected = latest
    if ratio < 1.0 and blocked:
        exp_runs = scaled_running(running, now, ratio) + [
            Run(now + ratio * q.req.max_hours * 3600.0, a.host,
                tuple((s.device_uuid, s.units) for s in a.shares), milli(a.cpu), a.mem_mb)
            for q, a in out.admitted
        ]
        expected = dict(zip((b.id for b in blocked),
                            simulate(sim, exp_runs, [b.req for b in blocked], now, ratio)))
    out.protected = [b.id for b in blocked]
    admitted = {q.id for q, _ in out.admitted}
    position = 0
    for q in queue:
        if q.id in admitted or q.id in out.refused:
            continue
        position += 1
        lt = latest.get(q.id)
        ex = expected.get(q.id)
        if ex is not None and lt is not None:
            ex = min(ex, lt)
        out.estimates[q.id] = Estimate(position, ex, lt, reasons.get(q.id, ""))
    return out
