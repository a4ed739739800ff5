"""REST handlers of the vfolder service, under ``{prefix}api/v1/``: one module
per resource, each with its ``default_handlers`` (URL patterns under that
prefix), as JupyterHub's ``apihandlers`` are laid out.

========================  ==========================================================
module                    URL paths (under ``api/v1``)
========================  ==========================================================
:mod:`.vfolders`          ``vfolders``, ``vfolders/{id}``, ``…/{restore|purge}``, ``…/clone``
:mod:`.shares`            ``vfolders/{id}/shares``, ``invitations``, ``invitations/{id}/{accept|reject}``
:mod:`.quotas`            ``quotas/{user|group|vfolder}/{name}``, ``vfolders/{id}/usage``
:mod:`.uploads`           ``vfolders/{id}/uploads``, ``vfolders/{id}/uploads/{upload}`` (tus 1.0)
:mod:`.files`             ``vfolders/{id}/files/{path}`` (downloads)
:mod:`.hosts`             ``storage/hosts``
:mod:`.mounts`            ``mounts`` (the spawner's)
:mod:`.metrics`           ``{prefix}metrics`` (Prometheus; outside ``api/v1``)
========================  ==========================================================

Shared handler code lives in :mod:`.base`; every database call goes through
:meth:`.base.Base.transact`, off the event loop.
"""

from __future__ import annotations

from gpuhub.api import HealthHandler
from gpuhub.metrics import metrics_route

from ..metrics import make_registry
from . import files, hosts, mounts, quotas, shares, uploads, vfolders
from .metrics import VFolderMetricsHandler

RESOURCES = (vfolders, shares, quotas, uploads, files, hosts, mounts)


def routes(service) -> list:
    prefix = service.service_prefix.rstrip("/") + "/api/v1"
    kw = {"service": service}
    return [(prefix + r"/health", HealthHandler)] + [
        (prefix + pattern, handler, kw) for module in RESOURCES for pattern, handler in module.default_handlers
    ] + [metrics_route(service.service_prefix, service, make_registry(service), VFolderMetricsHandler)]
