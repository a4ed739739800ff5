"""Turning user input into an exact :class:`~gpu_allocator.model.Request`.

Shared by the allocator's REST API and the spawner, so that the hub's form, the
hub's REST API and the allocator refuse the same values with the same words.
Every error is a :class:`RequestError` whose message says what *is* allowed.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from numbers import Real

from .model import Pool, format_gpus

#: keys a spawn request may carry; "profile" is written by the spawner itself.
SPAWN_KEYS = frozenset({"gpus", "cpu", "mem", "max_hours", "profile"})

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MEM_FACTORS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class RequestError(ValueError):
    """Bad input from a user; the message is shown to them as it is."""


def _number(name: str, value: object) -> Fraction:
    """Exact value of a JSON number or numeric string; refuses bool, NaN, inf."""
    if isinstance(value, bool) or value is None:
        raise RequestError(f"{name} must be a number, got {value!r}")
    if isinstance(value, Real):
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"{name} must be a finite number, got {value!r}")
        return Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    if isinstance(value, str):
        try:
            result = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise RequestError(f"{name} must be a number, got {value!r}") from None
        return result
    raise RequestError(f"{name} must be a number, got {value!r}")


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
    units = g * units_per_gpu
    if units.denominator != 1:
        raise RequestError(f"gpus={value!r} is not possible; {allowed}")
    return int(units)


def parse_cpu(value: object) -> float:
    try:
        c = _number("cpu", value)
    except RequestError as e:
        raise RequestError(f"{e}; allowed: a positive number of cores in steps of 0.1") from None
    if c <= 0 or c * 10 != int(c * 10):
        raise RequestError(f"cpu must be a positive number of cores in steps of 0.1, got {value!r}")
    return float(c)


def parse_mem(value: object) -> int:
    """Memory → MB. Accepts "512M", "8G", "8Gi"; a plain number is bytes."""
    if isinstance(value, bool) or value is None:
        raise RequestError(f"mem must look like '512M' or '8G', got {value!r}")
    if isinstance(value, Real):
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"mem must look like '512M' or '8G', got {value!r}")
        num_bytes = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    elif isinstance(value, str) and (m := _MEM_RE.match(value)):
        suffix = (m.group(2) or "").upper()[:1]
        num_bytes = Fraction(m.group(1)) * _MEM_FACTORS[suffix]
    else:
        raise RequestError(f"mem must look like '512M' or '8G', got {value!r}")
    mb = int(num_bytes / 1024**2)
    if mb < 64:
        raise RequestError(f"mem must be at least 64M, got {value!r}")
    return mb


def parse_hours(value: object, limit: float) -> float:
    try:
        h = _number("max_hours", value)
    except RequestError as e:
        raise RequestError(f"{e}; allowed: more than 0 and at most {limit:g}") from None
    if h <= 0 or h > Fraction(str(limit)):
        raise RequestError(f"max_hours must be more than 0 and at most {limit:g}, got {value!r}")
    return float(h)


def check_keys(options: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise RequestError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed - {'profile'}))}"
        )


def check_capacity(pool: Pool, units: int, cpu: float, mem_mb: int) -> None:
    """Refuse what no host of this pool could ever hold, even when idle."""
    per_gpu = pool.units_per_gpu
    hosts = [h for h in pool.hosts if h.state != "lost"]
    max_gpus = max((len(h.devices) for h in hosts), default=0)
    if units and max_gpus == 0:
        raise RequestError("this pool has no GPUs")
    if units > max_gpus * per_gpu:
        raise RequestError(f"gpus: at most {max_gpus} GPUs on one host in this pool")
    fitting = [h for h in hosts if len(h.devices) * per_gpu >= units]
    max_cpu = max((h.cpus for h in fitting), default=0)
    if cpu > max_cpu:
        raise RequestError(f"cpu: at most {max_cpu:g} cores on a host with that many GPUs")
    max_mem = max((h.memory_mb for h in fitting), default=0)
    if mem_mb > max_mem:
        raise RequestError(f"mem: at most {max_mem}M on a host with that many GPUs")
