"""LivePool: the composition root of the pool's parts, and the one object the
REST API, the admin panel and the background loops hold (``app.pool``).

It builds the parts around one LiveState, with their configuration, and
exposes their methods and state under the names the callers use; each part is
a class with one job:

- commit.GroupCommit: group commit of ledger writes, and reads;
- usage.Usage: accounting of quota use and fair share;
- reservations.Reservations: advance reservations and their rule;
- grants.Grants: grants and releases of live shares;
- queue.Scheduler: the queue and its passes;
- estimates.Estimator: start estimates, dry runs;
- runtimes.RunTimes: extensions and time limits;
- hosts.Hosts: registration, heartbeats, fencing, drain, lost hosts, MPS.
"""

from __future__ import annotations

import logging
import time

from ..core.queue import DEPTH
from ..core.state import PoolState
from ..store.ledger import Ledger
from .commit import GroupCommit
from .estimates import Estimator
from .grants import Grants
from .hosts import HostInfo, Hosts, with_details
from .metrics import PoolMetrics
from .queue import Scheduler
from .reservations import Reservations
from .runtimes import RunTimes
from .state import LiveState
from .usage import Usage


def _part(part: str, name: str, doc: str = "") -> property:
    """``LivePool.<attribute>`` as ``<part>.<name>``: a method or a piece of
    state of the part that does that job (read only)."""
    return property(lambda self: getattr(getattr(self, part), name),
                    doc=doc or f"{part}.{name} (see that part's class)")


class LivePool:
    """The allocator's authoritative, in-memory pool, kept in step with the ledger."""

    def __init__(self, ledger: Ledger, units_per_gpu: int, log: logging.Logger | None = None, *,
                 fairshare_half_life_s: float | None = None, queue_depth: int = DEPTH,
                 max_wait_hours: float | None = None, metrics: PoolMetrics | None = None,
                 pools: dict | None = None):
        """``fairshare_half_life_s``: of the decayed usage fair share compares (None:
        core.fairshare's default); ``queue_depth``: waiting requests protected from
        backfill (core.queue.DEPTH); ``max_wait_hours``: the longest wait where no
        quota sets one (None: none); ``metrics``: the counters the parts observe
        (None: a PoolMetrics of the pool's own); ``pools``: the host pools and
        who may use them (core.pools.parse_pools; None: "default" only, open to
        everyone)."""
        self.ledger = ledger
        self.log = log or logging.getLogger("gpu-allocator")
        self.metrics = metrics if metrics is not None else PoolMetrics()
        self.live_state = LiveState(units_per_gpu)
        self.writer = GroupCommit(ledger)
        self.usage = Usage(self.live_state, fairshare_half_life_s)
        if pools is not None:
            self.usage.pools = dict(pools)
        self.bookings = Reservations(self.live_state, self.writer, self.log, changed=self.kick)
        self.grants = Grants(self.live_state, self.writer, self.usage, self.bookings, self.metrics,
                             ended=self._ended)
        self.scheduler = Scheduler(self.live_state, self.writer, self.usage, self.grants, self.bookings,
                                   self.metrics, self.log, depth=queue_depth, max_wait_hours=max_wait_hours)
        self.estimator = Estimator(self.live_state, self.usage, self.scheduler, self.bookings)
        self.runtimes = RunTimes(self.live_state, self.writer, self.grants, self.scheduler, self.estimator,
                                 self.bookings)
        self.hosts = Hosts(self.live_state, self.writer, self.grants, self.metrics, self.log, changed=self.kick)

    def kick(self) -> None:
        """Run a scheduling pass soon (Scheduler.kick): what may start changed."""
        self.scheduler.kick()

    def _ended(self, a) -> None:
        self.scheduler.released(a)

    @property
    def state(self) -> PoolState:
        return self.live_state.state

    @property
    def units_per_gpu(self) -> int:
        return self.live_state.units_per_gpu

    async def load(self) -> None:
        """The committed state: hosts, live allocations, reservations, the queue."""
        loaded = await self.writer.read(self.ledger.load)
        state = PoolState(self.units_per_gpu)
        info = {}
        for host, record in loaded.hosts:
            state.put_host(with_details(host, record.details))
            info[host.name] = HostInfo(**vars(record))
        hub_server = {}
        for a, server in loaded.allocations:
            state.grant(a)
            hub_server[a.id] = server
        self.live_state.state, self.hosts.info, self.live_state.hub_server = state, info, hub_server
        await self.bookings.load(time.time())
        await self.scheduler.load()

    def close(self) -> None:
        self.writer.close()

    # --- the parts' methods and state under the names the callers use -----------------------

    # commit
    commit = _part("writer", "commit")
    read = _part("writer", "read")
    commits = _part("writer", "commits")
    committed_ops = _part("writer", "committed_ops")
    # live memory
    hub_server = _part("live_state", "hub_server")
    extended = _part("live_state", "extended")
    notices = _part("live_state", "notices")
    by_key = _part("live_state", "by_key")
    live = _part("live_state", "live")
    ends_at = _part("live_state", "ends_at")
    running = _part("live_state", "running")
    # usage
    quotas = _part("usage", "quotas")
    groups = _part("usage", "groups")
    pools = _part("usage", "pools")
    open_pools = _part("usage", "open_pools")
    fairshare = _part("usage", "fairshare")
    finished = _part("usage", "finished")
    ratio = _part("usage", "ratio")
    held = _part("usage", "held")
    limits = _part("usage", "limits")
    # grants
    grant = _part("grants", "grant")
    finish = _part("grants", "finish")
    record_external = _part("grants", "record_external")
    get = _part("grants", "get")
    spans = _part("grants", "spans")
    # the queue
    queue = _part("scheduler", "queue")
    estimates = _part("scheduler", "estimates")
    queue_depth = _part("scheduler", "depth")
    max_wait_hours = _part("scheduler", "max_wait_hours")
    passes = _part("scheduler", "passes")
    fast_grants = _part("scheduler", "fast_grants")
    _pass_running = _part("scheduler", "_pass_running")
    submit = _part("scheduler", "submit")
    schedule = _part("scheduler", "schedule")
    cancel = _part("scheduler", "cancel")
    get_request = _part("scheduler", "get_request")
    queued = _part("scheduler", "queued")
    by_request_key = _part("scheduler", "by_request_key")
    set_request_priority = _part("scheduler", "set_request_priority")
    set_quota = _part("scheduler", "set_quota")
    # estimates
    estimate = _part("estimator", "estimate")
    delays_queue = _part("estimator", "delays_queue")
    dry_run = _part("estimator", "dry_run")
    start_estimate = _part("estimator", "start_estimate")
    # run times
    extend = _part("runtimes", "extend")
    expire_due = _part("runtimes", "expire_due")
    # reservations
    reserved = _part("bookings", "reserved")
    restriction = _part("bookings", "restriction")
    reservations = _part("bookings", "active")
    get_reservation = _part("bookings", "get")
    reserve = _part("bookings", "reserve")
    cancel_reservation = _part("bookings", "cancel")
    # hosts
    info = _part("hosts", "info")
    sync_hosts = _part("hosts", "sync")
    register_host = _part("hosts", "register")
    heartbeat = _part("hosts", "heartbeat")
    view = _part("hosts", "view")
    set_drained = _part("hosts", "set_drained")
    mark_lost = _part("hosts", "mark_lost")
    mps_state = _part("hosts", "mps_state")
    oldest_heartbeat = _part("hosts", "oldest_heartbeat")

