"""The queue: which waiting requests start now, and when the others will. Pure
(no I/O, no clock: ``now`` is an argument), separate from placement.

Order (:func:`order`) is a function of the pending requests, the running shares
and the policy only:

1. priority, higher first: the request's own where an admin set one
   (``Queued.priority``), else its user's / groups' (see core.quota);
2. fair share: the group, then the user, with the smaller decayed GPU usage
   relative to their entitlement first (core.fairshare);
3. arrival, then id.

Promises: the first ``latest`` a waiting request is given (``Queued.first_latest``,
"at the latest") is a commitment, as a reservation in conservative backfill.
Fair share may still reorder the queue, but not at a promise's expense.

Admission (:func:`plan`) walks the queue once, with no per-pass cap, in the
*commit order* (:func:`commit_order`): the fair order, repaired where the
simulation would start a promised request after its promise (that request
moves ahead, earliest promise first); if no repair keeps every promise, the
previous pass's order, which kept them all and replays unchanged when every
share uses its full time (the promise holds by construction).

- a request over a quota now waits (its reason is the quota's); it reserves
  nothing;
- a request that fits now starts if, with it running for its whole
  ``max_hours``, the re-simulated start of the first waiting request ahead of
  it (the head) is no later, and that of *every* promised request (ahead or
  behind) no later than its promise. Placement does not know the promises: if
  its choice fails the test, the simulation's own choice of devices is tried;
- otherwise it waits. The promised requests and the first ``depth`` others
  are simulated (as Slurm's bf_max_job_test); once ``depth`` wait, the
  unpromised ones behind them wait unsimulated, with no estimate.

Estimates (:func:`simulate`): the schedule simulated forward in the commit
order, as Slurm's ``squeue --start``: running shares end at their declared end
(created + max_hours), waiting requests start in order as soon as they fit and
run their whole ``max_hours``. That gives ``latest``: the start if every share
uses its full time (a request's first one is its promise). ``expected`` runs the
same simulation with every run time scaled by ``ratio`` (the observed used /
declared run time of finished shares).

Advance reservations (core.reservations, through ``plan(..., restrict=)``;
:class:`Rules`): every fit, placement and simulation of a pass leaves others'
reserved devices to them (in the simulation, as at each simulated start, waking
at the reservations' ends); a request that only a reservation keeps out waits
with the reservation's reason.

The simulation (:class:`Sim`) fits requests on free units, CPU and memory per
host with a simple tightest-fit rule; the start *now* uses the real placement
(core.placement) on the real PoolState.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import count, repeat
from operator import attrgetter
from typing import NamedTuple

from .fairshare import FairShare
from .model import Allocation, HostState, Request, Share, format_gpus, milli
from .placement import NoFit, place
from .pools import closed_text, may_use
from .quota import Decision, Held, Quotas, add, check, pool_decision, within_pools
from .state import StateError

#: waiting requests whose estimated start later ones must not delay
DEPTH = 32
#: seconds of slack when a simulated start is compared with another or a promise
EPS = 1e-6
ARRIVAL = attrgetter("submitted", "id")
AHEAD = "waiting: starting now would delay requests ahead"
PROMISE = "waiting: starting now would break the promised start of another request"


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
    #: the first estimate given (expected, latest); ``first_latest`` is a promise
    first_eta: float | None = None
    first_latest: float | None = None
    #: set by an admin on this request: replaces its user's / groups' priority
    priority: int | None = None


class Estimate(NamedTuple):
    """One per waiting request and pass (a tuple: cheap to build by the thousand)."""

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
    #: ids of the waiting requests the pass simulated (the head and every promised
    #: one among them: all whose start the rule protects), in order (QueueView)
    protected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class QueueView:
    """What the last scheduling pass found about the requests waiting for capacity,
    kept so that a request that can delay none of them is granted (and a release
    that cannot move the queue is applied) without another pass over the whole queue.

    Pure (built from a Plan, the queue and the state): LivePool keeps one.

    Why it stays true: a grant that fits now (under the reservations' rule) and
    either ends before every protected start or lands on a host no protected
    request could use leaves every simulated start as it was; the protected
    requests are all those the pass simulated (the head and every promised one
    among them), so core.queue.plan's rule (``_keeps``: the head no later, every
    promise kept) would admit it too; a
    release on such a host, by a user whose (or whose group's) fair share orders
    no waiting request, changes nothing a pass computes. What invalidates it:
    ``LivePool.kick`` (every event that may let the queue move: a release that
    matters, a request enqueued or cancelled, a quota, a host registered, drained,
    lost), ``extend``, and any host change (``hosts_version``)."""

    hosts_version: int
    #: the protected requests, in the pass's order
    protected: tuple[Queued, ...]
    #: earliest simulated start among them (inf: none; -inf: one is not known)
    first_start: float
    #: hosts with a device one of them could use in the simulation
    hosts: frozenset[str]
    #: a promised request the pass could not start at all: plan() admits nothing
    #: that has to be checked against it, so every grant waits for a pass
    stuck: bool = False

    @classmethod
    def build(cls, p: Plan, queue, state, depth: int) -> QueueView | None:
        """The view of pass ``p`` (``queue``: the waiting requests by id, as the
        pass left them; ``state``: the PoolState it ran on); None where one of
        its protected requests no longer waits."""
        protected = tuple(queue[i] for i in p.protected if i in queue)
        if len(protected) != len(p.protected):
            return None
        ests = [p.estimates.get(q.id) for q in protected]
        unknown = [q for q, e in zip(protected, ests) if e is None or e.latest is None]
        starts = [e.latest for e in ests if e is not None and e.latest is not None]
        # a protected start not known: nothing "ends before" it (only other hosts)
        first = float("-inf") if unknown else min(starts, default=float("inf"))
        reqs = [q.req for q in protected]
        if any(r.units == 0 for r in reqs) or any(not r.models for r in reqs):
            hosts = frozenset(h.name for h in state.hosts.values()
                              if h.devices or any(r.units == 0 for r in reqs))
        else:
            models = frozenset().union(*(r.models for r in reqs))
            hosts = frozenset(h.name for h in state.hosts.values()
                              if any(d.model in models for d in h.devices))
        return cls(state.hosts_version, protected, first, hosts,
                   any(q.first_latest is not None for q in unknown))

    def delays_none(self, host: str, end: float) -> bool:
        """Whether a share placed on ``host`` now until ``end`` moves no protected
        request's simulated start (so plan()'s ``_keeps`` admits it)."""
        return not self.stuck and (end <= self.first_start or host not in self.hosts)



# --- the simulated pool ----------------------------------------------------------------


class Sim:
    """Free GPU units per device and CPU / memory per up host: cheap to copy."""

    __slots__ = ("upg", "hosts", "model", "host_of", "free", "cpu", "mem", "_for", "_pos", "drained", "pools")

    def __init__(self, state=None):
        if state is None:
            return
        self.upg = state.units_per_gpu
        self.hosts = {}
        self.model, self.host_of, self.free, self.cpu, self.mem = {}, {}, {}, {}, {}
        #: the host pools of each up host (core.pools)
        self.pools = {}
        for name in state.up_names():
            h = state.hosts[name]
            self.hosts[name] = tuple(d.uuid for d in h.devices)
            self.pools[name] = h.pools
            for d in h.devices:
                self.model[d.uuid], self.host_of[d.uuid] = d.model, name
                self.free[d.uuid] = state.free[d.uuid]
            self.cpu[name], self.mem[name] = state.host_room(name)
        #: hosts under maintenance and their GPU models: what shortage() names
        self.drained = {n: frozenset(d.model for d in h.devices) for n, h in state.hosts.items()
                        if h.state == HostState.DRAINED}
        # why: fit() looks only at the hosts a request could use, and after a
        # failed fit only at the hosts whose room grew since. Shared by copies;
        # what it holds (hosts, models) never changes in a Sim or its copies.
        self._for: dict = {}
        self._pos = {h: i for i, h in enumerate(self.hosts)}

    def copy(self) -> Sim:
        s = Sim()
        s.upg, s.hosts, s.model, s.host_of, s.pools = self.upg, self.hosts, self.model, self.host_of, self.pools
        s._for, s._pos, s.drained = self._for, self._pos, self.drained
        s.free, s.cpu, s.mem = dict(self.free), dict(self.cpu), dict(self.mem)
        return s

    def _candidates(self, req: Request) -> tuple[tuple[str, ...], frozenset]:
        """The up hosts ``req`` could ever use here (its models, its pools), in
        host order (and as a set)."""
        key = (req.units == 0, req.models, req.pools, req.closed_pools)
        found = self._for.get(key)
        if found is None:
            models, allowed, closed = req.models, req.pools, req.closed_pools
            hosts = tuple(h for h, devs in self.hosts.items()
                          if (req.units == 0 or (devs and (not models or any(self.model[u] in models for u in devs))))
                          and may_use(self.pools[h], allowed, closed))
            found = self._for[key] = (hosts, frozenset(hosts))
        return found

    def fit(self, req: Request, exclude: frozenset[str] = frozenset(), only=None):
        """(host, ((uuid, units), …)) where ``req`` fits now, or None;
        ``exclude``: devices it may not use (others' reservations); ``only``: the
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
                    if f >= req.units and (not models or model[u] in models) and u not in exclude:
                        k = (f, h, u)
                        if best is None or k < best[0]:
                            best = (k, h, ((u, req.units),))
            return None if best is None else best[1:]
        n = req.units // per
        for h in hosts:
            if self.cpu[h] < c or self.mem[h] < m:
                continue
            idle = [u for u in self.hosts[h] if free[u] == per and (not models or model[u] in models)
                    and u not in exclude]
            if len(idle) >= n:
                k = (len(idle), h)
                if best is None or k < best[0]:
                    best = (k, h, tuple((u, per) for u in idle[:n]))
        return None if best is None else best[1:]

    def _gpus_fit(self, host: str, req: Request, exclude: frozenset[str]) -> bool:
        """Whether ``req``'s GPUs alone (not its CPU or memory) fit on ``host`` now."""
        free, model, models, per = self.free, self.model, req.models, self.upg
        ok = [u for u in self.hosts[host] if (not models or model[u] in models) and u not in exclude]
        if req.units == 0:
            return True
        if req.units < per:
            return any(free[u] >= req.units for u in ok)
        return sum(1 for u in ok if free[u] == per) >= req.units // per

    def shortage(self, req: Request, exclude: frozenset[str] = frozenset()) -> str:
        """Why ``req`` does not fit now, for the one waiting: what is short — GPUs
        (of its models), CPU cores or memory beside free GPUs — so that a request
        short of cores never reads as waiting for a GPU. ``exclude``: devices it
        may not use (others' reservations)."""
        what = describe(req, self.upg)
        hosts, _ = self._candidates(req)
        if self.fit(req, exclude) is not None:  # fits here, not under placement's finer rules
            return f"waiting for {what} to be free"
        if req.pools is not None:
            closed = self.closed_fit(req, exclude)
            if closed:
                mine = closed_text(req.pools) if req.pools else "no pool"
                return (f"waiting for {what} to be free in {mine} (open to you); it would fit now "
                        f"in {closed_text(closed)}, which {'is' if len(closed) == 1 else 'are'} not open to you")
        with_gpus = [h for h in hosts if self._gpus_fit(h, req, exclude)]
        if not with_gpus:
            away = sorted(n for n, models in self.drained.items()
                          if req.units and (not req.models or models & req.models))
            if away:
                return (f"waiting for {what} to be free; {', '.join(away[:3])}"
                        f"{' and more' if len(away) > 3 else ''} {'is' if len(away) == 1 else 'are'}"
                        " under maintenance (drained)")
            return f"waiting for {what} to be free"
        c, m = milli(req.cpu), req.mem_mb
        cpu_short = all(self.cpu[h] < c for h in with_gpus)
        mem_short = all(self.mem[h] < m for h in with_gpus)
        beside = "beside it" if req.units else "on any host"
        most_cpu = max(with_gpus, key=lambda h: self.cpu[h])
        most_mem = max(with_gpus, key=lambda h: self.mem[h])
        cores = f"{req.cpu:g} CPU core" + ("" if req.cpu == 1 else "s")
        memory = f"{format_mb(m)} of memory"
        have_cpu = f"{max(self.cpu[most_cpu], 0) / 1000:g} cores free ({most_cpu})"
        have_mem = f"{format_mb(max(self.mem[most_mem], 0))} free ({most_mem})"
        head = f"{what} is free, but" if req.units else "no host has"
        if cpu_short and mem_short:
            return f"waiting for {cores} and {memory}: {head} at most {have_cpu} and {have_mem} {beside}"
        if cpu_short:
            return f"waiting for {cores}: {head} at most {have_cpu} {beside}"
        if mem_short:
            return f"waiting for {memory}: {head} at most {have_mem} {beside}"
        return (f"waiting for {cores} and {memory} on one host: where {what} is free, "
                "a host has either too few cores or too little memory")

    def closed_fit(self, req: Request, exclude: frozenset[str] = frozenset()) -> frozenset[str]:
        """The pools not open to ``req`` (not in ``req.pools``) of the hosts where
        it would fit now; empty when it fits nowhere else either."""
        if req.pools is None:
            return frozenset()
        found = self.fit(replace(req, pools=None), exclude)
        if found is None:
            return frozenset()
        return frozenset(self.pools[found[0]]) - req.pools

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
             ratio: float = 1.0, excludes: list | None = None, wake=()) -> list[float | None]:
    """Start times of ``waiting`` (in order: none starts before the one ahead),
    running shares ending at their ``end`` (with ``ratio`` < 1, at their start +
    ratio × their time; see the module docstring); None: never (with what is
    up now). ``sim`` is not changed. ``excludes``: per waiting request, a
    function of the start time giving the devices it may not use (others'
    reservations); ``wake``: times when those change (reservations' ends)."""
    sim = sim.copy()
    heap = [(max(now, r.end), i, r) for i, r in enumerate(running)]
    seq = len(running)
    for w in wake:  # nothing is given back then, but the exclusions move
        seq += 1
        heap.append((max(now, w), seq, Run(w, "", (), 0, 0)))
    heapq.heapify(heap)
    t, out = now, []
    host_of = sim.host_of
    for k, req in enumerate(waiting):
        # after a failed fit: the hosts whose room grew since (only they can fit);
        # a device leaving the exclusions (a reservation ended) counts as room
        grew, ex = None, frozenset()
        while True:
            if excludes:
                now_ex = excludes[k](t)
                if grew is not None and now_ex != ex:
                    grew.update(host_of[u] for u in ex - now_ex if u in host_of)
                ex = now_ex
            found = sim.fit(req, ex, grew)
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
    """The queue's sort key: priority (the request's own, else its user's /
    groups'), then fair share (the charged group's — the
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
        if q.priority is not None:  # the request's own priority replaces its user's
            return (-q.priority,) + prefix[1:] + (q.submitted, q.id)
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


def format_mb(mb: int) -> str:
    """Memory as the form asks for it: "64G", "1.5G", "512M"."""
    if mb >= 1024:
        return f"{mb / 1024:.1f}".rstrip("0").rstrip(".") + "G"
    return f"{mb}M"


def describe(req: Request, units_per_gpu: int) -> str:
    """"2 × A100" or "0.5 GPU" or "0.5 × L4": what a request waits for."""
    model = "/".join(sorted(req.models)) if req.models else ""
    if req.units >= units_per_gpu:
        n = req.units // units_per_gpu
        return f"{n} × {model}" if model else f"{n} GPU" + ("s" if n > 1 else "")
    g = format_gpus(req.units, units_per_gpu)
    return f"{g} × {model}" if model else f"{g} GPU"


class Rules:
    """The reservations' rule during one pass: ``restrict(req, t)`` gives a
    core.reservations.Restriction for ``req`` starting at ``t``; None: no
    reservations (nothing excluded, plain placement, the simulation unchanged).
    One place for what every simulation and start of the pass must respect."""

    __slots__ = ("restrict", "now", "_at_now")

    def __init__(self, restrict=None, now: float = 0.0):
        self.restrict, self.now = restrict, now
        self._at_now: dict[str, object] = {}  # request id → its rule starting now

    def at_now(self, x: Queued):
        """``x``'s rule if it started now (None without reservations)."""
        if self.restrict is None:
            return None
        rule = self._at_now.get(x.id)
        if rule is None:
            rule = self._at_now[x.id] = self.restrict(x.req, self.now)
        return rule

    def exclude(self, x: Queued) -> frozenset[str]:
        rule = self.at_now(x)
        return rule.exclude if rule is not None else frozenset()

    def place(self, state, x: Queued):
        """The real placement under ``x``'s rule (raises NoFit)."""
        rule = self.at_now(x)
        return rule.place(state, x.req) if rule is not None else place(state, x.req)

    def reason(self, sim: Sim, x: Queued) -> str:
        """The reservation's reason where only a reservation keeps ``x`` out now, else ""."""
        rule = self.at_now(x)
        if rule is not None and rule.exclude and sim.fit(x.req) is not None:
            return rule.reason(self.now)
        return ""

    def simulate(self, sim: Sim, runs: list[Run], qs: list[Queued], now: float,
                 ratio: float = 1.0) -> list[float | None]:
        """:func:`simulate` of ``qs`` with each request's exclusions taken at its
        simulated start, waking at the ends of the reservations that block them."""
        if self.restrict is None:
            return simulate(sim, runs, [x.req for x in qs], now, ratio)
        restrict = self.restrict
        excludes = [lambda t, req=x.req: restrict(req, t).exclude for x in qs]
        wake = sorted({r.end for x in qs for r in self.at_now(x).blocking})
        return simulate(sim, runs, [x.req for x in qs], now, ratio, excludes, wake)


