"""Where the pool's hosts come from: a declared inventory file, or NVML.

A declared (mock) inventory is a product feature for hosts without GPUs — demos,
development, CI — and for declaring remote hosts; everything above it (placement,
store, spawner) is the same code as with real GPUs.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import yaml

from .core.external import EXTERNAL_OWNERS
from .core.model import Device, Host, HostState
from .core.pools import PoolError, parse_host_pools
from .core.validation import RequestError, parse_mem

_MOCK_NAMESPACE = uuid.UUID("6f1e5d0c-52a4-4c4e-9d8f-677075687562")


class InventoryError(ValueError):
    """The inventory file is malformed; the message names the entry."""


def mock_uuid(host: str, index: int) -> str:
    """Stable, NVML-looking UUID for a declared device (same on every start)."""
    return f"GPU-{uuid.uuid5(_MOCK_NAMESPACE, f'{host}/{index}')}"


def _mem(value: object, where: str) -> int:
    try:
        return parse_mem(value)
    except RequestError as e:
        raise InventoryError(f"{where}: {e}") from None


def load_inventory(path: str | os.PathLike) -> list[Host]:
    """Read a YAML inventory (see hub_config/gpu_inventory.yaml for the format)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    hosts = []
    seen: set[str] = set()
    seen_uuids: set[str] = set()
    for n, entry in enumerate(data.get("hosts") or []):
        where = f"{path}: hosts[{n}]"
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: must be a mapping with name, cpus, memory and gpus")
        name = str(entry.get("name") or "")
        if not name or name in seen:
            raise InventoryError(f"{where}: every host needs a unique name")
        seen.add(name)
        devices: list[Device] = []
        for g, group in enumerate(entry.get("gpus") or []):
            gwhere = f"{where}.gpus[{g}]"
            if not isinstance(group, dict):
                raise InventoryError(f"{gwhere}: must be a mapping with model, memory and count")
            try:
                count = int(str(group.get("count", 1)))
            except ValueError:
                raise InventoryError(
                    f"{gwhere}: count must be a whole number, got {group.get('count')!r}"
                ) from None
            if count < 1:
                raise InventoryError(f"{gwhere}: count must be at least 1")
            uuids = group.get("uuids") or []
            for i in range(count):
                index = len(devices)
                uuid_ = str(uuids[i]) if i < len(uuids) else mock_uuid(name, index)
                if uuid_ in seen_uuids:
                    raise InventoryError(f"{gwhere}: device UUID {uuid_!r} is listed twice")
                seen_uuids.add(uuid_)
                devices.append(
                    Device(
                        host=name,
                        index=index,
                        uuid=uuid_,
                        model=str(group.get("model") or "unknown"),
                        memory_mb=_mem(group.get("memory", "16G"), gwhere),
                        island=str(group.get("nvlink_island") or ""),
                    )
                )
        try:
            cpus = float(entry.get("cpus", os.cpu_count() or 1))
        except (TypeError, ValueError):
            cpus = 0.0
        if not cpus > 0:
            raise InventoryError(f"{where}: cpus must be a positive number, got {entry.get('cpus')!r}")
        try:
            pools = parse_host_pools(entry.get("pools"), f"{where}.pools")
        except PoolError as e:
            raise InventoryError(str(e)) from None
        owner = entry.get("owner")
        if owner not in (None, *EXTERNAL_OWNERS):
            raise InventoryError(
                f"{where}.owner: {owner!r} is not a scheduler gpuhub mirrors; one of {', '.join(EXTERNAL_OWNERS)}"
            )
        hosts.append(
            Host(
                name=name,
                devices=tuple(devices),
                cpus=cpus,
                memory_mb=_mem(entry.get("memory", "16G"), where),
                pools=pools,
                # owned by another scheduler: the allocator only mirrors its jobs
                state=HostState.EXTERNAL if owner else HostState.UP,
            )
        )
    return hosts


