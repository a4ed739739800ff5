"""The host's GPUs: what they are (discovery) and how busy they are (sampling).

Discovery comes from gpu_allocator.inventory: NVML (with the pairwise topology
and NUMA affinity) or a declared mock inventory. Sampling keeps NVML initialised
for the agent's lifetime. Every call here blocks: the agent runs them in its
NVML thread, never on the event loop.
"""

from __future__ import annotations

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

    def sample(self) -> list[dict]:
        nv = self.pynvml
        out = []
        for uuid, h in self.handles:
            rates = nvml_call(nv, "nvmlDeviceGetUtilizationRates", h)
            memory = nvml_call(nv, "nvmlDeviceGetMemoryInfo", h)
            processes = nvml_call(nv, "nvmlDeviceGetComputeRunningProcesses", h) or []
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
                        }
                        for p in processes
                    ],
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