NO_RULES = Rules()


def _missed(q: Queued, start: float | None) -> bool:
    """Whether simulated ``start`` breaks ``q``'s promise (its first ``latest``)."""
    return q.first_latest is not None and (start is None or start > q.first_latest + EPS)


def commit_order(sim: Sim, runs: list[Run], fixed: list[Queued], candidates: list[list[Queued]],
                 now: float, rules: Rules = NO_RULES) -> tuple[list[Queued], list[float | None]]:
    """The order the queue simulates and admits in, and its simulated starts:
    ``fixed`` (kept as it is), then the first of ``candidates`` (orders of the
    same requests, the fair order first) that keeps every promise once
    :func:`repair` has moved what it can, else the one that loses fewest. The
    fallback candidate is the previous pass's order, whose simulation kept every
    promise: when every share uses its full time it replays unchanged (new
    requests behind), so a promise is kept by construction even where repairing
    the fair order finds no way. ``rules``: the reservations' (see :class:`Rules`)."""
    best = None
    for rest in candidates:
        order, starts, lost = repair(sim, runs, fixed, rest, now, rules)
        if not lost:
            return order, starts
        if best is None or lost < best[2]:
            best = (order, starts, lost)
    return best[0], best[1]


def repair(sim: Sim, runs: list[Run], fixed: list[Queued], rest: list[Queued],
           now: float, rules: Rules = NO_RULES) -> tuple[list[Queued], list[float | None], int]:
    """``fixed + rest`` simulated, ``rest`` repaired where the simulation would
    start a promised request after its promise: the first such request moves
    ahead of every request before it that has no promise or a later one
    (earliest deadline first; the others keep their order), or, where there are
    none, past the one just before it (once per pair), and the simulation runs
    again. Each move removes an inversion of the deadline order or uses up a
    pair, so it ends (and it stops after 2n + 8 simulations); usually nothing
    moves (fair share orders whatever keeps every promise). Returns the order,
    its starts and how many promises it misses."""
    order = list(rest)
    lost: set[str] = set()
    swapped: set[tuple[str, str]] = set()
    n = len(fixed)
    budget = 2 * len(order) + 8  # simulations: bounded even when a lost host broke many promises
    while True:
        starts = rules.simulate(sim, runs, fixed + order, now)
        late = [k for k, x in enumerate(order) if x.id not in lost and _missed(x, starts[n + k])]
        budget -= 1
        if not late or budget < 0:
            return fixed + order, starts, len(lost) + len(late)
        k = late[0]
        x, d = order[k], order[k].first_latest
        first = [y for y in order[:k] if y.first_latest is not None and y.first_latest <= d]
        later = [y for y in order[:k] if y.first_latest is None or y.first_latest > d]
        if later:
            order[:k + 1] = first + [x] + later
        elif k == 0 or (x.id, order[k - 1].id) in swapped:
            lost.add(x.id)
        else:
            swapped.add((x.id, order[k - 1].id))
            order[k - 1], order[k] = x, order[k - 1]