def nvml_available() -> bool:
    """True when the NVIDIA driver's NVML loads and reports at least one GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    finally:
        pynvml.nvmlShutdown()


def _islands(pynvml, handles: list) -> list[str]:
    """Group devices into NVLink islands: union of pairs with NVLink P2P."""
    parent = list(range(len(handles)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    linked = [False] * len(handles)
    for i in range(len(handles)):
        for j in range(i + 1, len(handles)):
            try:
                status = pynvml.nvmlDeviceGetP2PStatus(
                    handles[i], handles[j], pynvml.NVML_P2P_CAPS_INDEX_NVLINK
                )
            except pynvml.NVMLError:
                continue
            if status == pynvml.NVML_P2P_STATUS_OK:
                parent[root(j)] = root(i)
                linked[i] = linked[j] = True
    return [f"nvlink{root(i)}" if linked[i] else "" for i in range(len(handles))]


#: nvmlDeviceGetTopologyCommonAncestor levels, named as `nvidia-smi topo -m` does
TOPOLOGY_LEVELS = {0: "internal", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}


def nvml_call(pynvml, name: str, *args):
    """An optional NVML query: None when this driver or pynvml does not have it."""
    fn = getattr(pynvml, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_topology(pynvml, handles: list) -> dict:
    """Between every pair of devices: the closest common ancestor on the PCIe tree
    (PIX, PXB, PHB, NODE, SYS) and whether they talk over NVLink; per device the
    number of active NVLinks."""
    ok = getattr(pynvml, "NVML_P2P_STATUS_OK", 0)
    pairs = []
    for i in range(len(handles)):
        for j in range(i + 1, len(handles)):
            level = nvml_call(pynvml, "nvmlDeviceGetTopologyCommonAncestor", handles[i], handles[j])
            p2p = nvml_call(
                pynvml, "nvmlDeviceGetP2PStatus", handles[i], handles[j],
                getattr(pynvml, "NVML_P2P_CAPS_INDEX_NVLINK", 2),
            )
            pairs.append(
                {
                    "a": i,
                    "b": j,
                    "common_ancestor": TOPOLOGY_LEVELS.get(level, level),
                    "nvlink": p2p == ok,
                }
            )
    nvlinks = []
    enabled = getattr(pynvml, "NVML_FEATURE_ENABLED", 1)
    for h in handles:
        active = 0
        for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
            state = nvml_call(pynvml, "nvmlDeviceGetNvLinkState", h, link)
            if state is None:  # no such link (or no NVLink at all)
                break
            active += state == enabled
        nvlinks.append(active)
    return {"pairs": pairs, "nvlinks_active": nvlinks}


def _cpu_list(mask_words, bits: int = 64) -> str:
    """NVML's CPU affinity bitmask (an array of unsigned longs) → '0-15,32-47'."""
    cpus = [
        w * bits + b for w, word in enumerate(mask_words or ()) for b in range(bits) if int(word) >> b & 1
    ]
    ranges: list[str] = []
    for c in cpus:
        if ranges and int(ranges[-1].split("-")[-1]) == c - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{c}"
        else:
            ranges.append(str(c))
    return ",".join(ranges)


def _numa_node_from_sysfs(pynvml, handle) -> int | None:
    pci = nvml_call(pynvml, "nvmlDeviceGetPciInfo", handle)
    bus_id = as_text(getattr(pci, "busId", "") or "").lower()
    if not bus_id:
        return None
    # NVML: 00000000:17:00.0, sysfs: 0000:17:00.0
    path = Path("/sys/bus/pci/devices") / bus_id[-12:] / "numa_node"
    try:
        node = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def nvml_numa(pynvml, handles: list) -> dict:
    """Per device: its NUMA node and the CPUs closest to it."""
    words = ((os.cpu_count() or 1) + 63) // 64
    devices = []
    for i, h in enumerate(handles):
        node = nvml_call(pynvml, "nvmlDeviceGetNumaNodeId", h)
        if node is None:
            node = _numa_node_from_sysfs(pynvml, h)
        devices.append(
            {
                "index": i,
                "numa_node": node,
                "cpus": _cpu_list(nvml_call(pynvml, "nvmlDeviceGetCpuAffinity", h, words)) or None,
            }
        )
    return {"devices": devices}


def _discover(hostname: str | None, details: bool) -> tuple[Host, dict]:
    import pynvml

    name = hostname or socket.gethostname()
    extra: dict = {}
    pynvml.nvmlInit()
    try:
        handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]
        islands = _islands(pynvml, handles)
        devices = []
        for i, h in enumerate(handles):
            devices.append(
                Device(
                    host=name,
                    index=i,
                    uuid=as_text(pynvml.nvmlDeviceGetUUID(h)),
                    model=as_text(pynvml.nvmlDeviceGetName(h)),
                    memory_mb=pynvml.nvmlDeviceGetMemoryInfo(h).total // 1024**2,
                    island=islands[i],
                )
            )
        if details:
            extra = {"topology": nvml_topology(pynvml, handles), "numa": nvml_numa(pynvml, handles)}
            # MPS does not run on devices in MIG mode: no fractional shares there
            modes = [nvml_call(pynvml, "nvmlDeviceGetMigMode", h) for h in handles]
            if any(isinstance(m, tuple | list) and m and m[0] == 1 for m in modes):
                extra["mig"] = True
    finally:
        pynvml.nvmlShutdown()
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024**2
    host = Host(name=name, devices=tuple(devices), cpus=float(os.cpu_count() or 1), memory_mb=mem_mb)
    return host, extra


def discover_nvml(hostname: str | None = None) -> Host:
    """This host's GPUs as NVML reports them. Blocking: call it in an executor."""
    return _discover(hostname, details=False)[0]


def discover_nvml_details(hostname: str | None = None) -> tuple[Host, dict]:
    """discover_nvml, plus {"topology": nvml_topology(), "numa": nvml_numa()} as
    the host's agent registers them. Blocking: call it in an executor."""
    return _discover(hostname, details=True)
