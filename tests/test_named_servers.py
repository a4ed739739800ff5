"""Named servers (#20 item 2) through the real hub: each has its own share and
time limit, its own line in the allocator's quota, and stopping one frees only
its share; GPUSpawner.named_server_limit refuses one more with a 400 that names
the running ones."""

from __future__ import annotations

import pytest

from spawner.gpuspawner import other_named_servers

pytestmark = pytest.mark.e2e
API = "/services/gpu-allocator/api/v1"


def test_two_named_servers_with_their_own_shares(hub):
    u = hub.login("gpuhub-named")
    for name, gpus in (("edit", "0.25"), ("train", "0.5")):
        r = u.spawn({"gpus": gpus, "max_hours": 2 if name == "edit" else 4}, name=name)
        assert r.status_code in (201, 202), r.text
    for name in ("edit", "train"):
        u.wait_ready(name=name)
    shares = {a["server"]: (a["gpus"], a["max_hours"]) for a in u.allocations()}
    assert shares == {"edit": ("0.25", 2), "train": ("0.5", 4)}
    quota = u.call("GET", API + "/quota").json()
    assert quota["held"]["sessions"] == 2 and quota["held"]["gpus"] == "0.75"
    assert [(line["server"], line["gpus"]) for line in quota["servers"]] == [("edit", "0.25"), ("train", "0.5")]
    # a third is one too many (the default limit, 2); nothing is held for it
    r = u.spawn({"gpus": "0"}, name="extra")
    assert r.status_code == 400 and "edit, train" in r.json()["message"], r.text
    assert u.server("extra") is None or not u.server("extra")["ready"]
    u.stop("edit")
    assert {a["server"] for a in u.allocations()} == {"train"}  # only its share was freed
    assert u.server("train")["ready"]
    u.stop("train")
    assert u.allocations() == []
    # (the hub's proxy runs with the listener for reset websocket clients: #19 item 8)
    log = hub.log_tail(100000)
    assert "client-reset listener" in log and "Uncaught Exception" not in log


class _Spawner:
    def __init__(self, active):
        self.active = active


class _User:
    spawners = {"": _Spawner(True), "a": _Spawner(True), "b": _Spawner(False), "c": _Spawner(True)}


def test_other_named_servers_counts_the_active_named_ones():
    assert other_named_servers(_User(), "a") == ["c"]  # not the default, not a stopped one, not itself
    assert other_named_servers(_User(), "new") == ["a", "c"]
