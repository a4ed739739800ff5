"""The vfolder service's Prometheus metrics (``GET /services/vfolders/metrics``,
scope ``read:metrics``; see gpuhub.metrics): usage and quotas of the vfolders
per storage host (from the database), capacity and I/O of the storage hosts
(from the background statistics sampler). Computed when Prometheus scrapes; no
per-user labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from .store.schema import VFolder


#: the metrics read at scrape time: kind, name, help, labels
FAMILIES = (
    (GaugeMetricFamily, "gpuhub_vfolder_usage_bytes",
     "Bytes used by the vfolders of each storage host (last scan)", ("storage_host",)),
    (GaugeMetricFamily, "gpuhub_vfolder_usage_files",
     "Files in the vfolders of each storage host (last scan)", ("storage_host",)),
    (GaugeMetricFamily, "gpuhub_vfolder_quota_bytes",
     "Sum of the per-vfolder byte quotas on each storage host", ("storage_host",)),
    (GaugeMetricFamily, "gpuhub_vfolders", "vfolders by storage host and state", ("storage_host", "state")),
    (GaugeMetricFamily, "gpuhub_storage_capacity_bytes", "Size of each storage host's file system",
     ("storage_host",)),
    (GaugeMetricFamily, "gpuhub_storage_free_bytes", "Bytes free (for unprivileged users) on each storage host",
     ("storage_host",)),
    (CounterMetricFamily, "gpuhub_storage_read_bytes", "Bytes read from each storage host", ("storage_host",)),
    (CounterMetricFamily, "gpuhub_storage_written_bytes", "Bytes written to each storage host", ("storage_host",)),
    (CounterMetricFamily, "gpuhub_storage_read_operations", "Read operations on each storage host",
     ("storage_host",)),
    (CounterMetricFamily, "gpuhub_storage_write_operations", "Write operations on each storage host",
     ("storage_host",)),
)


def families() -> dict:
    """The service's metric families, without samples (what ``describe`` answers)."""
    return {name: kind(name, doc, labels=list(labels)) for kind, name, doc, labels in FAMILIES}


class VFolderCollector:
    def __init__(self, service):
        self.service = service

    def describe(self):
        return list(families().values())

    def collect(self):
        svc = self.service
        hosts = sorted(svc.hosts)
        f = families()
        found = {h: [0, 0, 0] for h in hosts}
        with svc.manager.sessions() as db:
            q = select(VFolder.host, VFolder.state, func.count(), func.coalesce(func.sum(VFolder.usage_bytes), 0),
                       func.coalesce(func.sum(VFolder.usage_files), 0),
                       func.coalesce(func.sum(VFolder.quota_bytes), 0)).group_by(VFolder.host, VFolder.state)
            for host, state, n, used, nfiles, q_bytes in db.execute(q):
                f["gpuhub_vfolders"].add_metric([host, state], n)
                row = found.setdefault(host, [0, 0, 0])
                row[0] += used
                row[1] += nfiles
                row[2] += q_bytes
        for host, (used, nfiles, q_bytes) in sorted(found.items()):
            f["gpuhub_vfolder_usage_bytes"].add_metric([host], used)
            f["gpuhub_vfolder_usage_files"].add_metric([host], nfiles)
            f["gpuhub_vfolder_quota_bytes"].add_metric([host], q_bytes)
        for h in hosts:
            s = svc.host_stats(h) or {}
            if "capacity_bytes" not in s:
                continue
            f["gpuhub_storage_capacity_bytes"].add_metric([h], s["capacity_bytes"])
            f["gpuhub_storage_free_bytes"].add_metric([h], s["free_bytes"])
            f["gpuhub_storage_read_bytes"].add_metric([h], s.get("read_bytes", 0))
            f["gpuhub_storage_written_bytes"].add_metric([h], s.get("write_bytes", 0))
            f["gpuhub_storage_read_operations"].add_metric([h], s.get("read_ops", 0))
            f["gpuhub_storage_write_operations"].add_metric([h], s.get("write_ops", 0))
        yield from f.values()


def make_registry(service) -> CollectorRegistry:
    r = CollectorRegistry(auto_describe=False)
    r.register(VFolderCollector(service))
    return r
