"""A clean stop: stopping the hub (Ctrl-C, SIGTERM) stops the users' servers and
the spawns waiting in the queue while the allocator still runs (the
gpuhub-shutdown service, gpuhub/shutdown.py), so that every share is released
and the hub's log has no errors; a spawn that leaves the queue is not removed
from the proxy, where it never was (gpuhub/proxy.py)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from tests.support import API, open_pool, wait_for

pytestmark = pytest.mark.e2e

#: all of node-a (4 × A100 on one NVLink island): a second such request queues
WHOLE_NODE_A = {"gpus": 4, "gpu_model": "A100-SXM4-80GB"}


def queued(client) -> list[dict]:
    return client.call("GET", API + "/allocations").json()["queued"]


def log_since(hub, offset: int) -> list[str]:
    return (hub.workdir / "jupyterhub.log").read_bytes()[offset:].decode(errors="replace").splitlines()


def live_shares(hub) -> tuple[list, list]:
    """What the allocator's database holds as granted and as queued, read after
    the allocator stopped."""

    async def read():
        pool = await open_pool(f"sqlite:///{hub.data_dir / 'gpu_allocator.sqlite'}")
        try:
            return [a.id for a in pool.live()], [q.id for q, _ in pool.queued()]
        finally:
            pool.close()
            pool.ledger.close()

    return asyncio.run(read())


@pytest.mark.parametrize("signals", [("SIGTERM",), ("SIGINT", "SIGINT")], ids=["sigterm", "ctrl-c-twice"])
def test_stopping_the_hub_releases_every_share_without_errors(own_hub, signals):
    hub = own_hub
    alice, bob = hub.login("gpuhub-stop-alice"), hub.login("gpuhub-stop-bob")
    assert alice.spawn(WHOLE_NODE_A).status_code in (201, 202)
    alice.wait_ready()
    assert bob.spawn(WHOLE_NODE_A).status_code == 202
    wait_for(lambda: queued(bob), 30, "bob's spawn to wait in the queue")
    # bob's waiting page follows the spawn's progress meanwhile
    watcher = threading.Thread(target=lambda: _drain(bob), daemon=True)
    watcher.start()
    time.sleep(1)
    offset = (hub.workdir / "jupyterhub.log").stat().st_size

    hub.proc.send_signal(getattr(signal, signals[0]))
    for again in signals[1:]:
        # a second Ctrl-C while the first shutdown runs
        time.sleep(0.5)
        hub.proc.send_signal(getattr(signal, again))
    hub.proc.wait(60)

    lines = log_since(hub, offset)
    text = "\n".join(lines)
    # nothing went wrong on the way (before gpuhub-shutdown: "could not release …:
    # the GPU allocator is not reachable", and after a second Ctrl-C "Failed to
    # stop user: ''")
    for wrong in ("could not release", "Failed to stop user", "Task was destroyed but it is pending",
                  "Uncaught exception", "api_request to proxy failed"):
        assert wrong not in text, text
    errors = [line for line in lines if line.startswith("[E ")]
    assert not errors, text
    # the servers were stopped while the allocator still ran: every share was
    # given back, the spawn waiting in the queue left it
    assert live_shares(hub) == ([], []), text
    assert any("GPUHubShutdown] all servers stopped" in line for line in lines), text


def _drain(user) -> None:
    try:
        user.progress()
    except Exception:  # the hub went away under the stream: not what is tested
        pass


def test_leaving_the_queue_removes_no_route_that_was_never_added(hub):
    alice, bob = hub.login("gpuhub-leave-alice"), hub.login("gpuhub-leave-bob")
    assert alice.spawn(WHOLE_NODE_A).status_code in (201, 202)
    alice.wait_ready()
    try:
        assert bob.spawn(WHOLE_NODE_A).status_code == 202
        wait_for(lambda: queued(bob), 30, "bob's spawn to wait in the queue")
        offset = (hub.workdir / "jupyterhub.log").stat().st_size
        bob.stop()  # "Leave the queue" on the waiting page
        assert queued(bob) == []
        text = "\n".join(log_since(hub, offset))
        assert "api_request to proxy failed" not in text, text
        assert "already deleted" not in text, text
        assert "404 DELETE /api/routes" not in text, text
    finally:
        alice.stop()