def _keeps(after: dict, base: dict, ahead: set, promised: dict) -> str:
    """"" if a trial start keeps the rule, else why not: no request ``ahead``
    starts later than in ``base``, no promised request later than its promise
    (or, where the promise is already lost, later than in ``base``)."""
    for i, a in after.items():
        b = base.get(i)
        if i in ahead and b is not None and (a is None or a > b + EPS):
            return AHEAD
        d = promised.get(i)
        if d is not None:
            bound = d if b is None else max(d, b)
            if a is None or a > bound + EPS:
                return PROMISE
    return ""


def plan(state, running: list[tuple[Allocation, float]], pending: list[Queued], *,
         now: float, quotas: Quotas, fairshare: FairShare, held: dict[str, Held],
         ratio: float = 1.0, depth: int = DEPTH, groups_of=None,
         fair: bool = True, backfill: bool = True, previous: dict[str, Estimate] | None = None,
         restrict=None) -> Plan:
    """Admit what may start now and estimate the rest (see the module docstring).

    ``fair=False``: arrival order only (no priority, no fair share);
    ``backfill=False``: nothing starts behind a request that waits for capacity
    (strict FIFO with ``fair=False``). The defaults are gpuhub's policy; the
    others exist for comparison (benchmarks/queue_replay.py).

    The admitted requests are *granted in ``state``* (their allocations carry the
    request's id, ``now`` as created, and the real placement); the caller records
    them or releases them again. ``running``: live allocations with their
    declared end. ``held``: per user, what quotas count (updated here).
    ``pending[i].first_latest``: the promise given (see the module docstring).
    ``previous``: the previous pass's estimates (their positions are its order,
    the fallback that keeps every promise; see :func:`commit_order`).
    ``restrict(req, t)``: reservations' rule for a request starting at ``t`` (a
    core.reservations.Restriction: devices excluded, placement, reason); every
    simulation, start and alternative choice of the pass follows it."""
    per = state.units_per_gpu
    out = Plan()
    ordering = Ordering(pending, running, quotas, fairshare, now, per, groups_of) if fair else None
    key = ordering.key if fair else ARRIVAL
    queue = sorted(pending, key=key)
    sim = Sim(state)
    runs = [run_of(a, max(now, e)) for a, e in running]
    rules = Rules(restrict, now) if restrict is not None else NO_RULES
    reasons: dict[str, str] = {}
    if not backfill:
        return _strict(state, sim, runs, queue, out, reasons, now, quotas, held, ratio, depth, running, rules)
    promised = {x.id: x.first_latest for x in queue if x.first_latest is not None}
    tails = [queue]
    if previous:  # the previous pass's order, new requests behind in fair order
        tails.append(sorted(queue, key=lambda x: previous[x.id].position if x.id in previous else 1 << 30))
    order, base, insim = _arrange(sim, runs, [], tails, depth, now, rules=rules)
    waiting: list[Queued] = []  # walked, still waiting (in order)
    shapes: dict = {}  # the hosts' pools each shape could use (pool quotas)
    stale = False
    i = 0
    while i < len(order):
        x = order[i]
        i += 1
        req = x.req
        # behind `depth` waiting requests and not promised: not simulated (a pass's
        # cost stays bounded), so it has no estimate; it still starts now if it
        # delays none of the simulated requests (no per-pass cap on admissions)
        beyond = len(waiting) >= depth and x.id not in promised
        h = held.get(req.user, Held())
        # its quotas against what its user holds now, as this pass's grants left it
        verdict, y = within_quota(quotas, x, h, per, state, shapes)
        if y is not x:  # kept off the pools over its user's quota, for this pass
            order[i - 1] = x = y
            req = x.req
        if not verdict.ok:  # it reserves nothing
            if verdict.verdict == "hard":
                out.refused[x.id] = verdict.reason
            else:
                reasons[x.id] = verdict.reason
            insim.discard(x.id)
            stale = True
            continue
        found = sim.fit(req, rules.exclude(x))
        grant = None
        if found is not None:
            rest = waiting + [y for y in order[i - 1:] if y.id in insim or y is x]
            if stale:
                base = dict(zip((y.id for y in rest), rules.simulate(sim, runs, rest, now)))
                stale = False
            grant = _try_start(state, sim, runs, x, found, rest, base, {y.id for y in waiting[:1]},
                               promised, now, rules)
            if isinstance(grant, str):
                reasons[x.id], grant = grant, None
        elif why := rules.reason(sim, x):  # only a reservation keeps it out
            reasons[x.id] = why
        if grant is None and beyond:
            reasons[x.id] = f"waiting behind {depth} requests"
            continue
        if grant is None:
            if req.closed_pools and found is None and x.id not in reasons and \
                    sim.fit(replace(req, closed_pools=frozenset()), rules.exclude(x)) is not None:
                reasons[x.id] = verdict.reason  # it would fit now, in a pool over its quota
            reasons.setdefault(x.id, sim.shortage(req, rules.exclude(x)))
            waiting.append(x)
            if x.id not in insim:
                insim.add(x.id)
                stale = True
            continue
        a, mine, after = grant
        state.grant(a)
        sim.take(mine.host, mine.shares, mine.cpu, mine.mem)
        runs.append(mine)
        held[req.user] = add(h, req, per, state.hosts[a.host].pools)
        out.admitted.append((x, a))
        insim.discard(x.id)
        base = after
        if fair and i < len(order):  # the rest of the pass sees the user's usage grow
            ordering.charge(x)
            tail, more, insim = _arrange(sim, runs, waiting, [sorted(order[i:], key=key), order[i:]],
                                         0, now, {y.id for y in order[i:] if y.id in insim}, rules)
            order[i:] = tail
            base, stale = more, False
    # estimates for what still waits: the order's simulation (declared run times)
    if stale:
        base = dict(zip((y.id for y in waiting), rules.simulate(sim, runs, waiting, now)))
    # every waiting request the pass simulated: the head and each promised one are
    # among them (the rule protects no other), so a start that moves none of their
    # simulated starts keeps the rule (LivePool's fast path)
    out.protected = [y.id for y in order if y.id in insim]
    return _estimates(out, sim, base, order, waiting, reasons, running, ratio, now, rules=rules)


