"""Placement: where a request fits in the pool. Pure functions over a PoolState
(read, never changed — except memo caches), no I/O.

Policy (fragmentation gradient descent, Weng et al., ATC '23, on gpuhub's units):
- every candidate is scored by how much it grows its host's *expected
  fragmentation* (now and one typical request later: core.typical,
  Typical.expected) — the idle GPU capacity of the host that the pool's typical
  request shapes could not use, weighted by how common they are (core.typical;
  the typical shapes come from the decayed histogram of granted requests kept
  by PoolState, CPU and memory included) — and the smallest growth wins;
- a fraction's score also counts how it changes the balance of partly used
  devices (:data:`BALANCE`, below);
- ties: the tightest fit (least left on the device, then on the host), then the
  host name, so the same state always gives the same answer;
- a fraction of one GPU takes one device; whole GPUs come only from devices
  nobody else uses, all on one host; among a host's idle devices the
  best-connected set is taken (core.topology: NVLink, then PCIe distance; what
  is left over stays as well connected as possible), and for 2 or more GPUs a
  host that can give an all-NVLink set beats one that cannot;
- the host must have the CPU cores and memory the request asks for; a request
  that names GPU models gets only devices of those models, and one with
  ``pools`` only hosts in one of them (core.pools: classes are per set of
  host pools, so the filter costs a look-up per class).

Cost: hosts are grouped by PoolState's classes (free units per device, CPU and
memory ranks, topology kind); one representative per class is scored — the
roomiest host of the class (most CPU left, then memory, then name) that has
room (at most :data:`REP_SCAN` are tried; a refusal is double-checked over
every host). Classes are visited from
the tightest fit outwards (a fraction: by the free units of the device it would
take; whole GPUs: by the host's idle devices; CPU-only: by the host's free GPU
units), and the scan stops after the group in which :data:`BUDGET` classes
were scored, and in any case after :data:`CAP` classes (a group that would
pass it is taken in content order: the most used hosts first), so a decision's
cost depends on the candidates, not on the pool. Fragmentation values are
memoised by class content (PoolState.content_id), so scoring a class is a few
look-ups. A refusal's message lists at most 20 hosts, each line kept until
its host changes.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace

from .model import Allocation, Placement, Request, Share, format_gpus, milli
from .pools import closed_text, may_use
from .state import PoolState
from .topology import choose

#: members of a class tried for a representative before the class is skipped
REP_SCAN = 16
#: classes scored per decision (whole groups: see _levels) — bounds the cost
BUDGET = 16
#: classes scored per decision at most: a group that would pass it is taken
#: in content order (the host's free units in all, then its devices' free
#: units, then the name of the class's roomiest host and the GPU model: the
#: most used first), so the cost stays flat as
#: the pool grows and the answer depends on the pool's content only. 32, not
#: 48: in-process decisions got faster and flatter across pool sizes while
#: packing on the Alibaba trace (benchmarks/packing.py) stayed the same within
#: noise; 24 was faster still but packed less (benchmarks/RESULTS.md)
CAP = 32
#: members of a class whose topology is compared for a multi-GPU share
TOPO_SCAN = 8
#: weight of the gap balance in a fraction's score, added to its growth of
#: expected fragmentation. The balance is the Sum-of-Squares rule of online bin
#: packing (Csirik, Johnson, Kenyon, Orlin, Shor and Weber, "On the
#: Sum-of-Squares algorithm for bin packing", J. ACM 53(1), 2006): with N(k)
#: the partly used devices of the model in gap class k (PoolState.gaps: devices
#: whose free units fit the same typical fractions), a fraction goes where
#: sum N(k)² grows least, so it fills a gap of a class that is common and avoids
#: making one of a class that is already common (e.g. the 0.15 left beside a
#: 0.85, which almost nothing fills). FGD alone asks how much of a device the
#: next request could not use, so a 0.20 goes into a 0.35 gap (that most
#: requests cannot use) and strands 0.15, though 0.35 gaps are rare and later
#: 0.35s would have filled it exactly; the balance sees that. It raises the
#: requested share of capacity on the Alibaba trace (benchmarks/packing.py) at
#: 0.05 and milli-GPU units; weights from 0.3 to 3 did about as well as 1
#: (benchmarks/RESULTS.md).
#: Whole GPUs and CPU-only requests make no gap: the term is 0 for them.
BALANCE = 1.0

_after_memo: dict = {}


class NoFit(Exception):
    """The request does not fit right now; the message says what is free."""


def _after(fs: tuple[int, ...], f: int, u: int, k: int = 1) -> tuple[int, ...]:
    """``fs`` with ``k`` devices of ``f`` free units giving ``u`` units each."""
    key = (fs, f, u, k)
    r = _after_memo.get(key)
    if r is None:
        lst = list(fs)
        for _ in range(k):
            lst[lst.index(f)] = f - u
        lst.sort(reverse=True)
        r = tuple(lst)
        if len(_after_memo) > 200_000:
            _after_memo.clear()
        _after_memo[key] = r
    return r


def _matrix(state: PoolState, host: str):
    """(pair score matrix, all pairs equal?, the pair score if so) of a host."""
    return state.kind_matrix[state.host_kind[host]]


def _idle_indexes(state: PoolState, host: str, model: str) -> tuple[int, ...]:
    key = (host, model)
    r = state.idle_indexes.get(key)
    if r is None:
        r = tuple(sorted(state.devices[u].index for u in state.idle[host].get(model, ())))
        state.idle_indexes[key] = r
    return r


def _device(state: PoolState, host: str, model: str, free: int):
    """The device of ``model`` with ``free`` units on ``host`` a fraction takes:
    an idle one is chosen so that the idle ones left stay best connected."""
    h = state.hosts[host]
    per = state.units_per_gpu
    if free == per:
        m, uniform, _ = _matrix(state, host)
        idle = _idle_indexes(state, host, model)
        if not uniform and len(idle) > 1:
            (index,), _ = choose(m, idle, 1)
            return next(d for d in h.devices if d.index == index)
    return min(
        (d for d in h.devices if d.model == model and state.free[d.uuid] == free),
        key=lambda d: d.index,
    )


def _levels(state: PoolState, req: Request):
    """Candidate (class, option) pairs in groups, the tightest group first: a
    fraction by the free units of the device it would take, whole GPUs by the
    idle devices of the host, CPU-only by the host's free GPU units; only
    classes of hosts in a pool the request may use (``req.pools``, not
    ``req.closed_pools``)."""
    per = state.units_per_gpu
    units, models = req.units, req.models
    allowed = req.pools
    if allowed is not None or req.closed_pools:
        # only classes of hosts in a pool open to the request, none in a pool
        # over its user's quota (core.quota.pool_decision)
        kinds = state.kind_pools
        ok = {k for k, names in kinds.items() if may_use(names, allowed, req.closed_pools)}
        allowed = None if len(ok) == len(kinds) else frozenset(ok)  # all: nothing to filter
    if units == 0:
        by_total = state.class_total
        for t in sorted(by_total):
            yield [(c, None) for c in by_total[t].values() if allowed is None or c.kind in ok]
        return
    if units < per:
        index, low = state.class_levels, units
    else:
        index, low = state.class_idle, units // per
    accepted = [m for m in index if not models or m in models]
    steps = sorted({f for m in accepted for f in index[m] if f >= low})
    fractions_ok = state.kind_fractions
    fraction = units < per
    for f in steps:
        group = []
        for m in accepted:
            at = index[m].get(f)
            if not at:
                continue
            opt = (m, f)
            if fraction:
                # no MPS there: a fraction would be an unenforced promise
                group += [(c, opt) for c in at.values() if fractions_ok[c.kind]
                          and (allowed is None or c.kind in ok)]
            elif allowed is None:
                group += [(c, opt) for c in at.values()]
            else:
                group += [(c, opt) for c in at.values() if c.kind in ok]
        yield group


def _content_order(candidate):
    c, opt = candidate
    return (c.total, c.fs, c.members[0][2], opt)  # (not the key: its topology kind is a counter)


def _scan(state: PoolState, req: Request, bound: int, budget: int, cap: int | None = None):
    """Best (key, host, option) over the candidate classes (see :func:`_levels`),
    stopping after the group in which ``budget`` classes were scored (and
    after ``cap`` classes: see :data:`CAP`); also whether some class was cut
    short by ``bound`` members."""
    if cap is None:
        cap = CAP
    typ = state.shapes.typical
    per = state.units_per_gpu
    units = req.units
    cpu, mem = milli(req.cpu), req.mem_mb
    whole = units >= per
    count = units // per if whole else 1
    want = TOPO_SCAN if whole and count >= 2 else 1
    cuts2, mcuts2 = typ.cpu_cuts2, typ.mem_cuts2
    expected = typ.expected
    memo = state.delta_memo
    memo_get = memo.get
    best = None
    best_key = None
    cut = False
    scored = 0
    gap_class = typ.gap_class
    gap_counts: dict = {}
    for group in _levels(state, req):
        if scored >= budget:
            break
        capped = scored + len(group) > cap
        if capped:
            group = sorted(group, key=_content_order)
        for c, opt in group:
            if capped and scored >= cap:
                break
            # the class's representative: its roomiest member (most CPU left,
            # then memory, then name) that has room
            members = c.members
            ncl, nml, name = members[0]
            if -ncl < cpu:
                continue  # the others have less
            if want == 1 and mem <= -nml:
                reps = None  # the common case: the first member has room
            else:
                reps = []
                for i, (ncl, nml, name) in enumerate(members):
                    if -ncl < cpu:
                        break  # the others have less
                    if i >= bound:
                        cut = True
                        break
                    if mem <= -nml:
                        reps.append((name, -ncl, -nml))
                        if len(reps) >= want:
                            break
                if not reps:
                    continue
                name, ncl, nml = reps[0]
                ncl, nml = -ncl, -nml
            scored += 1
            cl, ml = -ncl - cpu, -nml - mem  # left after the grant
            # the representative's CPU and memory, before and after, as far as
            # the expected fragmentation can tell them apart (Typical.ahead_ranks)
            mkey = (c.cid, opt, units, bisect_right(cuts2, cl), bisect_right(mcuts2, ml),
                    bisect_right(cuts2, -ncl), bisect_right(mcuts2, -nml))
            d = memo_get(mkey)
            if d is None:
                if units == 0:
                    after = c.fs
                elif whole:
                    after = _after(c.fs, per, per, count)
                else:
                    after = _after(c.fs, opt[1], units)
                d = round(expected(after, cl, ml) - expected(c.fs, -ncl, -nml), 6)
                if len(memo) > 500_000:
                    memo.clear()
                memo[mkey] = d
            if units == 0:
                key = (d, c.total, cl, name)
                if best is None or key < best_key:
                    best, best_key = (key, name, None), key
            elif not whole:
                m, f = opt
                gaps = gap_counts.get(m)
                if gaps is None:
                    gaps = gap_counts[m] = state.gap_counts(m)
                g = f - units
                # the change of sum N(k)^2 when the device moves from class kf
                # to kg (an idle device is in none, a full one in none)
                kg = gap_class(g) if g else -1
                kf = gap_class(f) if f < per else -1
                if kg == kf:
                    b = 0
                else:
                    b = (2 * gaps.get(kg, 0) + 1 if g else 0) - (2 * gaps.get(kf, 0) - 1 if f < per else 0)
                key = (d + BALANCE * b, g, c.total, name, m)
                if best is None or key < best_key:
                    best, best_key = (key, name, opt), key
            else:
                m = opt[0]
                total = c.total
                for name, _, _ in reps or ((name, 0, 0),):
                    mat, uniform, v = _matrix(state, name)
                    if uniform:
                        left = c.idle[m] - count
                        q = (v, v * (count * (count - 1) // 2), v * (left * (left - 1) // 2))
                        chosen = None
                    else:
                        chosen, q = choose(mat, _idle_indexes(state, name, m), count)
                    lo = q[0] if count >= 2 else 0
                    key = (-lo, d, -q[1], total, -q[2], name, m)
                    if best is None or key < best_key:
                        best, best_key = (key, name, (m, chosen)), key
                    if chosen is None:
                        break  # uniform topology: the first member is as good as any
    return best, cut


def place(state: PoolState, req: Request, *, exclude: frozenset[str] = frozenset(),
          only: frozenset[str] | None = None) -> Placement:
    """Choose host and devices for ``req`` or raise :class:`NoFit`. ``exclude``:
    device uuids not to use; ``only``: the devices to use (both: reservations,
    see core.reservations; the default path does not look at them)."""
    if exclude or only is not None:
        return _place_restricted(state, req, exclude, only)
    per = state.units_per_gpu
    if req.units < 0 or (req.units > per and req.units % per):
        raise ValueError(f"not a placeable amount: {req.units} units")
    best, cut = _scan(state, req, REP_SCAN, BUDGET)
    if best is None and cut:
        best, _ = _scan(state, req, 1 << 30, BUDGET)
    if best is None:
        raise NoFit(describe_shortage(state, req))
    _, host, opt = best
    if req.units == 0:
        return Placement(host=host)
    if req.units < per:
        model, free = opt
        d = _device(state, host, model, free)
        return Placement(host=host, shares=(Share(d.uuid, req.units),))
    model, chosen = opt
    count = req.units // per
    if chosen is None:
        chosen = _idle_indexes(state, host, model)[:count]
    by_index = {d.index: d for d in state.hosts[host].devices}
    return Placement(host=host, shares=tuple(Share(by_index[i].uuid, per) for i in chosen))


def _place_restricted(state: PoolState, req: Request, exclude: frozenset[str],
                      only: frozenset[str] | None) -> Placement:
    """place() with devices left out. ``only``: on a small pool of just the hosts
    of those devices (each with only those devices, its CPU and memory use as it
    is); ``exclude``: on the pool itself with the excluded devices' free units
    set to 0 for the decision and given back before returning (no await in
    between: nobody else sees it), so the cost is that of the excluded hosts."""
    if only is not None:
        keep = only - exclude
        per = state.units_per_gpu
        sub = PoolState(per)
        for name in sorted({state.devices[u].host for u in keep if u in state.devices}):
            h = state.hosts[name]
            sub.put_host(replace(h, devices=tuple(d for d in h.devices if d.uuid in keep)))
            # what the host's shares hold, as one allocation (one grant per host)
            held = tuple(Share(d.uuid, per - state.free[d.uuid]) for d in sub.hosts[name].devices
                         if state.free[d.uuid] < per)
            sub.grant(Allocation(f"held:{name}", "", name, 0, state.cpu_used[name] / 1000, state.mem_used[name],
                                 0.0, held))
        return place(sub, req)
    masked = [(u, state.free[u]) for u in exclude if state.free.get(u)]
    hosts = {state.devices[u].host for u, _ in masked}
    for u, f in masked:
        state._change_free(u, -f)
    for name in hosts:
        state._reclass(name)
    try:
        return place(state, req)
    finally:
        for u, f in masked:
            state._change_free(u, f)
        for name in hosts:
            state._reclass(name)


def describe_shortage(state: PoolState, req: Request) -> str:
    """A sentence for the user: what they asked for and what is free now."""
    per_gpu = state.units_per_gpu
    parts = []
    up = state.up_names()
    closed = 0
    if req.pools is not None or req.closed_pools:  # the hosts it may not use are not its business
        mine = [n for n in up if may_use(state.hosts[n].pools, req.pools, req.closed_pools)]
        closed, up = len(up) - len(mine), mine
    lines = state.shortage_lines
    if len(lines) > 10_000:
        lines.clear()
    for name in up[:20]:
        # a host's line is kept until the host changes (its version moves)
        key = (name, req.models)
        version = state.host_version[name]
        hit = lines.get(key)
        if hit is None or hit[0] != version:
            host = state.hosts[name]
            devs = [d for d in host.devices if not req.models or d.model in req.models]
            idle = sum(1 for d in devs if state.free[d.uuid] == per_gpu)
            largest = max((state.free[d.uuid] for d in devs), default=0)
            cpu, mem = state.host_room(name)
            hit = lines[key] = (version, (
                f"{name}: {idle} idle GPU(s), largest free share {format_gpus(largest, per_gpu)}, "
                f"{cpu / 1000:g} CPU, {mem}M free"
            ))
        parts.append(hit[1])
    if len(up) > 20:
        parts.append(f"and {len(up) - 20} more hosts")
    models = f" of {' or '.join(sorted(req.models))}" if req.models else ""
    asked = f"{format_gpus(req.units, per_gpu)} GPU{models}, {req.cpu:g} CPU, {req.mem_mb}M"
    where = ""
    if req.pools is not None:
        where = f" in {closed_text(req.pools) if req.pools else 'no pool'} (open to you)"
        if closed and not req.closed_pools:
            where += f"; {closed} other host(s) are in pools not open to you"
    if req.closed_pools:
        where += (f"{';' if where else ''} not in {closed_text(req.closed_pools)} (over your quota there)"
                  + (f"; {closed} other host(s) are in pools not open to you or over your quota" if closed else ""))
    return f"Not enough free resources for {asked} right now{where}. Free: " + ("; ".join(parts) or "nothing")
