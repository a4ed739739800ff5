"""Allocations a host's Docker engine runs: containers labelled gpuhub.allocation.
Blocking (docker SDK): the agent calls these in a worker thread."""

from __future__ import annotations

LABEL = "gpuhub.allocation"


def _client(url: str):
    import docker

    return docker.DockerClient(base_url=url, timeout=10)


def running_allocations(url: str, label: str = LABEL) -> list[str]:
    client = _client(url)
    try:
        containers = client.containers.list(filters={"label": label})
        return sorted({c.labels.get(label) for c in containers} - {None, ""})
    finally:
        client.close()


def has_gpu_runtime(url: str) -> bool:
    """The engine has the NVIDIA runtime (NVIDIA Container Toolkit)."""
    client = _client(url)
    try:
        return "nvidia" in (client.info().get("Runtimes") or {})
    finally:
        client.close()


def stop_allocation(url: str, allocation_id: str, label: str = LABEL, timeout: int = 10) -> list[str]:
    """Stop (and leave for inspection) the containers of an allocation the
    allocator does not hold here — fencing. Returns the names of the containers
    stopped."""
    client = _client(url)
    try:
        stopped = []
        for c in client.containers.list(filters={"label": f"{label}={allocation_id}"}):
            c.stop(timeout=timeout)
            stopped.append(c.name)
        return stopped
    finally:
        client.close()


def allocation_containers(url: str, label: str = LABEL) -> dict[str, str]:
    """The engine's gpuhub containers: full container id → allocation id (its
    label), to tell whose a GPU process is (agent.owners)."""
    client = _client(url)
    try:
        containers = client.containers.list(filters={"label": label})
        return {c.id: c.labels[label] for c in containers if c.labels.get(label)}
    finally:
        client.close()
