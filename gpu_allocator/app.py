"""The allocator service: a tornado app that JupyterHub runs as a managed service.

Run it as ``python -m gpu_allocator`` (or ``gpuhub-allocator``); it reads the
service environment JupyterHub provides (JUPYTERHUB_SERVICE_URL, …_PREFIX,
…_API_TOKEN) and its own traitlets config file. It owns its database alone
(see :class:`gpuhub.db.WriterLock`): a second allocator started on the same
database waits as a standby and takes over when the first dies.
"""

from __future__ import annotations

import asyncio
import os

from traitlets import Dict, Float, Int, TraitError, Unicode, default, validate

from gpuhub.db import WriterLock
from gpuhub.service import HubService

from . import admin, loops
from .api import routes
from .shapes import allocation_json, iso
from .core.queue import DEPTH
from .core.reclaim import Policies, parse_policies
from .inventory import discover_nvml, load_inventory, nvml_available
from .pool import LivePool
from .store import Ledger


class GPUAllocator(HubService):
    """Owns the GPU pool: places shares, records them, answers the REST API."""

    name = "gpuhub-allocator"
    description = "gpuhub GPU allocator (a JupyterHub service)"
    service_name = "gpu-allocator"
    default_url = "http://127.0.0.1:8051"

    data_dir = Unicode(
        help="Directory for the default SQLite database. Default: $GPUHUB_DATA_DIR or ./data."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self):
        return os.environ.get("GPUHUB_DATA_DIR", os.path.abspath("data"))

    db_url = Unicode(
        help="SQLAlchemy URL of the allocator's database. Default: SQLite in data_dir "
        "(the embedded default). For production use PostgreSQL, e.g. "
        "postgresql+psycopg://gpuhub@db/gpuhub. One allocator owns a database: a second "
        "one started on it waits as a standby (an advisory lock: flock beside a SQLite "
        "file, pg_try_advisory_lock on PostgreSQL) and takes over when the first dies."
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return os.environ.get("GPUHUB_ALLOCATOR_DB_URL") or (
            "sqlite:///" + os.path.join(self.data_dir, "gpu_allocator.sqlite")
        )

    discovery = Unicode(
        "auto",
        help="Where the pool comes from: 'nvml' (this host's NVIDIA GPUs), 'inventory' "
        "(the declared inventory_file), 'agents' (only hosts whose agents register), "
        "or 'auto' (NVML when a GPU is present, else the inventory).",
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
        168.0,
        help="The longest run time (hours) a request may ask for: the one limit, which "
        "the spawn form and the hub's REST API learn from the allocator's validation. "
        "Default 168 (a week).",
    ).tag(config=True)

    @default("max_hours")
    def _default_max_hours(self):
        return float(os.environ.get("GPUHUB_MAX_HOURS") or 168.0)

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

    reconcile_interval = Float(
        help="Seconds between comparisons of the shares granted for hub servers with the "
        "servers the hub runs (0: never). Default: $GPUHUB_RECONCILE_INTERVAL or 60.",
    ).tag(config=True)

    @default("reconcile_interval")
    def _default_reconcile_interval(self):
        return float(os.environ.get("GPUHUB_RECONCILE_INTERVAL") or 60.0)

    reconcile_grace = Float(
        help="A share granted for a hub server that the hub does not run (neither "
        "running nor starting) is released once it is this many seconds old: a grant "
        "whose answer never reached the spawner (a crash between commit and answer) "
        "must not stay held forever. Longer than a spawn takes to register. "
        "Default: $GPUHUB_RECONCILE_GRACE or 300.",
    ).tag(config=True)

    @default("reconcile_grace")
    def _default_reconcile_grace(self):
        return float(os.environ.get("GPUHUB_RECONCILE_GRACE") or 300.0)

    fairshare_half_life_hours = Float(
        168.0,
        help="Half-life (hours) of the decayed GPU usage that fair share compares (as "
        "Slurm's PriorityDecayHalfLife): usage this old counts half. Default a week.",
    ).tag(config=True)

    queue_depth = Int(
        DEPTH,
        help="Waiting requests without a promise that the queue simulates (and estimates) "
        "besides the promised ones (every request's first 'at the latest' start is one, and "
        "no later request may push it past it); an unpromised request behind that many "
        "waiting ones gets no estimate, and starts only where it delays none of them. "
        "It bounds the cost of a scheduling pass (each simulated request is simulated "
        "again for every start).",
    ).tag(config=True)

    max_wait_hours = Float(
        0.0,
        help="How long (hours) a request may wait in the queue where no group or user "
        "quota sets max_wait_hours; then it is given up (state 'expired'). 0: no limit.",
    ).tag(config=True)

    time_limit_interval = Float(
        help="Seconds between checks of the shares' run times (max_hours): warnings 15 "
        "and 5 minutes before the end, then the share is ended ('expired') and the "
        "spawner's poll stops its session. Also the queue's timer (estimates, waits). "
        "Default: $GPUHUB_TIME_LIMIT_INTERVAL or 30.",
    ).tag(config=True)

    @default("time_limit_interval")
    def _default_time_limit_interval(self):
        return float(os.environ.get("GPUHUB_TIME_LIMIT_INTERVAL") or 30.0)

    idle_reclaim = Dict(
        help="Idle reclaim (off by default): take back GPU shares whose GPUs stay "
        "nearly unused. ``{\"default\": POLICY, \"groups\": {\"GROUP\": POLICY}}``, "
        "a POLICY being ``{\"threshold\": 0.05, \"minutes\": 60, \"only_when_waiting\": true, "
        "\"notice_minutes\": 10}`` (missing fields take these values) or null (off). A "
        "share whose utilisation (the highest of its devices', from the host agents' "
        "heartbeat samples; a fraction sees its whole device's) stayed under "
        "``threshold`` (0–1) for ``minutes`` is reclaimed — with ``only_when_waiting``, "
        "only while some request waits in the queue. The session is warned "
        "``notice_minutes`` before (the time-limit notices' channel: the lab panel "
        "shows it), then its share is revoked by 'idle-reclaim' (audit log) and the "
        "hub stops it, telling the user 'reclaimed: GPU idle for N min'. A user in "
        "several groups with a policy gets the most lenient (off, else the longest "
        "minutes); a user in none, the default. Hosts without an agent send no "
        "samples: their shares are never reclaimed. Checked every time_limit_interval. "
        "Default: $GPUHUB_IDLE_RECLAIM (JSON) or {} (off).",
    ).tag(config=True)

    @default("idle_reclaim")
    def _default_idle_reclaim(self):
        import json

        raw = os.environ.get("GPUHUB_IDLE_RECLAIM") or "{}"
        try:
            return json.loads(raw)
        except ValueError as e:
            raise TraitError(f"GPUHUB_IDLE_RECLAIM is not JSON: {e}") from None

    @validate("idle_reclaim")
    def _valid_idle_reclaim(self, proposal):
        try:
            parse_policies(proposal.value)
        except (TypeError, ValueError) as e:
            raise TraitError(str(e)) from None
        return proposal.value

    @property
    def reclaim_policies(self) -> Policies:
        return parse_policies(self.idle_reclaim)

    #: per live allocation, its recent (time, utilisation) samples (loops.idle_reclaim)
    idle_history = Dict()

    estimate_budget = Float(
        0.5,
        help="Seconds one POST estimates (the spawn form's start estimates for each GPU "
        "choice) may spend simulating the queue; the requests left then are answered "
        "without an estimate (\"estimated\": false). Each simulation runs on the event "
        "loop, and on a full pool of thousands of GPUs takes a few hundred ms.",
    ).tag(config=True)

    estimate_cache_seconds = Float(
        30.0,
        help="How long (seconds) a start estimate computed for POST estimates serves "
        "every later call for the same shape (GPUs, models, CPU, memory; it does not "
        "depend on who asks), so that forms loaded one after another on a busy pool "
        "fill in the shapes the budget left out. 0: never reused.",
    ).tag(config=True)

    #: POST estimates' recent results: shape → (computed at, (expected, latest))
    estimate_cache = Dict()

    standby_poll = Float(
        0.5, help="Seconds between a standby allocator's tries to take over the database."
    ).tag(config=True)

    aliases = {
        "config": "GPUAllocator.config_file",
        "db-url": "GPUAllocator.db_url",
        "inventory": "GPUAllocator.inventory_file",
        "discovery": "GPUAllocator.discovery",
        "port": "GPUAllocator.port",
        "ip": "GPUAllocator.ip",
    }

    # --- discovery ------------------------------------------------------------------

    async def load_pool(self) -> None:
        mode = self.discovery
        loop = asyncio.get_running_loop()
        if mode == "auto":
            mode = "nvml" if await loop.run_in_executor(None, nvml_available) else "inventory"
        if mode == "agents":
            self.log.info("pool from agents: %i host(s) known", len(self.pool.state.hosts))
            return
        if mode == "nvml":
            hosts = [await loop.run_in_executor(None, discover_nvml, None)]
        elif mode == "inventory":
            if not self.inventory_file:
                raise SystemExit("no GPU found and no inventory_file declared: nothing to allocate")
            hosts = await loop.run_in_executor(None, load_inventory, self.inventory_file)
        else:
            raise SystemExit(f"unknown discovery mode {self.discovery!r}")
        await self.pool.sync_hosts(hosts, mode)
        summary = ", ".join(
            f"{h.name} ({len(h.devices)} × {h.devices[0].model if h.devices else '-'})"
            for h in hosts[:10]
        )
        more = f" and {len(hosts) - 10} more" if len(hosts) > 10 else ""
        self.log.info("pool from %s: %s%s", mode, summary, more)

    def live_json(self, a) -> dict:
        """A live (or past) allocation as the API sends it, with its run time's end
        and the time-limit notice due (if any)."""
        out = allocation_json(a, self.pool.state, self.pool.mps_state(a))
        if a.state.value == "granted":
            notice = self.pool.notices.get(a.id) or {}
            out.update(
                ends_at=iso(self.pool.ends_at(a)),
                extended=a.id in self.pool.extended,
                notice=notice.get("message"),
            )
        return out

    # --- life cycle -------------------------------------------------------------------

    async def own_database(self) -> WriterLock:
        lock = WriterLock(self.db_url, "gpu-allocator")
        loop = asyncio.get_running_loop()
        announced = False
        while not await loop.run_in_executor(None, lock.try_acquire):
            if not announced:
                self.log.warning(
                    "another allocator (%s) owns the database %s: waiting as a standby; "
                    "this one takes over when that one stops",
                    lock.holder(), lock.describe(),
                )
                announced = True
            await asyncio.sleep(self.standby_poll)
        if announced:
            self.log.info("took over the database %s", lock.describe())
        return lock

    async def start_async(self) -> None:
        self.lock = await self.own_database()
        loop = asyncio.get_running_loop()
        ledger = await loop.run_in_executor(None, Ledger, self.db_url, self.units_per_gpu)
        self.pool = LivePool(
            ledger, self.units_per_gpu, self.log,
            fairshare_half_life_s=self.fairshare_half_life_hours * 3600.0,
            queue_depth=self.queue_depth, max_wait_hours=self.max_wait_hours or None,
        )
        await self.pool.load()
        admin.attach(self)  # the admin panel: OAuth, samples, metrics
        await self.load_pool()
        self.log.info(
            "pool loaded: %i host(s), %i GPU(s), %i live allocation(s)",
            len(self.pool.state.hosts), len(self.pool.state.devices), len(self.pool.state.allocations),
        )
        tasks = [
            asyncio.create_task(loops.watch_heartbeats(self)),
            asyncio.create_task(loops.reconcile_forever(self)),
            asyncio.create_task(loops.watch_lock(self)),
            asyncio.create_task(admin.sample_forever(self)),
            asyncio.create_task(loops.time_limits_forever(self)),
            asyncio.create_task(loops.idle_reclaim_forever(self)),
        ]
        # the REST API (api/v1/…) and the admin panel's pages and metrics
        self.listen(self.web_app(routes(self.service_prefix, self) + admin.routes(self.service_prefix, self),
                                 **admin.settings(self)))
        await self.wait_for_signal()
        for t in tasks:
            t.cancel()
        self.pool.close()
        self.lock.release()
        self.log.info("gpu-allocator stopping; every allocation stays in %s", self.lock.describe())


def main(argv=None):
    GPUAllocator.launch_instance(argv)


if __name__ == "__main__":
    main()