def host_pools_for(state, req: Request, cache: dict | None = None) -> list[tuple[str, ...]]:
    """The distinct pool sets of the up hosts ``req`` could land on, whatever
    is free: a device of its models (any host for a CPU-only request) and a
    pool open to it (core.quota.pool_decision). ``cache``: one pass's, by shape."""
    if cache is not None:
        key = (req.units == 0, req.models, req.pools)
        found = cache.get(key)
        if found is None:
            found = cache[key] = host_pools_for(state, req)
        return found
    out = set()
    models, units = req.models, req.units
    for name in state.up_names():
        h = state.hosts[name]
        if h.pools in out or not may_use(h.pools, req.pools):
            continue
        if units == 0 or any(not models or d.model in models for d in h.devices):
            out.add(h.pools)
    return sorted(out)


def within_quota(quotas: Quotas, x: Queued, held: Held, per: int, state,
                 cache: dict | None = None) -> tuple[Decision, Queued]:
    """``x``'s quotas against ``held`` (what its user holds now): the verdict
    (core.quota.check, then per host pool: core.quota.pool_decision over the
    hosts it could use in ``state``) and ``x`` kept off the pools over its
    user's quota (``Request.closed_pools``; an ok verdict's reason then says
    why, for a request that fits only there). The one place a pass, submit and
    placement_now decide quotas."""
    req = x.req
    verdict = check(quotas.resolve(req.user, x.groups), held, req, per)
    if not verdict.ok or not quotas.pools:
        return verdict, x
    verdict, closed = pool_decision(quotas, req.user, x.groups, held, req, per,
                                    host_pools_for(state, req, cache))
    if not verdict.ok:
        return verdict, x
    kept = within_pools(req, closed)
    return verdict, x if kept is req else replace(x, req=kept)


