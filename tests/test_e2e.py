"""End to end: the real `jupyterhub` with the demo config, the real proxy, the
allocator as a managed service, single-user JupyterLab servers as local
processes (as the users' own accounts when the tests run as root)."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import API, ENV_CODE, pids_with_env, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def whole_pool_after(hub):
    """Every test leaves the pool as it found it: nothing granted."""
    yield
    admin = hub.admin_allocator()
    leftovers = admin.allocations()
    for a in leftovers:
        admin.call("DELETE", f"{API}/allocations/{a['id']}")
    assert not leftovers, f"allocations leaked by the test: {leftovers}"


def pool_is_whole(client) -> bool:
    pool = client.pool()
    return all(d["free"] == "1" and not d["shares"] for h in pool["hosts"] for d in h["devices"])


def test_login_spawn_half_gpu_env_and_stop(hub):
    alice = hub.login("gpuhub-alice")
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        # the spawn request returns when the server is up (or after 10 s); watch
        # the progress stream meanwhile, as the spawn page does
        spawning = pool.submit(alice.spawn, {"gpus": 0.5, "gpu_model": "A100-SXM4-80GB"})
        wait_for(lambda: (alice.server() or {}).get("pending") == "spawn", 30, "pending spawn", 0.05)
        events = alice.progress()
        r = spawning.result()
    assert r.status_code in (201, 202), r.text
    alice.wait_ready()
    spawn_seconds = time.monotonic() - started
    messages = [e["message"] for e in events]
    assert "requesting 0.5 GPU" in messages
    granted = [m for m in messages if m.startswith("allocated 0.5 × A100-SXM4-80GB (GPU-")]
    assert granted and granted[0].endswith("on node-a"), messages
    assert "starting server" in messages

    (allocation,) = alice.allocations()
    assert allocation["user"] == "gpuhub-alice" and allocation["gpus"] == "0.5"
    env = json.loads(alice.run_code(ENV_CODE))
    device = allocation["devices"][0]
    assert env["CUDA_VISIBLE_DEVICES"] == device["uuid"]
    assert env["GPUHUB_ALLOCATION"] == allocation["id"]
    assert env["GPUHUB_GPUS"] == "0.5"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"  # half of 80G
    if os.getuid() == 0:
        # a root hub runs the server as the user's own account, never as root
        assert env["uid"] != 0 and env["USER"] == "gpuhub-alice"

    # JupyterHub's admin page shows user_options.profile (the profile's slug; "custom":
    # free choices), and user_options.summary says what the session got
    options = alice.server()["user_options"]
    assert options["profile"] == "custom" and options["summary"].startswith("0.5 GPU"), options

    alice.stop()
    assert alice.allocations() == []
    assert pool_is_whole(hub.admin_allocator())
    print(f"spawn of a 0.5 GPU JupyterLab took {spawn_seconds:.1f}s")


@pytest.mark.parametrize(
    "options, words",
    [
        ({"gpus": 0.33}, "multiple of 0.05"),
        ({"gpus": 1.5}, "whole number"),
        ({"gpus": -1}, "greater than 0"),
        ({"gpus": "NaN"}, "must be a"),
        ({"gpus": "abc"}, "must be a number"),
        ({"gpus": 1000}, "at most 4 GPUs"),
        ({"gpus": 0.5, "colour": "red"}, "unknown option"),
        ({"gpus": 0.5, "mem": "lots"}, "mem must look like"),
        ({"gpus": 0.5, "cpu": 0}, "cpu must be"),
        ({"gpus": 0.5, "max_hours": 10_000}, "max_hours"),
    ],
)
def test_invalid_spawn_requests_are_400_and_allocate_nothing(hub, options, words):
    bob = hub.login("gpuhub-bob")
    r = bob.spawn(options)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"], r.json()
    assert bob.server() is None
    assert hub.admin_allocator().allocations() == []


def test_two_users_compete_for_the_last_share(hub):
    admin = hub.admin_allocator()
    # fill the pool up to one free half of one L4
    fillers = [
        admin.call("POST", API + "/allocations", json={"user": "gpuhub-filler", "gpus": g})
        for g in (4, 1, 0.5)
    ]
    assert [f.status_code for f in fillers] == [201, 201, 201], [f.text for f in fillers]
    carol, dave = hub.login("gpuhub-carol"), hub.login("gpuhub-dave")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda u: u.spawn({"gpus": 0.5}), (carol, dave)))
    # both spawns are accepted: one gets the share, the other waits in the queue
    assert all(r.status_code in (201, 202) for r in results), [r.text for r in results]
    queued = lambda u: u.call("GET", API + "/allocations").json()["queued"]  # noqa: E731
    waiting = wait_for(lambda: [u for u in (carol, dave) if queued(u)], 30, "one spawn to be queued")
    (loser,) = waiting
    winner = carol if loser is dave else dave
    assert "waiting for 0.5 GPU to be free" in queued(loser)[0]["reason"]
    winner.wait_ready()
    (granted,) = winner.allocations()
    assert granted["host"] == "node-b"
    winner.stop()  # the share goes to the one who waited
    loser.wait_ready()
    assert loser.allocations()[0]["host"] == "node-b"
    loser.stop()
    for f in fillers:
        admin.call("DELETE", f"{API}/allocations/{f.json()['id']}")
    assert pool_is_whole(admin)


def test_users_only_see_and_touch_their_own_shares(hub):
    erin, frank = hub.login("gpuhub-erin"), hub.login("gpuhub-frank")
    r = erin.call("POST", API + "/allocations", json={"gpus": 0.25})
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["user"] == "gpuhub-erin"
    # frank: cannot read, release, list or allocate for erin; sees capacity only
    assert frank.call("GET", f"{API}/allocations/{mine['id']}").status_code == 404
    assert frank.call("DELETE", f"{API}/allocations/{mine['id']}").status_code == 404
    assert frank.call("GET", API + "/allocations", params={"user": "gpuhub-erin"}).status_code == 403
    r = frank.call("POST", API + "/allocations", json={"user": "gpuhub-erin", "gpus": 1})
    assert r.status_code == 403 and "yourself" in r.json()["error"]
    shares = [s for h in frank.pool()["hosts"] for d in h["devices"] for s in d["shares"]]
    assert shares == []
    assert any(d["free"] == "0.75" for h in frank.pool()["hosts"] for d in h["devices"])
    # bad input to the allocator itself: 4xx JSON, nothing changes
    for bad in ({"gpus": 0}, {"gpus": 1.7}, {"gpus": float("nan")}, {"gpus": 0.5, "x": 1}):
        r = erin.call("POST", API + "/allocations", data=json.dumps(bad))
        assert r.status_code == 400 and r.json()["error"], (bad, r.text)
    assert erin.call("POST", API + "/allocations", data="not json").status_code == 400
    assert requests.get(hub.url + API + "/pool").status_code == 401
    # the hub admin sees everyone's shares
    admin = hub.login("admin")
    assert [a["id"] for a in admin.allocations(user="gpuhub-erin")] == [mine["id"]]
    # release is idempotent
    assert erin.call("DELETE", f"{API}/allocations/{mine['id']}").status_code == 200
    r = erin.call("DELETE", f"{API}/allocations/{mine['id']}")
    assert r.status_code == 200 and r.json()["state"] == "released"
    assert erin.allocations() == []


def test_allocator_sigkill_keeps_shares_and_release_still_works(hub):
    grace = hub.login("gpuhub-grace")
    assert grace.spawn({"gpus": 1}).status_code in (201, 202)
    grace.wait_ready()
    (before,) = grace.allocations()
    (pid,) = hub.allocator_pids()
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # its supervisor starts it again at once (not JupyterHub's 30 s poll); the share is kept
    wait_for(lambda: hub.allocator_pids() not in ([], [pid]), 60, "the allocator to restart")
    wait_for(lambda: requests.get(hub.url + API + "/pool", headers=grace.headers).status_code == 200,
             30, "allocator up")
    print(f"allocator serving again {time.monotonic() - killed:.2f} s after kill -9")
    (after,) = grace.allocations()
    assert after == before
    grace.stop()
    assert grace.allocations() == []
    assert pool_is_whole(hub.admin_allocator())


def test_dead_server_returns_its_share(hub):
    heidi = hub.login("gpuhub-heidi")
    assert heidi.spawn({"gpus": 0.25}).status_code in (201, 202)
    heidi.wait_ready()
    assert len(heidi.allocations()) == 1
    (pid,) = pids_with_env("JUPYTERHUB_USER", "gpuhub-heidi", "jupyterhub.singleuser")
    os.kill(pid, signal.SIGKILL)
    heidi.wait_stopped()  # the hub's poll notices; the spawner releases
    wait_for(lambda: heidi.allocations() == [], 30, "the share to be released")


def test_spawn_form_offers_what_the_pool_can_hold(hub):
    ivan = hub.login("gpuhub-ivan")
    r = ivan.session.get(hub.url + "/hub/spawn")
    assert r.status_code == 200
    page = r.content.decode()  # the hub sends no charset
    for value in ("0.25", "0.5", "1", "2", "4", "custom"):
        assert f'<option value="{value}"' in page
    assert '<option value="8"' not in page  # no host has 8 GPUs
    assert "Free right now" in page and "node-a: 4 of 4 × A100-SXM4-80GB free" in page
    # submitting the form spawns with the chosen share
    r = ivan.session.post(
        hub.url + "/hub/spawn",
        data={"gpus": "custom", "gpus_custom": "0.25", "cpu": "1", "mem": "2G",
              "max_hours": "1", "_xsrf": ivan.session.cookies["_xsrf"]},
    )
    assert r.status_code == 200, r.text[:500]
    ivan.wait_ready()
    (a,) = ivan.allocations()
    assert (a["gpus"], a["cpu"], a["mem"], a["max_hours"]) == ("0.25", "1", "2048M", 1.0)
    ivan.stop()
