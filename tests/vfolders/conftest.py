"""The vfolder service in-process (a thread with its own event loop) with a fake
HubAuth: tokens are user names, so tests act as any user without a hub."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import requests
from tornado.httpserver import HTTPServer

from vfolder_manager.service import VFolderService

API = "/services/vfolders/api/v1"
ACCESS = "access:services!service=vfolders"

#: token → user model (name, groups, scopes)
PEOPLE = {
    "alice": {"groups": ["ml"]},
    "bob": {"groups": ["ml"]},
    "carol": {"groups": ["bio"]},
    "dave": {"groups": []},  # the stranger
    "erin": {"groups": ["ops"]},
    "admin": {"groups": [], "admin": True},
    "spawner": {"groups": [], "admin": True, "kind": "service"},
}


class FakeHubAuth:
    access_scopes = {ACCESS}

    def get_user(self, handler, sync=True):
        header = handler.request.headers.get("Authorization", "")
        token = header.removeprefix("token ").strip()
        if token == "noscope":
            return {"name": "noscope", "kind": "user", "groups": [], "scopes": ["self"]}
        if token not in PEOPLE:
            return None
        p = PEOPLE[token]
        scopes = [ACCESS, "self"]
        if p.get("admin"):
            scopes.append("custom:vfolders:admin" if p.get("kind") == "service" else "admin:users")
        return {"name": token, "kind": p.get("kind", "user"), "groups": p["groups"], "scopes": scopes}

    def check_scopes(self, required, user):
        from jupyterhub.services.auth import check_scopes

        return check_scopes(required, set(user["scopes"]))

    def _persist_url_token_if_set(self, handler):
        pass


class Running:
    def __init__(self, service: VFolderService, port: int):
        self.service, self.port = service, port
        self.url = f"http://127.0.0.1:{port}{API}"

    def call(self, who: str | None, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if who:
            headers["Authorization"] = f"token {who}"
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def run(self, coro_fn, *args):
        """Run a coroutine function of the service on its loop and wait."""
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop)
        return fut.result(120)

    def create(self, who: str, name: str, **body) -> dict:
        r = self.call(who, "POST", "/vfolders", json={"name": name, **body})
        assert r.status_code == 201, r.text
        return r.json()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def svc_config() -> dict:
    """VFolderService settings over the svc fixture's; a test module overrides this fixture."""
    return {}


@pytest.fixture
def svc(tmp_path, svc_config):
    service = VFolderService(**{
        "db_url": f"sqlite:///{tmp_path / 'vfolders.sqlite'}",
        "storage_hosts": {
            "local": {"path": str(tmp_path / "hosts" / "local"), "default": True},
            "nas2": {"path": str(tmp_path / "hosts" / "nas2"), "groups": ["ml"]},
        },
        "service_prefix": "/services/vfolders/",
        "usage_scan_interval": 3600, "stats_interval": 0.2, "cleanup_interval": 3600,
        "upload_expiry": 3600,
        **svc_config,
    })
    service.setup()
    service.hub_auth = FakeHubAuth()
    port = free_port()
    ready = threading.Event()
    holder = {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        holder["loop"] = loop

        async def start():
            server = HTTPServer(service.make_app(), max_body_size=1 << 40)
            server.listen(port, "127.0.0.1")
            holder["server"] = server
            service.start_background()

        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        service.stop_background()
        holder["server"].stop()
        loop.run_until_complete(asyncio.gather(*service._tasks, return_exceptions=True))
        loop.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(30)
    running = Running(service, port)
    running.loop = holder["loop"]
    running.tmp = tmp_path
    yield running
    holder["loop"].call_soon_threadsafe(holder["loop"].stop)
    t.join(30)
    service.manager.sessions.kw["bind"].dispose()
