"""Turning a request into an exact :class:`~gpu_allocator.core.model.Request`.

The one validation of a GPU request: the allocator runs it for ``POST
allocations`` (the spawner asks with ``"dry_run": true`` before it starts
anything), so the hub's form, the hub's REST API and the allocator's API refuse
the same values with the same words. Every error is a :class:`RequestError`
whose message says what *is* allowed. Numbers are read with
:func:`gpuhub.numbers.exact`: bounded text, no arithmetic before the bounds.

What the API takes for amounts: JSON numbers (``0.5``, ``2``) or plain decimal
strings (``"0.5"``); no exponents in strings, no ``"1/2"``, no NaN/Infinity.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

from gpuhub.numbers import NumberError, exact

from .model import HostState, Request, format_gpus, milli
from .pools import PoolError, check_name
from .quota import FIELDS as LIMIT_FIELDS
from .quota import Limits
from .state import PoolState

#: keys a request may carry
REQUEST_KEYS = frozenset(
    {"user", "server", "gpus", "cpu", "mem", "max_hours", "gpu_model", "key", "dry_run",
     # the queue: the user's hub groups (trusted from admins: the spawner), and
     # "queue": false for "now or never" (409 instead of waiting)
     "groups", "queue",
     # the host pool to land in (core.pools; absent: any open to the user)
     "pool"}
)
#: of those, what a user sets in a spawn (the spawner adds user, server and key)
SPAWN_KEYS = frozenset({"gpus", "cpu", "mem", "max_hours", "gpu_model", "pool"})

_MEM_RE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,9})?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MEM_FACTORS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MAX_MEM_MB = 1024**3  # 1 EB: more than any host
#: JupyterHub's user names: no "/", no control characters, at most 255 characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


class RequestError(ValueError):
    """Bad input from a user; the message is shown to them as it is."""


def _number(name: str, value: object) -> Fraction:
    try:
        return exact(value, name)
    except NumberError as e:
        raise RequestError(str(e)) from None


def parse_gpus(value: object, units_per_gpu: int, *, allow_zero: bool = False) -> int:
    """GPU amount → integer units. Fractions below one GPU must be multiples of
    the quantum; more than one GPU must be a whole number (no 1.5: a session gets
    either a slice of one device or whole devices)."""
    quantum = format_gpus(1, units_per_gpu)
    allowed = (
        f"allowed: a multiple of {quantum} below 1 (e.g. 0.25, 0.5) "
        "or a whole number of GPUs (1, 2, …)"
    )
    try:
        g = _number("gpus", value)
    except RequestError as e:
        raise RequestError(f"{e}; {allowed}") from None
    if g == 0 and allow_zero:
        return 0
    if g <= 0:
        raise RequestError(f"gpus must be greater than 0, got {value!r}; {allowed}")
    if g > 1 and g.denominator != 1:
        raise RequestError(f"gpus={value!r} is not possible; {allowed}")
    if g > 4096:
        raise RequestError(f"gpus={value!r} is more than any host has; {allowed}")
    units = g * units_per_gpu
    if units.denominator != 1:
        raise RequestError(f"gpus={value!r} is not possible; {allowed}")
    return int(units)


def parse_cpu(value: object) -> float:
    try:
        c = _number("cpu", value)
    except RequestError as e:
        raise RequestError(f"{e}; allowed: a positive number of cores in steps of 0.1") from None
    if c <= 0 or (c * 10).denominator != 1 or c > 100000:
        raise RequestError(f"cpu must be a positive number of cores in steps of 0.1, got {value!r}")
    return float(c)


def parse_mem(value: object) -> int:
    """Memory → MB. Accepts "512M", "8G", "8Gi"; a plain number is bytes."""
    wrong = f"mem must look like '512M' or '8G', got {value!r}"
    if isinstance(value, str):
        if len(value) > 40 or not (m := _MEM_RE.match(value)):
            raise RequestError(wrong if len(value) <= 40 else "mem: too long to be a size")
        suffix = (m.group(2) or "").upper()[:1]
        num_bytes = Fraction(m.group(1)) * _MEM_FACTORS[suffix]
    else:
        try:
            num_bytes = exact(value, "mem")
        except NumberError:
            raise RequestError(wrong) from None
    mb = int(num_bytes / 1024**2)
    if mb < 64:
        raise RequestError(f"mem must be at least 64M, got {value!r}")
    if mb > _MAX_MEM_MB:
        raise RequestError(f"mem={value!r} is more than any host has")
    return mb


def parse_hours(value: object, limit: float) -> float:
    try:
        h = _number("max_hours", value)
    except RequestError as e:
        raise RequestError(f"{e}; allowed: more than 0 and at most {limit:g}") from None
    if h <= 0 or h > Fraction(str(limit)):
        raise RequestError(f"max_hours must be more than 0 and at most {limit:g}, got {value!r}")
    return float(h)


def parse_models(value: object) -> frozenset[str]:
    """``"gpu_model"``: one model name or a list of acceptable ones (empty: any)."""
    if value is None or value == "" or value == []:
        return frozenset()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or len(names) > 32 or not all(
        isinstance(n, str) and 0 < len(n) <= 255 and not _CONTROL.search(n) for n in names
    ):
        raise RequestError("gpu_model must be a GPU model name or a list of them")
    return frozenset(names)


def parse_user(value: object) -> str:
    """A JupyterHub user name: 1–255 characters, no "/", no control characters."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 255
        or "/" in value
        or _CONTROL.search(value)
        or value.strip() != value
        or value in (".", "..")
    ):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "…"
        raise RequestError(f"user must be a JupyterHub user name, got {shown!r}")
    return value


