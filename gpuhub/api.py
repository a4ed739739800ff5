"""The request handlers gpuhub's services share: JSON in and out, errors as
``{"error": "…"}`` with a 4xx status, JupyterHub tokens checked by HubAuth.

Used by the GPU allocator's REST API and the vfolder service's REST API.
"""

from __future__ import annotations

import hashlib
import json

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from tornado import web

from .numbers import BodyError, parse_object


class CachedHubAuth(HubAuth):
    """HubAuth whose cached answers cost no thread hop.

    HubAuthenticated asks ``get_user(handler)`` synchronously; HubAuth answers that
    by running its coroutine on a helper thread and blocking the event loop until
    it is done — even when the answer is in its own cache (``cache_max_age``),
    which is nearly every request. Here a token the hub vouched for within
    ``cache_max_age`` is answered from that same cache on the calling thread; the
    cache (and so every invalidation: its entries' age) is HubAuth's own, keyed as
    ``user_for_token`` keys it. Anything else (no token, a cookie, a refused or
    unknown token, an expired entry) takes HubAuth's usual path, which asks the
    hub and fills the cache. Every request's token is still checked against that
    cache."""

    def get_user(self, handler, *, sync=True):
        if sync and not hasattr(handler, "_cached_hub_user"):
            token = self.get_token(handler, in_cookie=False)
            if token:
                key = "token:{}:{}".format(
                    self.get_session_id(handler),
                    hashlib.sha256(token.encode("utf8", "replace")).hexdigest(),
                )
                model = self.cache.get(key)  # None: not cached, expired, or refused
                if model:
                    handler._cached_hub_user = model
                    handler._token_authenticated = True
                    return model
        return super().get_user(handler, sync=sync)


class JSONErrors:
    """The one error shape of gpuhub's HTTP APIs (both services and the lab
    panel's server extension): ``{"error": "…"}`` with the status code. The
    message of an HTTPError is shown to the caller; an unexpected failure says
    only where its details are."""

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if status_code >= 500 and not getattr(exc, "log_message", None):
            message = f"internal error ({self._reason}); the service log has the details"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


class JSONHandler(JSONErrors, web.RequestHandler):
    """JSON in and out, errors as ``{"error": "…"}``."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")

    def send(self, model, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(model))


class APIHandler(HubAuthenticated, JSONHandler):
    """A token-authenticated JSON API handler of a JupyterHub service.

    ``service`` is the service application; it provides ``hub_auth`` and
    ``service_name`` (used in the 403 message)."""

    #: scopes that make the caller an admin of this service
    admin_scopes: frozenset[str] = frozenset({"admin:users"})

    def initialize(self, service):
        self.service = service
        self.hub_auth = service.hub_auth

    def check_xsrf_cookie(self):
        """Token-authenticated API: no cookies, no XSRF."""

    def prepare(self):
        if self.current_user is None:
            if "Authorization" not in self.request.headers:
                raise web.HTTPError(401, "a JupyterHub token is required (Authorization: token …)")
            name = self.service.service_name
            raise web.HTTPError(
                403, f"this token may not use the {name} service (needs access:services!service={name})"
            )

    @property
    def scopes(self) -> set[str]:
        return set(self.current_user.get("scopes") or ())

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def is_admin(self) -> bool:
        return bool(self.admin_scopes & self.scopes)

    def body(self) -> dict:
        """The request body as a JSON object, numbers exact and bounded
        (see gpuhub.numbers); anything else is a 400."""
        try:
            return parse_object(self.request.body)
        except BodyError as e:
            raise web.HTTPError(400, str(e)) from None


class HealthHandler(JSONHandler):
    """Unauthenticated liveness check (``GET …/health``)."""

    def get(self):
        self.finish('{"status": "ok"}')


class JSONNotFound(JSONHandler):
    def prepare(self):
        raise web.HTTPError(404, "not found")
