"""Placement: where a request fits in the pool. Pure functions over a PoolState
(read, never changed), no I/O.

Rules:
- a fraction of one GPU goes to the device where it fits most tightly (best fit),
  so that whole devices stay free for whole-GPU requests;
- whole GPUs come only from devices nobody else uses, all on one host, and
  preferably from one NVLink island (the smallest island that holds them, so
  that big islands stay whole);
- the host must also have the CPU cores and memory the request asks for;
- a request that names GPU models gets only devices of those models.

Cost: a fraction looks at the buckets of free units that can hold it (tightest
first) and stops at the first device whose host has room; whole GPUs look only
at hosts with enough idle devices of an accepted model.
"""

from __future__ import annotations

from collections import defaultdict

from .model import Device, HostState, Placement, Request, Share, format_gpus, milli
from .state import PoolState


class NoFit(Exception):
    """The request does not fit right now; the message says what is free."""


def _models(state: PoolState, req: Request) -> list[str]:
    if req.models:
        return sorted(m for m in req.models if m in state.buckets or m in state.hosts_by_idle)
    return sorted(set(state.buckets) | set(state.hosts_by_idle))


def _place_fraction(state: PoolState, req: Request) -> Placement | None:
    cpu, mem = milli(req.cpu), req.mem_mb
    best: tuple | None = None
    for model in _models(state, req):
        by_free = state.buckets.get(model, {})
        for free in sorted(f for f in by_free if f >= req.units):
            if best is not None and free - req.units > best[0]:
                break
            for uuid in by_free[free]:
                d = state.devices[uuid]
                if not state.fits_host(d.host, cpu, mem):
                    continue
                key = (free - req.units, d.host, d.index)
                if best is None or key < best:
                    best = (*key, d)
                break  # later devices of the bucket are no tighter
    if best is None:
        return None
    d = best[3]
    return Placement(host=d.host, shares=(Share(d.uuid, req.units),))


def _choose_whole(state: PoolState, host: str, idle: list[Device], count: int) -> tuple[tuple, list[Device]]:
    islands: dict[str, list[Device]] = defaultdict(list)
    for d in idle:
        if d.island:
            islands[d.island].append(d)
    linked = sorted(
        (devs for devs in islands.values() if len(devs) >= count),
        key=lambda devs: (len(devs), devs[0].index),
    )
    if linked:
        return (0, len(linked[0])), sorted(linked[0], key=lambda d: d.index)[:count]
    return (1, len(idle)), sorted(idle, key=lambda d: d.index)[:count]


def _place_whole(state: PoolState, req: Request) -> Placement | None:
    per_gpu = state.units_per_gpu
    count = req.units // per_gpu
    cpu, mem = milli(req.cpu), req.mem_mb
    best = None
    for model in _models(state, req):
        for n, hosts in state.hosts_by_idle.get(model, {}).items():
            if n < count:
                continue
            for host in hosts:
                if not state.fits_host(host, cpu, mem):
                    continue
                idle = [state.devices[u] for u in state.idle[host][model]]
                score, chosen = _choose_whole(state, host, idle, count)
                key = (score, host)
                if best is None or key < best[0]:
                    best = (key, host, chosen)
    if best is None:
        return None
    _, host, chosen = best
    return Placement(host=host, shares=tuple(Share(d.uuid, per_gpu) for d in chosen))


def _place_cpu_only(state: PoolState, req: Request) -> Placement | None:
    cpu, mem = milli(req.cpu), req.mem_mb
    fitting = [
        name for name, h in state.hosts.items()
        if h.state == HostState.UP and state.fits_host(name, cpu, mem)
    ]
    return Placement(host=min(fitting)) if fitting else None


def place(state: PoolState, req: Request) -> Placement:
    """Choose host and devices for ``req`` or raise :class:`NoFit`."""
    per_gpu = state.units_per_gpu
    if req.units < 0 or (req.units > per_gpu and req.units % per_gpu):
        raise ValueError(f"not a placeable amount: {req.units} units")
    if req.units == 0:
        found = _place_cpu_only(state, req)
    elif req.units < per_gpu:
        found = _place_fraction(state, req)
    else:
        found = _place_whole(state, req)
    if found is None:
        raise NoFit(describe_shortage(state, req))
    return found


def describe_shortage(state: PoolState, req: Request) -> str:
    """A sentence for the user: what they asked for and what is free now."""
    per_gpu = state.units_per_gpu
    parts = []
    up = [h for h in state.hosts.values() if h.state == HostState.UP]
    for host in sorted(up, key=lambda h: h.name)[:20]:
        devs = [d for d in host.devices if not req.models or d.model in req.models]
        idle = sum(1 for d in devs if state.free[d.uuid] == per_gpu)
        largest = max((state.free[d.uuid] for d in devs), default=0)
        cpu, mem = state.host_room(host.name)
        parts.append(
            f"{host.name}: {idle} idle GPU(s), largest free share {format_gpus(largest, per_gpu)}, "
            f"{cpu / 1000:g} CPU, {mem}M free"
        )
    if len(up) > 20:
        parts.append(f"and {len(up) - 20} more hosts")
    models = f" of {' or '.join(sorted(req.models))}" if req.models else ""
    asked = f"{format_gpus(req.units, per_gpu)} GPU{models}, {req.cpu:g} CPU, {req.mem_mb}M"
    return f"Not enough free resources for {asked} right now. Free: " + ("; ".join(parts) or "nothing")