def parse_text(value: object, name: str, limit: int = 255) -> str:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise RequestError(f"{name} must be text of at most {limit} characters")
    return value


def parse_key(value: object) -> str | None:
    """The client's idempotency key: printable ASCII, at most 200 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not _KEY_RE.match(value):
        raise RequestError("key must be printable ASCII of at most 200 characters")
    return value


def check_keys(options: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:10])
        raise RequestError(f"unknown option(s) {shown}; allowed: {', '.join(sorted(allowed))}")


def parse_request(data: dict, *, user: str, units_per_gpu: int, max_hours: float,
                  defaults: dict | None = None) -> Request:
    """The body of ``POST allocations`` (already a dict) → a Request. ``gpus: 0``
    (no GPU) is valid only for a dry run: a spawn without GPU holds nothing."""
    check_keys(data, REQUEST_KEYS)
    merged = {"gpus": None, "cpu": 1, "mem": "1G", "max_hours": min(8.0, max_hours), **(defaults or {})}
    merged.update({k: v for k, v in data.items() if v is not None})
    return Request(
        user=parse_user(user),
        units=parse_gpus(merged["gpus"], units_per_gpu, allow_zero=data.get("dry_run") is True),
        cpu=parse_cpu(merged["cpu"]),
        mem_mb=parse_mem(merged["mem"]),
        max_hours=parse_hours(merged["max_hours"], max_hours),
        models=parse_models(merged.get("gpu_model")),
        pool=parse_pool(merged.get("pool")),
    )


def parse_pool(value: object) -> str | None:
    """``"pool"``: the name of a host pool (None or "": any open to the user).
    Whether it is open to the user is decided where the request enters the
    pool (pool.usage.Usage.resolve_pools), with their groups."""
    if value is None or value == "":
        return None
    try:
        return check_name(value, "pool")
    except PoolError as e:
        raise RequestError(str(e)) from None


def _capacity(state: PoolState, models: frozenset[str]) -> tuple:
    """What the pool's hosts (lost ones aside) could ever hold for requests of
    ``models``: (known models, the most GPUs on a host, whether some such host
    enforces fractions, [(most milli-cores, most memory) on a host with at least
    n GPUs, for n = 0 … most GPUs]). Cached until a host changes (not by grants),
    so the check costs O(1) per request, not O(hosts)."""
    key = (state.hosts_version, models)
    found = state.capacity_cache.get(key)
    if found is not None:
        return found
    hosts = [h for h in state.hosts.values() if h.state != HostState.LOST]
    known = frozenset(d.model for h in hosts for d in h.devices)
    rows = [
        (sum(1 for d in h.devices if not models or d.model in models), milli(h.cpus), h.memory_mb, h.fractions)
        for h in hosts
    ]
    most = max((n for n, *_ in rows), default=0)
    best = [
        (max((c for n, c, _, _ in rows if n >= k), default=0), max((m for n, _, m, _ in rows if n >= k), default=0))
        for k in range(most + 1)
    ]
    fractions = any(f for n, _, _, f in rows if n)
    found = (known, most, fractions, best)
    if len(state.capacity_cache) > 64:
        state.capacity_cache.clear()
    state.capacity_cache[key] = found
    return found


def check_capacity(state: PoolState, req: Request) -> None:
    """Refuse what no host of this pool could ever hold, even when idle."""
    per_gpu = state.units_per_gpu
    known, max_gpus, fractions, best = _capacity(state, req.models)
    if req.models and not req.models & known:
        raise RequestError(
            f"gpu_model: no host has {' or '.join(sorted(req.models))}; "
            f"this pool has {', '.join(sorted(known)) or 'no GPUs'}"
        )
    if req.units and max_gpus == 0:
        raise RequestError("this pool has no GPUs")
    if 0 < req.units < per_gpu and not fractions:
        raise RequestError(
            "no host of this pool can enforce a fraction of a GPU (CUDA MPS is not available "
            "there: no nvidia-cuda-mps-control, or GPUs in MIG mode); ask for whole GPUs"
        )
    if req.units > max_gpus * per_gpu:
        raise RequestError(f"gpus: at most {max_gpus} GPUs on one host in this pool")
    needed = -(-req.units // per_gpu)  # GPUs a host must have
    max_cpu, max_mem = best[needed]
    if milli(req.cpu) > max_cpu:
        raise RequestError(f"cpu: at most {max_cpu / 1000:g} cores on a host with that many GPUs")
    if req.mem_mb > max_mem:
        raise RequestError(f"mem: at most {max_mem}M on a host with that many GPUs")


def parse_groups(value: object) -> tuple[str, ...] | None:
    """A user's JupyterHub group names (the spawner sends them); None: not given."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 1000 or not all(
        isinstance(g, str) and 0 < len(g) <= 255 and not _CONTROL.search(g) for g in value
    ):
        raise RequestError("groups must be a list of JupyterHub group names")
    return tuple(sorted(set(value)))


