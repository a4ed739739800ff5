"""Prometheus metrics (``{prefix}metrics``, scope ``read:metrics``): the
collector (:mod:`vfolder_manager.metrics`) queries the database, so a scrape
runs on the store's thread, not on the event loop."""

from __future__ import annotations

from prometheus_client import generate_latest

from gpuhub.metrics import MetricsHandler


class VFolderMetricsHandler(MetricsHandler):
    async def exposition(self) -> bytes:
        return await self.service.manager.store.call(generate_latest, self.registry)
