"""JSON shapes of the REST API (one place, so handlers and clients agree)."""

from __future__ import annotations

from .model import Allocation, Device, Host, Pool, Share, format_gpus


def gpus_number(units: int, units_per_gpu: int) -> float | int:
    text = format_gpus(units, units_per_gpu)
    return int(text) if text.isdigit() else float(text)


def allocation_json(a: Allocation, pool: Pool) -> dict:
    per_gpu = pool.units_per_gpu
    devices = {d.uuid: d for d in pool.devices()}
    out = []
    for s in a.shares:
        d = devices.get(s.device_uuid)
        out.append(
            {
                "uuid": s.device_uuid,
                "index": d.index if d else None,
                "model": d.model if d else None,
                "memory_mb": d.memory_mb if d else None,
                "fraction": gpus_number(s.units, per_gpu),
            }
        )
    return {
        "id": a.id,
        "state": a.state,
        "user": a.user,
        "server": a.server,
        "host": a.host,
        "gpus": gpus_number(a.units, per_gpu),
        "cpu": a.cpu,
        "mem": f"{a.mem_mb}M",
        "max_hours": a.max_hours,
        "created": a.created,
        "devices": out,
    }


#: what the pool shows about a host without an agent
_NO_STATUS = {
    "source": "inventory",
    "last_heartbeat": None,
    "usage": None,
    "unknown_allocations": [],
    "docker": None,
    "topology": None,
    "numa": None,
}


def pool_json(pool: Pool, *, viewer: str | None, status: dict[str, dict] | None = None) -> dict:
    """The pool as ``viewer`` may see it: capacity for everyone, shares of
    other users only for admins (``viewer=None``). ``status`` (by host name, from
    Store.pool_status) adds where each host comes from and what its agent last
    reported; the host's Docker endpoint only for admins."""
    per_gpu = pool.units_per_gpu
    used = pool.used_units()
    hosts = []
    for h in pool.hosts:
        cpu, mem = pool.host_usage(h.name)
        devices = []
        for d in h.devices:
            shares = [
                {
                    "allocation": a.id,
                    "user": a.user,
                    "fraction": gpus_number(s.units, per_gpu),
                }
                for a in pool.allocations
                for s in a.shares
                if s.device_uuid == d.uuid and (viewer is None or a.user == viewer)
            ]
            devices.append(
                {
                    "index": d.index,
                    "uuid": d.uuid,
                    "model": d.model,
                    "memory_mb": d.memory_mb,
                    "island": d.island,
                    "free": gpus_number(per_gpu - used[d.uuid], per_gpu),
                    "shares": shares,
                }
            )
        info = {**_NO_STATUS, **(status or {}).get(h.name, {})}
        host = {
            "name": h.name,
            "state": h.state,
            "cpus": h.cpus,
            "cpus_free": h.cpus - cpu,
            "memory_mb": h.memory_mb,
            "memory_mb_free": h.memory_mb - mem,
            "devices": devices,
            "source": info["source"],
            "last_heartbeat": info["last_heartbeat"],
            "usage": info["usage"],
            "unknown_allocations": info["unknown_allocations"],
            "topology": info["topology"],
            "numa": info["numa"],
        }
        if viewer is None:
            host["docker"] = info["docker"]
        hosts.append(host)
    return {
        "units_per_gpu": per_gpu,
        "quantum": gpus_number(1, per_gpu),
        "hosts": hosts,
    }


def pool_from_json(data: dict) -> Pool:
    """Rebuild a Pool from ``GET pool`` as its reader sees it: capacity exact, and
    what others hold folded into one anonymous allocation per host (enough for
    validation and for showing what is free)."""
    per_gpu = int(data["units_per_gpu"])
    hosts, used = [], []
    for h in data["hosts"]:
        devices = tuple(
            Device(h["name"], d["index"], d["uuid"], d["model"], d["memory_mb"], d.get("island", ""))
            for d in h["devices"]
        )
        hosts.append(Host(h["name"], devices, h["cpus"], h["memory_mb"], h.get("state", "up")))
        shares = tuple(
            Share(d["uuid"], per_gpu - round(d["free"] * per_gpu))
            for d in h["devices"]
            if round(d["free"] * per_gpu) < per_gpu
        )
        used.append(
            Allocation(
                id=f"used-on-{h['name']}",
                user="",
                host=h["name"],
                units=sum(s.units for s in shares),
                cpu=h["cpus"] - h["cpus_free"],
                mem_mb=h["memory_mb"] - h["memory_mb_free"],
                max_hours=0,
                shares=shares,
            )
        )
    return Pool(hosts=tuple(hosts), allocations=tuple(used), units_per_gpu=per_gpu)
