"""Allocations a host's Docker engine runs: containers labelled gpuhub.allocation.
Blocking (docker SDK): the agent calls these in a worker thread."""

from __future__ import annotations

LABEL = "gpuhub.allocation"


#: engine URL → docker.tls.TLSConfig arguments (client_cert, ca_cert, verify) for
#: an engine reached over TLS (GPUAgent.docker_tls); set once by the agent
TLS: dict[str, dict] = {}


def configure_tls(url: str, ca_file: str, cert_file: str, key_file: str) -> None:
    """Reach the engine at ``url`` over TLS: its certificate verified against
    ``ca_file`` (the site CA), this host's own certificate presented (an engine
    with ``tlsverify`` asks every client for one)."""
    TLS[url] = {"ca_cert": ca_file or None, "verify": ca_file or True,
                "client_cert": (cert_file, key_file or cert_file) if cert_file else None}


def _client(url: str):
    import docker

    from gpuhub.certs import docker_api

    # a DockerClient is its APIClient (.api) and methods over it: built around ours
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = docker_api(url, TLS.get(url), timeout=10)
    return client


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
