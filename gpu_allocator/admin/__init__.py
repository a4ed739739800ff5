"""The hub admin panel of the GPU pool, served by the allocator (a managed
service with ``display: True``: it is in the hub's *Services* menu), and its
REST API, metrics and utilisation samples.

- pages (``{prefix}admin/…``, see admin.pages): the pool map, the queue (with
  priority, cancel and quotas; see admin.queue_actions), usage and accounting, storage, the
  audit log; HubOAuth sign-in, admins only;
- API (``{prefix}api/v1/…``, see admin.api): revoke, audit, usage (JSON, CSV),
  utilisation, a paged pool map;
- ``{prefix}metrics``: Prometheus (gpu_allocator.metrics), scope read:metrics.
"""

from __future__ import annotations

import os
import secrets

from jupyterhub.services.auth import HubOAuth

from gpuhub.metrics import metrics_route

from . import api, pages, queue_actions
from .samples import Samples, sample_forever  # noqa: F401 (app.py starts it)


def attach(app) -> None:
    """Give the allocator what the panel needs, once its pool exists: the hub's
    OAuth client, templates, utilisation samples, and metrics (which wrap the
    pool's methods to count)."""
    from ..metrics import AllocatorMetrics

    app.hub_oauth = HubOAuth(cache_max_age=10, **app.hub_auth_settings())
    app.templates = pages.make_env()
    app.samples = Samples(app.sample_interval)
    app.metrics = AllocatorMetrics(app)
    app.metrics.instrument(app.pool)


def cookie_secret(app) -> bytes:
    """Kept in the data dir (mode 600), so sign-ins survive a restart."""
    path = os.path.join(app.data_dir, "gpu-allocator-cookie-secret")
    try:
        with open(path, "rb") as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    os.makedirs(app.data_dir, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def settings(app) -> dict:
    return {"cookie_secret": cookie_secret(app)}


def routes(prefix: str, service) -> list:
    prefix = prefix.rstrip("/") + "/"
    v1 = prefix + "api/v1"
    admin = prefix + "admin"
    kw = {"service": service}
    out = [
        (v1 + r"/allocations/([^/]+)/revoke", api.RevokeHandler, kw),
        (v1 + r"/audit", api.AuditHandler, kw),
        (v1 + r"/queue/([^/]+)", queue_actions.QueueRequestHandler, kw),
        (v1 + r"/queue/([^/]+)/cancel", queue_actions.QueueCancelHandler, kw),
        (v1 + r"/usage/summary", api.UsageHandler, kw),
        (v1 + r"/utilisation", api.UtilisationHandler, kw),
        (v1 + r"/pool/hosts", api.PoolHostsHandler, kw),
        (v1 + r"/pool/summary", api.PoolSummaryHandler, kw),
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
