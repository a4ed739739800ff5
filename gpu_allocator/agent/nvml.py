"""The host's GPUs: what they are (discovery) and how busy they are (sampling).

Discovery comes from gpu_allocator.inventory: NVML (with the pairwise topology
and NUMA affinity) or a declared mock inventory. Sampling keeps NVML initialised
for the agent's lifetime. Every call here blocks: the agent runs them in its
NVML thread, never on the event loop.
"""

from __future__ import annotations

import time

from ..inventory import as_text, discover_nvml_details, load_inventory, nvml_call
from ..core.model import Host

MB = 1024**2


def discover(hostname: str, inventory_file: str = "", inventory_host: str = "") -> tuple[Host, dict]:
    """(Host, {"topology", "numa"}): from the declared inventory when one is
    given (the entry named inventory_host, else hostname), else from NVML."""
    if inventory_file:
        wanted = inventory_host or hostname
        for h in load_inventory(inventory_file):
            if h.name == wanted:
                return Host(hostname, h.devices, h.cpus, h.memory_mb), {}
        raise LookupError(f"{inventory_file} declares no host named {wanted!r}")
    return discover_nvml_details(hostname)


class NVMLSampler:
    """Utilisation and memory per device and per process, from NVML."""

    def __init__(self, pynvml=None):
        if pynvml is None:
            import pynvml
        self.pynvml = pynvml
        self.handles: list[tuple[str, object]] = []
        self.open = False
        #: when the last per-process utilisation was read (NVML's µs timestamps)
        self.since = 0

    def start(self) -> None:
        nv = self.pynvml
        nv.nvmlInit()
        self.open = True
        self.handles = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            self.handles.append((as_text(nv.nvmlDeviceGetUUID(h)), h))

    def stop(self) -> None:
        if self.open:
            self.open = False
            self.pynvml.nvmlShutdown()

    def process_utilization(self, h, since: int) -> dict[int, int] | None:
        """SM utilisation (%) per pid since ``since`` (µs); {} when NVML has no
        sample since then (NOT_FOUND: nothing ran), None when the driver cannot
        tell (no per-process accounting)."""
        nv = self.pynvml
        fn = getattr(nv, "nvmlDeviceGetProcessUtilization", None)
        if fn is None:
            return None
        try:
            rows = fn(h, since) or []
        except nv.NVMLError as e:
            if getattr(e, "value", None) == getattr(nv, "NVML_ERROR_NOT_FOUND", 6) or str(e) == "Not Found":
                return {}
            return None
        out: dict[int, int] = {}
        for r in rows:
            out[int(r.pid)] = max(out.get(int(r.pid), 0), int(r.smUtil))
        return out

    def sample(self) -> list[dict]:
        nv = self.pynvml
        out = []
        now = int(time.time() * 1e6)
        since, self.since = self.since or now - 10_000_000, now
        for uuid, h in self.handles:
            rates = nvml_call(nv, "nvmlDeviceGetUtilizationRates", h)
            memory = nvml_call(nv, "nvmlDeviceGetMemoryInfo", h)
            processes = nvml_call(nv, "nvmlDeviceGetComputeRunningProcesses", h) or []
            sm = self.process_utilization(h, since)
            out.append(
                {
                    "uuid": uuid,
                    "utilization_gpu": getattr(rates, "gpu", None),
                    "memory_used_mb": memory.used // MB if memory is not None else None,
                    "processes": [
                        {
                            "pid": int(p.pid),
                            # None where the driver may not tell (e.g. in containers)
                            "memory_mb": p.usedGpuMemory // MB
                            if isinstance(getattr(p, "usedGpuMemory", None), int)
                            else None,
                            # SM utilisation (%) since the last sample; None: unknown
                            "sm_util": None if sm is None else sm.get(int(p.pid), 0),
                        }
                        for p in processes
                    ],
                    # whether the driver tells utilisation per process
                    "process_utilization": sm is not None,
                }
            )
        return out


class NoSampler:
    """A declared (mock) host: there is nothing to measure."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def sample(self) -> list[dict]:
        return []
