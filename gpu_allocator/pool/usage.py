"""Accounting of quota use: what each user holds and held (GPUs, sessions,
GPU-hours in the quotas' window), their decayed usage (fair share), their
groups, quotas and the host pools open to them, and how much of their declared run time shares really use
(the queue's expected starts)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from ..core.fairshare import FairShare
from ..core.model import AllocationState, Request
from ..core.pools import DEFAULT, OPEN_DEFAULT, Pool, open_pools, request_pools
from ..core.quota import WINDOW_S, Held, Limits, Quotas
from ..store.ledger import Finished
from .state import LiveState

#: how many finished shares the run-time ratio averages
RATIO_SAMPLES = 500


class Usage:
    """Quota use and fair share, in memory (rebuilt from the ledger at load)."""

    def __init__(self, live: LiveState, fairshare_half_life_s: float | None = None):
        self.live = live
        self.quotas = Quotas.empty()
        self.fairshare = FairShare() if fairshare_half_life_s is None else FairShare(fairshare_half_life_s)
        #: a user's JupyterHub groups, as the spawner last reported them
        self.groups: dict[str, tuple[str, ...]] = {}
        #: the host pools and who may use them (GPUAllocator.pools, core.pools)
        self.pools: dict[str, Pool] = {DEFAULT: OPEN_DEFAULT}
        #: shares that ended within the quotas' window, by user (GPU-hours)
        self.finished: dict[str, list[Finished]] = {}
        #: why: held() is on every request's path and a user's finished list grows
        #: with each short session. Per user (that list, its length, the earliest
        #: start in it, its GPU-hours): valid while it is the same list, of that
        #: length (account extends it as it appends), and every share in it
        #: started inside the window (then each counts whole); else recomputed
        self._finished_hours: dict[str, tuple] = {}
        #: used / declared run time of finished shares (expected start estimates)
        self.ratio = 1.0
        self._ratios: deque = deque(maxlen=RATIO_SAMPLES)

    def since(self, now: float) -> float:
        """The earliest end of a finished share that still counts (quotas, fair share)."""
        return now - max(WINDOW_S, 4 * self.fairshare.half_life)

    def load(self, quotas: Quotas, finished: list[Finished]) -> None:
        """Start over from the ledger's quotas and finished shares."""
        self.quotas = quotas
        self.fairshare, self.finished, self._finished_hours = FairShare(self.fairshare.half_life), {}, {}
        for f in finished:
            self.account(f)

    def account(self, f: Finished) -> None:
        per = self.live.units_per_gpu
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

    def held(self, user: str, now: float) -> Held:
        """What the user's quotas count now: GPUs and sessions held, and GPU-hours
        of the last 7 days (finished shares' use within the window, running
        shares' whole declared time)."""
        per = self.live.units_per_gpu
        start = now - WINDOW_S
        units = sessions = 0
        hours = reserved = 0.0
        state = self.live.state
        live = state.allocations
        for aid in state.by_user.get(user, ()):
            a = live[aid]
            units += a.units
            sessions += 1
            hours += a.units / per * a.max_hours
            used = min(a.max_hours, max(0.0, (now - a.created) / 3600.0))
            reserved += a.units / per * (a.max_hours - used)
        fin = self.finished.get(user, ())
        memo = self._finished_hours.get(user)
        if memo is not None and memo[0] is fin and memo[1] == len(fin) and memo[2] >= start:
            return self._in_pools(Held(units, sessions, hours + memo[3], reserved), user, now)
        kept, done, first = [], 0.0, float("inf")
        for f in fin:
            if f.released > start:
                kept.append(f)
                done += f.units / per * (f.released - max(f.created, start)) / 3600.0
                first = min(first, f.created)
        if user in self.finished:
            self.finished[user] = kept
        self._finished_hours[user] = (kept, len(kept), first, done)
        return self._in_pools(Held(units, sessions, hours + done, reserved), user, now)

    def _in_pools(self, held: Held, user: str, now: float) -> Held:
        """``held`` with what the user holds in each host pool (``Held.pools``),
        where quotas per pool exist: a share counts in every pool of its host,
        finished ones in the pools their host is in now (a host gone: none)."""
        if not self.quotas.pools:
            return held
        per = self.live.units_per_gpu
        start = now - WINDOW_S
        state = self.live.state
        hosts = state.hosts
        sums: dict[str, list] = {}
        for aid in state.by_user.get(user, ()):
            a = state.allocations[aid]
            host = hosts.get(a.host)
            used = min(a.max_hours, max(0.0, (now - a.created) / 3600.0))
            for p in host.pools if host is not None else ():
                s = sums.setdefault(p, [0, 0, 0.0, 0.0])
                s[0] += a.units
                s[1] += 1
                s[2] += a.units / per * a.max_hours
                s[3] += a.units / per * (a.max_hours - used)
        for f in self.finished.get(user, ()):
            host = hosts.get(f.host)
            if f.released <= start or host is None:
                continue
            for p in host.pools:
                s = sums.setdefault(p, [0, 0, 0.0, 0.0])
                s[2] += f.units / per * (f.released - max(f.created, start)) / 3600.0
        return replace(held, pools={p: Held(*s) for p, s in sums.items()})

    def open_pools(self, user: str, groups=None) -> frozenset[str]:
        """The host pools open to ``user`` (``groups``: theirs; None: as the
        spawner last reported them)."""
        return open_pools(self.pools, user, self.groups.get(user, ()) if groups is None else groups)

    def resolve_pools(self, req: Request, groups=None, *, strict: bool = True) -> Request:
        """``req`` with the host pools it may land in (``Request.pools``): the one
        place a request's pools are decided, from its user's ``groups`` (None: as
        last reported) and the pool it named. None where every pool is open to
        it and it named none (placement then filters nothing). Raises PoolError
        (``strict``) when it named a pool not open to its user."""
        groups = self.groups.get(req.user, ()) if groups is None else groups
        allowed = request_pools(self.pools, req.user, groups, req.pool, strict=strict)
        if req.pool is None and len(allowed) == len(self.pools):
            allowed = None
        return req if allowed == req.pools else replace(req, pools=allowed)

    def limits(self, user: str) -> Limits:
        return self.quotas.resolve(user, self.groups.get(user, ()))

    def set_limits(self, kind: str, name: str, limits: Limits | None, pool: str = "") -> None:
        """Set or (None) remove the quota row of a user or group (over every
        pool, or in ``pool``; there also kind "default"), in memory."""
        rows = self.quotas.in_pool(pool) if pool else self.quotas
        if kind == "default":
            rows.default = Limits() if limits is None else limits
        else:
            table = rows.users if kind == "user" else rows.groups
            if limits is None:
                table.pop(name, None)
            else:
                table[name] = limits
        if pool and not (rows.users or rows.groups or rows.default != Limits()):
            del self.quotas.pools[pool]  # none left: nothing per pool to count
