"""A waiting request's reason names what is short: GPUs (of its models), CPU cores or
memory beside free GPUs (issue #19: a request short of cores read "waiting for 0.25
GPU to be free" while GPUs were free)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.core.fairshare import FairShare
from gpu_allocator.core.model import Allocation, Device, Host, HostState, Request, Share
from gpu_allocator.core.queue import Queued, format_mb, plan
from gpu_allocator.core.quota import Quotas
from gpu_allocator.core.state import PoolState

PER = 20
NOW = 1_000_000.0


def host(name: str, n: int = 4, model: str = "A100", cpus: float = 16.0, mem: int = 64 * 1024) -> Host:
    return Host(name, tuple(Device(name, i, f"{name}-{i}", model, 81920) for i in range(n)), cpus, mem)


def reason_of(state: PoolState, req: Request, running=()) -> str | None:
    """The reason the queue's pass gives ``req`` alone; None: it starts now."""
    p = plan(state, list(running), [Queued("x", req, NOW)], now=NOW, quotas=Quotas.empty(),
             fairshare=FairShare(), held={})
    if p.admitted:
        return None
    return p.estimates["x"].reason


def test_short_of_cores_names_cores_not_gpus():
    state = PoolState.build([host("a", cpus=16), host("b", cpus=12)], units_per_gpu=PER)
    why = reason_of(state, Request("bob", 5, cpu=32, mem_mb=1024))
    assert why.startswith("waiting for 32 CPU cores:"), why
    assert "16 cores free (a)" in why and "GPU to be free" not in why


def test_short_of_memory_names_memory():
    state = PoolState.build([host("a", mem=32 * 1024)], units_per_gpu=PER)
    why = reason_of(state, Request("bob", 20, cpu=1, mem_mb=64 * 1024))
    assert why.startswith("waiting for 64G of memory:"), why
    assert "32G free (a)" in why


def test_short_of_both_on_every_host_names_both():
    state = PoolState.build([host("a", cpus=4, mem=8 * 1024)], units_per_gpu=PER)
    why = reason_of(state, Request("bob", 5, cpu=8, mem_mb=16 * 1024))
    assert why.startswith("waiting for 8 CPU cores and 16G of memory:"), why


def test_cores_on_one_host_and_memory_on_another_says_one_host():
    state = PoolState.build([host("a", cpus=64, mem=4 * 1024), host("b", cpus=4, mem=512 * 1024)],
                            units_per_gpu=PER)
    why = reason_of(state, Request("bob", 5, cpu=8, mem_mb=16 * 1024))
    assert "on one host" in why, why


def test_short_of_gpus_names_the_gpus_and_model():
    state = PoolState.build([host("a", n=1, model="L4"), host("b", n=2, model="A100")], units_per_gpu=PER)
    state.grant(Allocation("r", "alice", "a", 20, 1.0, 1024, 8.0, (Share("a-0", 20),), created=NOW))
    why = reason_of(state, Request("bob", 10, models=frozenset({"L4"})), [(state.allocations["r"], NOW + 3600)])
    assert why == "waiting for 0.5 × L4 to be free", why


def test_format_mb():
    assert [format_mb(m) for m in (512, 1024, 1536, 65536)] == ["512M", "1G", "1.5G", "64G"]


hosts_st = st.lists(
    st.tuples(st.integers(1, 4), st.sampled_from([4.0, 8.0, 16.0]), st.sampled_from([8192, 32768])),
    min_size=1, max_size=4)
busy_st = st.lists(st.tuples(st.integers(0, 15), st.sampled_from([5, 10, 20]),
                             st.sampled_from([1.0, 4.0]), st.sampled_from([1024, 8192])), max_size=10)
req_st = st.tuples(st.sampled_from([0, 5, 10, 20, 40]), st.sampled_from([1.0, 4.0, 8.0, 12.0, 32.0]),
                   st.sampled_from([1024, 8192, 16384, 65536]))


@settings(max_examples=200, deadline=None)
@given(hosts_st, busy_st, req_st)
def test_the_reason_names_cpu_or_memory_exactly_when_they_are_short(sizes, busy, r):
    """Oracle: on the hosts where the request's GPUs fit now, the reason names CPU
    cores when none of them has the cores, memory when none has the memory, and the
    GPUs when its GPUs fit on no host."""
    state = PoolState.build([host(f"h{i}", n, cpus=c, mem=m) for i, (n, c, m) in enumerate(sizes)],
                            units_per_gpu=PER)
    running = []
    devices = sorted(state.devices)
    for k, (d, units, cpu, mem) in enumerate(busy):
        uuid = devices[d % len(devices)]
        dev = state.devices[uuid]
        cpu_room, mem_room = state.host_room(dev.host)
        if state.free[uuid] < units or cpu_room < cpu * 1000 or mem_room < mem:
            continue
        a = Allocation(f"r{k}", f"u{k}", dev.host, units, cpu, mem, 8.0, (Share(uuid, units),), created=NOW)
        state.grant(a)
        running.append((a, NOW + 3600))
    units, cpu, mem = r
    req = Request("bob", units, cpu=cpu, mem_mb=mem)
    why = reason_of(state, req, running)
    if why is None:
        return

    def gpus_fit(name):
        free = [state.free[d.uuid] for d in state.hosts[name].devices]
        if units == 0:
            return True
        if units < PER:
            return any(f >= units for f in free)
        return sum(f == PER for f in free) >= units // PER

    with_gpus = [h for h in state.hosts if gpus_fit(h)]
    if not with_gpus:
        assert why.endswith("to be free") and "CPU" not in why and "memory" not in why, why
        return
    no_cores = all(state.host_room(h)[0] < cpu * 1000 for h in with_gpus)
    no_mem = all(state.host_room(h)[1] < mem for h in with_gpus)
    assert ("CPU core" in why) == (no_cores or not no_mem), why
    assert ("memory" in why) == (no_mem or not no_cores), why
    assert "to be free" not in why, why


def test_a_drained_host_of_the_model_is_named_as_under_maintenance():
    state = PoolState.build([host("a", n=2, model="A100"), replace(host("b", n=2, model="L4"), state=HostState.DRAINED)],
                            units_per_gpu=PER)
    why = reason_of(state, Request("bob", 10, models=frozenset({"L4"})))
    assert why == "waiting for 0.5 × L4 to be free; b is under maintenance (drained)", why
    # a model the drained host does not have: no word of it
    state.grant(Allocation("r", "alice", "a", 40, 1.0, 1024, 8.0, (Share("a-0", 20), Share("a-1", 20)), created=NOW))
    why = reason_of(state, Request("bob", 10, models=frozenset({"A100"})), [(state.allocations["r"], NOW + 3600)])
    assert why == "waiting for 0.5 × A100 to be free", why
