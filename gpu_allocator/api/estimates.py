"""``POST estimates``: when each of several candidate requests would start — the
spawn form's "starts now" / "expected start 14:20 (at the latest 15:05)" beside
each GPU choice, in one call. Computed by the queue's own estimate
(LivePool.start_estimate: pool.estimates.Estimator); nothing is held or
changed. A user asks for themself; admins and the spawner (admin scope) for
anyone.

Body: ``{"user"?, "groups"? (admins only), "requests": [{"gpus", "cpu"?, "mem"?,
"max_hours"?, "gpu_model"?, "pool"?}, …]}`` (at most MAX_REQUESTS). Answer: ``{"now",
"user", "estimates": [{"gpus", "gpu_model", "pool", "max_hours", "starts_now", "eta",
"eta_latest", "estimated", "quota": {"verdict", "reason"}} or {"error": "…"} per
request, in order], "quota": GET quota's body, "pools": [{"name", "description"}:
the host pools open to the user]}``. Every estimate counts only hosts in pools
open to the user (a ``pool`` not open to them: that request's ``error``).
Requests that differ only in max_hours share one simulation, and a shape's estimate (it does not depend on
who asks) serves every caller for GPUAllocator.estimate_cache_seconds; past
GPUAllocator.estimate_budget seconds the rest are answered with ``"estimated":
false`` (requests for any model first). A candidate that this pool can never hold
gets its own ``error``; a malformed body is a 400.
"""

from __future__ import annotations

import time

from tornado import web

from gpuhub.numbers import BodyError, loads_json

from ..core.model import format_gpus
from ..core.pools import PoolError
from ..core.validation import RequestError, check_capacity, parse_groups, parse_request, parse_user
from ..shapes import iso, quota_json
from .base import APIHandler

MAX_REQUESTS = 200
CANDIDATE_KEYS = frozenset({"gpus", "cpu", "mem", "max_hours", "gpu_model", "pool"})


class EstimatesHandler(APIHandler):
    """POST: a token's estimates (the spawner, users, admins). GET: the spawn
    form's script in the user's browser (the hub's OAuth cookie, as the admin
    panel signs in), for the user themself: ``?requests=[…]`` (JSON), so that
    the form's estimates follow every field (CPU and memory too)."""

    def initialize(self, service):
        super().initialize(service)
        if self.request.method == "GET":
            self.hub_auth = service.hub_oauth

    def prepare(self):
        if self.request.method == "GET" and self.current_user is None:
            # a browser not signed in to the allocator yet: the hub's OAuth
            # (no confirmation: the service is the hub's own), then back here
            self.redirect(self.get_login_url())
            return
        super().prepare()

    def get(self):
        try:
            candidates = loads_json(self.get_argument("requests", "") or "null")
            if not isinstance(candidates, list) or not 0 < len(candidates) <= MAX_REQUESTS:
                raise RequestError(f"requests must be a list of 1 to {MAX_REQUESTS} requests")
        except (BodyError, RequestError) as e:
            raise web.HTTPError(400, f"requests: {e}") from None
        self.send(estimates_answer(self.allocator, self.user_name, None, candidates))

    def post(self):
        data = self.body()
        app = self.allocator
        try:
            unknown = sorted(set(data) - {"user", "groups", "requests"})
            if unknown:
                raise RequestError(f"unknown field(s) {', '.join(unknown)}; allowed: user, groups, requests")
            user = parse_user(data.get("user", self.user_name))
            groups = parse_groups(data.get("groups"))
            candidates = data.get("requests")
            if not isinstance(candidates, list) or not 0 < len(candidates) <= MAX_REQUESTS:
                raise RequestError(f"requests must be a list of 1 to {MAX_REQUESTS} requests")
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        if user != self.user_name and not self.is_admin:
            raise web.HTTPError(403, "you can only ask for your own estimates")
        if groups is not None and not self.is_admin:
            groups = None  # a user's own word on their groups is not taken
        self.send(estimates_answer(app, user, groups, candidates))


def estimates_answer(app, user: str, groups, candidates: list) -> dict:
    """POST estimates' answer for ``candidates`` (request bodies) of ``user``."""
    state = app.pool.state
    now = time.time()
    per = state.units_per_gpu
    # a shape's estimate does not depend on who asks: recent ones serve every form
    cache = app.estimate_cache
    memo: dict = {shape: v for shape, (at, v) in cache.items() if now - at < app.estimate_cache_seconds}
    fresh = set(memo)
    deadline = time.perf_counter() + app.estimate_budget
    parsed = []
    for i, c in enumerate(candidates):
        try:
            if not isinstance(c, dict) or set(c) - CANDIDATE_KEYS:
                raise RequestError(f"requests[{i}] must be an object with {', '.join(sorted(CANDIDATE_KEYS))}")
            req = parse_request(c, user=user, units_per_gpu=per, max_hours=app.max_hours)
            check_capacity(state, req)
        except RequestError as e:
            parsed.append(e)
            continue
        parsed.append(req)
    # the form shows "any model" first: those are simulated first
    order = sorted(range(len(parsed)), key=lambda i: (not isinstance(parsed[i], RequestError)
                                                      and bool(parsed[i].models), i))
    answers: dict[int, dict] = {}
    for i in order:
        req = parsed[i]
        if isinstance(req, RequestError):
            answers[i] = {"error": str(req)}
            continue
        try:
            est = app.pool.start_estimate(req, groups, now, memo, deadline)
        except PoolError as e:  # a pool not open to the user
            answers[i] = {"error": str(e)}
            continue
        answers[i] = {
            "gpus": format_gpus(req.units, per), "gpu_model": sorted(req.models), "pool": req.pool,
            "max_hours": req.max_hours, "starts_now": est["queue"]["starts_now"],
            "eta": est["queue"]["eta"], "eta_latest": est["queue"]["eta_latest"],
            "estimated": est["queue"]["estimated"], "quota": est["quota"], "lands": est["lands"],
        }
    if len(cache) > 512:
        cache.clear()
    # (whether a request starts now depends on who asks and when: never shared)
    cache.update({shape: (now, v) for shape, v in memo.items()
                  if shape is not None and shape[0] != "now" and v is not None and shape not in fresh})
    out = [answers[i] for i in range(len(parsed))]
    return {"now": iso(now), "user": user, "estimates": out,
            "quota": quota_json(app.pool, user, groups, now),
            # the host pools open to the user (the spawn form offers a choice
            # when there are several)
            "pools": [{"name": p.name, "description": p.description}
                      for p in app.pool.pools.values() if p.name in app.pool.open_pools(user, groups)]}


default_handlers = [
    (r"/estimates", EstimatesHandler),
]
