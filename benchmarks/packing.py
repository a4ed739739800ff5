"""Packing quality on the Alibaba GPU trace (cluster-trace-gpu-v2023, "openb"),
with the protocol of the FGD paper (Weng et al., USENIX ATC '23):

- the 1,213 GPU nodes of ``openb_node_list_gpu_node.csv`` (CPU, memory, GPUs, model);
- the pods of ``openb_pod_list_default.csv`` shuffled with each seed and, once the
  list is used up, more pods drawn from it at random ("inflation"), arriving one at
  a time until the arrived GPU demand is ``--inflate`` (130%) of capacity, with no
  departures; CPU-only pods drawn along the way take CPU and memory;
- each pod's CPU, memory, GPU count, fraction (``gpu_milli`` rounded UP to
  the allocator's quantum, ``--units-per-gpu``: 20 = 0.05 GPU, gpuhub's default;
  1000 = the paper's milli-GPU, no rounding; every fraction of the trace is a
  multiple of 10 milli, so 100 is exact too) and model constraint (``gpu_spec``,
  '|'-separated, empty = any) are honoured; a pod that fits nowhere is dropped.

Reported per policy, mean over the seeds:
- ``granted``: GPU units granted / capacity (what the pool actually hands out);
- ``requested``: the pods' original ``gpu_milli`` of placed pods / capacity
  (what the paper reports);
- ``fragmented_idle_at_80``: when 80% of capacity has arrived, the share of idle
  GPU capacity that the typical pods cannot use (the paper's definition: typical
  pods = most popular (CPU, GPU) shapes covering 95% of pods, CPU-only pods
  included, weighted by popularity; a pod cannot use a node's idle GPU when the
  node lacks its CPU or enough devices with room, and cannot use the devices
  with less room than it needs). Computed here, independently of the policy's
  own code, on the rounded shapes;
- ``idle``: the GPU capacity idle at the end (share of capacity) by why the
  typical pods could not use it there (:func:`idle_breakdown`): ``sliver`` (less
  left on the device than any of them takes), ``cpu_mem`` (the host lacks their
  CPU or memory), ``model``, ``usable`` (one still fits: nothing that came later
  was of its shape);
- ``ceiling``: the most the pods the policy placed could have requested however
  they were packed (capacity minus their rounding minus the gaps next to
  fractions over half a GPU that no smaller pod could fill: :func:`sliver_loss`);
  and, once per run, ``mix_ceiling``: the same for pods in the trace's
  proportions (:func:`mix_ceiling`): what no policy whose placed pods keep
  those proportions can exceed at that quantum.

Policies: ``gpuhub`` = gpu_allocator.core.placement.place on a PoolState (the
code the live allocator runs; its typical-shape histogram is seeded from the pod
list, as the paper's simulator seeds FGD's), ``best-fit`` (gpuhub's previous
policy: the tightest device for a fraction, the host with the fewest idle
devices for whole GPUs, ties and CPU-only pods to the first node in list order), ``first-fit`` (nodes in list order,
devices in index order) and ``random`` (a uniformly random node that fits).

The trace is parsed once, by the parent; the (policy, seed) replays run in
``--workers`` forked processes. The baselines keep their own indexes (Fit) and,
since nothing departs in a replay, never search twice for what is known not
to fit.

    python benchmarks/packing.py --trace /work/shared/traces/alibaba-gpu-v2023 \\
        [--seeds 42-51] [--inflate 1.3] [--policies gpuhub,best-fit,...] \\
        [--units-per-gpu 20] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import multiprocessing
import time
from bisect import bisect_left, insort
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_allocator.core.model import Allocation, Device, Host, Placement, Request, Share  # noqa: E402
from gpu_allocator.core.placement import NoFit, place  # noqa: E402
from gpu_allocator.core.state import PoolState  # noqa: E402

#: gpuhub's default quantum (GPUAllocator.units_per_gpu): 20 units = 0.05 GPU
PER_GPU = 20

PAPER = {  # mean of 10 seeds, default trace, alloc % at 130% arrived; frag % of idle at 80%
    "Random": (87.47, None),
    "DotProd": (90.85, None),
    "Clustering": (91.88, None),
    "Packing": (92.00, None),
    "BestFit": (93.08, 41.5),
    "FGD": (95.39, 29.9),
}
POLICIES = ("gpuhub", "best-fit", "first-fit", "random")


# --------------------------------------------------------------------------- trace


def load_nodes(trace: Path) -> list[Host]:
    hosts = []
    with open(trace / "openb_node_list_gpu_node.csv") as f:
        for row in csv.DictReader(f):
            name = row["sn"]
            n = int(row["gpu"])
            devs = tuple(Device(name, i, f"{name}/{i}", row["model"], 0) for i in range(n))
            hosts.append(Host(name, devs, int(row["cpu_milli"]) / 1000, int(row["memory_mib"])))
    return hosts


def load_pods(trace: Path, per: int = PER_GPU) -> list[tuple]:
    """(cpu_milli, mem_mib, units, requested_milli, models) per pod, with ``per``
    units per GPU (a fraction rounded up to a whole unit)."""
    milli_per_unit = 1000 // per
    pods = []
    with open(trace / "openb_pod_list_default.csv") as f:
        for row in csv.DictReader(f):
            n = int(row["num_gpu"])
            gm = int(row["gpu_milli"] or 0)
            if n == 0:
                units, asked = 0, 0
            elif n == 1 and gm < 1000:
                units, asked = -(-gm // milli_per_unit), gm
            else:
                units, asked = n * per, n * 1000
            models = frozenset(m for m in (row["gpu_spec"] or "").split("|") if m)
            pods.append((int(row["cpu_milli"]), int(row["memory_mib"]), units, asked, models))
    return pods


def workload(pods: list[tuple], seed: int, capacity_milli: int, inflate: float) -> list[tuple]:
    rng = random.Random(seed)
    order = list(pods)
    rng.shuffle(order)
    target = inflate * capacity_milli
    out, arrived = [], 0
    for p in order:
        if arrived >= target:
            break
        out.append(p)
        arrived += p[3]
    while arrived < target:
        p = pods[rng.randrange(len(pods))]
        out.append(p)
        arrived += p[3]
    return out


def shape(p: tuple, per: int = PER_GPU) -> tuple:
    """The policy's shape of a pod: (cpu, mem, units per device, devices)."""
    cpu, mem, units = p[0], p[1], p[2]
    if units == 0:
        return (cpu, mem, 0, 0)
    if units < per:
        return (cpu, mem, units, 1)
    return (cpu, mem, per, units // per)


def paper_typical(pods: list[tuple], per: int = PER_GPU, coverage: float = 0.95) -> list[tuple[tuple, float]]:
    """((cpu, units per device, devices), probability): the paper's typical pods."""
    counts = Counter((cpu, s[2], s[3]) for p in pods for cpu, s in [(p[0], shape(p, per))])
    total = sum(counts.values())
    chosen, acc = [], 0
    for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if acc >= coverage * total:
            break
        chosen.append((k, c))
        acc += c
    return [(k, c / acc) for k, c in chosen]


def fragmented_share(state: PoolState, typical) -> float:
    """Share of idle GPU units the typical pods cannot use (paper's definition)."""
    frag = idle = 0.0
    for name, h in state.hosts.items():
        frees = sorted((state.free[d.uuid] for d in h.devices), reverse=True)
        total = sum(frees)
        if not total:
            continue
        cpu_left = round(h.cpus * 1000) - state.cpu_used[name]
        idle += total
        for (cpu, units, count), p in typical:
            if units == 0 or cpu > cpu_left or count > len(frees) or frees[count - 1] < units:
                frag += p * total
            else:
                frag += p * sum(f for f in frees if f < units)
    return frag / idle if idle else 0.0


# --------------------------------------------------------------------------- ceiling


IDLE_KINDS = ("usable", "cpu_mem", "model", "sliver")


def gpu_shapes(pods: list[tuple], per: int) -> list[tuple]:
    """The typical GPU pod shapes of the trace (:func:`paper_typical`) as (units
    per device, devices, models, the Pareto-minimal (cpu, mem) pairs of its pods),
    smallest units first."""
    typical = {k for k, _ in paper_typical(pods, per)}
    by: dict[tuple, set] = {}
    for cpu, mem, units, _, models in pods:
        if units and (cpu, *shape((cpu, mem, units), per)[2:]) in typical:
            s = shape((cpu, mem, units), per)
            by.setdefault((s[2], s[3], models), set()).add((cpu, mem))
    out = []
    for (u, k, models), pairs in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        front = [(c, m) for c, m in pairs if not any(c2 <= c and m2 <= m and (c2, m2) != (c, m) for c2, m2 in pairs)]
        out.append((u, k, models, front))
    return out


def idle_breakdown(state: PoolState, pods: list[tuple]) -> dict[str, int]:
    """Idle GPU units at the end, by why the typical pods of the trace (those of
    the fragmentation measure, 95% of the pods) could not use them where they
    are: ``usable`` (one of them still fits), ``cpu_mem`` (some are small enough
    for the device, but the host lacks their CPU or memory), ``model`` (they fit
    but exclude the device's model), ``sliver`` (none is small enough for what
    the device has left, e.g. the 0.15 next to a 0.81 granted 0.85)."""
    per = state.units_per_gpu
    shapes = gpu_shapes(pods, per)
    out = dict.fromkeys(IDLE_KINDS, 0)
    for name, h in state.hosts.items():
        cl, ml = state.host_room(name)
        idle_by_model = Counter(d.model for d in h.devices if state.free[d.uuid] == per)
        for d in h.devices:
            f = state.free[d.uuid]
            if not f:
                continue
            kind = "sliver"
            for u, k, models, front in shapes:
                if u > f:
                    break
                if k > 1 and idle_by_model[d.model] < k:
                    continue
                if models and d.model not in models:
                    kind = "model" if kind == "sliver" else kind
                    continue
                if any(c <= cl and m <= ml for c, m in front):
                    kind = "usable"
                    break
                kind = "cpu_mem"
            out[kind] += f
    return out


def sliver_loss(pods: list[tuple], per: int) -> float:
    """A lower bound (milli-GPU) on the capacity that ``pods``, once placed, leave
    unrequested however they are packed:

    - the rounding: a pod granted ``units`` holds ``units * 1000 / per`` milli
      and asked for less;
    - the gaps: a fraction over half a GPU takes a device of its own and leaves
      ``per - units`` units there that only smaller fractions can fill; the fill
      is bounded from above by letting every smaller fraction of ``pods`` go to
      a gap, split at will (the smallest gaps first, each filled with the
      largest pods it takes: optimal when a pod fits every gap at least its
      size).

    requested = granted - rounding <= capacity - idle - rounding, and idle >=
    the gap units nothing fills."""
    mpu = 1000 / per
    rounding = 0.0
    gaps: Counter = Counter()
    fillers: Counter = Counter()
    for _, _, units, asked, _ in pods:
        if 0 < units < per:
            rounding += units * mpu - asked
            if 2 * units > per:
                gaps[per - units] += 1
            else:
                fillers[units] += 1
    unfilled = 0.0
    sizes = sorted(fillers, reverse=True)
    for gap in sorted(gaps):
        room = float(gap * gaps[gap])
        for u in sizes:
            if u > gap or not fillers[u]:
                continue
            take = min(room, u * fillers[u])
            fillers[u] -= take / u
            room -= take
            if not room:
                break
        unfilled += room
    return rounding + unfilled * mpu


def mix_ceiling(pods: list[tuple], per: int) -> float:
    """The requested share of capacity that pods drawn in the trace's proportions
    can reach at best: they lose ``lam`` = sliver_loss / requested per milli
    requested, so requested + lam * requested <= capacity."""
    asked = sum(p[3] for p in pods if p[2])
    return 1 / (1 + sliver_loss(pods, per) / asked)


# --------------------------------------------------------------------------- baselines


class Fit:
    """The baselines' indexes over the node list (list order = position):

    - a max-tree over (largest device free, idle devices, CPU left, memory left)
      per node, for first-fit's search in list order;
    - ``devs[model][free]``: (position, device index, uuid) of the devices with
      that many free units, sorted, for best-fit's fractions;
    - ``idle_hosts[model][n]``: positions of the nodes with exactly n idle
      devices of a model, sorted, for best-fit's whole GPUs;
    - ``refused``: requests that fitted nowhere. The replay has no departures,
      so what is free only shrinks and a request that fitted nowhere never fits
      later: its twin is refused without a search (random still draws its 16
      tries, so its random stream is the one a search would have used). For the
      same reason first-fit resumes a request's search where its twin's ended,
      and random's full list of fitting nodes is its twin's, filtered."""

    def __init__(self, state: PoolState, hosts: list[Host]):
        self.state = state
        self.per = state.units_per_gpu
        self.names = [h.name for h in hosts]
        self.pos = {n: i for i, n in enumerate(self.names)}
        size = 1
        while size < len(hosts):
            size *= 2
        self.size = size
        # per tree node: (max device free, max idle devices, max cpu left, max mem left)
        self.tree = [(-1, -1, -1, -1)] * (2 * size)
        self.devs: dict[str, dict[int, list]] = {}
        self.idle_hosts: dict[str, dict[int, list]] = {}
        self.dev_free: dict[str, int] = {}
        self.host_idle: dict[tuple[str, str], int] = {}
        self.refused: set = set()
        #: by request (see req_key): where first-fit found the first node that
        #: fits it, and the nodes random found that fit it, last time
        self.first_from: dict[tuple, int] = {}
        self.fitting: dict[tuple, list[str]] = {}
        self.mem_cap = {h.name: h.memory_mb for h in hosts}
        for i, h in enumerate(hosts):
            for d in h.devices:
                f = state.free[d.uuid]
                self.dev_free[d.uuid] = f
                self.devs.setdefault(d.model, {}).setdefault(f, []).append((i, d.index, d.uuid))
            for m in {d.model for d in h.devices}:
                n = sum(1 for d in h.devices if d.model == m and state.free[d.uuid] == self.per)
                self.host_idle[(h.name, m)] = n
                if n:
                    self.idle_hosts.setdefault(m, {}).setdefault(n, []).append(i)
        for by_free in self.devs.values():
            for lst in by_free.values():
                lst.sort()
        for i in range(len(hosts)):
            self._update_tree(self.names[i])

    def leaf(self, name: str) -> tuple:
        st = self.state
        h = st.hosts[name]
        frees = [st.free[d.uuid] for d in h.devices]
        return (
            max(frees, default=0),
            sum(1 for f in frees if f == self.per),
            round(h.cpus * 1000) - st.cpu_used[name],
            h.memory_mb - st.mem_used[name],
        )

    def _update_tree(self, name: str) -> None:
        i = self.pos[name] + self.size
        self.tree[i] = self.leaf(name)
        i //= 2
        t = self.tree
        while i:
            a, b = t[2 * i], t[2 * i + 1]
            t[i] = (max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
            i //= 2

    def update(self, name: str) -> None:
        """After a grant on ``name``."""
        st = self.state
        h = st.hosts[name]
        p = self.pos[name]
        models = set()
        for d in h.devices:
            old, new = self.dev_free[d.uuid], st.free[d.uuid]
            if old == new:
                continue
            models.add(d.model)
            by_free = self.devs[d.model]
            entry = (p, d.index, d.uuid)
            lst = by_free[old]
            del lst[bisect_left(lst, entry)]
            insort(by_free.setdefault(new, []), entry)
            self.dev_free[d.uuid] = new
        for m in models:
            old = self.host_idle[(name, m)]
            new = sum(1 for d in h.devices if d.model == m and st.free[d.uuid] == self.per)
            if old != new:
                by_n = self.idle_hosts.setdefault(m, {})
                if old:
                    lst = by_n[old]
                    del lst[bisect_left(lst, p)]
                if new:
                    insort(by_n.setdefault(new, []), p)
                self.host_idle[(name, m)] = new
        self._update_tree(name)

    def need(self, req: Request) -> tuple:
        u = req.units
        if u == 0:
            return (-1, -1, round(req.cpu * 1000), req.mem_mb)
        if u < self.per:
            return (u, -1, round(req.cpu * 1000), req.mem_mb)
        return (-1, u // self.per, round(req.cpu * 1000), req.mem_mb)

    def fits(self, name: str, req: Request) -> bool:
        st = self.state
        h = st.hosts[name]
        if not st.fits_host(name, round(req.cpu * 1000), req.mem_mb):
            return False
        devs = [d for d in h.devices if not req.models or d.model in req.models]
        if req.units == 0:
            return True
        if req.units < self.per:
            return any(st.free[d.uuid] >= req.units for d in devs)
        return sum(1 for d in devs if st.free[d.uuid] == self.per) >= req.units // self.per

    def feasible(self, req: Request, first_only: bool = False, start: int = 0) -> list[str]:
        """Nodes that fit ``req`` in list order, from position ``start`` on."""
        need = self.need(req)
        out: list[str] = []
        stack = [(1, 0, self.size)]  # tree node, the positions it covers
        t, size = self.tree, self.size
        while stack:
            i, lo, hi = stack.pop()
            v = t[i]
            if hi <= start or v[0] < need[0] or v[1] < need[1] or v[2] < need[2] or v[3] < need[3]:
                continue
            if i >= size:
                name = self.names[i - size]
                if self.fits(name, req):
                    out.append(name)
                    if first_only:
                        return out
                continue
            mid = (lo + hi) // 2
            stack.append((2 * i + 1, mid, hi))
            stack.append((2 * i, lo, mid))
        return out


def req_key(req: Request) -> tuple:
    return (round(req.cpu * 1000), req.mem_mb, req.units, req.models)


class BaselineState(PoolState):
    """A PoolState without gpuhub's placement classes and typical shapes (the
    baselines read free units, device and host indexes, CPU and memory only)."""

    def _reclass(self, name: str) -> None:
        pass

    def observe_shape(self, shape) -> None:
        pass


def devices_for(state: PoolState, name: str, req: Request, rng=None) -> tuple[Share, ...]:
    h = state.hosts[name]
    devs = [d for d in h.devices if not req.models or d.model in req.models]
    if req.units == 0:
        return ()
    if req.units < state.units_per_gpu:
        ok = [d for d in devs if state.free[d.uuid] >= req.units]
        d = rng.choice(ok) if rng else ok[0]
        return (Share(d.uuid, req.units),)
    idle = [d for d in devs if state.free[d.uuid] == state.units_per_gpu]
    k = req.units // state.units_per_gpu
    chosen = rng.sample(idle, k) if rng else idle[:k]
    return tuple(Share(d.uuid, state.units_per_gpu) for d in chosen)


def first_fit(fit: Fit, req: Request, rng) -> Placement | None:
    key = req_key(req)
    # nodes before the one this request's twin got did not fit it then: nor now
    found = fit.feasible(req, first_only=True, start=fit.first_from.get(key, 0))
    if not found:
        return None
    fit.first_from[key] = fit.pos[found[0]]
    return Placement(found[0], devices_for(fit.state, found[0], req))


def random_fit(fit: Fit, req: Request, rng) -> Placement | None:
    for _ in range(16):
        name = fit.names[rng.randrange(len(fit.names))]
        if fit.fits(name, req):
            break
    else:
        key = req_key(req)
        before = fit.fitting.get(key)
        # the nodes that fit this request now are among those that fitted its twin
        found = fit.feasible(req) if before is None else [n for n in before if fit.fits(n, req)]
        fit.fitting[key] = found
        if not found:
            return None
        name = rng.choice(found)
    return Placement(name, devices_for(fit.state, name, req, rng))


def best_fit(fit: Fit, req: Request, rng) -> Placement | None:
    """The tightest level first (a fraction: the device's free units; whole GPUs:
    the node's idle devices of the model); in a level, the first node in list
    order with the CPU and memory (then the lowest device index)."""
    st = fit.state
    cpu, mem = round(req.cpu * 1000), req.mem_mb
    if req.units == 0:
        return first_fit(fit, req, rng)
    names = fit.names
    cpu_cap, cpu_used, mem_cap, mem_used = st.cpu_cap, st.cpu_used, fit.mem_cap, st.mem_used

    def fits_host(n: str, cpu: int, mem: int) -> bool:
        return cpu_cap[n] - cpu_used[n] >= cpu and mem_cap[n] - mem_used[n] >= mem
    if req.units < st.units_per_gpu:
        lists = [by_free for m, by_free in fit.devs.items() if not req.models or m in req.models]
        for free in range(req.units, st.units_per_gpu + 1):
            best = None
            for by_free in lists:
                for p, index, uuid in by_free.get(free, ()):
                    if best is not None and (p, index) >= best[0]:
                        break
                    if fits_host(names[p], cpu, mem):
                        best = ((p, index), uuid)
                        break
            if best is not None:
                return Placement(names[best[0][0]], (Share(best[1], req.units),))
        return None
    k = req.units // st.units_per_gpu
    lists = [(m, by_n) for m, by_n in fit.idle_hosts.items() if not req.models or m in req.models]
    for n in range(k, max((max(by_n, default=0) for _, by_n in lists), default=0) + 1):
        best = None
        for m, by_n in lists:
            for p in by_n.get(n, ()):
                if best is not None and p >= best[0]:
                    break
                if fits_host(names[p], cpu, mem):
                    best = (p, m)
                    break
        if best is not None:
            p, m = best
            name = names[p]
            idle = sorted(st.devices[u].index for u in st.idle[name][m])[:k]
            by_index = {d.index: d for d in st.hosts[name].devices}
            return Placement(name, tuple(Share(by_index[i].uuid, st.units_per_gpu) for i in idle))
    return None


BASELINES = {"best-fit": best_fit, "first-fit": first_fit, "random": random_fit}


# --------------------------------------------------------------------------- replay


#: (trace folder, units per GPU) → (nodes, pods), loaded once by the parent;
#: forked workers inherit it
_TRACES: dict[tuple[str, int], tuple[list[Host], list[tuple]]] = {}


def trace_data(trace: str, per: int = PER_GPU) -> tuple[list[Host], list[tuple]]:
    data = _TRACES.get((trace, per))
    if data is None:
        data = _TRACES[(trace, per)] = (load_nodes(Path(trace)), load_pods(Path(trace), per))
    return data


def replay(args: tuple) -> dict:
    trace, seed, inflate, policy, per = args
    hosts, pods = trace_data(str(trace), per)
    capacity = sum(len(h.devices) for h in hosts)
    cap_milli = capacity * 1000
    stream = workload(pods, seed, cap_milli, inflate)
    typical = paper_typical(pods, per)
    rng = random.Random(seed * 7919 + 1)
    if policy == "gpuhub":
        state = PoolState.build(hosts, units_per_gpu=per)
        state.shapes.seed([shape(p, per) for p in pods])
        state.reclass_all()
        fit = None
    else:
        state = BaselineState.build(hosts, units_per_gpu=per)
        fit = Fit(state, hosts)
        choose = BASELINES[policy]
        refused = fit.refused
        tries = len(fit.names)
    arrived = granted = requested = 0
    frag80 = None
    placed: list[tuple] = []
    t0 = time.process_time()
    for i, p in enumerate(stream):
        cpu, mem, units, asked, models = p
        req = Request("u", units, cpu / 1000, mem, 1.0, models)
        if fit is None:
            try:
                pl = place(state, req)
            except NoFit:
                pl = None
        elif (cpu, mem, units, models) in refused:  # fitted nowhere before: nowhere now (see Fit)
            if policy == "random":
                for _ in range(16):
                    rng.randrange(tries)
            pl = None
        else:
            pl = choose(fit, req, rng)
            if pl is None:
                refused.add((cpu, mem, units, models))
        if pl is not None:
            state.grant(Allocation(f"a{i}", "u", pl.host, units, req.cpu, mem, 1.0, pl.shares))
            if fit is not None:
                fit.update(pl.host)
            granted += units
            requested += asked
            placed.append(p)
        arrived += asked
        if frag80 is None and arrived >= 0.8 * cap_milli:
            frag80 = fragmented_share(state, typical)
    return {
        "seed": seed,
        "policy": policy,
        "granted": granted / (capacity * per),
        "requested": requested / cap_milli,
        "fragmented_idle_at_80": frag80,
        "pods": len(stream),
        "idle": {k: v / (capacity * per) for k, v in idle_breakdown(state, pods).items()},
        # what the pods this policy placed could reach at best (see sliver_loss)
        "ceiling": 1 - sliver_loss(placed, per) / cap_milli,
        "cpu_seconds": time.process_time() - t0,
    }


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", required=True, type=Path)
    ap.add_argument("--seeds", default="42-51")
    ap.add_argument("--inflate", type=float, default=1.3)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--units-per-gpu", type=int, default=PER_GPU,
                    help="the allocator's quantum (GPUAllocator.units_per_gpu): 20 = 0.05 GPU "
                         "(gpuhub's default), 1000 = the paper's milli-GPU (no rounding)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    per = a.units_per_gpu
    if per < 1 or 1000 % per:
        ap.error("--units-per-gpu must divide 1000 (a unit is a whole number of milli-GPU)")
    seeds = parse_seeds(a.seeds)
    policies = [p for p in a.policies.split(",") if p]
    for p in policies:
        if p not in POLICIES:
            ap.error(f"unknown policy {p!r}; known: {', '.join(POLICIES)}")
    # the slowest first, so that the two workers finish together
    jobs = [(str(a.trace), s, a.inflate, p, per) for p in policies for s in seeds]
    t0 = time.perf_counter()
    _, pods = trace_data(str(a.trace), per)  # parsed once here; forked workers inherit it
    if a.workers > 1:
        with multiprocessing.get_context("fork").Pool(a.workers) as pool:
            results = pool.map(replay, jobs, chunksize=1)
    else:
        results = [replay(j) for j in jobs]
    seconds = time.perf_counter() - t0
    out = {"seeds": seeds, "seconds": round(seconds, 2), "units_per_gpu": per,
           "mix_ceiling": round(mix_ceiling(pods, per), 5), "policies": {}}
    for p in policies:
        rs = [r for r in results if r["policy"] == p]
        mean = lambda k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        out["policies"][p] = {
            "requested": round(mean("requested"), 5),
            "granted": round(mean("granted"), 5),
            "fragmented_idle_at_80": round(mean("fragmented_idle_at_80"), 5),
            "per_seed_requested": [round(r["requested"], 5) for r in rs],
            # idle GPU capacity at the end by why it stayed idle (share of capacity)
            "idle": {k: round(sum(r["idle"][k] for r in rs) / len(rs), 5) for k in IDLE_KINDS},
            "ceiling": round(mean("ceiling"), 5),
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in rs), 2),
        }
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{len(seeds)} seeds ({a.seeds}), arrivals to {a.inflate:.0%} of GPU capacity, "
              f"{per} units per GPU, {seconds:.1f} s wall")
        print(f"{'policy':<12} {'requested %':>12} {'granted %':>10} {'frag idle @80%':>15}   "
              f"idle at the end, % of capacity: {' / '.join(IDLE_KINDS)}   ceiling %")
        for p, v in out["policies"].items():
            idle = " / ".join(f"{100 * v['idle'][k]:.2f}" for k in IDLE_KINDS)
            print(f"{p:<12} {100 * v['requested']:>12.2f} {100 * v['granted']:>10.2f} "
                  f"{100 * v['fragmented_idle_at_80']:>15.1f}   {idle:<43} {100 * v['ceiling']:.2f}")
        print(f"ceiling of the trace's pod mix at {per} units per GPU: requested <= "
              f"{100 * out['mix_ceiling']:.2f}% of capacity (see sliver_loss)")
        print("paper (simulator, mean of 10 seeds):")
        for p, (alloc, frag) in PAPER.items():
            print(f"{p:<12} {alloc:>12.2f} {'':>10} {'' if frag is None else f'{frag:.1f}':>15}")
    return out


if __name__ == "__main__":
    main()
