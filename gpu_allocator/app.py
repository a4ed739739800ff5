"""The allocator service: a tornado app that JupyterHub runs as a managed service.

Run it as ``python -m gpu_allocator`` (or ``gpuhub-allocator``); it reads the
service environment JupyterHub provides (JUPYTERHUB_SERVICE_URL, …_PREFIX,
…_API_TOKEN) and its own traitlets config file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth
from tornado import web
from traitlets import Float, Int, TraitError, Unicode, default, validate

from .handlers import handlers
from .inventory import discover_nvml, load_inventory, nvml_available
from .service_app import ServiceApp
from .store import Store


class JSONNotFound(web.RequestHandler):
    def prepare(self):
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish('{"error": "not found"}')


class GPUAllocator(ServiceApp):
    """Owns the GPU pool: places shares, persists them, answers the REST API."""

    name = "gpuhub-allocator"
    description = "gpuhub GPU allocator (a JupyterHub service)"


    data_dir = Unicode(
        help="Directory for the default SQLite database. Default: $GPUHUB_DATA_DIR or ./data."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return os.environ.get("GPUHUB_DATA_DIR", os.path.abspath("data"))

    db_url = Unicode(
        help="SQLAlchemy URL of the allocator's database. Default: SQLite in data_dir. "
        "For production use PostgreSQL, e.g. postgresql+psycopg://gpuhub@db/gpuhub."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return "sqlite:///" + os.path.join(self.data_dir, "gpu_allocator.sqlite")

    discovery = Unicode(
        "auto",
        help="Where the pool comes from: 'nvml' (this host's NVIDIA GPUs), 'inventory' "
        "(the declared inventory_file), or 'auto' (NVML when a GPU is present, else "
        "the inventory).",
    ).tag(config=True)

    inventory_file = Unicode(
        help="YAML file that declares GPU hosts (see hub_config/gpu_inventory.yaml). "
        "Default: $GPUHUB_INVENTORY."
    ).tag(config=True)

    @default("inventory_file")
    def _default_inventory(self):
        return os.environ.get("GPUHUB_INVENTORY", "")

    units_per_gpu = Int(
        20,
        help="The quantum of fractional shares: one GPU is this many units (20 → steps of "
        "0.05 GPU). Shares are stored as integer units, never as floats.",
    ).tag(config=True)

    max_hours = Float(
        168.0, help="The longest run time (hours) a request may ask for."
    ).tag(config=True)

    heartbeat_interval = Float(
        help="Seconds between the heartbeats of GPU host agents (they are told this "
        "value when they register), and between the allocator's checks for lost hosts. "
        "Default: $GPUHUB_HEARTBEAT_INTERVAL or 5.",
    ).tag(config=True)

    @default("heartbeat_interval")
    def _default_heartbeat_interval(self):
        return float(os.environ.get("GPUHUB_HEARTBEAT_INTERVAL") or 5.0)

    @validate("heartbeat_interval")
    def _valid_heartbeat_interval(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"heartbeat_interval must be more than 0 seconds, got {proposal.value}")
        return proposal.value

    missed_heartbeats = Int(
        3,
        help="An agent's host that sends no heartbeat for this many heartbeat_interval "
        "is marked lost: its sessions are reported dead and its shares are freed.",
    ).tag(config=True)

    ip = Unicode(help="Address to listen on. Default: from $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )
    port = Int(help="Port to listen on. Default: from $JUPYTERHUB_SERVICE_URL.").tag(config=True)
    service_prefix = Unicode(
        help="URL prefix of the service. Default: $JUPYTERHUB_SERVICE_PREFIX or /services/gpu-allocator/."
    ).tag(config=True)

    @default("ip")
    def _default_ip(self):
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8051")).hostname

    @default("port")
    def _default_port(self):
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8051")).port or 80

    @default("service_prefix")
    def _default_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/gpu-allocator/")

    aliases = {
        "config": "GPUAllocator.config_file",
        "db-url": "GPUAllocator.db_url",
        "inventory": "GPUAllocator.inventory_file",
        "discovery": "GPUAllocator.discovery",
        "port": "GPUAllocator.port",
        "ip": "GPUAllocator.ip",
    }

    def initialize(self, argv=None):
        super().initialize(argv)
        # one worker thread: the database is touched off the event loop, one change at a time
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gpu-allocator-db")
        self.hub_auth = HubAuth(cache_max_age=10)

    async def run(self, fn, *args, **kwargs):
        """Run a blocking store call in the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))

    async def load_pool(self) -> None:
        mode = self.discovery
        loop = asyncio.get_running_loop()
        if mode == "auto":
            mode = "nvml" if await loop.run_in_executor(None, nvml_available) else "inventory"
        if mode == "nvml":
            hosts = [await loop.run_in_executor(None, discover_nvml, None)]
        elif mode == "inventory":
            if not self.inventory_file:
                raise SystemExit("no GPU found and no inventory_file declared: nothing to allocate")
            hosts = await loop.run_in_executor(None, load_inventory, self.inventory_file)
        else:
            raise SystemExit(f"unknown discovery mode {self.discovery!r}")
        await self.run(self.store.sync_hosts, hosts, mode)
        self.log.info(
            "pool from %s: %s", mode,
            ", ".join(f"{h.name} ({len(h.devices)} × {h.devices[0].model if h.devices else '-'})" for h in hosts),
        )

    async def start_async(self) -> None:
        if self.db_url.startswith("sqlite:///"):
            os.makedirs(os.path.dirname(self.db_url[len("sqlite:///"):]) or ".", exist_ok=True)
        self.store = await self.run(Store, self.db_url, self.units_per_gpu)
        await self.load_pool()
        watcher = asyncio.create_task(self.watch_heartbeats())
        app = web.Application(
            handlers(self.service_prefix, self), default_handler_class=JSONNotFound
        )
        app.listen(self.port, self.ip)
        self.log.info("gpu-allocator listening on http://%s:%i%s", self.ip, self.port, self.service_prefix)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        watcher.cancel()
        self.log.info("gpu-allocator stopping; every allocation stays in %s", self.db_url)

    async def check_hosts(self, started: float) -> float | None:
        """Mark agent hosts without a recent heartbeat lost. Hosts get a full
        grace period after the allocator starts, so an allocator outage does not
        count as their loss. Returns the oldest heartbeat still alive."""
        now = time.time()
        threshold = self.missed_heartbeats * self.heartbeat_interval
        cutoff = now - threshold if now - threshold > started else 0.0
        lost, oldest = await self.run(self.store.mark_lost, cutoff, now)
        for host, ids in lost:
            self.log.warning(
                "host %s missed %i heartbeats: marked lost; its allocations are lost: %s",
                host, self.missed_heartbeats, ", ".join(ids) or "none",
            )
        return oldest

    async def watch_heartbeats(self) -> None:
        """Check for lost hosts at least every heartbeat_interval, and right when
        the oldest heartbeat expires, so a host is lost missed_heartbeats ×
        heartbeat_interval after its last heartbeat (plus a few ms)."""
        started = time.time()
        interval = self.heartbeat_interval
        threshold = self.missed_heartbeats * interval
        while True:
            delay = interval
            try:
                oldest = await self.check_hosts(started)
                if oldest is not None:
                    expires = max(oldest, started) + threshold
                    delay = min(interval, max(0.05, expires - time.time() + 0.01))
            except Exception:
                self.log.exception("checking the hosts' heartbeats failed")
            await asyncio.sleep(delay)



def main(argv=None):
    GPUAllocator.launch_instance(argv)


if __name__ == "__main__":
    main()
