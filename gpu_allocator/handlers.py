"""REST handlers of the allocator, under ``{service_prefix}api/v1/``.

Authentication is JupyterHub's: a hub token in the Authorization header, checked
by HubAuth. Users see and change only their own allocations; JupyterHub admins
(``admin:users``) and holders of the ``custom:gpu-allocator:admin`` scope (the
spawner's service token) act for anyone.
"""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubAuthenticated
from tornado import web

from .model import Request
from .placement import NoFit
from .serialize import allocation_json, pool_json
from .validation import (
    RequestError,
    check_capacity,
    check_keys,
    parse_cpu,
    parse_gpus,
    parse_hours,
    parse_mem,
)

ADMIN_SCOPES = frozenset({"admin:users", "custom:gpu-allocator:admin"})
ALLOCATION_KEYS = frozenset({"user", "server", "gpus", "cpu", "mem", "max_hours"})


class APIHandler(HubAuthenticated, web.RequestHandler):
    """JSON in, JSON out, errors as ``{"error": "..."}``."""

    def initialize(self, allocator):
        self.allocator = allocator
        self.hub_auth = allocator.hub_auth

    def check_xsrf_cookie(self):
        """Token-authenticated API: no cookies, no XSRF."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.finish(json.dumps({"error": message}))

    def prepare(self):
        if self.current_user is None:
            if "Authorization" not in self.request.headers:
                raise web.HTTPError(401, "a JupyterHub token is required (Authorization: token …)")
            raise web.HTTPError(
                403, "this token may not use the gpu-allocator service "
                "(needs access:services!service=gpu-allocator)"
            )

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(ADMIN_SCOPES & set(self.current_user.get("scopes") or ()))

    def body(self) -> dict:
        try:
            data = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as e:
            raise web.HTTPError(400, f"request body is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return data

    def send(self, model, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(model))

    async def own_allocation(self, allocation_id: str):
        """The allocation, if it exists and this user may see it (404 otherwise:
        other users' allocation ids are not even confirmed to exist)."""
        a = await self.allocator.run(self.allocator.store.get, allocation_id)
        if a is None or (a.user != self.user_name and not self.is_admin):
            raise web.HTTPError(404, f"no allocation {allocation_id}")
        return a


class HealthHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish('{"status": "ok"}')


class PoolHandler(APIHandler):
    async def get(self):
        pool, status = await self.allocator.run(self.allocator.store.pool_status)
        self.send(pool_json(pool, viewer=None if self.is_admin else self.user_name, status=status))


class AllocationsHandler(APIHandler):
    async def get(self):
        user = self.get_argument("user", None)
        if not self.is_admin:
            if user not in (None, self.user_name):
                raise web.HTTPError(403, "you can only list your own allocations")
            user = self.user_name
        store = self.allocator.store
        allocations = await self.allocator.run(store.list, user)
        pool = await self.allocator.run(store.pool)
        self.send({"allocations": [allocation_json(a, pool) for a in allocations]})

    async def post(self):
        data = self.body()
        per_gpu = self.allocator.units_per_gpu
        try:
            check_keys(data, ALLOCATION_KEYS)
            user = data.get("user", self.user_name)
            if not isinstance(user, str) or not user:
                raise RequestError("user must be a user name")
            req = Request(
                user=user,
                units=parse_gpus(data.get("gpus"), per_gpu),
                cpu=parse_cpu(data.get("cpu", 1)),
                mem_mb=parse_mem(data.get("mem", "1G")),
                max_hours=parse_hours(data.get("max_hours", 8), self.allocator.max_hours),
            )
            server = str(data.get("server", ""))
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        if user != self.user_name and not self.is_admin:
            raise web.HTTPError(403, "you can only allocate for yourself")
        store = self.allocator.store
        pool = await self.allocator.run(store.pool)
        try:
            check_capacity(pool, req.units, req.cpu, req.mem_mb)
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            allocation = await self.allocator.run(store.grant, req, server)
        except NoFit as e:
            raise web.HTTPError(409, str(e)) from None
        self.allocator.log.info(
            "granted %s to %s on %s: %s", allocation.id, user, allocation.host,
            [(s.device_uuid, s.units) for s in allocation.shares],
        )
        pool = await self.allocator.run(store.pool)
        self.send(allocation_json(allocation, pool), status=201)


class AllocationHandler(APIHandler):
    async def get(self, allocation_id):
        a = await self.own_allocation(allocation_id)
        pool = await self.allocator.run(self.allocator.store.pool)
        self.send(allocation_json(a, pool))

    async def delete(self, allocation_id):
        await self.own_allocation(allocation_id)
        store = self.allocator.store
        a = await self.allocator.run(store.release, allocation_id)
        self.allocator.log.info("released %s of %s", a.id, a.user)
        pool = await self.allocator.run(store.pool)
        self.send(allocation_json(a, pool))


def handlers(prefix: str, allocator) -> list:
    from .agent_api import host_handlers  # it builds on APIHandler

    api = prefix.rstrip("/") + "/api/v1"
    kw = {"allocator": allocator}
    return [
        (api + r"/health", HealthHandler),
        (api + r"/pool", PoolHandler, kw),
        (api + r"/allocations", AllocationsHandler, kw),
        (api + r"/allocations/([^/]+)", AllocationHandler, kw),
        *host_handlers(api, kw),
    ]
