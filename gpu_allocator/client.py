"""Async client of the allocator's REST API: the spawner in the hub and the
agents on the GPU hosts speak to the allocator through it."""

from __future__ import annotations

import json
import os

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


def default_api_url() -> str:
    """$GPUHUB_ALLOCATOR_URL, else the allocator of a hub on this machine."""
    return os.environ.get(
        "GPUHUB_ALLOCATOR_URL", "http://127.0.0.1:8051/services/gpu-allocator/api/v1/"
    )


class AllocatorError(Exception):
    """The allocator said no (or could not be reached); ``status`` is its HTTP code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class AllocatorClient:
    def __init__(self, url: str, token: str, timeout: float = 20.0):
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
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
            message = str(e)
            if e.response is not None and e.response.body:
                try:
                    message = json.loads(e.response.body).get("error", message)
                except (ValueError, AttributeError):
                    pass
            raise AllocatorError(e.code, message) from None
        except OSError as e:
            raise AllocatorError(503, f"the GPU allocator is not reachable: {e}") from None
        try:
            return json.loads(resp.body)
        except ValueError:
            raise AllocatorError(502, "the allocator's answer is not JSON") from None

    async def pool(self) -> dict:
        return await self._call("GET", "pool")

    async def allocate(self, **request) -> dict:
        return await self._call("POST", "allocations", request)

    async def get(self, allocation_id: str) -> dict:
        return await self._call("GET", f"allocations/{allocation_id}")

    async def release(self, allocation_id: str) -> dict | None:
        """Idempotent: an allocation that is already gone is not an error."""
        try:
            return await self._call("DELETE", f"allocations/{allocation_id}")
        except AllocatorError as e:
            if e.status == 404:
                return None
            raise

    async def register_host(self, host: str, body: dict) -> dict:
        return await self._call("POST", f"hosts/{host}/register", body)

    async def heartbeat(self, host: str, body: dict) -> dict:
        return await self._call("POST", f"hosts/{host}/heartbeat", body)
