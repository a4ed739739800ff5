"""gpuhub-agent: the allocator's hands on one GPU host.

At start it discovers the host's GPUs (NVML: UUID, model, memory, pairwise
topology, NVLink, NUMA/CPU affinity — or a declared mock inventory) and
registers the host; then it sends a heartbeat every interval with the latest
per-device and per-process samples, each allocation's own use (its processes',
told apart through /proc/PID/cgroup: agent.owners) and the allocation ids the
host runs. The
allocator answers with what it holds on the host: the agent keeps the CUDA MPS
control daemon running while a device carries a fractional share, and logs
allocations it runs that the allocator no longer knows. A 404 (the host was
marked lost) makes it register again; an unreachable allocator is retried with
backoff. NVML, Docker and MPS calls never run on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from traitlets import Bool, CaselessStrEnum, Float, List, Unicode, default

from gpuhub.service import InfoLogging, ServiceApp

from . import containers, owners
from ..client import DEFAULT_API_URL, AllocatorClient, AllocatorError, fractional
from .mps import MPSManager
from .nvml import NoSampler, NVMLSampler, discover


class GPUAgent(InfoLogging, ServiceApp):
    """Registers this GPU host with the gpuhub allocator and keeps it alive."""

    name = "gpuhub-agent"
    description = "gpuhub GPU host agent: registration, heartbeats, usage samples, CUDA MPS"


    allocator_url = Unicode(
        DEFAULT_API_URL,
        help="""Base URL of the allocator's REST API as this host reaches it, e.g.
        ``http://hub.example:8051/services/gpu-allocator/api/v1/`` (the
        allocator's own port, not the proxy's: see GPUAllocator.ip).

        Default: the allocator of a hub on this machine (the demo's port 8051),
        as the demo's own agent runs beside its hub.
        """,
    ).tag(config=True)

    token = Unicode(
        "",
        help="""JupyterHub API token of the gpuhub-agent service (scope
        custom:gpu-allocator:agent), in a config file that only the agent's
        account can read.

        Default: empty, read from token_file instead, which keeps the secret off
        the command line (where every account can read it) and out of config
        files that are shared between hosts.
        """,
    ).tag(config=True)

    token_file = Unicode(
        "",
        help="""File that holds the agent's token (used when token is empty), e.g.
        ``/etc/gpuhub/agent-token`` with mode 600. The demo keeps it in its data
        directory (``data/gpuhub-agent-token``).

        Default: empty; one of token and token_file must be set.
        """,
    ).tag(config=True)

    ca_file = Unicode(
        "",
        help="""The site CA (PEM) that signed the allocator's certificate, e.g.
        ``/etc/gpuhub/tls/ca.crt`` from ``gpuhub-certs init``: with an ``https://``
        allocator_url (the allocator's TLS port for agents,
        GPUAllocator.agent_tls_port) the agent verifies the allocator's chain and
        name against it and refuses any other server.

        Default: empty, the system's trusted CAs (an allocator with a certificate
        of a public CA); with an ``http://`` allocator_url no TLS at all.
        """,
    ).tag(config=True)

    cert_file = Unicode(
        "",
        help="""The agent's own certificate (PEM), signed by the site CA, presented
        to the allocator's TLS port (mutual TLS, in addition to the token), e.g.
        ``/etc/gpuhub/tls/agent.crt`` from ``gpuhub-certs issue DIR gpu-07``.

        Default: empty, no client certificate: an allocator that requires one
        (GPUAllocator.agent_tls_require_client_cert, its default) refuses the
        agent in the handshake.
        """,
    ).tag(config=True)

    key_file = Unicode(
        "",
        help="""The private key (PEM) of cert_file, e.g. ``/etc/gpuhub/tls/agent.key``
        (mode 600, root's).

        Default: empty, the key is in cert_file itself.
        """,
    ).tag(config=True)

    host_name = Unicode(
        help="""The host's name in the pool, e.g. ``gpu-node-3``: placements, the
        admin panel and DockerGPUSpawner's docker_endpoints name hosts by it.

        Default: inventory_host when given, else this machine's host name.
        """,
    ).tag(config=True)

    @default("host_name")
    def _default_host_name(self):
        return self.inventory_host or socket.gethostname()

    inventory_file = Unicode(
        "",
        help="""A declared (mock) inventory YAML to read the host's GPUs from instead
        of NVML, e.g. ``hub_config/gpu_inventory.yaml``: hosts without GPUs (demos,
        tests) play a host of it.

        Default: empty, the host's real GPUs through NVML.
        """,
    ).tag(config=True)

    inventory_host = Unicode(
        "",
        help="""Which host of inventory_file this agent plays, e.g. ``node-a``.

        Default: empty, the host named host_name.
        """,
    ).tag(config=True)

    pools = List(
        Unicode(),
        [],
        help="""The host pools this host is in, e.g. ``["team-a"]``: only users in
        the groups the allocator's ``GPUAllocator.pools`` opens those pools to
        get shares here. Each name must be configured there (else the
        registration is refused with a 400 naming the configured pools).

        Default: empty, the pools inventory_file declares for the host, else
        ``default`` (open to everyone unless configured otherwise), so that an
        agent of a site without pools needs no setting.
        """,
    ).tag(config=True)

    heartbeat_interval = Float(
        0.0,
        help="""Seconds between heartbeats, e.g. 5.

        Default 0: the interval the allocator announces when the host registers
        (GPUAllocator.heartbeat_interval), so that one setting on the allocator
        governs every host and its lost-host check.
        """,
    ).tag(config=True)

    sample_interval = Float(
        0.0,
        help="""Seconds between usage samples (NVML: utilisation, memory, processes),
        e.g. 10.

        Default 0: the heartbeat interval, so every heartbeat carries a fresh
        sample.
        """,
    ).tag(config=True)

    max_backoff = Float(
        30.0,
        help="""The longest wait (seconds) between retries while the allocator is
        unreachable; the waits double from 1 second up to this.

        Default 30 seconds: a restarted allocator hears from every host within
        half a minute, and a down one is not flooded.
        """,
    ).tag(config=True)

    request_timeout = Float(
        10.0,
        help="""Timeout (seconds) of one call to the allocator.

        Default 10 seconds: longer than any answer of a healthy allocator, shorter
        than the lost-host limit (missed heartbeats), so a hung call is retried in
        time.
        """,
    ).tag(config=True)

    state_dir = Unicode(
        help="""Directory for the agent's state (the shares it was last told about)
        and the MPS pipes and logs, e.g. ``/var/lib/gpuhub-agent``.

        Default: /var/lib/gpuhub-agent as root, where the users' sessions can reach
        the MPS pipes; else ~/.local/state/gpuhub-agent (the XDG state directory).
        """,
    ).tag(config=True)

    @default("state_dir")
    def _default_state_dir(self):
        if os.getuid() == 0:
            return "/var/lib/gpuhub-agent"
        return os.path.expanduser("~/.local/state/gpuhub-agent")

    mps_dir = Unicode(
        help="""Directory of the CUDA MPS control daemon: CUDA_MPS_PIPE_DIRECTORY is
        mps_dir/pipe, CUDA_MPS_LOG_DIRECTORY mps_dir/log; sessions with a
        fractional share get the same pipe directory.

        Default: state_dir/mps.
        """,
    ).tag(config=True)

    @default("mps_dir")
    def _default_mps_dir(self):
        return os.path.join(self.state_dir, "mps")

    mps_control = Unicode(
        "nvidia-cuda-mps-control",
        help="""The CUDA MPS control binary, a name looked up on PATH or a path, e.g.
        ``/usr/local/cuda/bin/nvidia-cuda-mps-control``.

        Default: ``nvidia-cuda-mps-control``, as the NVIDIA driver installs it.
        Where it is missing, the host offers no fractional shares.
        """,
    ).tag(config=True)

    docker_url = Unicode(
        "",
        help="""The host's Docker engine as the hub reaches it, e.g.
        ``tcp://10.0.0.5:2376``, registered for DockerGPUSpawner.

        Default: empty, no Docker sessions on this host.
        """,
    ).tag(config=True)

    docker_tls = Bool(
        help="""Whether the agent reaches its Docker engine (docker_url, a
        ``tcp://`` URL) over TLS with this host's certificate: the engine's
        certificate is verified against ca_file and the agent presents cert_file
        and key_file, as an engine started with ``--tlsverify`` and the site CA
        requires of every client (gpuhub-certs issue DIR gpu-07-docker --role
        docker makes the engine's; docs: "Add a GPU host"). The hub reaches the
        same engine with its own client certificate
        (DockerGPUSpawner.docker_tls).

        Default: True when docker_url is ``tcp://…`` and cert_file is set, else
        False (the local socket, ``unix:///var/run/docker.sock``, needs no TLS).
        """,
    ).tag(config=True)

    @default("docker_tls")
    def _default_docker_tls(self):
        return self.docker_url.startswith("tcp://") and bool(self.cert_file)

    docker_ip = Unicode(
        help="""Address where the hub reaches this host's containers, e.g.
        ``10.0.0.5``.

        Default: the address this host uses to reach the allocator, which is the
        one the hub's network sees.
        """,
    ).tag(config=True)

    gpu_runtime = CaselessStrEnum(
        ["auto", "yes", "no"],
        "auto",
        help="""Whether the Docker engine has the NVIDIA runtime (NVIDIA Container
        Toolkit): ``yes``, ``no``, or ``auto``.

        Default ``auto``: ask the engine, which knows.
        """,
    ).tag(config=True)

    running_sources = List(
        Unicode(),
        ["shares", "docker"],
        help="""Where the allocation ids this host runs come from: ``shares`` (what
        the allocator last told the agent, kept in state_dir across restarts;
        reported when the agent registers) and ``docker`` (containers labelled
        gpuhub.allocation, when docker_url is set; reported with every heartbeat).

        Default: both, so that the allocator learns of sessions it no longer
        knows, whichever runtime started them.
        """,
    ).tag(config=True)

    per_allocation_use = Bool(
        True,
        help="""Report each allocation's own GPU use (utilisation and memory of its
        processes) with every heartbeat: NVML's host pids are mapped to
        allocations through ``/proc/PID/cgroup`` (a Docker container's
        ``gpuhub.allocation`` label, a ``gpuhub-ID`` cgroup) or, for local
        sessions, GPUHUB_ALLOCATION in ``/proc/PID/environ`` (readable by root
        only: run the agent as root). The lab panel and idle reclaim judge a
        fraction by this figure instead of its whole device's.

        Default True; False sends only the per-device samples (the panel then
        matches the session's own pids, and idle reclaim judges a fraction by
        its whole device).
        """,
    ).tag(config=True)

    aliases = {
        "config": "GPUAgent.config_file",
        "allocator-url": "GPUAgent.allocator_url",
        "token-file": "GPUAgent.token_file",
        "ca-file": "GPUAgent.ca_file",
        "cert-file": "GPUAgent.cert_file",
        "key-file": "GPUAgent.key_file",
        "host-name": "GPUAgent.host_name",
        "inventory": "GPUAgent.inventory_file",
        "inventory-host": "GPUAgent.inventory_host",
        "interval": "GPUAgent.heartbeat_interval",
        "state-dir": "GPUAgent.state_dir",
        "mps-dir": "GPUAgent.mps_dir",
        "docker-url": "GPUAgent.docker_url",
        "docker-ip": "GPUAgent.docker_ip",
        "docker-tls": "GPUAgent.docker_tls",
        "gpu-runtime": "GPUAgent.gpu_runtime",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv=None):
        super().initialize(argv)
        if not self.token and self.token_file:
            self.token = Path(self.token_file).read_text().strip()
        if not self.token:
            raise SystemExit("no token: set GPUAgent.token or --token-file")
        # NVML (and Docker) calls: one worker thread, so a hung driver never
        # blocks the event loop and calls never overlap
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gpuhub-agent-nvml")
        try:
            self.client = AllocatorClient(self.allocator_url, self.token, self.request_timeout,
                                          self.ca_file, self.cert_file, self.key_file)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise SystemExit(f"cannot load the TLS files (ca_file, cert_file, key_file): {e}") from None
        if self.docker_url and self.docker_tls:
            containers.configure_tls(self.docker_url, self.ca_file, self.cert_file, self.key_file)
        self.mps = MPSManager(self.mps_dir, self.mps_control, log=self.log)
        self.known: list[str] = self._load_known()
        self.reported_unknown: set[str] = set()
        #: allocations fenced so far (their stop logged once)
        self.fenced: set[str] = set()
        self.samples: list[dict] | None = None
        #: allocation id → its own use in the latest sample (agent.owners)
        self.use: dict[str, dict] | None = None
        #: the shares the allocator holds here: allocation id → (user, device uuids)
        self.holds: dict[str, tuple[str, list[str]]] = {}
        self.state = "unregistered"
        self.interval = self.heartbeat_interval or 5.0
        self.stopping = asyncio.Event()

    # --- helpers -----------------------------------------------------------------

    async def blocking(self, fn, *args, timeout: float | None = None):
        """Run a blocking call in the agent's worker thread."""
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self.executor, partial(fn, *args)), timeout)

    @property
    def known_file(self) -> Path:
        return Path(self.state_dir) / "shares.json"

    def _load_known(self) -> list[str]:
        try:
            data = json.loads(self.known_file.read_text())
            return [str(i) for i in data] if isinstance(data, list) else []
        except (OSError, ValueError):
            return []

    def _save_known(self) -> None:
        try:
            self.known_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.known_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.known_file)
        except OSError as e:
            self.log.warning("cannot keep the shares in %s: %s", self.known_file, e)

    def local_ip(self) -> str:
        """The address this host uses to reach the allocator."""
        url = urlparse(self.allocator_url)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((url.hostname or "127.0.0.1", url.port or 80))
                return s.getsockname()[0]
            except OSError:
                return "127.0.0.1"

    async def running(self, registering: bool) -> list[str]:
        """The allocation ids this host runs. The shares the allocator last told
        the agent about count when (re-)registering only, after a restart or a
        loss: between heartbeats the allocator's answer is the truth, and a share
        released meanwhile is no news. Containers count always."""
        ids = list(self.known) if registering and "shares" in self.running_sources else []
        if "docker" in self.running_sources and self.docker_url:
            try:
                ids += await self.blocking(containers.running_allocations, self.docker_url, timeout=15)
            except Exception as e:
                self.log.warning("cannot list the containers of %s: %s", self.docker_url, e)
        return list(dict.fromkeys(ids))

    # --- discovery, registration, heartbeats ----------------------------------------

    async def discover(self) -> None:
        self.host, self.details = await self.blocking(
            discover, self.host_name, self.inventory_file, self.inventory_host
        )
        self.sampler = NoSampler() if self.inventory_file else NVMLSampler()
        await self.blocking(self.sampler.start)
        self.log.info(
            "host %s: %i GPU(s) %s, %g CPUs, %iM (%s)",
            self.host_name, len(self.host.devices),
            ", ".join(sorted({d.model for d in self.host.devices})) or "-",
            self.host.cpus, self.host.memory_mb,
            f"declared in {self.inventory_file}" if self.inventory_file else "NVML",
        )
        self.docker = None
        if self.docker_url:
            runtime = self.gpu_runtime == "yes"
            if self.gpu_runtime == "auto":
                try:
                    runtime = await self.blocking(containers.has_gpu_runtime, self.docker_url, timeout=15)
                except Exception as e:
                    self.log.warning("cannot ask %s for its runtimes: %s", self.docker_url, e)
            self.docker = {
                "url": self.docker_url,
                "ip": self.docker_ip or self.local_ip(),
                "gpu_runtime": runtime,
                "mps_pipe_dir": str(self.mps.pipe_dir) if self.mps.available else None,
            }

    async def register_body(self) -> dict:
        h = self.host
        return {
            "host": {
                "cpus": h.cpus,
                "memory_mb": h.memory_mb,
                "devices": [
                    {"index": d.index, "uuid": d.uuid, "model": d.model,
                     "memory_mb": d.memory_mb, "island": d.island}
                    for d in h.devices
                ],
                **self.details,
                "pools": list(self.pools) or list(h.pools),
            },
            "docker": self.docker,
            "mps": self.mps_report(),
            "running": await self.running(registering=True),
        }

    def mps_report(self) -> dict:
        """Whether this host can enforce fractional shares (the MPS control binary
        is there and no device is in MIG mode), whether the daemon runs, and where
        its pipes are (sessions on this host connect there)."""
        status = self.mps.status()
        available = status["available"] and not self.details.get("mig")
        return {"available": available, "running": status["running"] and available,
                "pipe_dir": str(self.mps.pipe_dir)}

    async def heartbeat_body(self) -> dict:
        return {
            "devices": self.samples or [],
            # each allocation's own use: its processes' (agent.owners)
            **({"allocations": self.use} if self.use is not None else {}),
            "running": await self.running(registering=False),
            "mps": self.mps_report(),
        }

    async def absorb(self, answer: dict) -> bool:
        """What the allocator holds here: remember it, run MPS for fractions, and
        report allocations that the allocator does not know. True when the MPS
        daemon started or stopped (the allocator should hear it at once)."""
        if answer.get("state") != self.state and self.state != "unregistered":
            self.log.info("host %s is %s now", self.host_name, answer.get("state"))
        self.state = answer.get("state", self.state)
        if not self.heartbeat_interval and answer.get("heartbeat_interval"):
            self.interval = float(answer["heartbeat_interval"])
        shares = answer.get("shares") or []
        self.holds = {a["id"]: (a.get("user") or "", [d.get("uuid") for d in a.get("devices") or ()])
                      for a in shares}
        known = [a["id"] for a in shares]
        if known != self.known:
            self.known = known
            self._save_known()
        unknown = set(answer.get("unknown") or ())
        if unknown - self.reported_unknown:
            self.log.warning(
                "this host runs allocations the allocator does not hold here (lost or "
                "released meanwhile): %s", ", ".join(sorted(unknown - self.reported_unknown)),
            )
        self.reported_unknown = unknown
        if unknown:
            reasons = {e.get("allocation"): e.get("reason") for e in answer.get("fenced") or ()
                       if isinstance(e, dict)}
            await self.fence(sorted(unknown), reasons)
        before = self.mps.running
        try:
            await self.mps.ensure(any(fractional(a) for a in shares))
        except Exception as e:
            self.log.error("managing the MPS control daemon failed: %s", e)
        return self.mps.running != before

    async def fence(self, ids: list[str], reasons: dict) -> None:
        """Stop the sessions of allocations the allocator does not hold here: their
        devices may be granted to someone else (fencing). Docker sessions only —
        the agent owns this host's engine; a session without a container here has
        nothing for the agent to stop, and is dropped from what the agent reports."""
        for aid in ids:
            why = reasons.get(aid) or "not held here by the allocator"
            if not ("docker" in self.running_sources and self.docker_url):
                if aid not in self.fenced:
                    self.log.warning("fenced allocation %s (%s): no Docker engine here, "
                                     "nothing to stop", aid, why)
                self.fenced.add(aid)
                continue
            try:
                stopped = await self.blocking(containers.stop_allocation, self.docker_url, aid, timeout=60)
            except Exception as e:
                self.log.error("cannot fence allocation %s (%s): %s", aid, why, e)
                continue
            if stopped or aid not in self.fenced:
                self.log.warning("fenced allocation %s (%s): %s", aid, why,
                                 f"stopped container(s) {', '.join(stopped)}" if stopped
                                 else "no container of it runs here")
            self.fenced.add(aid)

    async def sample_forever(self) -> None:
        while not self.stopping.is_set():
            interval = self.sample_interval or self.interval
            try:
                self.samples = await self.blocking(self.sampler.sample, timeout=max(interval, 1.0))
            except Exception as e:
                self.samples = None
                self.log.warning("sampling the GPUs failed: %s", e)
            try:
                self.use = await self.blocking(self.attribute, self.samples, timeout=max(interval, 15.0))
            except Exception as e:
                self.use = None
                self.log.warning("telling whose GPU processes are failed: %s", e)
            await self.sleep(interval)

    def attribute(self, samples: list[dict] | None) -> dict[str, dict] | None:
        """Each allocation's own use in ``samples`` (None: not reported — the
        option is off, or there is no NVML sample). Blocking: reads /proc and
        asks the Docker engine for its gpuhub containers."""
        if not self.per_allocation_use or not samples:
            return None
        ids: dict[str, str] = {}
        if self.docker_url and any(d.get("processes") for d in samples):
            try:
                ids = containers.allocation_containers(self.docker_url)
            except Exception as e:
                self.log.warning("cannot list the containers of %s: %s", self.docker_url, e)
        users = {aid: user for aid, (user, _) in self.holds.items()}
        holds = {aid: devices for aid, (_, devices) in self.holds.items()}
        holds.update({aid: holds.get(aid, []) for aid in ids.values()})
        pids = {p["pid"] for d in samples for p in d.get("processes") or ()}
        home = owners.own_container()
        found = {pid: owners.read_owner(pid, ids, users, home) for pid in pids}
        return owners.allocation_use(samples, found, holds)

    async def sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), max(seconds, 0))
        except asyncio.TimeoutError:
            pass

    async def serve(self) -> None:
        """Register, then heartbeat every interval; register again after a 404;
        back off while the allocator is unreachable or refuses."""
        loop = asyncio.get_running_loop()
        registered, backoff = False, 0.0
        while not self.stopping.is_set():
            began = loop.time()
            try:
                if not registered:
                    answer = await self.client.register_host(self.host_name, await self.register_body())
                    registered = True
                    self.log.info(
                        "registered host %s with %s: %s, %i share(s)", self.host_name,
                        self.allocator_url, answer.get("state"), len(answer.get("shares") or ()),
                    )
                else:
                    answer = await self.client.heartbeat(self.host_name, await self.heartbeat_body())
            except AllocatorError as e:
                if e.status == 404 and registered:
                    self.log.warning("the allocator lost this host (%s): registering again", e.message)
                    registered = False
                    continue
                backoff = min(max(backoff * 2, 1.0), self.max_backoff)
                self.log.warning(
                    "%s failed (%s); retrying in %gs",
                    "heartbeat" if registered else "registration", e, backoff,
                )
                await self.sleep(backoff)
                continue
            backoff = 0.0
            if await self.absorb(answer):
                continue  # MPS changed: tell the allocator now (spawns wait for it)
            await self.sleep(self.interval - (loop.time() - began))

    async def start_async(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.discover()
        sampler = asyncio.create_task(self.sample_forever())
        try:
            await self.serve()
        finally:
            sampler.cancel()
            try:
                await self.blocking(self.sampler.stop, timeout=10)
            except Exception as e:
                self.log.warning("closing NVML failed: %s", e)
            # the MPS daemon stays: running sessions keep it; the next agent adopts it
            self.log.info("gpuhub-agent of %s stopped", self.host_name)



def main(argv=None):
    GPUAgent.launch_instance(argv)


if __name__ == "__main__":
    main()