def _arrange(sim: Sim, runs: list[Run], fixed: list[Queued], tails: list[list[Queued]], room: int,
             now: float, window: set | None = None, rules: Rules = NO_RULES) -> tuple[list[Queued], dict, set]:
    """The walk's order of the requests of ``tails`` (candidate orders, the fair
    one first) behind ``fixed`` (the requests already found waiting), the
    simulated starts, and the ids simulated: those of ``window``, else the
    promised requests and the first ``room`` others of the fair order, ordered
    by :func:`commit_order`; the others follow, unsimulated, in the fair order."""
    if window is None:
        window = set()
        for x in tails[0]:
            if x.first_latest is not None or room > 0:
                window.add(x.id)
                room -= x.first_latest is None
    beyond = [x for x in tails[0] if x.id not in window]
    order, starts = commit_order(sim, runs, fixed, [[x for x in t if x.id in window] for t in tails], now,
                                 rules)
    return (order[len(fixed):] + beyond, {x.id: s for x, s in zip(order, starts)},
            {x.id for x in order})


def _try_start(state, sim: Sim, runs: list[Run], x: Queued, found, rest: list[Queued],
               base: dict, ahead: set, promised: dict, now: float, rules: Rules = NO_RULES):
    """(allocation, its Run, the simulated starts of the others) if ``x`` may
    start now: with the real placement, else with the simulation's own choice
    ``found`` (placement does not know the promises: the device it prefers may
    be the one a promised request needs); else why not (:func:`_keeps`). Both
    follow the reservations' rule (``found`` is fitted with ``x``'s exclusions)."""
    req = x.req
    others = [y for y in rest if y.id != x.id]
    end = now + req.max_hours * 3600.0
    tries, why = [], AHEAD
    try:
        p = rules.place(state, x)
        tries.append((p.host, p.shares))
    except NoFit:  # the simulation's fit is looser than placement's
        pass
    host, shares = found
    alt = tuple(Share(u, n) for u, n in shares)
    if not tries or (tries[0][0], tries[0][1]) != (host, alt):
        tries.append((host, alt))
    for host, shares_ in tries:
        a = Allocation(
            id=x.id, user=req.user, host=host, units=req.units, cpu=req.cpu,
            mem_mb=req.mem_mb, max_hours=req.max_hours, shares=tuple(shares_),
            server=x.server, created=now, key=x.key,
        )
        try:
            state.check_grant(a)
        except StateError:
            continue
        mine = Run(end, host, tuple((s.device_uuid, s.units) for s in shares_), milli(req.cpu), req.mem_mb)
        if not others:
            return a, mine, {}
        trial = sim.copy()
        trial.take(mine.host, mine.shares, mine.cpu, mine.mem)
        after = dict(zip((y.id for y in others), rules.simulate(trial, runs + [mine], others, now)))
        why = _keeps(after, base, ahead, promised)
        if not why:
            return a, mine, after
    return why


