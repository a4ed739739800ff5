"""The resource model: hosts, devices, requests and allocations.

GPU amounts are held as integer *units* of a quantum (default 1/20 GPU), never as
floats, so that sums are exact and "fractions never exceed a device" is an integer
comparison. CPU cores are compared in integer milli-cores for the same reason.
Everything here is plain, immutable data; states are enums.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

DEFAULT_UNITS_PER_GPU = 20


class HostState(str, enum.Enum):
    """``up`` hosts take new placements; ``drained``, ``fencing`` and ``lost`` ones
    do not. A host is ``fencing`` after its agent reported sessions the allocator
    does not hold there (e.g. a host that was cut off, marked lost, and came back
    with its old containers): until the agent confirms that nothing unaccounted
    runs on it (see core.fencing)."""

    UP = "up"
    DRAINED = "drained"
    FENCING = "fencing"
    LOST = "lost"
    #: owned by another scheduler (Slurm: the inventory's ``owner: slurm``): that
    #: scheduler picks its GPUs, the allocator only mirrors what it granted
    #: (external allocations, core.external) and never places its own shares there
    EXTERNAL = "external"

    def __str__(self) -> str:
        return self.value


class AllocationState(str, enum.Enum):
    """``granted`` allocations hold their shares; the others are history
    (``revoked``: an admin ended it; the hub stops its session)."""

    GRANTED = "granted"
    RELEASED = "released"
    LOST = "lost"
    REVOKED = "revoked"
    #: stopped at the end of its run time (max_hours)
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value


def milli(cores: float) -> int:
    """CPU cores → integer milli-cores (requests come in steps of 0.1)."""
    return round(cores * 1000)


@dataclass(frozen=True)
class Device:
    """One physical GPU."""

    host: str
    index: int
    uuid: str
    model: str
    memory_mb: int
    #: devices with the same non-empty island id are linked (NVLink/NVSwitch);
    #: an empty island means "PCIe only" (finer topology: Host.topology)
    island: str = ""


@dataclass(frozen=True)
class Host:
    """A GPU server and what it can offer."""

    name: str
    devices: tuple[Device, ...]
    cpus: float
    memory_mb: int
    #: EXTERNAL: owned by another scheduler (never placed on)
    state: HostState = HostState.UP
    #: pairwise link scores between device indexes (higher: better linked),
    #: from the agent's NVML topology (see core.topology); None: islands only
    topology: tuple[tuple[int, ...], ...] | None = None
    #: whether fractional shares are enforced here (the agent runs CUDA MPS);
    #: False: only whole GPUs are placed on this host
    fractions: bool = True
    #: the host pools it is in, sorted, each once (core.pools; a host that names
    #: none is in "default")
    pools: tuple[str, ...] = ("default",)

    def __post_init__(self):
        # each pool once, whoever built the host: a share counts once in each of
        # its host's pools (core.quota.add)
        unique = tuple(sorted(set(self.pools)))
        if unique != self.pools:
            object.__setattr__(self, "pools", unique)


@dataclass(frozen=True)
class Share:
    """A slice of one device held by an allocation."""

    device_uuid: str
    units: int


@dataclass(frozen=True)
class Request:
    """What a user asks for: GPU units, CPU cores, memory, a run time, the
    GPU models they accept (empty: any), and the host pools it may use."""

    user: str
    units: int
    cpu: float = 1.0
    mem_mb: int = 1024
    max_hours: float = 8.0
    models: frozenset[str] = frozenset()
    #: the host pool the user asked for (None: any open to them)
    pool: str | None = None
    #: the host pools it may land in, resolved from its user's groups and
    #: ``pool`` where it enters the allocator (core.pools.request_pools);
    #: None: any host (no pools configured, or a caller inside the allocator)
    pools: frozenset[str] | None = None
    #: pools it may not land in now: its user is over their quota there
    #: (core.quota.pool_decision; decided where it is placed, never stored)
    closed_pools: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Allocation:
    """A granted request: the host it landed on and the shares it holds."""

    id: str
    user: str
    host: str
    units: int
    cpu: float
    mem_mb: int
    max_hours: float
    shares: tuple[Share, ...] = ()
    state: AllocationState = AllocationState.GRANTED
    server: str = ""
    created: float = 0.0
    #: the client's idempotency key: a retried request gets this allocation back
    key: str | None = None
    released: float | None = None
    #: an external allocation's scheduler ("slurm") and its job id there; empty
    #: for the allocator's own shares
    source: str = ""
    job: str = ""


@dataclass(frozen=True)
class Placement:
    """Where a request fits: one host and the shares to take there."""

    host: str
    shares: tuple[Share, ...] = field(default_factory=tuple)


def units_to_gpus(units: int, units_per_gpu: int) -> Fraction:
    return Fraction(units, units_per_gpu)


@lru_cache(maxsize=4096)
def format_gpus(units: int, units_per_gpu: int = DEFAULT_UNITS_PER_GPU) -> str:
    """Exact decimal form of a GPU amount: "0.5", "0.25", "1", "2" — what the API
    sends (never a float)."""
    f = units_to_gpus(units, units_per_gpu)
    if f.denominator == 1:
        return str(f.numerator)
    text = f"{float(f):.6f}".rstrip("0").rstrip(".")
    return text
