"""The agent's side of the allocator's host API (register, heartbeat)."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class AllocatorError(Exception):
    """The allocator answered with an error, or could not be reached (status 599)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def unreachable(self) -> bool:
        return self.status >= 500


class HostClient:
    def __init__(self, url: str, token: str, host: str, timeout: float = 10.0):
        self.url = url.rstrip("/") + f"/hosts/{host}/"
        self.token = token
        self.timeout = timeout

    async def _post(self, what: str, body: dict) -> dict:
        req = HTTPRequest(
            self.url + what,
            method="POST",
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body),
            request_timeout=self.timeout,
            connect_timeout=min(self.timeout, 5.0),
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
            raise AllocatorError(599, f"the allocator is not reachable: {e}") from None
        try:
            return json.loads(resp.body)
        except ValueError:
            raise AllocatorError(502, "the allocator's answer is not JSON") from None

    async def register(self, body: dict) -> dict:
        return await self._post("register", body)

    async def heartbeat(self, body: dict) -> dict:
        return await self._post("heartbeat", body)
