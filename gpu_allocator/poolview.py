"""What the admin panel's pool map, the pool API (api.pool) and the metrics show
of the pool, computed from the live PoolState: per-model totals with
fragmentation, and pages of hosts filtered by model, name, user and state (the
map stays fast with thousands of hosts: a page renders only its hosts; the
totals are one pass over the devices)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .core.model import HostState, format_gpus
from .core.state import PoolState

PER_PAGE = 25
MAX_PER_PAGE = 200


def fragmentation(state: PoolState) -> dict[str, float]:
    """Idle units per model that the typical requests could not use where they
    are (Weng et al.'s expected fragmentation, the measure placement minimises;
    core.typical), over the up hosts. Hosts that look alike to placement share a
    class, so this is one term per class, not per host."""
    typ = state.shapes.typical
    out: dict[str, float] = {m: 0.0 for m in state.models()}
    for c in state.classes.values():
        frag = typ.frag(c.fs, c.cr, c.mr)
        if not frag:
            continue
        sig = c.key[0]  # ((model, free units), …)
        free = sum(f for _, f in sig)
        if not free:
            continue
        for model, f in sig:
            out[model] = out.get(model, 0.0) + frag * len(c.members) * f / free
    return out


@dataclass
class ModelTotals:
    model: str
    devices: int = 0
    units: int = 0
    allocated: int = 0
    idle_devices: int = 0
    unavailable: int = 0  # units on hosts that take no placements (drained, fencing, lost)
    fragmented: float = 0.0

    def json(self, per_gpu: int) -> dict:
        return {
            "model": self.model,
            "gpus": self.devices,
            "allocated": format_gpus(self.allocated, per_gpu),
            "free": format_gpus(self.units - self.allocated, per_gpu),
            "idle_gpus": self.idle_devices,
            "unavailable": format_gpus(self.unavailable, per_gpu),
            "fragmented": round(self.fragmented / per_gpu, 3),
        }


def model_totals(state: PoolState) -> list[ModelTotals]:
    per = state.units_per_gpu
    totals: dict[str, ModelTotals] = {}
    for d in state.devices.values():
        t = totals.get(d.model) or totals.setdefault(d.model, ModelTotals(d.model))
        free = state.free[d.uuid]
        t.devices += 1
        t.units += per
        t.allocated += per - free
        if free == per:
            t.idle_devices += 1
        host = state.hosts.get(d.host)
        if host is not None and host.state != HostState.UP:
            t.unavailable += free
    for model, units in fragmentation(state).items():
        if model in totals:
            totals[model].fragmented = units
    return [totals[m] for m in sorted(totals)]


def user_colour(user: str) -> str:
    """A stable colour per user (hue from a hash of the name)."""
    h = int(hashlib.sha1(user.encode()).hexdigest()[:8], 16)
    return f"hsl({h % 360}, 62%, 42%)"


@dataclass
class Filters:
    model: str = ""
    host: str = ""
    user: str = ""
    state: str = ""
    page: int = 1
    per_page: int = PER_PAGE

    def query(self, **override) -> str:
        """The query string of these filters (with ``override``), for links."""
        values = {k: getattr(self, k) for k in ("model", "host", "user", "state", "page")}
        values.update(override)
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and
                          not (k == "page" and v == 1)})


@dataclass
class HostPage:
    hosts: list[dict] = field(default_factory=list)
    matched: int = 0
    page: int = 1
    pages: int = 1
    per_page: int = PER_PAGE


def _matches(state: PoolState, name: str, f: Filters) -> bool:
    h = state.hosts[name]
    if f.state and h.state.value != f.state:
        return False
    if f.host and f.host.lower() not in name.lower():
        return False
    if f.model and not any(d.model == f.model for d in h.devices):
        return False
    if f.user and not any(a.user == f.user for a in state.by_host.get(name, {}).values()):
        return False
    return True


def host_page(state: PoolState, info: dict, f: Filters, now: float | None = None) -> HostPage:
    """One page of hosts (sorted by name) that match the filters, each as the map
    draws it: devices grouped by NVLink island, each with its shares."""
    now = time.time() if now is None else now
    per = state.units_per_gpu
    names = [n for n in sorted(state.hosts) if _matches(state, n, f)]
    per_page = max(1, min(f.per_page, MAX_PER_PAGE))
    pages = max(1, -(-len(names) // per_page))
    page = max(1, min(f.page, pages))
    out = HostPage(matched=len(names), page=page, pages=pages, per_page=per_page)
    for name in names[(page - 1) * per_page: page * per_page]:
        h = state.hosts[name]
        rec = info.get(name)
        held = sorted(state.by_host.get(name, {}).values(), key=lambda a: (a.created, a.id))
        on_device: dict[str, list] = {}
        for a in held:
            for s in a.shares:
                on_device.setdefault(s.device_uuid, []).append(
                    {"allocation": a.id, "user": a.user, "units": s.units,
                     "width": 100.0 * s.units / per, "fraction": format_gpus(s.units, per),
                     "colour": user_colour(a.user)}
                )
        islands: list[dict] = []
        for d in h.devices:
            if not islands or islands[-1]["island"] != d.island:  # (PCIe-only: island "")
                islands.append({"island": d.island, "devices": []})
            islands[-1]["devices"].append({
                "index": d.index, "uuid": d.uuid, "model": d.model,
                "memory_gb": round(d.memory_mb / 1024),
                "free": format_gpus(state.free[d.uuid], per),
                "free_width": 100.0 * state.free[d.uuid] / per,
                "shares": on_device.get(d.uuid, []),
            })
        beat = rec.last_heartbeat if rec else None
        out.hosts.append({
            "name": name,
            "state": h.state.value,
            "drained": bool(rec and rec.drained),
            "source": rec.source if rec else "inventory",
            "last_heartbeat": beat,
            "heartbeat_age": (now - beat) if beat else None,
            "models": sorted({d.model for d in h.devices}),
            "pools": list(h.pools),
            "islands": islands,
            "allocations": [
                {"id": a.id, "user": a.user, "server": a.server, "gpus": format_gpus(a.units, per),
                 "created": a.created, "colour": user_colour(a.user),
                 "devices": ", ".join(
                     str(state.devices[s.device_uuid].index) for s in a.shares
                     if s.device_uuid in state.devices)}
                for a in held
            ],
        })
    return out


def host_counts(state: PoolState) -> dict[str, int]:
    counts = {s.value: 0 for s in HostState}
    for h in state.hosts.values():
        counts[h.state.value] += 1
    return counts


#: the map's at-a-glance strip shows every host up to this many
OVERVIEW_MAX = 5000


def overview(state: PoolState) -> list[dict]:
    """Every host as one cell (name, state, allocated fraction), grouped by
    model: the whole pool at a glance, each cell a link to its host."""
    per = state.units_per_gpu
    out = []
    for name in sorted(state.hosts):
        h = state.hosts[name]
        total = per * len(h.devices)
        used = sum(per - state.free[d.uuid] for d in h.devices)
        out.append({"name": name, "state": h.state.value,
                    "model": h.devices[0].model if h.devices else "",
                    "allocated": used / total if total else 0.0})
    out.sort(key=lambda c: (c["model"], c["name"]))
    return out
