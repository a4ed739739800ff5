"""REST handlers of external allocations (admins: the spawner's service token),
under ``{service_prefix}api/v1/``:

- ``POST external``: mirror what another scheduler (Slurm) granted a job on a
  host it owns — ``{"source": "slurm", "job": "42", "host": "node-a",
  "devices": [0, 1], "units_each": 20, "user": …, "server": …, "cpu": …,
  "mem": …, "max_hours": …}``; 201 with the allocation, 200 with the same one
  when the job is already mirrored (a restarted spawner), 400 when the host is
  not the scheduler's or has no such devices, 409 when those devices are held
  here (a mirror not yet reconciled);
- ``GET external?source=slurm``: the live mirrors (what reconciliation compares
  with ``squeue``).

A mirror is released like any allocation (``DELETE allocations/{id}``), and by
the allocator itself once its job is gone from ``squeue`` (loops.reconcile_slurm).
"""

from __future__ import annotations

from tornado import web

from ..core.external import EXTERNAL_OWNERS, Grant
from ..core.state import StateError
from ..core.validation import RequestError, parse_request, parse_text
from .base import AdminAPIHandler


def parse_grant(data: dict, units_per_gpu: int) -> Grant:
    """The scheduler's grant in a POST external body (RequestError: a 400)."""
    source = data.get("source")
    if source not in EXTERNAL_OWNERS:
        raise RequestError(f"source must be one of {', '.join(EXTERNAL_OWNERS)}")
    job = data.get("job")
    if not isinstance(job, str):
        raise RequestError("job must be the scheduler's job id as a string")
    devices = data.get("devices")
    if not isinstance(devices, list) or not devices or len(devices) > 64 or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 4096 for i in devices):
        raise RequestError("devices must be a list of device indexes (whole numbers)")
    units = data.get("units_each", units_per_gpu)
    if not isinstance(units, int) or isinstance(units, bool):
        raise RequestError(f"units_each must be a whole number of 1/{units_per_gpu} GPUs")
    return Grant(source, parse_text(job, "job"), parse_text(data.get("host", ""), "host"),
                 tuple(devices), units)


class ExternalHandler(AdminAPIHandler):
    def get(self):
        source = self.get_argument("source", None)
        self.send({"allocations": [self.allocator.live_json(a) for a in self.pool.live()
                                   if a.source and source in (None, a.source)]})

    async def post(self):
        data = self.body()
        app = self.allocator
        per = self.pool.units_per_gpu
        try:
            grant = parse_grant(data, per)
            user = data.get("user")
            if not isinstance(user, str) or not user:
                raise RequestError("user must be the name of the job's hub user")
            # cpu, mem and max_hours as a request's (the same limits and words)
            body = {k: data[k] for k in ("cpu", "mem", "max_hours") if k in data}
            req = parse_request({**body, "gpus": 0, "dry_run": True},
                                user=user, units_per_gpu=per, max_hours=app.max_hours)
            server = parse_text(data.get("server", ""), "server")
            allocation, created = await self.pool.record_external(
                grant, user, cpu=req.cpu, mem_mb=req.mem_mb, max_hours=req.max_hours, server=server,
                hub_server=server if "server" in data else None,
            )
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        except StateError as e:
            raise web.HTTPError(409, f"the devices of {grant.source} job {grant.job} are held here: {e}") from None
        if created:
            app.log.info("mirrored %s job %s of %s on %s as %s: %s", grant.source, grant.job, user, grant.host,
                         allocation.id, [(s.device_uuid, s.units) for s in allocation.shares])
        self.send(app.live_json(allocation), status=201 if created else 200)


default_handlers = [
    (r"/external", ExternalHandler),
]
