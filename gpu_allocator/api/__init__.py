"""The allocator's REST API: routes under ``{service_prefix}api/v1/``, one module
per resource, each with its ``default_handlers`` (paths relative to
``api/v1``), as JupyterHub's apihandlers:

============================  ==========================================
module                        paths
============================  ==========================================
api.pool                      pool, pool/hosts, pool/summary
api.allocations               allocations, allocations/{id}[/extend|/revoke]
api.queue                     queue, queue/{id}[/cancel]
api.estimates                 estimates
api.quotas                    quota, quotas, quotas/{user|group}/{name}
api.usage                     usage, usage/summary
api.utilisation               utilisation
api.audit                     audit
api.reservations              reservations, reservations/{id}
api.hosts                     hosts/{name}/register|heartbeat|drain|undrain
api.external                  external
api.jobs                      jobs, jobs/{id}[/logs|/started]
============================  ==========================================

The admin panel's pages (gpu_allocator.admin) are routed beside these by the app.
"""

from __future__ import annotations

from gpuhub.api import HealthHandler

from . import (
    allocations, audit, estimates, external, hosts, jobs, pool, queue, quotas, reservations, usage,
    utilisation,
)

RESOURCES = (pool, allocations, queue, estimates, quotas, usage, utilisation, audit, reservations, hosts, external,
             jobs)


def routes(prefix: str, service) -> list:
    """The REST API's route table for tornado, under ``{prefix}api/v1``."""
    api = prefix.rstrip("/") + "/api/v1"
    kw = {"service": service}
    return [(api + r"/health", HealthHandler)] + [
        (api + path, handler, kw) for module in RESOURCES for path, handler in module.default_handlers
    ]
