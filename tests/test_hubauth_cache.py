"""gpuhub.api.CachedHubAuth: a token the hub vouched for within cache_max_age is
answered from HubAuth's own cache on the calling thread; anything else takes
HubAuth's usual path (which asks the hub on a helper thread).

The cache is filled the way the services fill it, by HubAuth.user_for_token
asking a hub: here a small fake hub (GET /hub/api/user) in a thread of its own."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from jupyterhub.services import auth as hub_auth

from gpuhub.api import CachedHubAuth

MODEL = {"kind": "service", "name": "gpuhub-spawner", "scopes": ["custom:gpu-allocator:admin"]}
#: the tokens the fake hub vouches for (any other: 403, as the hub answers)
GOOD = {"good", "old"}
MAX_AGE = 10  # seconds


class Handler:
    """What HubAuth reads of a tornado request handler: a token header, no cookie."""

    def __init__(self, token: str | None):
        headers = {"Authorization": f"token {token}"} if token else {}
        self.request = SimpleNamespace(headers=headers)

    def get_cookie(self, name, default=None):
        return default

    def get_argument(self, name, default=None):
        return default


@pytest.fixture
def fake_hub():
    """A fake hub answering GET /hub/api/user; ``fake_hub.asked``: the tokens it was asked about."""
    asked: list[str] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            token = self.headers.get("Authorization", "").removeprefix("token ")
            asked.append(token)
            known = self.path.rstrip("/") == "/hub/api/user" and token in GOOD
            body = json.dumps(MODEL if known else {"status": 403, "message": "no such token"}).encode()
            self.send_response(200 if known else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/hub/api/", asked=asked)
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth(fake_hub, monkeypatch):
    """CachedHubAuth of a service talking to the fake hub; ``auth.hops``: how many
    times HubAuth's usual path ran its coroutine on the helper thread."""
    a = CachedHubAuth(api_token="service-token", api_url=fake_hub.url, cache_max_age=MAX_AGE)
    a.hops = 0
    synchronize = a._synchronize

    def counted(*args, **kwargs):
        a.hops += 1
        return synchronize(*args, **kwargs)

    monkeypatch.setattr(a, "_synchronize", counted)
    return a


class Later:
    """HubAuth's clock (the ``time`` module of jupyterhub.services.auth), ``seconds`` on."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def monotonic(self) -> float:
        return time.monotonic() + self.seconds

    def __getattr__(self, name):
        return getattr(time, name)


def test_a_token_the_hub_vouched_for_is_answered_from_the_cache_on_the_calling_thread(auth, fake_hub):
    assert auth.user_for_token("good") == MODEL  # the hub is asked, the answer cached
    assert fake_hub.asked == ["good"] and auth.hops == 1
    for _ in range(3):
        h = Handler("good")
        assert auth.get_user(h) == MODEL and h._token_authenticated
    assert fake_hub.asked == ["good"] and auth.hops == 1  # neither the hub nor the helper thread


def test_unknown_refused_or_missing_tokens_take_hubauths_path(auth, fake_hub):
    assert auth.get_user(Handler("unknown")) is None
    assert fake_hub.asked == ["unknown"] and auth.hops == 1
    assert auth.user_for_token("refused") is None  # the hub's refusal is cached too ...
    assert fake_hub.asked == ["unknown", "refused"] and auth.hops == 2
    assert auth.get_user(Handler("refused")) is None  # ... and answered by HubAuth's own path
    assert fake_hub.asked == ["unknown", "refused"] and auth.hops == 3
    assert auth.get_user(Handler(None)) is None
    assert fake_hub.asked == ["unknown", "refused"] and auth.hops == 4


def test_an_expired_entry_asks_the_hub_again(auth, fake_hub, monkeypatch):
    assert auth.user_for_token("old") == MODEL
    h = Handler("old")
    assert auth.get_user(h) == MODEL and (fake_hub.asked, auth.hops) == (["old"], 1)
    monkeypatch.setattr(hub_auth, "time", Later(MAX_AGE + 1))  # past cache_max_age
    assert auth.get_user(Handler("old")) == MODEL
    assert fake_hub.asked == ["old", "old"] and auth.hops == 2  # the usual path asked the hub
    assert auth.get_user(Handler("old")) == MODEL  # and cached its answer again
    assert fake_hub.asked == ["old", "old"] and auth.hops == 2
