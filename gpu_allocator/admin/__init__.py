"""The hub admin panel of the GPU pool, served by the allocator (a managed
service with ``display: True``: it is in the hub's *Services* menu), its
metrics and utilisation samples, and the admins' audited actions.

- pages (``{prefix}admin/…``, see admin.pages): the pool map, the queue (with
  priority, cancel and quotas; see admin.queue_actions), usage and accounting, storage, the
  audit log; HubOAuth sign-in, admins only;
- ``{prefix}metrics``: Prometheus (gpu_allocator.metrics), scope read:metrics;
- admin.actions and admin.queue_actions: each action with its audit entry, which
  the pages and the REST API (gpu_allocator.api: revoke, audit, usage/summary,
  utilisation, pool/hosts, pool/summary, queue/{id}, quotas…) both call.

The panel uses the pool, core and gpu_allocator.shapes, never the REST handlers.
"""

from __future__ import annotations

import os

from jupyterhub.services.auth import HubOAuth

from gpuhub.pages import cookie_secret

from gpuhub.metrics import metrics_route

from ..metrics import AllocatorMetrics
from . import pages
from .samples import Samples, sample_forever  # noqa: F401 (app.py starts it)


def attach(app) -> None:
    """Give the allocator what the panel needs, once its pool exists: the hub's
    OAuth client, templates, utilisation samples, and metrics (the pool's
    counters, and gauges read from it)."""
    app.hub_oauth = HubOAuth(cache_max_age=10, **app.hub_auth_settings())
    app.templates = pages.make_env()
    app.samples = Samples(app.sample_interval)
    app.metrics = AllocatorMetrics(app)


def settings(app) -> dict:
    return {"cookie_secret": cookie_secret(app.data_dir, "gpu-allocator-cookie-secret")}


def routes(prefix: str, service) -> list:
    """The panel's pages, its OAuth callback and static files, and the metrics."""
    prefix = prefix.rstrip("/") + "/"
    admin = prefix + "admin"
    kw = {"service": service}
    out = [
        (prefix, pages.RootHandler, kw),
        (prefix + "oauth_callback", pages.OAuthCallback, kw),
        (admin + "/?", pages.PoolPage, kw),
        (admin + "/queue", pages.QueuePage, kw),
        (admin + "/reservations", pages.ReservationsPage, kw),
        (admin + "/usage", pages.UsagePage, kw),
        (admin + r"/usage\.csv", pages.UsageCSV, kw),
        (admin + "/storage", pages.StoragePage, kw),
        (admin + "/audit", pages.AuditPage, kw),
        (admin + r"/hosts/([^/]+)/(drain|undrain)", pages.DrainAction, kw),
        (admin + r"/allocations/([^/]+)/revoke", pages.RevokeAction, kw),
        (admin + r"/queue/([^/]+)/(cancel|priority)", pages.QueueAction, kw),
        (admin + r"/reservations/new", pages.ReservationAction, kw),
        (admin + r"/reservations/([^/]+)/cancel", pages.ReservationAction, kw),
        (admin + r"/quotas", pages.QuotaAction, kw),
        (admin + r"/static/(.*)", pages.StaticHandler,
         {"path": os.path.join(pages.HERE, "static")}),
    ]
    if getattr(service, "metrics", None) is not None:
        out.append(metrics_route(prefix, service, service.metrics.registry))
    return out
