"""The allocator's Prometheus metrics (``GET /services/gpu-allocator/metrics``,
scope ``read:metrics``; see gpuhub.metrics).

Gauges are read from the live pool at scrape time (a pass over the devices and
the queue); counters and histograms are fed by wrapping the pool's submit,
finish, mark_lost and the note of each scheduling pass's grants (so every path
counts: the REST API, grants from the queue, reconciliation, lost hosts,
revocations). No per-user labels.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from .core.model import AllocationState, HostState
from .core.placement import NoFit
from .poolview import model_totals
from .shapes import reason_kind

#: decision latency buckets (seconds): a grant is placement plus one commit
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: queue wait buckets (seconds): minutes to days
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)


#: the gauges read from the pool at scrape time: name, help, labels
POOL_GAUGES = (
    ("gpuhub_gpus_installed", "GPUs in the pool, by model and host state", ("model", "host_state")),
    ("gpuhub_gpus_allocated", "GPUs held by granted shares (fractions summed)", ("model", "host_state")),
    ("gpuhub_gpus_idle", "GPU capacity not held by any share (fractions summed)", ("model", "host_state")),
    ("gpuhub_gpus_fragmented",
     "Idle GPU capacity on up hosts that the typical requests cannot use "
     "(expected fragmentation, as placement measures it)", ("model",)),
    ("gpuhub_hosts", "GPU hosts by state", ("state",)),
    ("gpuhub_allocations_active", "Granted allocations (live shares)", ()),
    ("gpuhub_queue_pending_requests", "Requests waiting in the queue", ()),
    ("gpuhub_queue_pending_by_reason",
     "Requests waiting in the queue, by what they wait for (capacity, quota, reservation)", ("reason",)),
    ("gpuhub_queue_oldest_wait_seconds", "How long the longest-waiting request has waited (0: none)", ()),
    ("gpuhub_host_heartbeat_age_seconds",
     "Seconds since the last heartbeat of each agent host that is not lost", ("host",)),
)


def pool_families() -> dict[str, GaugeMetricFamily]:
    """The pool's gauges, without samples (what ``describe`` answers)."""
    return {name: GaugeMetricFamily(name, doc, labels=list(labels)) for name, doc, labels in POOL_GAUGES}


class PoolCollector:
    """Gauges computed from the pool when Prometheus scrapes."""

    def __init__(self, app):
        self.app = app

    def describe(self):
        return list(pool_families().values())

    def collect(self):
        app = self.app
        pool = getattr(app, "pool", None)
        if pool is None:
            return
        state = pool.state
        per = state.units_per_gpu
        f = pool_families()
        agg: dict[tuple[str, str], list] = {}
        for d in state.devices.values():
            host = state.hosts.get(d.host)
            hs = host.state.value if host else "unknown"
            row = agg.setdefault((d.model, hs), [0, 0])
            row[0] += 1
            row[1] += per - state.free[d.uuid]
        for (model, hs), (n, used) in sorted(agg.items()):
            f["gpuhub_gpus_installed"].add_metric([model, hs], n)
            f["gpuhub_gpus_allocated"].add_metric([model, hs], used / per)
            f["gpuhub_gpus_idle"].add_metric([model, hs], n - used / per)
        for t in model_totals(state):
            f["gpuhub_gpus_fragmented"].add_metric([t.model], t.fragmented / per)
        counts = {s.value: 0 for s in HostState}
        for h in state.hosts.values():
            counts[h.state.value] += 1
        for s, n in counts.items():
            f["gpuhub_hosts"].add_metric([s], n)
        f["gpuhub_allocations_active"].add_metric([], len(state.allocations))
        f["gpuhub_queue_pending_requests"].add_metric([], len(pool.queue))
        kinds = {"capacity": 0, "quota": 0, "reservation": 0}
        for q in pool.queue.values():
            e = pool.estimates.get(q.id)
            kinds[reason_kind(e.reason if e else "")] += 1
        for k, n in kinds.items():
            f["gpuhub_queue_pending_by_reason"].add_metric([k], n)
        oldest = min((q.submitted for q in pool.queue.values()), default=None)
        f["gpuhub_queue_oldest_wait_seconds"].add_metric(
            [], 0.0 if oldest is None else max(0.0, time.time() - oldest))
        now = time.time()
        for name, rec in sorted(pool.info.items()):
            host = state.hosts.get(name)
            if rec.source != "agent" or host is None or host.state == HostState.LOST:
                continue
            f["gpuhub_host_heartbeat_age_seconds"].add_metric([name], max(0.0, now - (rec.last_heartbeat or now)))
        yield from f.values()


class AllocatorMetrics:
    def __init__(self, app):
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.decision = Histogram(
            "gpuhub_allocation_decision_duration_seconds",
            "Time to answer a request: quota check, placement or queueing, and the commit (refusals too)",
            buckets=DECISION_BUCKETS, registry=r)
        self.granted = Counter(
            "gpuhub_allocations_granted", "Allocations granted", registry=r)
        self.released = Counter(
            "gpuhub_allocations_released",
            "Allocations that ended, by how: released, revoked (by an admin), lost (with their host)",
            ["reason"], registry=r)
        self.refused = Counter(
            "gpuhub_allocations_refused", "Grant requests refused, by reason", ["reason"], registry=r)
        self.hosts_lost = Counter(
            "gpuhub_hosts_lost", "GPU hosts marked lost (missed heartbeats)", registry=r)
        self.queue_wait = Histogram(
            "gpuhub_queue_wait_duration_seconds",
            "Time requests that waited in the queue waited before their grant",
            buckets=WAIT_BUCKETS, registry=r)
        for reason in ("released", "revoked", "lost"):
            self.released.labels(reason)
        self.refused.labels("capacity")
        self.refused.labels("quota")
        r.register(PoolCollector(app))

    def instrument(self, pool) -> None:
        """Count what the pool does, whoever asks it (wraps the instance's methods)."""
        from .pool import QuotaExceeded

        submit, finish, mark_lost, note_plan = pool.submit, pool.finish, pool.mark_lost, pool._note_plan
        m = self

        async def timed_submit(req, **kw):
            t0 = time.perf_counter()
            try:
                a, created = await submit(req, **kw)
            except NoFit:
                m.decision.observe(time.perf_counter() - t0)
                m.refused.labels("capacity").inc()
                raise
            except QuotaExceeded:
                m.decision.observe(time.perf_counter() - t0)
                m.refused.labels("quota").inc()
                raise
            if created:
                m.decision.observe(time.perf_counter() - t0)
                if not hasattr(a, "req"):  # an Allocation, not a Queued request
                    m.granted.inc()
            return a, created

        def counted_note_plan(p, exclude=None):
            for x, a in p.admitted:
                if x.id != exclude:  # a request that waited (its own submit's grant did not)
                    m.granted.inc()
                    m.queue_wait.observe(max(0.0, a.created - x.submitted))
            return note_plan(p, exclude)

        async def counted_finish(allocation_id, state=AllocationState.RELEASED, *args, **kw):
            done = await finish(allocation_id, state, *args, **kw)
            if done is not None:
                m.released.labels(AllocationState(state).value).inc()
            return done

        async def counted_mark_lost(*args, **kw):
            lost = await mark_lost(*args, **kw)
            for _, ids in lost:
                m.hosts_lost.inc()
                if ids:
                    m.released.labels("lost").inc(len(ids))
            return lost

        pool.submit, pool.finish, pool.mark_lost = timed_submit, counted_finish, counted_mark_lost
        pool._note_plan = counted_note_plan
