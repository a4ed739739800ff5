"""Placement: concrete cases and properties over random pools and random
grant/release sequences (pure functions, no I/O)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.model import Allocation, Device, Host, Placement, Pool, Request, Share
from gpu_allocator.placement import NoFit, place

PER_GPU = 20


# --------------------------------------------------------------------------- helpers


def host(name, n, *, cpus=32.0, mem=262144, island="", state="up", islands=None):
    islands = islands or [island] * n
    devs = tuple(Device(name, i, f"{name}-gpu{i}", "A100", 81920, islands[i]) for i in range(n))
    return Host(name, devs, float(cpus), mem, state)


def demo_pool(*allocations, per_gpu=PER_GPU):
    """The demo inventory: node-a 4 × A100 on one NVLink island, node-b 2 × L4 PCIe."""
    return Pool(
        (
            host("node-a", 4, cpus=32, mem=262144, island="nvswitch0"),
            host("node-b", 2, cpus=16, mem=131072),
        ),
        tuple(allocations),
        per_gpu,
    )


_ids = itertools.count()


def alloc(host_name, shares, *, cpu=1.0, mem=1024, user="u"):
    """An allocation holding {device_uuid: units} on host_name."""
    sh = tuple(Share(u, n) for u, n in shares.items())
    return Allocation(
        id=f"a{next(_ids)}", user=user, host=host_name, units=sum(n for n in shares.values()),
        cpu=cpu, mem_mb=mem, max_hours=1.0, shares=sh,
    )


def req(units, cpu=1.0, mem=1024, user="u"):
    return Request(user=user, units=units, cpu=cpu, mem_mb=mem)


def with_placement(pool: Pool, r: Request, p: Placement, aid: str | None = None) -> Pool:
    a = Allocation(
        id=aid or f"a{next(_ids)}", user=r.user, host=p.host, units=r.units, cpu=r.cpu,
        mem_mb=r.mem_mb, max_hours=r.max_hours, shares=p.shares,
    )
    return Pool(pool.hosts, pool.allocations + (a,), pool.units_per_gpu)


# --------------------------------------------------------------------------- fractions


def test_fraction_goes_to_the_tightest_fitting_device():
    pool = demo_pool(
        alloc("node-a", {"node-a-gpu1": 10}),  # 10 free
        alloc("node-a", {"node-a-gpu2": 5}),  # 15 free
        alloc("node-b", {"node-b-gpu0": 8}),  # 12 free
    )
    assert place(pool, req(5)) == Placement("node-a", (Share("node-a-gpu1", 5),))
    # 12 units do not fit in 10; the tightest that holds them is node-b's 12
    assert place(pool, req(12)) == Placement("node-b", (Share("node-b-gpu0", 12),))
    # 13 units: node-a gpu2 (15 free) beats idle devices (20 free)
    assert place(pool, req(13)) == Placement("node-a", (Share("node-a-gpu2", 13),))


def test_fraction_prefers_a_partly_used_device_over_an_idle_one():
    pool = demo_pool(alloc("node-b", {"node-b-gpu1": 1}))
    p = place(pool, req(10))
    assert p.shares == (Share("node-b-gpu1", 10),)


def test_fraction_on_an_idle_pool_is_stable_by_host_then_index():
    assert place(demo_pool(), req(1)) == Placement("node-a", (Share("node-a-gpu0", 1),))


def test_fraction_fills_a_device_exactly():
    pool = demo_pool(alloc("node-a", {"node-a-gpu3": 15}))
    assert place(pool, req(5)).shares == (Share("node-a-gpu3", 5),)


def test_fraction_never_splits_across_devices():
    # every device has 10 free: 15 units do not fit anywhere even though 60 are free
    held = [alloc("node-a", {f"node-a-gpu{i}": 10}) for i in range(4)]
    held += [alloc("node-b", {f"node-b-gpu{i}": 10}) for i in range(2)]
    pool = demo_pool(*held)
    assert sum(pool.free_units().values()) == 60
    with pytest.raises(NoFit):
        place(pool, req(15))


# --------------------------------------------------------------------------- whole GPUs


def test_two_whole_gpus_on_node_a_come_from_one_island():
    p = place(demo_pool(), req(2 * PER_GPU))
    # node-b has exactly two idle GPUs too, but they are PCIe only
    assert p.host == "node-a"
    assert len(p.shares) == 2
    assert all(s.units == PER_GPU for s in p.shares)
    assert len({s.device_uuid for s in p.shares}) == 2


def test_whole_gpus_prefer_a_complete_island_over_a_split():
    # islands x = {0, 1}, y = {2, 3}; gpu0 is partly used
    pool = Pool(
        (host("n", 4, islands=["x", "x", "y", "y"]),),
        (alloc("n", {"n-gpu0": 1}),),
    )
    p = place(pool, req(2 * PER_GPU))
    assert {s.device_uuid for s in p.shares} == {"n-gpu2", "n-gpu3"}  # not gpu1+gpu2


def test_whole_gpus_take_the_smallest_island_that_holds_them():
    pool = Pool((host("n", 6, islands=["big"] * 4 + ["small"] * 2),))
    p = place(pool, req(2 * PER_GPU))
    assert {s.device_uuid for s in p.shares} == {"n-gpu4", "n-gpu5"}
    # the big island stays whole for a 4-GPU request
    pool2 = with_placement(pool, req(2 * PER_GPU), p)
    p4 = place(pool2, req(4 * PER_GPU))
    assert {s.device_uuid for s in p4.shares} == {f"n-gpu{i}" for i in range(4)}


def test_whole_gpus_prefer_a_linked_host_over_a_pcie_host():
    pool = Pool((host("a-pcie", 2), host("z-linked", 2, island="nv")))
    assert place(pool, req(2 * PER_GPU)).host == "z-linked"


def test_whole_gpus_fall_back_to_pcie_devices_of_one_host():
    p = place(demo_pool(alloc("node-a", {"node-a-gpu0": 1})), req(2 * PER_GPU))
    # node-a keeps 3 idle linked GPUs: still the linked host wins
    assert p.host == "node-a"
    p3 = place(demo_pool(alloc("node-a", {"node-a-gpu0": 1})), req(3 * PER_GPU))
    assert p3.host == "node-a" and {s.device_uuid for s in p3.shares} == {
        "node-a-gpu1", "node-a-gpu2", "node-a-gpu3"}


def test_whole_gpus_never_get_a_partly_used_device():
    pool = demo_pool(
        alloc("node-a", {"node-a-gpu0": 1}),
        alloc("node-a", {"node-a-gpu2": 19}),
        alloc("node-b", {"node-b-gpu0": 1}),
    )
    p = place(pool, req(PER_GPU))
    assert p.shares[0].device_uuid in {"node-a-gpu1", "node-a-gpu3", "node-b-gpu1"}
    assert place(pool, req(2 * PER_GPU)).shares == (
        Share("node-a-gpu1", PER_GPU), Share("node-a-gpu3", PER_GPU))
    # three idle devices exist in total, but not on one host
    with pytest.raises(NoFit):
        place(pool, req(3 * PER_GPU))


def test_whole_gpus_stay_on_one_host():
    pool = Pool((host("a", 2), host("b", 2)))
    with pytest.raises(NoFit):
        place(pool, req(3 * PER_GPU))


def test_amounts_that_are_not_placeable_are_a_programming_error():
    with pytest.raises(ValueError):
        place(demo_pool(), req(PER_GPU + PER_GPU // 2))  # 1.5 GPUs
    with pytest.raises(ValueError):
        place(demo_pool(), req(-1))


# --------------------------------------------------------------------------- host limits


def test_cpu_limit_of_a_host_is_respected():
    pool = demo_pool(alloc("node-a", {"node-a-gpu0": 5}, cpu=30))
    # best fit would be node-a gpu0, but node-a has only 2 cores left
    assert place(pool, req(5, cpu=2)).host == "node-a"
    p = place(pool, req(5, cpu=2.1))
    assert p.host == "node-b"
    with pytest.raises(NoFit):
        place(pool, req(5, cpu=16.1))


def test_memory_limit_of_a_host_is_respected():
    pool = demo_pool(alloc("node-b", {"node-b-gpu0": 5}, mem=131072 - 1000))
    assert place(pool, req(5, mem=1000)).host == "node-b"
    assert place(pool, req(5, mem=1001)).host == "node-a"
    with pytest.raises(NoFit):
        place(pool, req(5, mem=262145))


def test_cpu_only_requests_respect_host_limits():
    pool = demo_pool(alloc("node-a", {}, cpu=32))
    assert place(pool, req(0, cpu=1)) == Placement("node-b", ())
    with pytest.raises(NoFit):
        place(pool, req(0, cpu=17))


def test_cpu_sums_with_float_noise_do_not_refuse_an_exact_fit():
    # 3.0+3.4+3.7+1.8+3.0+0.8 = 15.7 cores exactly, but adds up to 15.700000000000001
    # in floats; 0.3 more cores fit on a 16-core host.
    held = [alloc("n", {}, cpu=c) for c in (3.0, 3.4, 3.7, 1.8, 3.0, 0.8)]
    pool = Pool((Host("n", (), 16.0, 65536),), tuple(held))
    assert place(pool, req(0, cpu=0.3)).host == "n"
    with pytest.raises(NoFit):
        place(pool, req(0, cpu=0.4))


# --------------------------------------------------------------------------- host states


@pytest.mark.parametrize("state", ["drained", "lost"])
def test_drained_and_lost_hosts_get_nothing(state):
    pool = Pool((host("only", 4, island="nv", state=state),))
    for units in (0, 1, PER_GPU, 2 * PER_GPU):
        with pytest.raises(NoFit):
            place(pool, req(units))
    pool2 = Pool((host("a-" + state, 4, state=state), host("z-up", 1)))
    assert place(pool2, req(1)).host == "z-up"
    assert place(pool2, req(0)).host == "z-up"
    with pytest.raises(NoFit):
        place(pool2, req(2 * PER_GPU))


def test_nofit_message_names_what_is_free():
    pool = Pool(
        (
            host("node-a", 2, cpus=8, mem=4096),
            host("node-b", 1, cpus=4, mem=2048),
            host("node-c", 8, state="drained"),
        ),
        (
            alloc("node-a", {"node-a-gpu0": 15}, cpu=2, mem=1024),
            alloc("node-a", {"node-a-gpu1": 10}, cpu=1, mem=1024),
            alloc("node-b", {"node-b-gpu0": 20}, cpu=4, mem=2048),
        ),
    )
    with pytest.raises(NoFit) as e:
        place(pool, req(PER_GPU, cpu=1.5, mem=512))
    msg = str(e.value)
    assert "1 GPU, 1.5 CPU, 512M" in msg  # what was asked
    assert "node-a: 0 idle GPU(s), largest free share 0.5, 5 CPU, 2048M free" in msg
    assert "node-b: 0 idle GPU(s), largest free share 0, 0 CPU, 0M free" in msg
    assert "node-c" not in msg  # drained hosts offer nothing


def test_nofit_message_when_nothing_is_up():
    with pytest.raises(NoFit, match="Free: nothing"):
        place(Pool((host("x", 1, state="lost"),)), req(1))


# --------------------------------------------------------------------------- properties

ISLANDS = ["", "", "nv0", "nv1"]


@st.composite
def pools(draw):
    per_gpu = draw(st.sampled_from([4, 20]))
    hosts = []
    for h in range(draw(st.integers(1, 3))):
        name = f"h{h}"
        n = draw(st.integers(0, 5))
        devs = tuple(
            Device(name, i, f"{name}-gpu{i}", "m", 1000, draw(st.sampled_from(ISLANDS)))
            for i in range(n)
        )
        cpus = float(draw(st.integers(1, 12)))
        mem = draw(st.sampled_from([2048, 8192, 65536]))
        state = draw(st.sampled_from(["up", "up", "up", "drained", "lost"]))
        hosts.append(Host(name, devs, cpus, mem, state))
    return Pool(tuple(hosts), (), per_gpu)


def requests(per_gpu):
    units = st.one_of(
        st.just(0),
        st.integers(1, per_gpu - 1),
        st.integers(1, 4).map(lambda k: k * per_gpu),
    )
    return st.builds(
        Request,
        user=st.sampled_from(["ann", "bob"]),
        units=units,
        cpu=st.integers(1, 40).map(lambda t: t / 10),
        mem_mb=st.sampled_from([64, 512, 1024, 4096]),
    )


@st.composite
def pool_and_ops(draw, max_ops=25):
    pool = draw(pools())
    ops = draw(
        st.lists(
            st.one_of(
                requests(pool.units_per_gpu).map(lambda r: ("grant", r)),
                st.integers(0, 1000).map(lambda i: ("release", i)),
            ),
            max_size=max_ops,
        )
    )
    return pool, ops


def exact_usage(pool: Pool, host_name: str) -> tuple[Fraction, int]:
    cpu = sum((Fraction(str(a.cpu)) for a in pool.allocations if a.host == host_name), Fraction(0))
    mem = sum(a.mem_mb for a in pool.allocations if a.host == host_name)
    return cpu, mem


def hosts_with_room(pool: Pool, r: Request) -> list[Host]:
    out = []
    for h in pool.hosts:
        cpu, mem = exact_usage(pool, h.name)
        if h.state == "up" and cpu + Fraction(str(r.cpu)) <= Fraction(str(h.cpus)) and mem + r.mem_mb <= h.memory_mb:
            out.append(h)
    return out


def idle_islands(pool: Pool, h: Host) -> dict[str, int]:
    free = pool.free_units()
    sizes: dict[str, int] = defaultdict(int)
    for d in h.devices:
        if d.island and free[d.uuid] == pool.units_per_gpu:
            sizes[d.island] += 1
    return sizes


def check_invariants(pool: Pool) -> None:
    per_gpu = pool.units_per_gpu
    used = pool.used_units()
    for d in pool.devices():
        assert 0 <= used[d.uuid] <= per_gpu, f"{d.uuid} holds {used[d.uuid]} units"
    holders: dict[str, set[str]] = defaultdict(set)
    for a in pool.allocations:
        for s in a.shares:
            holders[s.device_uuid].add(a.id)
    for a in pool.allocations:
        if a.units >= per_gpu:
            for s in a.shares:
                assert holders[s.device_uuid] == {a.id}, "a whole GPU is shared"
    by_name = {h.name: h for h in pool.hosts}
    for h in pool.hosts:
        cpu, mem = exact_usage(pool, h.name)
        assert cpu <= Fraction(str(h.cpus)) and mem <= h.memory_mb, f"{h.name} over-committed"
    for a in pool.allocations:
        assert by_name[a.host].state == "up"
        devs = {d.uuid for d in by_name[a.host].devices}
        assert {s.device_uuid for s in a.shares} <= devs


def check_placement(pool: Pool, r: Request, p: Placement) -> None:
    """``p`` is a legal answer for ``r`` and follows the preference rules."""
    per_gpu = pool.units_per_gpu
    free = pool.free_units()
    room = {h.name: h for h in hosts_with_room(pool, r)}
    assert p.host in room, "placed on a host without room or not up"
    h = room[p.host]
    assert {s.device_uuid for s in p.shares} <= {d.uuid for d in h.devices}
    assert sum(s.units for s in p.shares) == r.units
    if r.units == 0:
        assert p.shares == ()
    elif r.units < per_gpu:
        (share,) = p.shares
        # best fit over every up host with room
        slack = min(free[d.uuid] - r.units for x in room.values() for d in x.devices if free[d.uuid] >= r.units)
        assert free[share.device_uuid] - r.units == slack
    else:
        count = r.units // per_gpu
        assert len(p.shares) == count == len({s.device_uuid for s in p.shares})
        assert all(s.units == per_gpu and free[s.device_uuid] == per_gpu for s in p.shares)
        fitting = [n for x in room.values() for n in idle_islands(pool, x).values() if n >= count]
        if fitting:
            island_of = {d.uuid: d.island for d in h.devices}
            chosen = {island_of[s.device_uuid] for s in p.shares}
            assert len(chosen) == 1 and "" not in chosen, "linked GPUs were available"
            assert idle_islands(pool, h)[chosen.pop()] == min(fitting), "not the tightest island"


def check_nofit_justified(pool: Pool, r: Request) -> None:
    """A refusal is only allowed when nothing could hold the request."""
    per_gpu = pool.units_per_gpu
    free = pool.free_units()
    room = hosts_with_room(pool, r)
    if r.units == 0:
        assert not room
    elif r.units < per_gpu:
        assert not any(free[d.uuid] >= r.units for h in room for d in h.devices)
    else:
        count = r.units // per_gpu
        assert not any(sum(free[d.uuid] == per_gpu for d in h.devices) >= count for h in room)


def run_ops(pool: Pool, ops) -> Pool:
    for kind, arg in ops:
        if kind == "grant":
            try:
                p = place(pool, arg)
            except NoFit:
                check_nofit_justified(pool, arg)
                continue
            check_placement(pool, arg, p)
            pool = with_placement(pool, arg, p)
            check_invariants(pool)
        elif pool.allocations:
            victim = pool.allocations[arg % len(pool.allocations)]
            before = pool.free_units()
            rest = tuple(a for a in pool.allocations if a.id != victim.id)
            pool = Pool(pool.hosts, rest, pool.units_per_gpu)
            after = pool.free_units()
            gained = defaultdict(int)
            for s in victim.shares:
                gained[s.device_uuid] += s.units
            assert after == {u: before[u] + gained[u] for u in before}
            check_invariants(pool)
    return pool


@settings(deadline=None, max_examples=150)
@given(pool_and_ops())
def test_random_grant_release_sequences_keep_the_invariants(case):
    pool, ops = case
    run_ops(pool, ops)


@settings(deadline=None, max_examples=100)
@given(pool_and_ops(max_ops=15), st.data())
def test_grant_then_release_restores_the_previous_free_map(case, data):
    pool, ops = case
    pool = run_ops(pool, ops)
    r = data.draw(requests(pool.units_per_gpu))
    free_before = pool.free_units()
    usage_before = {h.name: exact_usage(pool, h.name) for h in pool.hosts}
    try:
        p = place(pool, r)
    except NoFit:
        return
    granted = with_placement(pool, r, p, aid="probe")
    if r.units:
        assert granted.free_units() != free_before
    released = Pool(pool.hosts, tuple(a for a in granted.allocations if a.id != "probe"), pool.units_per_gpu)
    assert released.free_units() == free_before
    assert {h.name: exact_usage(released, h.name) for h in pool.hosts} == usage_before
    # and the same request lands in the same place again
    assert place(released, r) == p


@settings(deadline=None, max_examples=100)
@given(pool_and_ops(max_ops=15), st.data())
def test_placement_is_deterministic(case, data):
    pool, ops = case
    pool = run_ops(pool, ops)
    r = data.draw(requests(pool.units_per_gpu))

    def outcome(p: Pool):
        try:
            return place(p, r)
        except NoFit as e:
            return ("NoFit", str(e))

    first = outcome(pool)
    assert outcome(pool) == first
    # the answer depends on the pool's content, not on the order it was read in
    shuffled = Pool(pool.hosts, tuple(data.draw(st.permutations(pool.allocations))), pool.units_per_gpu)
    assert outcome(shuffled) == first
    reordered = Pool(tuple(reversed(pool.hosts)), pool.allocations, pool.units_per_gpu)
    again = outcome(reordered)
    if isinstance(first, Placement):
        assert again == first
    else:  # the message lists hosts in pool order; the refusal itself must not change
        assert isinstance(again, tuple)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(1, 40).map(lambda t: t / 10), min_size=1, max_size=12), st.integers(1, 16))
def test_cpu_capacity_is_filled_exactly(cores, capacity):
    """Whatever mix of CPU requests came before, a host accepts exactly what is left."""
    pool = Pool((Host("n", (), float(capacity), 10**6),))
    for c in cores:
        try:
            p = place(pool, req(0, cpu=c))
        except NoFit:
            check_nofit_justified(pool, req(0, cpu=c))
            continue
        pool = with_placement(pool, req(0, cpu=c), p)
    used, _ = exact_usage(pool, "n")
    left = Fraction(capacity) - used
    if left > 0:
        assert place(pool, req(0, cpu=float(left))).host == "n"
    with pytest.raises(NoFit):
        place(pool, req(0, cpu=float(left + Fraction(1, 10))))