def _strict(state, sim: Sim, runs: list[Run], queue: list[Queued], out: Plan, reasons: dict,
            now: float, quotas: Quotas, held: dict, ratio: float, depth: int, running,
            rules: Rules = NO_RULES) -> Plan:
    """backfill=False: requests start in order until one must wait; the ``depth``
    requests from there on are simulated, those behind are not."""
    per = state.units_per_gpu
    shapes: dict = {}
    blocked: list[Queued] = []
    cut = len(queue)
    for n, x in enumerate(queue):
        if len(blocked) >= depth:
            cut = n
            break
        h = held.get(x.req.user, Held())
        verdict, x = within_quota(quotas, x, h, per, state, shapes)
        req = x.req
        if not verdict.ok:
            if verdict.verdict == "hard":
                out.refused[x.id] = verdict.reason
            else:
                reasons[x.id] = verdict.reason
            continue
        if blocked:
            reasons[x.id] = "waiting for the requests ahead"
            blocked.append(x)
            continue
        p = None
        if sim.fit(req, rules.exclude(x)) is not None:
            try:
                p = rules.place(state, x)
            except NoFit:  # the simulation's fit is looser than placement's
                p = None
        elif why := rules.reason(sim, x):  # only a reservation keeps it out
            reasons[x.id] = why
        if p is None:
            reasons.setdefault(x.id, sim.shortage(req, rules.exclude(x)))
            blocked.append(x)
            continue
        a = Allocation(
            id=x.id, user=req.user, host=p.host, units=req.units, cpu=req.cpu,
            mem_mb=req.mem_mb, max_hours=req.max_hours, shares=p.shares,
            server=x.server, created=now, key=x.key,
        )
        state.grant(a)
        shares = tuple((s.device_uuid, s.units) for s in p.shares)
        sim.take(p.host, shares, milli(req.cpu), req.mem_mb)
        runs.append(Run(now + req.max_hours * 3600.0, p.host, shares, milli(req.cpu), req.mem_mb))
        held[req.user] = add(h, req, per, state.hosts[p.host].pools)
        out.admitted.append((x, a))
    base = dict(zip((b.id for b in blocked), rules.simulate(sim, runs, blocked, now)))
    return _estimates(out, sim, base, queue[:cut], blocked, reasons, running, ratio, now,
                      queue[cut:], f"waiting behind {depth} requests", rules)


