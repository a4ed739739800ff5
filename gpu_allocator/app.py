"""The allocator service: a tornado app that JupyterHub runs as a managed service.

Run it as ``python -m gpu_allocator`` (or ``gpuhub-allocator``); its settings
are traits, from its config file (``--config``) and the command line, where
JupyterHub's service environment (JUPYTERHUB_SERVICE_URL, …_PREFIX, …_API_TOKEN)
gives the defaults of where it listens and its token (gpuhub.service). It owns its database alone
(see :class:`gpuhub.db.WriterLock`): a second allocator started on the same
database waits as a standby and takes over when the first dies.
"""

from __future__ import annotations

import asyncio
import os

from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, default, validate

from gpuhub.db import WriterLock
from gpuhub.service import HubService

from . import admin, loops
from .api import routes
from .shapes import allocation_json, allocation_use, iso
from .core.pools import Pool, PoolError, check_hosts, parse_pools
from .core.queue import DEPTH
from .core.reclaim import Policies, parse_policies
from .inventory import discover_nvml, load_inventory, nvml_available
from .jobs import Jobs
from .pool import LivePool
from .store import Ledger


class GPUAllocator(HubService):
    """Owns the GPU pool: places shares, records them, answers the REST API."""

    name = "gpuhub-allocator"
    description = "gpuhub GPU allocator (a JupyterHub service)"
    service_name = "gpu-allocator"
    default_url = "http://127.0.0.1:8051"

    db_url = Unicode(
        help="""SQLAlchemy URL of the allocator's database: every grant, the queue,
        quotas, reservations and the audit log.

        For production use PostgreSQL, e.g.
        ``postgresql+psycopg://gpuhub@db.example/gpuhub``.

        Default: SQLite in data_dir (``gpu_allocator.sqlite``), the embedded
        default that needs no server. One allocator owns a database: a second one
        started on it waits as a standby (an advisory lock: flock beside a SQLite
        file, pg_try_advisory_lock on PostgreSQL) and takes over when the first
        dies.
        """,
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return "sqlite:///" + os.path.join(self.data_dir, "gpu_allocator.sqlite")

    discovery = Unicode(
        "auto",
        help="""Where the pool comes from.

        - ``nvml``: this host's NVIDIA GPUs;
        - ``inventory``: the hosts declared in inventory_file;
        - ``agents``: only the hosts whose GPU host agents register;
        - ``auto``: NVML when a GPU is present, else the inventory.

        Default ``auto``, so that the demo pools a workstation's GPUs where it
        has some and the declared (mock) hosts everywhere else.
        """,
    ).tag(config=True)

    inventory_file = Unicode(
        "",
        help="""YAML file that declares GPU hosts and their GPUs, e.g.
        ``hub_config/gpu_inventory.yaml`` (its comments describe the format).
        Read when discovery is ``inventory`` (or ``auto`` without a GPU).

        Default: empty, no declared hosts; the demo's jupyterhub_config.py names
        hub_config/gpu_inventory.yaml.
        """,
    ).tag(config=True)

    pools = Dict(
        {"default": {"groups": ["*"]}},
        help="""Host pools (as Backend.AI's scaling groups or Slurm's partitions):
        named sets of hosts, each open to some JupyterHub groups. A request lands
        only on a host in a pool open to its user; a user may also name one pool
        (``"pool": "team-a"`` in the request, a choice on the spawn form when more
        than one is open to them) and is refused (400, naming the pools open to
        them) when it is not open to them. A request that fits only in pools
        closed to its user waits in the queue, and its reason says so.

        ``{NAME: {"groups": [GROUP, …], "users": [USER, …], "description": TEXT}}``;
        ``"*"`` in groups opens a pool to everyone. Hosts join pools in the
        inventory file (``pools: [team-a]`` on a host) or by their agent's
        ``GPUAgent.pools``; a host that names none is in ``default``, and every
        pool a host names must be configured here. Example::

            c.GPUAllocator.pools = {
                "default": {"groups": ["*"]},
                "team-a": {"groups": ["team-a"], "description": "team A's 8 × H100"},
            }

        Default ``{"default": {"groups": ["*"]}}``: one pool open to everyone, so
        a site that configures no pools behaves as if there were none. A
        configuration that leaves ``default`` out gets it open to everyone; to
        close it, configure it with ``"groups": []``.
        """,
    ).tag(config=True)

    @validate("pools")
    def _valid_pools(self, proposal):
        try:
            parse_pools(proposal.value)
        except PoolError as e:
            raise TraitError(f"GPUAllocator.pools: {e}") from None
        return proposal.value

    @property
    def pool_specs(self) -> dict[str, Pool]:
        """``pools``, checked, with ``default`` (core.pools.parse_pools)."""
        return parse_pools(self.pools)

    units_per_gpu = Int(
        20,
        help="""The quantum of fractional shares: one GPU is this many units.

        20 gives steps of 0.05 GPU (0.5 GPU is 10 units). Shares are stored as
        integer units, never as floats, so sums never drift. Changing it on a
        database that holds grants is refused.
        """,
    ).tag(config=True)

    max_hours = Float(
        168.0,
        help="""The longest run time (hours) a request may ask for, e.g. 24.

        This is the one limit: the spawn form and the hub's REST API learn it from
        the allocator's validation. Default 168 hours (a week), long enough for
        training runs while a forgotten session still ends.
        """,
    ).tag(config=True)

    heartbeat_interval = Float(
        5.0,
        help="""Seconds between the heartbeats of GPU host agents, e.g. 1 in tests.

        Agents are told this value when they register, and the allocator checks for
        lost hosts as often. Default 5 seconds: a lost host is noticed within
        missed_heartbeats × 5 = 15 s, at a few small requests per host per minute.
        """,
    ).tag(config=True)

    @validate("heartbeat_interval", "sample_interval")
    def _valid_interval(self, proposal):
        if not proposal.value > 0:
            raise TraitError(f"{proposal.trait.name} must be more than 0 seconds, got {proposal.value}")
        return proposal.value

    missed_heartbeats = Int(
        3,
        help="""How many heartbeat_interval a host's agent may stay silent: after
        that the host is marked lost, its sessions are reported dead and its shares
        are freed.

        Default 3, so that one late or lost heartbeat (a busy network) never frees
        the shares of a host that is alive.
        """,
    ).tag(config=True)

    reconcile_interval = Float(
        60.0,
        help="""Seconds between comparisons of the shares granted for hub servers
        with the servers the hub runs, e.g. 1 in tests; 0: never.

        Needs the hub's REST API (hub_api_url). Default 60 seconds: the shares it
        frees are already past reconcile_grace, so a minute more costs little.
        """,
    ).tag(config=True)

    reconcile_grace = Float(
        300.0,
        help="""Age (seconds) after which a share granted for a hub server that the
        hub does not run (neither running nor starting) is released.

        A grant whose answer never reached the spawner (a crash between commit and
        answer) must not stay held forever. Default 300 seconds: longer than a
        spawn takes to register with the hub, even one that pulls an image.
        """,
    ).tag(config=True)

    slurm_conf = Unicode(
        "",
        help="""Path of the slurm.conf of the Slurm cluster whose jobs the allocator
        mirrors as external allocations (hosts with ``owner: slurm`` in the
        inventory), e.g. ``/etc/slurm/slurm.conf``; the allocator runs ``squeue``
        with it (SLURM_CONF) to free the mirrors of jobs that ended.

        Default empty: the ``squeue`` on the PATH with Slurm's own default
        configuration. Reconciliation runs only while there are mirrors.
        """,
    ).tag(config=True)

    slurm_reconcile_interval = Float(
        30.0,
        help="""Seconds between comparisons of the Slurm jobs mirrored as external
        allocations with ``squeue``, e.g. 2 in tests; 0: never.

        A job cancelled outside gpuhub (``scancel``), past its time limit or on a
        failed node then frees its mirror within this long, even when the hub
        is down. Default 30 seconds: one cheap ``squeue`` per interval, only
        while mirrors exist; the hub's spawners notice their own jobs ending at
        every poll anyway.
        """,
    ).tag(config=True)

    slurm_reconcile_grace = Float(
        10.0,
        help="""Age (seconds) a mirror of a Slurm job must have before the
        reconciliation may free it for being absent from ``squeue``.

        A spawner records a job's mirror right after the job starts running; a
        listing taken just before must not free it. Default 10 seconds, well
        above the time between a job starting and its mirror being recorded.
        """,
    ).tag(config=True)

    fairshare_half_life_hours = Float(
        168.0,
        help="""Half-life (hours) of the decayed GPU usage that fair share compares,
        as Slurm's PriorityDecayHalfLife: usage this old counts half.

        Default 168 hours (a week): last week's heavy user waits behind this
        week's light ones, and is forgiven within a few weeks.
        """,
    ).tag(config=True)

    queue_depth = Int(
        DEPTH,
        help="""How many waiting requests without a promise the queue simulates (and
        estimates) besides the promised ones.

        Every request's first "at the latest" start is a promise, and no later
        request may push it past it. An unpromised request behind this many waiting
        ones gets no estimate, and starts only where it delays none of them. It
        bounds the cost of a scheduling pass (each simulated request is simulated
        again for every start). Default 32: more than a team's queue holds at once,
        while a pass on a pool of thousands of GPUs stays well under a second.
        """,
    ).tag(config=True)

    max_wait_hours = Float(
        0.0,
        help="""How long (hours) a request may wait in the queue where no group or
        user quota sets max_wait_hours, e.g. 48; then it is given up (state
        ``expired``).

        Default 0: no limit, a request waits until it starts or its user cancels
        it.
        """,
    ).tag(config=True)

    time_limit_interval = Float(
        30.0,
        help="""Seconds between checks of the shares' run times (max_hours), e.g. 1 in
        tests.

        A check sends warnings 15 and 5 minutes before a share's end, then ends it
        (``expired``) and the spawner's poll stops its session. It is also the
        queue's timer (estimates, waits) and idle reclaim's. Default 30 seconds:
        a share ends at most half a minute late.
        """,
    ).tag(config=True)

    idle_reclaim = Dict(
        help="""Idle reclaim: take back GPU shares whose GPUs stay nearly unused.

        ``{"default": POLICY, "groups": {"GROUP": POLICY}}``, a POLICY being
        ``{"threshold": 0.05, "minutes": 60, "only_when_waiting": true,
        "notice_minutes": 10}`` (missing fields take these values) or null (off).

        A share whose utilisation (the highest of its devices', from the host
        agents' heartbeat samples; a fraction sees its whole device's) stayed under
        ``threshold`` (0–1) for ``minutes`` is reclaimed — with
        ``only_when_waiting``, only while some request waits in the queue. The
        session is warned ``notice_minutes`` before (the time-limit notices'
        channel: the lab panel shows it), then its share is revoked by
        'idle-reclaim' (audit log) and the hub stops it, telling the user
        'reclaimed: GPU idle for N min'. A user in several groups with a policy gets
        the most lenient (off, else the longest minutes); a user in none, the
        default. Hosts without an agent send no samples: their shares are never
        reclaimed. Checked every time_limit_interval.

        Default ``{}``: off, since taking a session's GPU away is a site's
        decision.
        """,
    ).tag(config=True)

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

    sample_interval = Float(
        60.0,
        help="""Seconds between the utilisation samples that the admin panel charts
        (capacity, allocated share and measured utilisation per GPU model), e.g. 1
        in tests.

        The samples are kept in memory for 7 days. Default 60 seconds: a week is
        about 10,000 samples, and a day's chart has a point per minute.
        """,
    ).tag(config=True)

    vfolders_url = Unicode(
        "",
        help="""Base URL of the vfolder service's REST API as the allocator reaches it
        directly, e.g. ``http://127.0.0.1:8052/services/vfolders/api/v1/``: the admin
        panel's Storage tab shows its storage hosts. The allocator calls it with
        its own api_token (it needs access:services!service=vfolders).

        Default: empty, no vfolder service; the Storage tab says so.
        """,
    ).tag(config=True)

    job_poll_seconds = Float(
        1.0,
        help="""How often (seconds) the allocator follows batch jobs (``gpuhub run``):
        it asks the hub which job servers run, records ends (with the exit code
        the job's runner wrote) and removes ended jobs' servers. Only while some
        job is not done.

        Default 1 second: a job's end shows within about two seconds (the
        spawner's own poll of a job's process, GPUSpawner.job_poll_interval,
        gives its share back), at one hub request per second while jobs run.
        """,
    ).tag(config=True)

    max_jobs_per_user = Int(
        20,
        help="""The most batch jobs (``gpuhub run``) one user may have queued or running
        at once; one more is refused with a 429 that says so. 0: no limit.

        Each waiting job is a pending spawn of the hub, and JupyterHub refuses
        every spawn, anyone's, beyond its ``concurrent_spawn_limit`` (default
        100). Default 20: a sweep's worth, while a few users cannot fill the
        hub's spawn slots; raise both together for large sweeps.
        """,
    ).tag(config=True)

    estimate_budget = Float(
        0.5,
        help="""Seconds one POST estimates (the spawn form's start estimates for each
        GPU choice) may spend simulating the queue; the requests left then are
        answered without an estimate (``"estimated": false``).

        Each simulation runs on the event loop, and on a full pool of thousands of
        GPUs takes a few hundred ms. Default 0.5 seconds: the form stays quick,
        and other requests wait at most that long.
        """,
    ).tag(config=True)

    estimate_cache_seconds = Float(
        30.0,
        help="""How long (seconds) a start estimate computed for POST estimates serves
        every later call for the same shape (GPUs, models, CPU, memory; it does not
        depend on who asks); 0: never reused.

        Forms loaded one after another on a busy pool so fill in the shapes that
        the budget left out. Default 30 seconds: long enough to serve a burst of
        forms, short enough that an estimate shows the queue of the last half
        minute.
        """,
    ).tag(config=True)

    #: POST estimates' recent results: shape → (computed at, (expected, latest))
    estimate_cache = Dict()

    standby_poll = Float(
        0.5,
        help="""Seconds between a standby allocator's tries to take over the
        database (see db_url).

        Default 0.5 seconds: a supervised allocator's successor takes over within
        a second, and a try is one cheap lock call.
        """,
    ).tag(config=True)

    # --- the port for agents on other hosts: TLS ---------------------------------------

    agent_tls_port = Int(
        0,
        help="""A second port, served over TLS, where GPU host agents on other
        machines reach the allocator, e.g. 8443; the hub and the proxy keep
        talking to it over plain HTTP on ``ip``/``port``, which then stay on
        loopback (127.0.0.1, the default). The same REST API answers on both, with
        the same token checks; on this port a client must also complete a TLS
        handshake with the certificate agent_tls_cert, and (see
        agent_tls_require_client_cert) present its own certificate signed by
        agent_tls_ca. Agents then use ``https://HUB:8443/services/gpu-allocator/api/v1/``
        with GPUAgent.ca_file, cert_file and key_file (gpuhub-certs makes them all;
        docs: "Add a GPU host").

        Default 0: no TLS port; agents on other machines reach ``port`` over plain
        HTTP, which needs ``ip`` = ``0.0.0.0`` (the demo and the tests within one
        machine).
        """,
    ).tag(config=True)

    agent_tls_ip = Unicode(
        "0.0.0.0",
        help="""The address of agent_tls_port, e.g. ``10.0.0.2`` (the hub host's address
        on the GPU hosts' network).

        Default ``0.0.0.0``: every address, as agents on other machines must reach
        it; the TLS handshake and client certificates keep others out.
        """,
    ).tag(config=True)

    agent_tls_cert = Unicode(
        "",
        help="""The allocator's certificate (PEM) on agent_tls_port, e.g.
        ``/etc/gpuhub/tls/allocator.crt`` from ``gpuhub-certs issue DIR allocator
        --dns hub.example --ip 10.0.0.2``: its names and addresses must include
        the ones in the agents' allocator_url, which they verify.

        Default: empty; required when agent_tls_port is set.
        """,
    ).tag(config=True)

    agent_tls_key = Unicode(
        "",
        help="""The private key (PEM) of agent_tls_cert, e.g.
        ``/etc/gpuhub/tls/allocator.key`` (mode 600, readable by the hub's account).

        Default: empty; required when agent_tls_port is set.
        """,
    ).tag(config=True)

    agent_tls_ca = Unicode(
        "",
        help="""The site CA (PEM) that signed the agents' own certificates, e.g.
        ``/etc/gpuhub/tls/ca.crt`` from ``gpuhub-certs init``: a client certificate
        signed by another CA is refused in the handshake.

        Default: empty; required while agent_tls_require_client_cert is True.
        """,
    ).tag(config=True)

    agent_tls_require_client_cert = Bool(
        True,
        help="""Whether a client of agent_tls_port must present a certificate signed by
        agent_tls_ca (mutual TLS), in addition to its token. False: a certificate is
        checked when presented, and clients without one get in on their token alone.

        Default True: a stolen agent token is of no use off a GPU host that has
        its certificate.
        """,
    ).tag(config=True)

    def agent_tls_context(self):
        """The TLS context of agent_tls_port (SystemExit naming what is missing)."""
        from gpuhub.certs import server_context

        missing = [t for t in ("agent_tls_cert", "agent_tls_key") if not getattr(self, t)]
        if self.agent_tls_require_client_cert and not self.agent_tls_ca:
            missing.append("agent_tls_ca (or agent_tls_require_client_cert = False)")
        if missing:
            raise SystemExit(f"agent_tls_port is set but not {', '.join(missing)}")
        try:
            return server_context(self.agent_tls_cert, self.agent_tls_key, self.agent_tls_ca,
                                  self.agent_tls_require_client_cert)
        except (OSError, ValueError) as e:
            raise SystemExit(f"agent_tls_port: cannot load its certificate, key or CA: {e}") from None

    def listen_for_agents(self, app) -> None:
        """agent_tls_port, when set: the same application over TLS (no X-Forwarded
        headers trusted: no proxy is in front of it)."""
        if not self.agent_tls_port:
            return
        app.listen(self.agent_tls_port, self.agent_tls_ip, ssl_options=self.agent_tls)
        self.log.info("gpu-allocator listening for agents on https://%s:%i%s (%s)", self.agent_tls_ip,
                      self.agent_tls_port, self.service_prefix,
                      "client certificates of the site CA required" if self.agent_tls_require_client_cert
                      else "client certificates optional")

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
        try:
            check_hosts(self.pool.usage.pools, [(h.name, h.pools) for h in hosts])
        except PoolError as e:
            raise SystemExit(f"{self.inventory_file or mode}: {e}") from None
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
                # its own processes' GPU use, as its host's agent last reported it
                use=allocation_use(self.pool.info, a),
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
        # a TLS port for agents that cannot serve stops the allocator before it takes the database
        self.agent_tls = self.agent_tls_context() if self.agent_tls_port else None
        self.lock = await self.own_database()
        loop = asyncio.get_running_loop()
        ledger = await loop.run_in_executor(None, Ledger, self.db_url, self.units_per_gpu)
        self.pool = LivePool(
            ledger, self.units_per_gpu, self.log,
            fairshare_half_life_s=self.fairshare_half_life_hours * 3600.0,
            queue_depth=self.queue_depth, max_wait_hours=self.max_wait_hours or None,
            pools=self.pool_specs,
        )
        await self.pool.load()
        self.jobs = Jobs(self)
        await self.jobs.load()
        admin.attach(self)  # the admin panel: OAuth, samples, metrics
        await self.load_pool()
        self.log.info(
            "pool loaded: %i host(s), %i GPU(s), %i live allocation(s)",
            len(self.pool.state.hosts), len(self.pool.state.devices), len(self.pool.state.allocations),
        )
        tasks = [
            asyncio.create_task(loops.watch_heartbeats(self)),
            asyncio.create_task(loops.reconcile_forever(self)),
            asyncio.create_task(loops.reconcile_slurm_forever(self)),
            asyncio.create_task(loops.watch_lock(self)),
            asyncio.create_task(admin.sample_forever(self)),
            asyncio.create_task(loops.time_limits_forever(self)),
            asyncio.create_task(loops.idle_reclaim_forever(self)),
        ]
        if self.under_hub:
            tasks.append(asyncio.create_task(self.jobs.watch()))
        # the REST API (api/v1/…) and the admin panel's pages and metrics
        app = self.web_app(routes(self.service_prefix, self) + admin.routes(self.service_prefix, self),
                           **admin.settings(self))
        self.listen(app)
        self.listen_for_agents(app)
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
