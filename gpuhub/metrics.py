"""``GET {service_prefix}metrics``: a service's Prometheus metrics, guarded like
the hub's own ``/hub/metrics`` by the ``read:metrics`` scope (a JupyterHub token
that also has the service's access scope, e.g. the ``prometheus`` service's).

Names follow JupyterHub's (``jupyterhub_<noun>_<verb>_<unit>``): ``gpuhub_…``,
base units (seconds, bytes), ``_total`` on counters, no per-user labels. Each
service keeps its own :class:`prometheus_client.CollectorRegistry` (tests run
several services in one process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from tornado import web

from .api import APIHandler

METRICS_SCOPE = "read:metrics"


class MetricsHandler(APIHandler):
    """Needs ``read:metrics``; the service provides ``metrics_registry``."""

    def initialize(self, service, registry: CollectorRegistry):
        super().initialize(service)
        self.registry = registry

    async def get(self):
        if METRICS_SCOPE not in self.scopes:
            raise web.HTTPError(403, f"metrics need the {METRICS_SCOPE} scope")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(await self.exposition())

    async def exposition(self) -> bytes:
        """The registry in Prometheus' text format, made on the event loop (the
        collectors read the service's in-memory state). A service whose
        collectors query a database overrides this to make it off the loop."""
        return generate_latest(self.registry)


def metrics_route(prefix: str, service, registry: CollectorRegistry, handler=MetricsHandler) -> tuple:
    return (prefix.rstrip("/") + "/metrics", handler, {"service": service, "registry": registry})
