"""The Docker runtime: sessions as containers on the host the allocator chose.

Built on dockerspawner's DockerSpawner, with one change of shape: DockerSpawner
keeps one Docker client and one worker thread per *class* (dockerspawner #382),
so a hub reaches one engine and every Docker call queues behind every other.
Here each GPU host has its own endpoint, client and worker thread, chosen by the
allocation's host, so calls to different hosts never wait for each other.

Containers use the host's network (``--network host``): the server listens on a
free port of the host; CPU and memory limits come from the spawn request; GPUs
are passed as ``device_requests`` for the exact UUIDs on hosts with the NVIDIA
container runtime, and a fractional share also gets the host's MPS pipe
directory and the MPS limit variables.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import docker
from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port
from traitlets import Dict, Unicode, default

from gpu_allocator.agent.containers import LABEL as ALLOCATION_LABEL
from gpu_allocator.client import fractional
from gpuhub.certs import docker_api

from .gpuspawner import GPUSpawner
from .vfolders import DockerVFolderMixin

LOCAL_ENGINE = {"url": "unix:///var/run/docker.sock", "ip": "127.0.0.1"}


#: variables of the hub's environment that name the hub host's paths: never
#: passed into containers through Spawner.env_keep (Spawner.environment may set them)
HOST_ONLY_ENV = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_ROOT", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH")

#: where a fractional share finds the host's MPS pipes inside the container
MPS_PIPE_IN_CONTAINER = "/tmp/nvidia-mps"


def docker_gpu_config(allocation: dict | None, endpoint: dict) -> dict:
    """What a session's container gets for its share (a pure function, as
    kubespawner's make_pod_spec): ``host_config`` — device_requests for exactly
    the share's devices on engines with the NVIDIA runtime, and for a fraction
    the host's MPS pipe directory — ``env``, the MPS pipe variable, and
    ``labels``: the allocation id, by which the host's agent knows (and, if the
    share is no longer granted there, fences) the container."""
    devices = (allocation or {}).get("devices") or []
    host_config: dict = {}
    env: dict = {}
    if devices and endpoint.get("gpu_runtime"):
        host_config["device_requests"] = [
            docker.types.DeviceRequest(device_ids=[d["uuid"] for d in devices], capabilities=[["gpu"]])
        ]
    if allocation and fractional(allocation) and endpoint.get("mps_pipe_dir"):
        if endpoint.get("gpu_runtime"):
            host_config["binds"] = {
                endpoint["mps_pipe_dir"]: {"bind": MPS_PIPE_IN_CONTAINER, "mode": "rw"}
            }
        env["CUDA_MPS_PIPE_DIRECTORY"] = MPS_PIPE_IN_CONTAINER
    labels = {ALLOCATION_LABEL: allocation["id"]} if allocation else {}
    return {"host_config": host_config, "env": env, "labels": labels}


class DockerGPUSpawner(DockerVFolderMixin, GPUSpawner, DockerSpawner):
    """GPU shares for sessions that run as Docker containers."""

    docker_endpoints = Dict(
        help="""The Docker engine of each GPU host, by host name (as the allocator
        names it), e.g. ``{"gpu-node-3": {"url": "tcp://10.0.0.5:2376", "ip":
        "10.0.0.5", "gpu_runtime": true}}``. An entry's keys:

        - ``url``: ``unix:///var/run/docker.sock`` or ``tcp://HOST:PORT``;
        - ``tls``: docker.tls.TLSConfig arguments (client_cert, ca_cert, verify);
        - ``ip``: the address where the hub reaches that host's containers;
        - ``gpu_runtime``: true when the NVIDIA Container Toolkit is installed;
        - ``mps_pipe_dir``: the host's CUDA MPS pipe directory, if MPS runs there.

        Default: empty: a host's engine is what its agent registered
        (GPUAgent.docker_url), else default_docker_endpoint; an entry here
        overrides both, key by key.
        """,
    ).tag(config=True)

    default_docker_endpoint = Dict(
        LOCAL_ENGINE,
        help="""The engine for hosts without an entry in docker_endpoints and for
        sessions without a GPU, in docker_endpoints' form.

        Default: the local engine (``unix:///var/run/docker.sock``), the one a
        single-host hub has.
        """,
    ).tag(config=True)

    docker_tls = Dict(
        help="""The hub's TLS client settings (docker.tls.TLSConfig arguments) for
        every ``tcp://`` engine whose entry has no ``tls`` of its own — those the
        GPU hosts' agents register — e.g. ``{"client_cert":
        ("/etc/gpuhub/tls/client.crt", "/etc/gpuhub/tls/client.key"), "ca_cert":
        "/etc/gpuhub/tls/ca.crt", "verify": "/etc/gpuhub/tls/ca.crt"}`` (from
        gpuhub-certs issue DIR hub-docker-client --role docker-client; the engines
        run with ``--tlsverify`` and the site CA, and their certificates name the
        address in their URL; docs: "Add a GPU host").

        Default: empty, ``tcp://`` engines without a ``tls`` entry are reached
        over plain TCP (a test network; Docker's convention is 2375 for that and
        2376 for TLS).
        """,
    ).tag(config=True)

    docker_api_version = Unicode(
        "auto",
        help="""Docker API version of the engine clients, e.g. ``1.43``.

        Default ``auto``: ask each engine once, so that hosts with engines of
        different versions all work.
        """,
    ).tag(config=True)

    home_volume_template = Unicode(
        "gpuhub-home-{username}",
        help="""Name of the Docker volume that holds a user's home directory (mounted
        at notebook_dir); ``{username}`` is expanded.

        Default ``gpuhub-home-{username}``: a volume per user on each host, kept
        when the container is removed.
        """,
    ).tag(config=True)

    container_user = Unicode(
        "1000:100",
        help="""``uid:gid`` the session runs as inside the container, never root.

        Default ``1000:100``: jovyan:users, the account of the Jupyter Docker
        Stacks images the single-user image follows.
        """,
    ).tag(config=True)

    @default("image")
    def _default_image(self):
        return "gpuhub/singleuser:latest"

    @default("network_name")
    def _default_network(self):
        return "host"

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        return True  # host networking: no port bindings; get_ip_and_port says where

    @default("remove")
    def _default_remove(self):
        return True

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return "/home/jovyan"

    @default("volumes")
    def _default_volumes(self):
        return {self.home_volume_template: self.notebook_dir}

    @default("pull_policy")
    def _default_pull_policy(self):
        return "never"  # images are built locally: no registry to pull from

    # --- one engine per host ----------------------------------------------------------

    _clients: dict[str, docker.APIClient] = {}
    _executors: dict[str, ThreadPoolExecutor] = {}

    @property
    def endpoint(self) -> dict:
        """The engine of the allocation's host: configured, else registered by the
        host's agent, else the default. Pinned into the allocation (and so into
        the spawner state) at first use, so a restarted hub finds the container."""
        allocation = self.allocation
        if allocation and "endpoint" in allocation:
            return allocation["endpoint"]
        host = (allocation or {}).get("host")
        registered = next(
            (h.get("docker") for h in self.pool_model.get("hosts", []) if h["name"] == host), None
        )
        endpoint = {
            **self.default_docker_endpoint,
            **(registered or {}),
            **self.docker_endpoints.get(host, {}),
        }
        if allocation:
            allocation["endpoint"] = endpoint
        return endpoint

    @property
    def client(self) -> docker.APIClient:
        endpoint = self.endpoint
        url = endpoint["url"]
        cls = DockerGPUSpawner
        if url not in cls._clients:
            settings = endpoint.get("tls") or (self.docker_tls if url.startswith("tcp://") else None)
            cls._clients[url] = docker_api(url, settings, self.docker_api_version)
        return cls._clients[url]

    @property
    def executor(self) -> ThreadPoolExecutor:
        url = self.endpoint["url"]
        cls = DockerGPUSpawner
        if url not in cls._executors:
            cls._executors[url] = ThreadPoolExecutor(1, thread_name_prefix=f"docker-{url}")
        return cls._executors[url]

    # --- what the container gets --------------------------------------------------------

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        return lambda spawner: {
            "user": spawner.container_user,
            "labels": docker_gpu_config(spawner.allocation, spawner.endpoint)["labels"],
        }

    @default("extra_host_config")
    def _default_extra_host_config(self):
        return lambda spawner: {**spawner.gpu_host_config(), **spawner.vfolder_host_config()}

    def gpu_host_config(self) -> dict:
        return docker_gpu_config(self.allocation, self.endpoint)["host_config"]

    def get_env(self):
        env = super().get_env()
        # the hub's own paths (Spawner.env_keep) mean nothing in the image: its PATH
        # would hide /opt/gpuhub/bin (tini: "exec jupyterhub-singleuser failed:
        # Permission denied", from a /root/... entry); the image's ENV applies instead
        for key in HOST_ONLY_ENV:
            if key not in self.environment and key not in self.profile_environment:
                env.pop(key, None)
        env.update(docker_gpu_config(self.allocation, self.endpoint)["env"])
        return env

    async def allocation_ready(self) -> None:
        """Learn the chosen host's engine (as its agent registered it) before any
        Docker call: a REST spawn has not fetched the pool for a form."""
        host = self.allocation.get("host")
        if "endpoint" not in self.allocation and not any(
            h["name"] == host for h in self.pool_model.get("hosts", [])
        ):
            await self.fetch_pool()

    async def create_object(self):
        # the allocation is known by now: listen on a free port of the chosen host
        remote = urlparse(self.endpoint["url"]).scheme not in ("unix", "npipe")
        self.ip = "0.0.0.0" if remote else self.endpoint.get("ip", "127.0.0.1")
        self.port = random_port()
        return await super().create_object()

    # --- images -------------------------------------------------------------------------

    extra_option_keys = frozenset({"image"})

    def form_images(self) -> list[str]:
        allowed = self._get_allowed_images()
        return [] if allowed == "*" else list(allowed)

    async def apply_gpu_options(self, user_options: dict) -> None:
        await super().apply_gpu_options(user_options)
        if user_options.get("image"):
            await self.check_allowed(user_options["image"])  # 400 unless allowed_images has it

    async def check_allowed(self, image):
        """A profile's own image is the admin's choice: allowed even where
        allowed_images does not list it; any other as allowed_images says."""
        profile = self.resolved.profile if self.resolved else None
        if profile is not None and profile.settings.get("image") == image:
            return image
        return await super().check_allowed(image)

    #: the image configured (or set by Spawner.group_overrides) before any spawn
    #: picked one: DockerSpawner keeps a picked image in self.image
    _configured_image: str | None = None

    async def apply_spawn_options(self, user_options: dict) -> None:
        if self._configured_image is not None:
            self.image = self._configured_image  # a new spawn starts from it, not the last pick
        await super().apply_spawn_options(user_options)

    async def start(self):
        if self._configured_image is None:
            self._configured_image = self.image
        return await super().start()

    async def get_ip_and_port(self):
        return self.endpoint.get("ip", "127.0.0.1"), self.port
