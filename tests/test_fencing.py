"""Fencing (issue #9 part 5): a host that comes back with sessions the allocator
no longer holds there takes no placements until its agent has stopped them. The
pure decision, the live pool (register, heartbeat, fence log, admin view), and
the agent's side (stopping the containers). The multi-host test with a cut link
is in test_multihost.py."""

from __future__ import annotations

import asyncio

import pytest

from gpu_allocator.agent import containers
from gpu_allocator.shapes import host_json
from gpu_allocator.core.fencing import fence
from gpu_allocator.core.model import AllocationState, Device, Host, HostState, Request
from gpu_allocator.core.placement import NoFit
from gpu_allocator.pool import LivePool
from gpu_allocator.store.ledger import Ledger
from tests.support import until

UPG = 20


# --------------------------------------------------------------------------- decision


def test_fence_clean_report_is_up_or_drained():
    assert fence(["a", "b"], ["a"]) == (HostState.UP, [])
    assert fence([], []) == (HostState.UP, [])
    assert fence(["a"], ["a"], drained=True) == (HostState.DRAINED, [])


def test_fence_strays_make_the_host_fencing_and_are_to_stop():
    assert fence(["a"], ["a", "x", "y", "x"]) == (HostState.FENCING, ["x", "y"])
    assert fence([], ["x"], drained=True) == (HostState.FENCING, ["x"])
    # held but not running is no stray (a session still starting)
    assert fence(["a", "b"], ["b"]) == (HostState.UP, [])


# --------------------------------------------------------------------------- pool


def host(name="box", n=1):
    return Host(name=name, cpus=8, memory_mb=32768, devices=tuple(
        Device(host=name, index=i, uuid=f"GPU-{name}-{i}", model="L4", memory_mb=24576) for i in range(n)
    ))


@pytest.fixture
async def pool(tmp_path):
    ledger = await asyncio.get_running_loop().run_in_executor(
        None, Ledger, f"sqlite:///{tmp_path / 'ledger.sqlite'}", UPG)
    p = LivePool(ledger, UPG)
    await p.load()
    yield p
    p.close()


def overcommitted(p: LivePool) -> list[str]:
    used: dict[str, int] = {}
    for a in p.state.allocations.values():
        for s in a.shares:
            used[s.device_uuid] = used.get(s.device_uuid, 0) + s.units
    return [u for u, n in used.items() if n > UPG]


async def test_a_host_back_with_its_lost_session_is_fenced_until_clean(pool):
    view = await pool.register_host(host(), running=[])
    assert view["state"] == HostState.UP
    a, _ = await pool.grant(Request(user="ann", units=UPG))
    # the host is cut off and marked lost: the share is freed
    await pool.mark_lost(cutoff=float("inf"))
    assert (await pool.get(a.id)).state == AllocationState.LOST
    # it comes back, its old session still running
    view = await pool.register_host(host(), running=[a.id])
    assert view["state"] == HostState.FENCING and view["unknown"] == [a.id]
    assert "lost with the host box at" in view["fenced"][0]["reason"]
    with pytest.raises(NoFit):  # no placement while fencing
        await pool.grant(Request(user="bob", units=1))
    # heartbeats that still list it keep it fencing
    view = pool.heartbeat("box", running=[a.id], usage=None)
    assert view["state"] == HostState.FENCING and view["unknown"] == [a.id]
    assert len(pool.info["box"].fenced) == 1  # one entry per fenced session
    # the agent stopped it: up again, placeable
    view = pool.heartbeat("box", running=[], usage=None)
    assert view["state"] == HostState.UP and view["unknown"] == []
    b, _ = await pool.grant(Request(user="bob", units=UPG))
    assert b.host == "box" and overcommitted(pool) == []
    # the admin view shows what was fenced, why and when it stopped
    shown = host_json("box", pool.state, pool.info["box"], viewer=None)
    (entry,) = shown["fenced"]
    assert entry["allocation"] == a.id and entry["stopped"] is not None
    assert "lost with the host box" in entry["reason"]
    assert "fenced" not in host_json("box", pool.state, pool.info["box"], viewer="bob")
    pool.state.check_indexes()


async def test_a_heartbeat_reporting_a_stray_fences_and_drain_survives(pool):
    await pool.register_host(host(n=2), running=[])
    view = pool.heartbeat("box", running=["ghost"], usage=None)
    assert view["state"] == HostState.FENCING and view["unknown"] == ["ghost"]
    # the generic reason is replaced in the background
    await until(lambda: "unknown to the allocator" in pool.info["box"].fenced[0]["reason"], 5,
                "the fence's reason to say the allocation is unknown", 0.01)
    # an admin drains and undrains meanwhile: still fencing
    assert await pool.set_drained("box", True)
    assert pool.state.hosts["box"].state == HostState.FENCING
    assert await pool.set_drained("box", False)
    assert pool.state.hosts["box"].state == HostState.FENCING
    await pool.set_drained("box", True)
    assert pool.heartbeat("box", running=[], usage=None)["state"] == HostState.DRAINED
    await pool.set_drained("box", False)
    assert pool.state.hosts["box"].state == HostState.UP
    pool.state.check_indexes()


async def test_a_fencing_host_registered_before_a_restart_is_fencing_after_it(pool, tmp_path):
    await pool.register_host(host(), running=["ghost"])
    again = LivePool(pool.ledger, UPG)
    await again.load()
    assert again.state.hosts["box"].state == HostState.FENCING
    assert again.heartbeat("box", running=[], usage=None)["state"] == HostState.UP


# --------------------------------------------------------------------------- agent


async def test_agent_stops_the_containers_of_unknown_allocations(tmp_path, capfd, monkeypatch, box_agent):
    stopped = []
    monkeypatch.setattr(containers, "running_allocations", lambda url: ["k1", "old"])
    monkeypatch.setattr(containers, "has_gpu_runtime", lambda url: False)
    monkeypatch.setattr(containers, "stop_allocation",
                        lambda url, aid: stopped.append((url, aid)) or [f"jupyter-{aid}"])
    agent = box_agent()
    try:
        await agent.discover()
        await agent.absorb({"state": "fencing", "unknown": ["old"], "shares": [
            {"id": "k1", "devices": []}],
            "fenced": [{"allocation": "old", "reason": "lost with the host box-1 at 12:00"}]})
        assert stopped == [("tcp://10.1.2.3:2376", "old")]
        assert "fenced allocation old (lost with the host box-1 at 12:00): stopped container(s) " \
               "jupyter-old" in capfd.readouterr().err
        # a failing stop is logged and retried with the next answer
        monkeypatch.setattr(containers, "stop_allocation", lambda url, aid: 1 / 0)
        await agent.absorb({"state": "fencing", "unknown": ["old"], "shares": []})
        assert "cannot fence allocation old" in capfd.readouterr().err
    finally:
        agent.executor.shutdown()


# --------------------------------------------------------------------------- spawner


def test_the_user_is_told_why_the_server_was_stopped():
    from spawner.gpuspawner import stop_reason

    msg = stop_reason({"id": "a1", "host": "gpu-7"}, {"state": "lost", "released": 0.0})
    assert "gpu-7 stopped answering and was marked lost at 19" in msg and "fenced" in msg
    assert "released" in stop_reason({"host": "h"}, {"state": "released", "released": None})
    assert "unknown to the allocator" in stop_reason({}, {"state": "unknown to the allocator"})
