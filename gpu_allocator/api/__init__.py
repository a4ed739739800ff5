"""The allocator's REST API: routes under ``{service_prefix}api/v1/``."""

from __future__ import annotations

from gpuhub.api import HealthHandler

from .allocations import AllocationHandler, AllocationsHandler, PoolHandler
from .estimates import EstimatesHandler
from .hosts import DrainHandler, HeartbeatHandler, RegisterHandler
from .queue import ExtendHandler, QueueHandler, QuotaHandler, QuotaRowHandler, QuotasHandler, UsageHandler
from .reservations import ReservationHandler, ReservationsHandler


def routes(prefix: str, service) -> list:
    api = prefix.rstrip("/") + "/api/v1"
    kw = {"service": service}
    from ..admin import routes as admin_routes

    # the admin panel's API and pages first (more specific paths, e.g. …/revoke)
    return admin_routes(prefix, service) + [
        (api + r"/health", HealthHandler),
        (api + r"/pool", PoolHandler, kw),
        (api + r"/allocations", AllocationsHandler, kw),
        (api + r"/allocations/([^/]+)", AllocationHandler, kw),
        (api + r"/allocations/([^/]+)/extend", ExtendHandler, kw),
        (api + r"/queue", QueueHandler, kw),
        (api + r"/estimates", EstimatesHandler, kw),
        (api + r"/quota", QuotaHandler, kw),
        (api + r"/quotas", QuotasHandler, kw),
        (api + r"/quotas/(user|group)/([^/]+)", QuotaRowHandler, kw),
        (api + r"/usage", UsageHandler, kw),
        (api + r"/reservations", ReservationsHandler, kw),
        (api + r"/reservations/([^/]+)", ReservationHandler, kw),
        (api + r"/hosts/([^/]+)/register", RegisterHandler, kw),
        (api + r"/hosts/([^/]+)/heartbeat", HeartbeatHandler, kw),
        (api + r"/hosts/([^/]+)/(drain|undrain)", DrainHandler, kw),
    ]
