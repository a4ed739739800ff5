"""``GET utilisation?window=24h|7d&buckets=`` (admins), under
``{service_prefix}api/v1/``: GPUs allocated and measured, per model, from the
utilisation samples (admin.samples)."""

from __future__ import annotations

from tornado import web

from ..admin.samples import WINDOWS
from .base import AdminAPIHandler


class UtilisationHandler(AdminAPIHandler):
    def get(self):
        window = self.get_argument("window", "24h")
        if window not in WINDOWS:
            raise web.HTTPError(400, f"window is one of {sorted(WINDOWS)}")
        buckets = self.int_arg("buckets", 96 if window == "24h" else 168, 1, 2000)
        self.send(self.service.samples.series(window, buckets))


default_handlers = [
    (r"/utilisation", UtilisationHandler),
]
