"""gpuhub.api.CachedHubAuth: a token the hub vouched for within cache_max_age is
answered from HubAuth's own cache on the calling thread; anything else takes
HubAuth's usual path (which asks the hub)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from gpuhub.api import CachedHubAuth

MODEL = {"kind": "service", "name": "gpuhub-spawner", "scopes": ["custom:gpu-allocator:admin"]}


class Handler:
    def __init__(self, token: str | None):
        headers = {"Authorization": f"token {token}"} if token else {}
        self.request = SimpleNamespace(headers=headers)

    def get_cookie(self, name, default=None):
        return default

    def get_argument(self, name, default=None):
        return default


@pytest.fixture
def auth(monkeypatch):
    a = CachedHubAuth(api_token="service-token", api_url="http://127.0.0.1:9/hub/api/", cache_max_age=10)
    asked = []

    def hub(async_f, *args, **kwargs):  # HubAuth's usual path: a round trip to the hub
        asked.append(args)
        return None

    monkeypatch.setattr(a, "_synchronize", hub)
    a.asked = asked
    return a


def cache(auth, token: str, model) -> None:
    auth.cache["token::" + hashlib.sha256(token.encode()).hexdigest()] = model


def test_a_cached_token_is_answered_without_asking_the_hub(auth):
    cache(auth, "good", MODEL)
    h = Handler("good")
    assert auth.get_user(h) is MODEL and h._token_authenticated
    assert auth.asked == []


def test_unknown_refused_or_expired_tokens_ask_the_hub(auth, monkeypatch):
    assert auth.get_user(Handler("unknown")) is None
    cache(auth, "refused", None)
    assert auth.get_user(Handler("refused")) is None
    assert auth.get_user(Handler(None)) is None
    assert len(auth.asked) == 3
    cache(auth, "old", MODEL)
    import jupyterhub.services.auth as hub_auth

    later = hub_auth.time.monotonic() + 11  # past cache_max_age
    monkeypatch.setattr(hub_auth.time, "monotonic", lambda: later)
    assert auth.get_user(Handler("old")) is None and len(auth.asked) == 4
