"""The resource model: hosts, devices, requests and allocations.

GPU amounts are held as integer *units* of a quantum (default 1/20 GPU), never as
floats, so that sums are exact and "fractions never exceed a device" is an integer
comparison. Everything here is plain, immutable data; placement works on it
without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

DEFAULT_UNITS_PER_GPU = 20


@dataclass(frozen=True)
class Device:
    """One physical GPU."""

    host: str
    index: int
    uuid: str
    model: str
    memory_mb: int
    #: devices with the same non-empty island id are linked (NVLink/NVSwitch);
    #: an empty island means "PCIe only".
    island: str = ""


@dataclass(frozen=True)
class Host:
    """A GPU server and what it can offer."""

    name: str
    devices: tuple[Device, ...]
    cpus: float
    memory_mb: int
    #: "up" hosts take new placements; "drained" and "lost" ones do not.
    state: str = "up"


@dataclass(frozen=True)
class Share:
    """A slice of one device held by an allocation."""

    device_uuid: str
    units: int


@dataclass(frozen=True)
class Request:
    """What a user asks for: GPU units, CPU cores, memory and a run time."""

    user: str
    units: int
    cpu: float = 1.0
    mem_mb: int = 1024
    max_hours: float = 8.0


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
    state: str = "granted"
    server: str = ""
    created: float = 0.0


@dataclass(frozen=True)
class Pool:
    """Every host and every live allocation: the input of placement."""

    hosts: tuple[Host, ...]
    allocations: tuple[Allocation, ...] = ()
    units_per_gpu: int = DEFAULT_UNITS_PER_GPU

    def devices(self) -> list[Device]:
        return [d for h in self.hosts for d in h.devices]

    def used_units(self) -> dict[str, int]:
        used: dict[str, int] = {d.uuid: 0 for d in self.devices()}
        for a in self.allocations:
            for s in a.shares:
                used[s.device_uuid] = used.get(s.device_uuid, 0) + s.units
        return used

    def free_units(self) -> dict[str, int]:
        used = self.used_units()
        return {d.uuid: self.units_per_gpu - used.get(d.uuid, 0) for d in self.devices()}

    def host_usage(self, host: str) -> tuple[float, int]:
        """CPU cores and memory (MB) held by live allocations on ``host``."""
        cpu = sum(a.cpu for a in self.allocations if a.host == host)
        mem = sum(a.mem_mb for a in self.allocations if a.host == host)
        return cpu, mem


@dataclass(frozen=True)
class Placement:
    """Where a request fits: one host and the shares to take there."""

    host: str
    shares: tuple[Share, ...] = field(default_factory=tuple)


def units_to_gpus(units: int, units_per_gpu: int) -> Fraction:
    return Fraction(units, units_per_gpu)


def format_gpus(units: int, units_per_gpu: int = DEFAULT_UNITS_PER_GPU) -> str:
    """Human form of a GPU amount: 0.5, 0.25, 1, 2 (exact, no float noise)."""
    f = units_to_gpus(units, units_per_gpu)
    if f.denominator == 1:
        return str(f.numerator)
    text = f"{float(f):.6f}".rstrip("0").rstrip(".")
    return text
