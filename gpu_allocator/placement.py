"""Placement: where a request fits in a pool. Pure functions, no I/O.

Rules:
- a fraction of one GPU goes to the device where it fits most tightly (best fit),
  so that whole devices stay free for whole-GPU requests;
- whole GPUs come only from devices nobody else uses, all on one host, and
  preferably from one NVLink island (the smallest island that holds them, so
  that big islands stay whole);
- the host must also have the CPU cores and memory the request asks for.
"""

from __future__ import annotations

from collections import defaultdict

from .model import Device, Host, Placement, Pool, Request, Share, format_gpus


class NoFit(Exception):
    """The request does not fit right now; the message says what is free."""


#: CPU cores are floats in steps of 0.1, and their sums carry rounding noise
#: (0.1 + 0.1 + 2.2 + 0.6 > 3.0 in floats); that noise must not refuse an exact fit.
_CPU_EPSILON = 1e-6


def _host_has_room(pool: Pool, host: Host, req: Request) -> bool:
    cpu, mem = pool.host_usage(host.name)
    return cpu + req.cpu <= host.cpus + _CPU_EPSILON and mem + req.mem_mb <= host.memory_mb


def _place_fraction(pool: Pool, hosts: list[Host], req: Request) -> Placement | None:
    free = pool.free_units()
    candidates: list[tuple[int, str, int, Device]] = []
    for host in hosts:
        for d in host.devices:
            if free[d.uuid] >= req.units:
                candidates.append((free[d.uuid] - req.units, host.name, d.index, d))
    if not candidates:
        return None
    _, host_name, _, device = min(candidates, key=lambda c: c[:3])
    return Placement(host=host_name, shares=(Share(device.uuid, req.units),))


def _place_whole(pool: Pool, hosts: list[Host], req: Request) -> Placement | None:
    per_gpu = pool.units_per_gpu
    count = req.units // per_gpu
    free = pool.free_units()
    options: list[tuple[tuple, Host, list[Device]]] = []
    for host in hosts:
        idle = [d for d in host.devices if free[d.uuid] == per_gpu]
        if len(idle) < count:
            continue
        islands: dict[str, list[Device]] = defaultdict(list)
        for d in idle:
            if d.island:
                islands[d.island].append(d)
        linked = sorted(
            (devs for devs in islands.values() if len(devs) >= count),
            key=lambda devs: (len(devs), devs[0].index),
        )
        if linked:
            chosen, score = linked[0][:count], (0, len(linked[0]))
        else:
            chosen, score = idle[:count], (1, len(idle))
        # prefer linked devices, then the tightest fit, then the host name
        options.append(((score, host.name), host, chosen))
    if not options:
        return None
    _, host, chosen = min(options, key=lambda o: o[0])
    return Placement(host=host.name, shares=tuple(Share(d.uuid, per_gpu) for d in chosen))


def _place_cpu_only(pool: Pool, hosts: list[Host], req: Request) -> Placement | None:
    if not hosts:
        return None
    return Placement(host=min(hosts, key=lambda h: h.name).name)


def place(pool: Pool, req: Request) -> Placement:
    """Choose host and devices for ``req`` or raise :class:`NoFit`."""
    per_gpu = pool.units_per_gpu
    if req.units < 0 or (req.units > per_gpu and req.units % per_gpu):
        raise ValueError(f"not a placeable amount: {req.units} units")
    hosts = [h for h in pool.hosts if h.state == "up" and _host_has_room(pool, h, req)]
    if req.units == 0:
        found = _place_cpu_only(pool, hosts, req)
    elif req.units < per_gpu:
        found = _place_fraction(pool, hosts, req)
    else:
        found = _place_whole(pool, hosts, req)
    if found is None:
        raise NoFit(describe_shortage(pool, req))
    return found


def describe_shortage(pool: Pool, req: Request) -> str:
    """A sentence for the user: what they asked for and what is free now."""
    per_gpu = pool.units_per_gpu
    free = pool.free_units()
    parts = []
    for host in pool.hosts:
        if host.state != "up":
            continue
        idle = sum(1 for d in host.devices if free[d.uuid] == per_gpu)
        largest = max((free[d.uuid] for d in host.devices), default=0)
        cpu, mem = pool.host_usage(host.name)
        parts.append(
            f"{host.name}: {idle} idle GPU(s), largest free share {format_gpus(largest, per_gpu)}, "
            f"{host.cpus - cpu:g} CPU, {host.memory_mb - mem}M free"
        )
    asked = f"{format_gpus(req.units, per_gpu)} GPU, {req.cpu:g} CPU, {req.mem_mb}M"
    return f"Not enough free resources for {asked} right now. Free: " + ("; ".join(parts) or "nothing")
