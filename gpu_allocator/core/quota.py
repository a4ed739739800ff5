"""Quotas and queue policy per user and per JupyterHub group. Pure.

A :class:`Limits` row holds what an admin set for one user or one group; a
field left ``None`` is *not set*. What applies to a user (:meth:`Quotas.resolve`),
field by field:

- the user's own row, where it sets the field (an explicit user limit wins,
  more or less generous than their groups');
- else the most generous value among the rows of the user's groups that set it
  (a larger number; priority, share and max wait: the largest);
- else the site default (``Quotas.default``; its ``None`` means unlimited).

:func:`check` decides, for one request against what the user holds now, one of
three answers: ``ok``; ``wait`` (over a quota now, but not forever: the request
is queued, the reason shown); ``hard`` (the request alone is over a limit: it
can never be granted — a 403 naming the limit).

Per host pool (core.pools): ``Quotas.pools`` holds, for a pool, rows of users
and groups (and a default) that limit what a user holds *in that pool*:
``gpus`` and ``sessions`` at once and ``gpu_hours`` per rolling 7 days
(:data:`POOL_FIELDS`; priority, share and max wait stay global). They resolve
as the global rows do (own row, else the most generous group's, else the
pool's default). A share counts in every pool its host is in
(``Held.pools``). :func:`pool_decision` gives the pools a request may not land
in now (``Request.closed_pools``): a host is closed to it when one of its
pools' quota does not allow it; the request waits ("over your quota in pool
team-a: …") when every host it could use (its models, its open pools) is
closed, and is refused (hard) when each is closed by a limit the request
alone exceeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

from .model import Request, format_gpus

#: the rolling window of the GPU-hours quota
WINDOW_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Limits:
    #: GPUs held at once, in units (fractions count)
    gpus: int | None = None
    #: sessions (allocations) held at once
    sessions: int | None = None
    #: GPU-hours per rolling 7 days (finished and running shares)
    gpu_hours: float | None = None
    #: queue priority: higher first (before fair share)
    priority: int | None = None
    #: fair-share entitlement (relative weight; default 1)
    share: float | None = None
    #: hours a request may wait in the queue before it is given up
    max_wait_hours: float | None = None

    def as_dict(self, units_per_gpu: int) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.gpus is not None:
            out["gpus"] = format_gpus(self.gpus, units_per_gpu)
        return out


FIELDS = tuple(f.name for f in fields(Limits))
#: the fields a quota row of one host pool may set (the queue's order stays global)
POOL_FIELDS = ("gpus", "sessions", "gpu_hours")


@dataclass(frozen=True)
class Held:
    """What a user holds now, as quotas count it."""

    units: int = 0
    sessions: int = 0
    #: GPU-hours of the last 7 days: finished shares' use, and running ones'
    #: whole declared time (what they may still use counts already)
    gpu_hours: float = 0.0
    #: the part of gpu_hours that running shares have not used yet (their
    #: declared time left): what people see as "reserved" beside "used"
    gpu_hours_reserved: float = 0.0
    #: per host pool: what the user's shares on hosts in that pool count (a share
    #: on a host in several pools counts in each); filled where pool quotas exist
    pools: Mapping[str, Held] = field(default_factory=dict)

    @property
    def gpu_hours_used(self) -> float:
        return max(0.0, self.gpu_hours - self.gpu_hours_reserved)


@dataclass(frozen=True)
class Decision:
    verdict: str  # "ok" | "wait" | "hard"
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


OK = Decision("ok")


@dataclass
class Quotas:
    users: dict[str, Limits]
    groups: dict[str, Limits]
    default: Limits = Limits()
    #: per host pool: the rows that limit what a user holds in that pool
    #: (POOL_FIELDS only; their own ``pools`` stay empty)
    pools: dict[str, Quotas] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Quotas:
        return cls({}, {})

    def in_pool(self, pool: str) -> Quotas:
        """The rows of ``pool`` (created, empty, where there are none)."""
        found = self.pools.get(pool)
        if found is None:
            found = self.pools[pool] = Quotas.empty()
        return found

    def resolve_pool(self, pool: str, user: str, groups=()) -> Limits | None:
        """What limits ``user`` in ``pool`` (None: nothing)."""
        rows = self.pools.get(pool)
        if rows is None:
            return None
        limits = rows.resolve(user, groups)
        return None if limits == Limits() else limits

    def resolve(self, user: str, groups=()) -> Limits:
        own = self.users.get(user)
        rows = [self.groups[g] for g in groups if g in self.groups]
        values = {}
        for name in FIELDS:
            mine = getattr(own, name) if own is not None else None
            if mine is not None:
                values[name] = mine
                continue
            set_ = [getattr(r, name) for r in rows if getattr(r, name) is not None]
            values[name] = max(set_) if set_ else getattr(self.default, name)
        return Limits(**values)

    def charged_group(self, user: str, groups=()) -> str:
        """The group a user's usage is charged to for fair share: of their groups
        with a quota row, the one of highest priority, then largest share, then
        name; else their first group by name; "" without groups."""
        rows = [(g, self.groups[g]) for g in groups if g in self.groups]
        if rows:
            rows.sort(key=lambda gr: (-(gr[1].priority or 0), -(gr[1].share or 1.0), gr[0]))
            return rows[0][0]
        return min(groups) if groups else ""


def request_gpu_hours(req: Request, units_per_gpu: int) -> float:
    return req.units / units_per_gpu * req.max_hours


def check(limits: Limits, held: Held, req: Request, units_per_gpu: int) -> Decision:
    """ok / wait (over a quota now) / hard (the request alone is over a limit)."""
    g = lambda u: format_gpus(u, units_per_gpu)  # noqa: E731
    hours = request_gpu_hours(req, units_per_gpu)
    if limits.gpus is not None and req.units > limits.gpus:
        return Decision("hard", f"gpus: your limit is {g(limits.gpus)} GPUs at once; "
                                f"this request asks for {g(req.units)}")
    if limits.sessions is not None and limits.sessions < 1:
        return Decision("hard", "sessions: your limit is 0 sessions")
    if limits.gpu_hours is not None and hours > limits.gpu_hours + 1e-9:
        return Decision("hard", f"GPU-hours: your limit is {limits.gpu_hours:g} GPU-hours per 7 days; "
                                f"this request may use {hours:g} ({g(req.units)} GPU × {req.max_hours:g} h)")
    if limits.gpus is not None and held.units + req.units > limits.gpus:
        return Decision("wait", f"over your GPU quota: {g(held.units)} of {g(limits.gpus)} GPUs in use")
    if limits.sessions is not None and held.sessions + 1 > limits.sessions:
        return Decision("wait", f"over your session quota: {held.sessions} of {limits.sessions} sessions running")
    if limits.gpu_hours is not None and held.gpu_hours + hours > limits.gpu_hours + 1e-9:
        return Decision("wait", f"over your GPU-hours quota: {held.gpu_hours:.1f} of {limits.gpu_hours:g} "
                                "GPU-hours used in the last 7 days")
    return OK


def add(held: Held, req: Request, units_per_gpu: int, pools: Iterable[str] = ()) -> Held:
    """``held`` with ``req`` granted: its GPUs, a session, and the GPU-hours it may
    use (a running share counts its whole declared time against the window), in
    each of ``pools`` (those of the host it landed on) too."""
    hours = request_gpu_hours(req, units_per_gpu)
    inside = dict(held.pools)
    for p in pools:
        h = inside.get(p, NOTHING)
        inside[p] = Held(h.units + req.units, h.sessions + 1, h.gpu_hours + hours)
    return Held(held.units + req.units, held.sessions + 1, held.gpu_hours + hours, pools=inside)


NOTHING = Held()


def pool_decision(quotas: Quotas, user: str, groups, held: Held, req: Request, units_per_gpu: int,
                  hosts: Iterable[Iterable[str]]) -> tuple[Decision, frozenset[str]]:
    """The pools whose quota does not allow ``req`` now (every pool with quota
    rows is looked at: a share counts in each pool of its host), and the
    verdict. ``hosts``: the pools of each host ``req`` could land on (its
    models, the pools open to it), whatever is free. A host in a closed pool is
    closed to it (``Request.closed_pools``): ok while one such host is not
    closed, else wait, or hard where each closed pool there is closed by a
    limit the request alone exceeds. The reason names the closed pools of those
    hosts ("over your quota in pool team-a: …"), an ok verdict's too."""
    if not quotas.pools:
        return OK, frozenset()
    closed: dict[str, Decision] = {}
    for p in sorted(quotas.pools):
        limits = quotas.resolve_pool(p, user, groups)
        if limits is None:
            continue
        d = check(limits, held.pools.get(p, NOTHING), req, units_per_gpu)
        if not d.ok:
            closed[p] = d
    if not closed:
        return OK, frozenset()
    hosts = [frozenset(h) for h in hosts]
    near = set().union(*hosts) & closed.keys() if hosts else set()
    mine = {p: d for p, d in closed.items() if p in near} or closed
    reason = "; ".join(f"over your quota in pool {p}: {d.reason.removeprefix('over your ')}"
                       for p, d in mine.items())
    if not hosts or any(h.isdisjoint(closed) for h in hosts):  # ok: kept out of the closed ones
        return Decision("ok", reason), frozenset(closed)
    verdict = "hard" if all(d.verdict == "hard" for d in mine.values()) else "wait"
    return Decision(verdict, reason), frozenset(closed)


def within_pools(req: Request, closed: frozenset[str]) -> Request:
    """``req`` kept off the hosts of the ``closed`` pools (placement, the pass)."""
    return req if closed == req.closed_pools else replace(req, closed_pools=closed)
