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
