"""The HTTP client base of gpuhub's services: JSON calls with a JupyterHub token,
every failure turned into :class:`ServiceError` with the service's own message.

Used by the spawner and the agents (GPU allocator) and by the vfolder service's
clients.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


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

    def __init__(self, url: str, token: str, timeout: float = 20.0):
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout

    async def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=self.timeout,
            connect_timeout=min(self.timeout, 5),
        )
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            message, data = str(e), {}
            if e.response is not None and e.response.body:
                try:
                    data = json.loads(e.response.body)
                    message = data.get("error", message)
                except (ValueError, AttributeError):
                    data = {}
            if e.code == 599:  # tornado: timeout or connection closed
                raise ServiceError(503, f"{self.what} did not answer: {message}") from None
            raise ServiceError(e.code, message, data if isinstance(data, dict) else {}) from None
        except OSError as e:
            raise ServiceError(503, f"{self.what} is not reachable: {e}") from None
        try:
            return json.loads(resp.body) if resp.body else {}
        except ValueError:
            raise ServiceError(502, f"{self.what}'s answer is not JSON") from None


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