def _estimates(out: Plan, sim: Sim, latest: dict, final: list[Queued], simulated: list[Queued],
               reasons: dict, running, ratio: float, now: float, tail=(), why: str = "",
               rules: Rules = NO_RULES) -> Plan:
    """Fill ``out.estimates``: ``latest`` (the simulation with declared run
    times) for the ``simulated`` requests, ``expected`` from the same order with
    run times scaled by ``ratio``; positions follow ``final``, then ``tail``
    (requests not looked at, waiting for ``why``: built in bulk, as strict FIFO
    has thousands of them at every pass)."""
    expected = latest
    if ratio < 1.0 and simulated:
        exp_runs = scaled_running(running, now, ratio) + [
            Run(now + ratio * x.req.max_hours * 3600.0, a.host,
                tuple((s.device_uuid, s.units) for s in a.shares), milli(a.cpu), a.mem_mb)
            for x, a in out.admitted
        ]
        expected = dict(zip((b.id for b in simulated), rules.simulate(sim, exp_runs, simulated, now, ratio)))
    skip = {x.id for x, _ in out.admitted} | out.refused.keys()
    position = 0
    est, get_reason = out.estimates, reasons.get
    for x in final:
        i = x.id
        if i in skip:
            continue
        position += 1
        lt = latest.get(i)
        ex = expected.get(i)
        if ex is not None and lt is not None and lt < ex:
            ex = lt
        est[i] = Estimate(position, ex, lt, get_reason(i, ""))
    if tail:
        new = partial(tuple.__new__, Estimate)
        est.update(zip(map(attrgetter("id"), tail),
                       map(new, zip(count(position + 1), repeat(None), repeat(None), repeat(why)))))
    return out
