"""The HTTP client base of gpuhub's services: JSON calls with a JupyterHub token,
every failure turned into :class:`ServiceError` with the service's own message.

Used by the spawner and the agents (GPU allocator), by the vfolder service's
clients, by the lab panel's server extension (gpuhub.lab) and by the ``gpuhub``
command line (gpuhub.cli).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse


class ServiceError(Exception):
    """The service said no (or could not be reached); ``status`` is its HTTP code
    (599/503 when unreachable)."""

    def __init__(self, status: int, message: str, body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body or {}


class ServiceClient:
    """``await client.call("GET", "pool")`` → the decoded JSON answer."""

    #: what the service is called in messages ("the GPU allocator")
    what = "the service"

    def __init__(self, url: str, token: str, timeout: float = 20.0, ca_file: str = "",
                 cert_file: str = "", key_file: str = ""):
        """``ca_file``: the CA that signed an https service's certificate (else the
        system's trusted CAs); ``cert_file`` and ``key_file``: this client's own
        certificate, for a service that asks for one (mutual TLS: the allocator's
        port for agents, GPUAllocator.agent_tls_port). The server's name and chain
        are always verified."""
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.ssl_context = None
        if self.url.startswith("https:") or ca_file or cert_file:
            from .certs import client_context

            self.ssl_context = client_context(ca_file, cert_file, key_file)

    async def fetch(self, method: str, path: str, body: bytes | None = None,
                    headers: dict | None = None, timeout: float | None = None,
                    follow_redirects: bool = True, **streaming) -> HTTPResponse:
        """One request with the token; the answer whatever its status (a pass-through
        such as the lab's tus uploads reads it as is). Only a service that cannot be
        reached is a :class:`ServiceError` (503). ``streaming``: tornado's
        ``body_producer``, ``streaming_callback`` or ``header_callback`` (the
        command line's uploads and downloads, which never hold a file in memory)."""
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", **(headers or {})},
            body=body,
            allow_nonstandard_methods=True,  # a POST without a body
            request_timeout=timeout or self.timeout,
            connect_timeout=min(self.timeout, 5),
            follow_redirects=follow_redirects,
            **({"ssl_options": self.ssl_context} if self.ssl_context else {}),
            **streaming,
        )
        try:
            return await AsyncHTTPClient().fetch(req, raise_error=False)
        except HTTPClientError as e:  # tornado: timeout or connection closed (599)
            raise ServiceError(503, f"{self.what} did not answer: {e}") from None
        except OSError as e:
            raise ServiceError(503, f"{self.what} is not reachable: {e}") from None

    async def call(self, method: str, path: str, body: dict | None = None) -> dict:
        resp = await self.fetch(method, path, None if body is None else json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
        if resp.code >= 400:
            message, data = f"HTTP {resp.code}: {resp.reason}", {}
            try:
                data = json.loads(resp.body) if resp.body else {}
                message = data.get("error", message)
            except (ValueError, AttributeError):
                data = {}
            raise ServiceError(resp.code, message, data if isinstance(data, dict) else {})
        try:
            return json.loads(resp.body) if resp.body else {}
        except ValueError:
            raise ServiceError(502, f"{self.what}'s answer is not JSON") from None


class HubClient(ServiceClient):
    """JupyterHub's own REST API (``…/hub/api/``): the allocator starts and
    removes batch jobs' servers with it, the command line asks who it is."""

    what = "the hub"


async def hub_api_items(api_url: str, token: str, path: str, params: dict | None = None,
                        max_pages: int = 1000):
    """Every item of a paginated JupyterHub REST list (``users``, ``groups``, …),
    read from the hub's API at ``api_url`` with a service's own ``token``
    (HubService.hub_api_url, HubService.api_token); at most ``max_pages`` pages
    of 200. Used by the allocator's reconciliation and its accounting by group."""
    api = api_url.rstrip("/")
    headers = {"Authorization": f"token {token}",
               "Accept": "application/jupyterhub-pagination+json"}
    client = AsyncHTTPClient()
    offset = 0
    for _ in range(max_pages):
        query = urlencode({**(params or {}), "offset": offset, "limit": 200})
        resp = await client.fetch(HTTPRequest(f"{api}/{path}?{query}", headers=headers, request_timeout=30))
        page = json.loads(resp.body)
        items = page["items"] if isinstance(page, dict) else page
        for item in items:
            yield item
        following = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
        if not following:
            return
        offset = following["offset"]
