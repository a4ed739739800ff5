"""JSON shapes of the REST API (one place, so handlers and clients agree), which
the admin panel's pages show too: imports only core, so that the REST handlers
(gpu_allocator.api), the admin panel (gpu_allocator.admin) and the metrics can
all use it.

Amounts are exact on the wire: GPU amounts as decimal strings ("0.5", "2") with
their integer ``units`` and the pool's ``units_per_gpu`` beside them, CPU cores as
decimal strings, memory in MB — never floats.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from .core.model import Allocation, format_gpus
from .core.quota import POOL_FIELDS, WINDOW_S, Held
from .core.reservations import Reservation
from .core.state import PoolState


def cores(value: float) -> str:
    return f"{round(value * 1000) / 1000:g}"


def allocation_json(a: Allocation, state: PoolState, mps: dict | None = None) -> dict:
    """An allocation on the wire; ``mps`` (LivePool.mps_state) says whether the
    host's MPS daemon is ready to enforce a fractional share."""
    per_gpu = state.units_per_gpu
    out = []
    for s in a.shares:
        d = state.devices.get(s.device_uuid)
        out.append(
            {
                "uuid": s.device_uuid,
                "index": d.index if d else None,
                "model": d.model if d else None,
                "memory_mb": d.memory_mb if d else None,
                "island": d.island if d else None,
                "units": s.units,
                "fraction": format_gpus(s.units, per_gpu),
            }
        )
    return {
        "id": a.id,
        "state": a.state.value,
        "user": a.user,
        "server": a.server,
        "host": a.host,
        "gpus": format_gpus(a.units, per_gpu),
        "units": a.units,
        "units_per_gpu": per_gpu,
        "cpu": cores(a.cpu),
        "mem": f"{a.mem_mb}M",
        "max_hours": a.max_hours,
        "created": a.created,
        "released": a.released,
        "devices": out,
        "mps": mps,
        # "gpuhub": placed by the allocator; "slurm": mirrored from that
        # scheduler's job (core.external)
        "source": a.source or "gpuhub",
        "job": a.job or None,
    }


def allocation_use(info: dict, a) -> dict | None:
    """An allocation's own GPU use as its host's agent last reported it (its
    processes' utilisation and memory, ``sampled_at`` epoch seconds); None when
    the agent reports none. ``info``: the pool's host records."""
    rec = info.get(a.host) if a.host else None
    usage = rec.usage if rec is not None else None
    return ((usage or {}).get("allocations") or {}).get(a.id)


def _usage_for(usage: dict | None, devices: set[str] | None) -> dict | None:
    """An agent's samples as a viewer may see them: admins (devices None) all of
    it; users only the devices they hold a share of, without process ids."""
    if not usage:
        return None
    if devices is None:
        return usage
    mine = [  # not "allocations": each share carries its own ("use")
        {k: d.get(k) for k in ("uuid", "utilization_gpu", "memory_used_mb")}
        for d in usage.get("devices") or ()
        if d.get("uuid") in devices
    ]
    return {"at": usage.get("at"), "devices": mine}


def host_json(name: str, state: PoolState, info, *, viewer: str | None) -> dict:
    per_gpu = state.units_per_gpu
    h = state.hosts[name]
    cpu_free, mem_free = state.host_room(name)
    held = state.by_host.get(name, {})
    shares_by_device: dict[str, list] = {}
    for a in held.values():
        if viewer is not None and a.user != viewer:
            continue
        for s in a.shares:
            shares_by_device.setdefault(s.device_uuid, []).append(
                {"allocation": a.id, "user": a.user, "units": s.units,
                 "fraction": format_gpus(s.units, per_gpu),
                 # an external allocation's scheduler and job (core.external)
                 "source": a.source or "gpuhub", "job": a.job or None,
                 # its own processes' use, as the agent last reported it
                 "use": allocation_use({name: info} if info else {}, a)}
            )
    devices = [
        {
            "index": d.index,
            "uuid": d.uuid,
            "model": d.model,
            "memory_mb": d.memory_mb,
            "island": d.island,
            "free_units": state.free[d.uuid],
            "free": format_gpus(state.free[d.uuid], per_gpu),
            "shares": shares_by_device.get(d.uuid, []),
        }
        for d in h.devices
    ]
    mine = None if viewer is None else set(shares_by_device)
    details = (info.details if info else None) or {}
    out = {
        "name": name,
        "state": h.state.value,
        "cpus": cores(h.cpus),
        "cpus_free": cores(cpu_free / 1000),
        "memory_mb": h.memory_mb,
        "memory_mb_free": mem_free,
        "devices": devices,
        "source": info.source if info else "inventory",
        "fractions": h.fractions,
        "pools": list(h.pools),
        "topology": details.get("topology"),
        "numa": details.get("numa"),
        "usage": _usage_for(info.usage if info else None, mine),
    }
    if viewer is None:
        out.update(
            drained=bool(info and info.drained),
            last_heartbeat=info.last_heartbeat if info else None,
            unknown_allocations=list(info.unknown) if info else [],
            docker=info.docker if info else None,
            mps=info.mps if info else None,
            # sessions the host ran without a share, stopped by its agent (fencing)
            fenced=[dict(e) for e in info.fenced] if info else [],
        )
    return out