def parse_limits(data: dict, per: int, allowed: tuple[str, ...] = LIMIT_FIELDS) -> Limits:
    """A quota row (``PUT quotas/{user|group}/{name}``, the admin panel's quota
    form): each of ``allowed`` (core.quota.FIELDS; a pool's row:
    core.quota.POOL_FIELDS), null or absent for not set."""
    if not isinstance(data, dict):
        raise RequestError("a quota row must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    out = {}
    for name in LIMIT_FIELDS:
        v = data.get(name)
        if v is None:
            out[name] = None
        elif name == "gpus":
            out[name] = parse_gpus(v, per, allow_zero=True)
        elif name in ("sessions", "priority"):
            if not isinstance(v, int) or isinstance(v, bool) or (name == "sessions" and v < 0):
                raise RequestError(f"{name} must be a whole number" + (" ≥ 0" if name == "sessions" else ""))
            out[name] = v
        else:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
                raise RequestError(f"{name} must be a number ≥ 0")
            if name == "share" and v <= 0:
                raise RequestError("share must be more than 0")
            out[name] = float(v)
    return Limits(**out)


#: keys of a booking (``POST reservations``)
BOOKING_KEYS = ("host", "gpus", "model", "start", "end", "user", "note")


def parse_time(value, name: str) -> float:
    """Epoch seconds (a number) or ISO 8601 (no zone: UTC)."""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        if not 0 <= value < 10**11:
            raise RequestError(f"{name} is out of range")
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            return t.timestamp()
    raise RequestError(f"{name} must be a time: ISO 8601 (e.g. 2026-12-01T09:00:00Z) or epoch seconds")


def parse_booking(data: dict, state: PoolState, now: float) -> dict:
    """The body of ``POST reservations`` (and the admin panel's booking form),
    checked against the pool: host, model (implied when the host has one), gpus,
    start, end, note. Raises RequestError."""
    unknown = sorted(set(data) - set(BOOKING_KEYS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(BOOKING_KEYS)}")
    host = data.get("host")
    if not isinstance(host, str) or host not in state.hosts:
        raise RequestError(f"host must be one of the pool's hosts, got {host!r}"[:200])
    models = sorted({d.model for d in state.hosts[host].devices})
    model = data.get("model")
    if model is None:
        if len(models) != 1:
            raise RequestError(f"{host} has several GPU models ({', '.join(models)}): name one in model")
        model = models[0]
    if not isinstance(model, str) or model not in models:
        raise RequestError(f"{host} has no GPU model {model!r}; it has {', '.join(models) or 'none'}"[:300])
    gpus = data.get("gpus")
    count = sum(1 for d in state.hosts[host].devices if d.model == model)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= count:
        raise RequestError(f"gpus must be a whole number from 1 to {count} ({host} has {count} × {model})")
    if "start" not in data or "end" not in data:
        raise RequestError("start and end are required")
    start, end = parse_time(data["start"], "start"), parse_time(data["end"], "end")
    if end <= start:
        raise RequestError("end must be after start")
    if end <= now:
        raise RequestError("end is in the past")
    note = parse_text(data.get("note", ""), "note", 1000)
    return {"host": host, "model": model, "gpus": gpus, "start": start, "end": end, "note": note}
