"""The counters and histograms the pool's parts observe where things happen
(a decision, a grant, a release, a lost host), as JupyterHub's handlers observe
theirs. One :class:`PoolMetrics` per pool, in its own
:class:`prometheus_client.CollectorRegistry` (tests run several pools in one
process); the allocator serves that registry, with the gauges read from the pool
at scrape time (gpu_allocator.metrics), at ``GET {prefix}metrics``. No per-user
labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

#: decision latency buckets (seconds): a grant is placement plus one commit
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: queue wait buckets (seconds): minutes to days
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)


class PoolMetrics:
    """What the pool counts, whoever asks it (the REST API, the queue's passes,
    reconciliation, lost hosts, revocations)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
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
