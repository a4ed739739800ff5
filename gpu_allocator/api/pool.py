"""REST handlers of the pool, under ``{service_prefix}api/v1/``:

- ``GET pool``: every host with its devices, free capacity and host pools, and
  the pools (who may use them for admins; for a user, which are open to them);
  other users' shares, agents' process samples, Docker endpoints and unknown
  allocations only for admins;
- ``GET pool/hosts?page=&per_page=&model=&host=&user=&state=`` (admins): a page
  of the pool map (poolview.host_page);
- ``GET pool/summary`` (admins): per-model totals with fragmentation, hosts by
  state.
"""

from __future__ import annotations

from .. import poolview
from ..shapes import pool_json
from .base import AdminAPIHandler, APIHandler


class PoolHandler(APIHandler):
    def get(self):
        pool = self.pool
        viewer = None if self.is_admin else self.user_name
        body = pool_json(pool.state, pool.info, viewer=viewer, pools=pool.pools,
                         open_to=None if viewer is None else pool.open_pools(viewer))
        body["max_hours"] = self.allocator.max_hours
        self.send(body)


class PoolHostsHandler(AdminAPIHandler):
    def get(self):
        f = poolview.Filters(
            model=self.get_argument("model", ""), host=self.get_argument("host", ""),
            user=self.get_argument("user", ""), state=self.get_argument("state", ""),
            page=self.int_arg("page", 1, 1, 10**6),
            per_page=self.int_arg("per_page", poolview.PER_PAGE, 1, poolview.MAX_PER_PAGE),
        )
        p = poolview.host_page(self.pool.state, self.pool.info, f)
        self.send({"hosts": p.hosts, "matched": p.matched, "page": p.page, "pages": p.pages,
                   "per_page": p.per_page})


class PoolSummaryHandler(AdminAPIHandler):
    def get(self):
        state = self.pool.state
        self.send({
            "units_per_gpu": state.units_per_gpu,
            "models": [t.json(state.units_per_gpu) for t in poolview.model_totals(state)],
            "hosts": poolview.host_counts(state),
            "allocations": len(state.allocations),
        })


default_handlers = [
    (r"/pool", PoolHandler),
    (r"/pool/hosts", PoolHostsHandler),
    (r"/pool/summary", PoolSummaryHandler),
]
