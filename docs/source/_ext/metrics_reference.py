"""``{gpuhub-metrics} SERVICE``: a list of a service's Prometheus metrics,
generated from the metric definitions the service registers — name, type,
labels, help — so the reference cannot drift from the code.

Nothing runs: each service's registry is built over no service object (the
allocator's ``AllocatorMetrics``, the vfolder service's ``make_registry``) and
every collector in it is asked to ``describe()`` itself, as prometheus_client
does when a collector is registered. A scrape-time collector (the pool's
gauges, the vfolder service's) describes its families without samples.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Directive
from prometheus_client import CollectorRegistry


def allocator_registry() -> CollectorRegistry:
    """What AllocatorMetrics serves: the pool's counters (PoolMetrics) and the
    gauges PoolCollector reads at scrape time (described without a pool)."""
    from gpu_allocator.metrics import PoolCollector
    from gpu_allocator.pool.metrics import PoolMetrics

    registry = PoolMetrics().registry
    registry.register(PoolCollector(None))
    return registry


def vfolders_registry() -> CollectorRegistry:
    from vfolder_manager.metrics import make_registry

    return make_registry(None)


REGISTRIES = {"allocator": allocator_registry, "vfolders": vfolders_registry}


def describe(registry: CollectorRegistry) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(exposed name, type, labels, help) of every metric the registry holds,
    sorted by name. A counter is exposed with ``_total``; a histogram's ``le``
    label is implied."""
    rows = []
    # prometheus_client keeps the registered collectors here (no public list)
    for collector in list(registry._collector_to_names):
        for family in collector.describe():
            labels = getattr(collector, "_labelnames", None) or getattr(family, "_labelnames", ()) or ()
            name = family.name + ("_total" if family.type == "counter" else "")
            rows.append((name, family.type, tuple(labels), family.documentation))
    return sorted(rows)


def table(rows) -> nodes.definition_list:
    """The rows as a definition list (built directly, so the directive works in
    MyST and reStructuredText pages alike): the name, its type and labels, then
    the help text."""
    out = nodes.definition_list(classes=["gpuhub-metrics"])
    for name, kind, labels, doc in rows:
        term = nodes.term()
        term += nodes.literal(text=name)
        term += nodes.Text(f" ({kind}" + (", labels: " if labels else ""))
        for i, label in enumerate(labels):
            if i:
                term += nodes.Text(", ")
            term += nodes.literal(text=label)
        term += nodes.Text(")")
        item = nodes.definition_list_item()
        item += term
        definition = nodes.definition()
        definition += nodes.paragraph(text=doc)
        item += definition
        out += item
    return out


class MetricsTable(Directive):
    required_arguments = 1
    has_content = False

    def run(self):
        service = self.arguments[0]
        if service not in REGISTRIES:
            raise self.error(f"unknown service {service!r}; one of {sorted(REGISTRIES)}")
        return [table(describe(REGISTRIES[service]()))]


def setup(app):
    app.add_directive("gpuhub-metrics", MetricsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
