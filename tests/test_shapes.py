"""The API's JSON shapes: exact amounts, and what each viewer may see."""

from __future__ import annotations

import pytest

from gpu_allocator.shapes import allocation_json, pool_json, quota_json
from gpu_allocator.core.model import Allocation, Device, Host, Request, Share
from gpu_allocator.core.state import PoolState
from gpu_allocator.pool import HostInfo
from tests.support import demo_hosts, open_pool

PER_GPU = 20


def demo_state():
    a = Host("node-a", tuple(Device("node-a", i, f"A{i}", "A100", 81920, "nv0") for i in range(4)), 32.0, 262144)
    b = Host("node-b", tuple(Device("node-b", i, f"B{i}", "L4", 24576) for i in range(2)), 16.0, 131072)
    allocations = [
        Allocation("x1", "alice", "node-a", 10, 2.5, 4096, 4.0, (Share("A0", 10),)),
        Allocation("x2", "bob", "node-a", 5, 4.0, 8192, 1.0, (Share("A0", 5),)),
        Allocation("x3", "bob", "node-a", 40, 0.1, 1024, 1.0, (Share("A1", 20), Share("A2", 20))),
    ]
    info = {
        "node-a": HostInfo(
            source="agent", last_heartbeat=100.0, docker={"url": "tcp://a:2376"},
            usage={"at": 100.0, "devices": [
                {"uuid": "A0", "utilization_gpu": 50.0, "memory_used_mb": 1000.0,
                 "processes": [{"pid": 4242, "memory_mb": 900.0}]},
                {"uuid": "A1", "utilization_gpu": 90.0, "memory_used_mb": 7000.0,
                 "processes": [{"pid": 777, "memory_mb": 7000.0}]},
            ]},
            unknown=["ghost"],
        )
    }
    return PoolState.build([a, b], allocations, PER_GPU), info


def test_amounts_are_exact_strings():
    state, _ = demo_state()
    frac = allocation_json(state.allocations["x1"], state)
    assert (frac["gpus"], frac["units"], frac["units_per_gpu"]) == ("0.5", 10, 20)
    assert frac["cpu"] == "2.5" and frac["mem"] == "4096M"
    assert frac["devices"][0] | {} == {
        "uuid": "A0", "index": 0, "model": "A100", "memory_mb": 81920, "island": "nv0",
        "units": 10, "fraction": "0.5",
    }
    whole = allocation_json(state.allocations["x3"], state)
    assert whole["gpus"] == "2" and [d["fraction"] for d in whole["devices"]] == ["1", "1"]
    assert allocation_json(state.allocations["x2"], state)["gpus"] == "0.25"


def test_an_admin_sees_everything():
    state, info = demo_state()
    pool = pool_json(state, info, viewer=None)
    a = pool["hosts"][0]
    assert pool["models"] == ["A100", "L4"] and pool["quantum"] == "0.05"
    assert a["cpus_free"] == "25.4" and a["memory_mb_free"] == 262144 - 4096 - 8192 - 1024
    assert [d["free"] for d in a["devices"]] == ["0.25", "0", "0", "1"]
    assert {(s["allocation"], s["user"]) for s in a["devices"][0]["shares"]} == {("x1", "alice"), ("x2", "bob")}
    assert a["usage"]["devices"][0]["processes"] == [{"pid": 4242, "memory_mb": 900.0}]
    assert a["docker"] and a["unknown_allocations"] == ["ghost"] and a["last_heartbeat"] == 100.0


def test_a_user_sees_capacity_and_only_their_own_shares_and_usage():
    state, info = demo_state()
    pool = pool_json(state, info, viewer="alice")
    a = pool["hosts"][0]
    # capacity is the same for everyone
    assert [d["free"] for d in a["devices"]] == ["0.25", "0", "0", "1"]
    assert a["cpus_free"] == "25.4"
    # other users' shares, processes and the hosts' internals are not shown
    assert [s["user"] for d in a["devices"] for s in d["shares"]] == ["alice"]
    assert a["usage"]["devices"] == [{"uuid": "A0", "utilization_gpu": 50.0, "memory_used_mb": 1000.0}]
    for secret in ("docker", "unknown_allocations", "last_heartbeat", "mps"):
        assert secret not in a
    assert "4242" not in str(pool) and "777" not in str(pool) and "bob" not in str(pool)
    # a user with no share sees no usage at all
    carol = pool_json(state, info, viewer="carol")["hosts"][0]
    assert carol["usage"]["devices"] == [] and all(not d["shares"] for d in carol["devices"])


async def test_gpu_hours_used_and_reserved_one_minute_into_a_share(tmp_path):
    """Issue #19: a minute into a 0.5 × 8 h share the panel said 4 GPU-hours (the
    declared time). The quota still counts all 4; shown as used and reserved."""
    pool = await open_pool(f"sqlite:///{tmp_path / 'p.sqlite'}", demo_hosts())
    try:
        a, _ = await pool.grant(Request("ann", 10, 1.0, 1024, 8.0), now=1_000_000.0)
        held = quota_json(pool, "ann", (), now=1_000_000.0 + 60)["held"]
        assert held["gpu_hours"] == 4.0  # what the quota counts
        assert held["gpu_hours_used"] == pytest.approx(0.5 / 60, abs=1e-3)
        assert held["gpu_hours_reserved"] == pytest.approx(4.0 - 0.5 / 60, abs=1e-3)
    finally:
        pool.close()
        pool.ledger.close()
