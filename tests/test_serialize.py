"""JSON shapes of the REST API: what the hub reads back must describe the same pool."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.model import Allocation, Device, Host, Pool, Request, Share
from gpu_allocator.placement import NoFit, place
from gpu_allocator.serialize import allocation_json, gpus_number, pool_from_json, pool_json

from test_placement import pools, requests, with_placement


def wire(data: dict) -> dict:
    """What a client really gets: JSON text, parsed again."""
    return json.loads(json.dumps(data))


def demo_pool() -> Pool:
    a = tuple(Device("node-a", i, f"GPU-a{i}", "A100-SXM4-80GB", 81920, "nvswitch0") for i in range(4))
    b = tuple(Device("node-b", i, f"GPU-b{i}", "L4", 24576) for i in range(2))
    hosts = (Host("node-a", a, 32.0, 262144), Host("node-b", b, 16.0, 131072, "drained"))
    allocs = (
        Allocation("x1", "ann", "node-a", 5, 2.5, 4096, 8.0, (Share("GPU-a0", 5),), created=1.0),
        Allocation("x2", "bob", "node-a", 40, 4.0, 8192, 8.0, (Share("GPU-a2", 20), Share("GPU-a3", 20))),
        Allocation("x3", "bob", "node-a", 7, 0.1, 512, 8.0, (Share("GPU-a0", 7),)),
    )
    return Pool(hosts, allocs, 20)


@pytest.mark.parametrize(
    "units, per_gpu, expected",
    [(1, 20, 0.05), (5, 20, 0.25), (20, 20, 1), (40, 20, 2), (0, 20, 0), (7, 20, 0.35), (3, 4, 0.75)],
)
def test_gpus_number(units, per_gpu, expected):
    got = gpus_number(units, per_gpu)
    assert got == expected
    assert type(got) is type(expected)  # whole GPUs are JSON integers


def test_pool_json_shape_for_an_admin():
    data = wire(pool_json(demo_pool(), viewer=None))
    assert data["units_per_gpu"] == 20 and data["quantum"] == 0.05
    a, b = data["hosts"]
    assert (a["name"], a["state"], b["state"]) == ("node-a", "up", "drained")
    assert a["cpus_free"] == pytest.approx(32 - 2.5 - 4.0 - 0.1)
    assert a["memory_mb_free"] == 262144 - 4096 - 8192 - 512
    free = [d["free"] for d in a["devices"]]
    assert free == [0.4, 1, 0, 0]
    assert [d["island"] for d in a["devices"]] == ["nvswitch0"] * 4
    assert {(s["allocation"], s["user"], s["fraction"]) for s in a["devices"][0]["shares"]} == {
        ("x1", "ann", 0.25), ("x3", "bob", 0.35)}
    assert b["devices"][0]["free"] == 1 and b["devices"][0]["shares"] == []


def test_pool_json_hides_other_users_shares_but_not_capacity():
    pool = demo_pool()
    admin = pool_json(pool, viewer=None)
    ann = pool_json(pool, viewer="ann")
    d0 = ann["hosts"][0]["devices"][0]
    assert [s["user"] for s in d0["shares"]] == ["ann"]
    assert all(s["user"] == "ann" for h in ann["hosts"] for d in h["devices"] for s in d["shares"])
    # what is free is the same for everybody
    strip = lambda data: [[d["free"] for d in h["devices"]] for h in data["hosts"]]  # noqa: E731
    assert strip(ann) == strip(admin)
    assert pool_from_json(wire(ann)).free_units() == pool.free_units()


def test_allocation_json():
    pool = demo_pool()
    whole = allocation_json(pool.allocations[1], pool)
    assert whole["gpus"] == 2 and isinstance(whole["gpus"], int)
    assert whole["mem"] == "8192M" and whole["host"] == "node-a" and whole["user"] == "bob"
    assert [(d["uuid"], d["index"], d["model"], d["fraction"]) for d in whole["devices"]] == [
        ("GPU-a2", 2, "A100-SXM4-80GB", 1), ("GPU-a3", 3, "A100-SXM4-80GB", 1)]
    frac = wire(allocation_json(pool.allocations[0], pool))
    assert frac["gpus"] == 0.25 and frac["devices"][0]["memory_mb"] == 81920
    # a share on a device the pool no longer lists still serialises
    gone = Allocation("z", "c", "node-x", 1, 1.0, 64, 1.0, (Share("GPU-gone", 1),))
    assert allocation_json(gone, pool)["devices"] == [
        {"uuid": "GPU-gone", "index": None, "model": None, "memory_mb": None, "fraction": 0.05}]


def assert_same_pool(original: Pool, back: Pool) -> None:
    assert back.units_per_gpu == original.units_per_gpu
    assert back.hosts == original.hosts  # devices, islands, capacity and state exact
    assert back.free_units() == original.free_units()
    for h in original.hosts:
        cpu, mem = original.host_usage(h.name)
        cpu2, mem2 = back.host_usage(h.name)
        assert mem2 == mem
        assert cpu2 == pytest.approx(cpu, abs=1e-9)


def test_pool_round_trip_demo():
    pool = demo_pool()
    assert_same_pool(pool, pool_from_json(wire(pool_json(pool, viewer=None))))


@st.composite
def busy_pools(draw):
    """A random pool, filled by the real placement with random requests."""
    pool = draw(pools())
    for r in draw(st.lists(requests(pool.units_per_gpu), max_size=12)):
        try:
            pool = with_placement(pool, r, place(pool, r))
        except NoFit:
            pass
    return pool


@settings(deadline=None, max_examples=80)
@given(busy_pools(), st.data())
def test_pool_round_trip_keeps_free_units_and_usage(pool, data):
    back = pool_from_json(wire(pool_json(pool, viewer=None)))
    assert_same_pool(pool, back)
    # the hub decides with the read-back pool exactly as the allocator would
    r: Request = data.draw(requests(pool.units_per_gpu))

    def outcome(p):
        try:
            return place(p, r)
        except NoFit:
            return "NoFit"

    assert outcome(back) == outcome(pool)
