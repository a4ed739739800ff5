"""The allocator under load and under crashes, against the real hub and proxy:
1,000 concurrent requests from 200 users, kill -9 in the middle of bursts with
clients retrying their idempotency keys, reconciliation with the hub, and a
second allocator on the same database."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import API, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.hub(config={"GPUAllocator": {"reconcile_interval": 1.0, "reconcile_grace": 3.0}})]

PER_GPU = 20


@pytest.fixture(scope="module")
def admin(hub):
    return hub.login("admin")


def check_pool(client) -> dict:
    """No device over 1.0, whole GPUs never shared; returns {allocation id: shares}."""
    pool = client.pool()
    held: dict[str, list] = {}
    for h in pool["hosts"]:
        for d in h["devices"]:
            used = sum(s["units"] for s in d["shares"])
            assert used + d["free_units"] == PER_GPU and d["free_units"] >= 0, d
            whole = [s for s in d["shares"] if s["units"] == PER_GPU]
            assert not whole or len(d["shares"]) == 1, f"a whole GPU is shared: {d}"
            for s in d["shares"]:
                held.setdefault(s["allocation"], []).append((d["uuid"], s["units"]))
    return held


def release_all(client):
    for a in client.allocations():
        client.call("DELETE", f"{API}/allocations/{a['id']}")
    assert client.allocations() == []


def test_1000_concurrent_requests_from_200_users(hub, admin):
    names = [f"gpuhub-load{i:03d}" for i in range(200)]
    r = admin.call("POST", "/hub/api/users", json={"usernames": names})
    assert r.status_code in (201, 409), r.text
    tokens = {}
    for n in names:
        r = admin.call("POST", f"/hub/api/users/{n}/tokens", json={"note": "load test"})
        assert r.status_code == 201, r.text
        tokens[n] = r.json()["token"]
    rng = random.Random(8)
    jobs = [(rng.choice(names), rng.choice(["0.05", "0.1", "0.25", "0.5", "0.75", "1", "2"]))
            for _ in range(1000)]

    def ask(job):
        name, gpus = job
        r = requests.post(hub.url + API + "/allocations", json={"gpus": gpus, "cpu": 0.1, "mem": "64M", "queue": False},
                          headers={"Authorization": f"token {tokens[name]}"}, timeout=60)
        return name, gpus, r.status_code, r.json()

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(ask, jobs))
    granted = [(n, body) for n, _, code, body in results if code == 201]
    refused = [body for _, _, code, body in results if code == 409]
    assert len(granted) + len(refused) == 1000, {c for _, _, c, _ in results}
    assert granted and refused  # the small pool is oversubscribed
    assert all(isinstance(b.get("error"), str) and b["error"] for b in refused)
    ids = [b["id"] for _, b in granted]
    assert len(set(ids)) == len(ids)  # every 201 is a distinct allocation
    assert all(b["user"] == n for n, b in granted)
    held = check_pool(admin)
    assert set(held) == set(ids)  # every 201 is live; nothing else is
    release_all(admin)


def test_kill_9_in_the_middle_of_bursts_loses_and_leaks_nothing(hub, admin):
    """20 rounds: 30 clients ask with idempotency keys and retry until they get
    an answer while the allocator is killed with SIGKILL mid-burst."""
    url = hub.url + API + "/allocations"
    headers = {"Authorization": f"token {hub.spawner_token}"}
    stats = {"retries": 0}

    def client(user: str):
        key = f"{user}/burst/{uuid.uuid4().hex}"
        # now or never: a full pool answers 409 (the queue is tested in test_queue_e2e)
        body = {"user": user, "gpus": "0.05", "cpu": 0.1, "mem": "64M", "key": key, "queue": False}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = requests.post(url, json=body, headers=headers, timeout=10)
            except requests.RequestException:
                r = None
            if r is not None and r.status_code in (200, 201, 409):
                return r.status_code, r.json()
            stats["retries"] += 1
            time.sleep(0.1)
        raise AssertionError(f"{user} got no answer")

    for round_ in range(20):
        users = [f"gpuhub-burst{round_:02d}-{i:02d}" for i in range(30)]
        killer = threading.Timer(random.uniform(0.02, 0.3), lambda: [
            os.kill(pid, signal.SIGKILL) for pid in hub.allocator_pids()
        ])
        killer.start()
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(client, users))
        killer.join()
        wait_for(lambda: requests.get(hub.url + API + "/pool", headers=headers).status_code == 200,
                 30, "the allocator back")
        got = {body["id"] for code, body in answers if code in (200, 201)}
        live = {a["id"] for a in admin.allocations() if a["user"].startswith(f"gpuhub-burst{round_:02d}")}
        assert got == live, f"round {round_}: answered {len(got)}, live {len(live)}"
        check_pool(admin)
        release_all(admin)
    assert stats["retries"] > 0  # the kills really hit requests in flight


def test_a_share_whose_server_the_hub_does_not_run_is_released(hub, admin):
    spawner = hub.admin_allocator()
    r = spawner.call("POST", API + "/allocations",
                     json={"user": "gpuhub-orphan", "server": "", "gpus": "0.25", "key": "gpuhub-orphan//x"})
    assert r.status_code == 201, r.text
    orphan = r.json()["id"]
    mine = admin.call("POST", API + "/allocations", json={"gpus": "0.25"}).json()["id"]  # no server: kept
    wait_for(lambda: orphan not in {a["id"] for a in spawner.allocations()}, 30, "the orphan released")
    assert mine in {a["id"] for a in spawner.allocations()}
    assert "the hub runs no server" in hub.log_tail(400)
    release_all(spawner)


def test_a_second_allocator_on_the_same_database_waits_as_a_standby(hub, admin):
    a = admin.call("POST", API + "/allocations", json={"gpus": "0.5"}).json()
    port = str(hub.allocator_port + 1)
    env = {**hub.env, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
    second = subprocess.Popen(
        [sys.executable, "-m", "gpu_allocator"], env=env, cwd=hub.workdir,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines: list[str] = []

        def read():
            for line in second.stdout:
                lines.append(line)

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: any("waiting as a standby" in x for x in lines), 30, "the standby message")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}{API}/health", timeout=2)
        # the first goes on serving, its state intact
        assert a["id"] in {x["id"] for x in admin.allocations()}
        b = admin.call("POST", API + "/allocations", json={"gpus": "0.25"})
        assert b.status_code == 201
        check_pool(admin)
    finally:
        second.kill()
        second.wait(10)
    release_all(admin)


HOSTILE = [
    b'{"gpus": "1e10000000"}',
    b'{"gpus": 1e10000000}',
    b'{"gpus": ' + b"1" * 5000 + b"}",
    b'{"gpus": 0.5, "mem": "' + b"1" * 5000 + b'G"}',
    b'{"gpus": "1/2"}',
    b'{"gpus": NaN}',
    b'{"gpus": 0.5, "cpu": 1e-999999}',
    b'{"gpus": 0.5, "max_hours": 1e308}',
    b"[" * 50000,
    b"\xff\xfe\x00",
    b'{"gpus": 0.5, "user": "../../etc"}',
    b'{"gpus": 0.5, "user": "' + b"u" * 10000 + b'"}',
    b'{"gpus": 0.5, "gpu_model": ["' + b"x" * 300 + b'"]}',
    b'{"gpus": 0.5, "key": "' + b"k" * 300 + b'"}',
]


def test_hostile_bodies_are_4xx_stall_nothing_and_change_nothing(hub, admin):
    """Both APIs — the allocator's and the hub's spawn — answer every body of the
    corpus with a 4xx JSON error while another client is served, and the pool
    does not change."""
    before = check_pool(admin)
    user = hub.login("gpuhub-hostile")
    served, stop = [], threading.Event()

    def other_client():
        while not stop.is_set():
            r = requests.get(hub.url + API + "/health", timeout=30)
            served.append(r.status_code)

    watcher = threading.Thread(target=other_client)
    watcher.start()
    try:
        for raw in HOSTILE:
            r = requests.post(hub.url + API + "/allocations", data=raw, timeout=30,
                              headers={"Authorization": f"token {hub.spawner_token}"})
            assert 400 <= r.status_code < 500 and r.json()["error"], (raw[:40], r.status_code, r.text[:200])
            r = requests.post(f"{hub.url}/hub/api/users/{user.name}/server", data=raw, timeout=30,
                              headers=user.headers)
            assert 400 <= r.status_code < 500, (raw[:40], r.status_code, r.text[:200])
            assert user.server() is None
    finally:
        stop.set()
        watcher.join()
    assert served and set(served) == {200}
    assert check_pool(admin) == before
