"""The allocator's Prometheus metrics (``GET /services/gpu-allocator/metrics``,
scope ``read:metrics``; see gpuhub.metrics).

Gauges are read from the live pool at scrape time (a pass over the devices and
the queue); counters and histograms are observed by the pool's parts where
things happen (gpu_allocator.pool.metrics: a decision, a grant, a release, a
lost host — so every path counts: the REST API, grants from the queue,
reconciliation, lost hosts, revocations), in the pool's own registry, which
this module's collector joins. No per-user labels.
"""

from __future__ import annotations

import time

from prometheus_client.core import GaugeMetricFamily

from .core.model import HostState
from .poolview import model_totals
from .shapes import reason_kind


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
    """The allocator's registry (``GET {prefix}metrics``): the pool's own counters
    and histograms (pool.metrics.PoolMetrics, observed by the pool's parts where
    things happen) and the gauges PoolCollector reads from the pool at scrape time."""

    def __init__(self, app):
        self.registry = app.pool.metrics.registry
        self.registry.register(PoolCollector(app))