def pool_json(state: PoolState, info: dict, *, viewer: str | None, pools: dict | None = None,
              open_to: frozenset[str] | None = None) -> dict:
    """The pool as ``viewer`` may see it: capacity for everyone; other users'
    shares, agents' process samples, Docker endpoints and unknown allocations
    only for admins (``viewer=None``). ``pools``: the host pools
    (core.pools.Pool by name), with who may use them for admins and, for a
    user, whether each is ``open`` to them (``open_to``)."""
    hosts = [host_json(name, state, info.get(name), viewer=viewer) for name in sorted(state.hosts)]
    members: dict[str, list[str]] = {}
    for h in hosts:
        for p in h["pools"]:
            members.setdefault(p, []).append(h["name"])
    listed = []
    for name, p in (pools or {}).items():
        entry = {"name": name, "description": p.description, "hosts": members.get(name, [])}
        if viewer is None:
            entry.update(groups=sorted(p.groups), users=sorted(p.users))
        else:
            entry["open"] = open_to is None or name in open_to
        listed.append(entry)
    return {
        "units_per_gpu": state.units_per_gpu,
        "quantum": format_gpus(1, state.units_per_gpu),
        "models": state.models(),
        "hosts": hosts,
        "pools": listed,
    }


def iso(t: float | None) -> str | None:
    """Epoch seconds → ISO 8601 in UTC ("2025-01-31T14:20:00+00:00"); None stays."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def queued_json(q, estimate, per_gpu: int, state: str = "queued", ended: float | None = None,
                reason: str | None = None) -> dict:
    """A request that waits (or waited) in the queue: what it asks for, its
    position and start estimates (``eta``: expected; ``eta_latest``: if every
    running share uses its full time), and why it waits."""
    req = q.req
    out = {
        "id": q.id,
        "state": state,
        "user": req.user,
        "server": q.server,
        "gpus": format_gpus(req.units, per_gpu),
        "units": req.units,
        "units_per_gpu": per_gpu,
        "cpu": cores(req.cpu),
        "mem": f"{req.mem_mb}M",
        "max_hours": req.max_hours,
        "gpu_model": sorted(req.models),
        "pool": req.pool,
        "groups": list(q.groups),
        "submitted": iso(q.submitted),
        "position": estimate.position if estimate else None,
        "eta": iso(estimate.expected) if estimate else None,
        "eta_latest": iso(estimate.latest) if estimate else None,
        "first_eta": iso(q.first_eta),
        "first_eta_latest": iso(q.first_latest),
        "reason": (estimate.reason if estimate else reason) or reason,
        "ended": iso(ended),
        "devices": [],
    }
    return out


def reason_kind(reason: str) -> str:
    """What a request waits for, in one word: quota, reservation or capacity."""
    r = (reason or "").lower()
    if "quota" in r:
        return "quota"
    if "reserv" in r:
        return "reservation"
    return "capacity"


def reservation_json(r: Reservation, state=None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    out = {
        "id": r.id, "user": r.user, "host": r.host, "model": r.model, "gpus": r.gpus,
        "devices": list(r.devices), "start": iso(r.start), "end": iso(r.end),
        "state": r.state.value, "active_now": r.active_at(now), "created": iso(r.created),
        "created_by": r.created_by, "note": r.note, "cancelled": iso(r.ended),
    }
    if state is not None:
        out["indexes"] = [state.devices[u].index for u in r.devices if u in state.devices]
    return out


def quota_json(pool, user: str, groups=None, now: float | None = None) -> dict:
    """A user's limits (for ``groups``, default: as the spawner last reported
    them), what they hold and what is left: GET quota, and the spawn form."""
    per = pool.units_per_gpu
    now = time.time() if now is None else now
    groups = tuple(groups) if groups is not None else tuple(pool.groups.get(user, ()))
    limits = pool.quotas.resolve(user, groups)
    held = pool.held(user, now)
    left = _left(limits, held, per)
    # per host pool with a limit that applies to the user: that limit, what they
    # hold there (a share counts in every pool of its host) and what is left
    in_pools = {}
    for name in sorted(pool.quotas.pools):
        mine = pool.quotas.resolve_pool(name, user, groups)
        if mine is None:
            continue
        h = held.pools.get(name) or Held()
        d = mine.as_dict(per)
        in_pools[name] = {"limits": {f: d[f] for f in POOL_FIELDS},
                          "held": {"gpus": format_gpus(h.units, per), "sessions": h.sessions,
                                   "gpu_hours": round(h.gpu_hours, 3)},
                          "left": _left(mine, h, per)}
    return {
        "user": user,
        "groups": list(groups),
        "limits": limits.as_dict(per),
        "held": {"gpus": format_gpus(held.units, per), "sessions": held.sessions,
                 "gpu_hours": round(held.gpu_hours, 3),
                 # what the quota counts, in two parts: used so far, and what running
                 # shares may still use (their declared time left)
                 "gpu_hours_used": round(held.gpu_hours_used, 3),
                 "gpu_hours_reserved": round(held.gpu_hours_reserved, 3)},
        "left": left,
        # one line per server (named servers each hold their own share and time limit)
        "servers": sorted(({"server": a.server, "allocation": a.id, "gpus": format_gpus(a.units, per),
                            "host": a.host, "max_hours": a.max_hours,
                            "ends_at": iso(pool.ends_at(a))}
                           for a in pool.state.allocations.values() if a.user == user),
                          key=lambda line: line["server"]),
        "window_hours": WINDOW_S / 3600,
        "pools": in_pools,
    }


def _left(limits, held, per: int) -> dict:
    return {
        "gpus": None if limits.gpus is None else format_gpus(max(0, limits.gpus - held.units), per),
        "sessions": None if limits.sessions is None else max(0, limits.sessions - held.sessions),
        "gpu_hours": None if limits.gpu_hours is None else round(max(0.0, limits.gpu_hours - held.gpu_hours), 3),
    }
