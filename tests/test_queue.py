"""The queue: order, backfill, estimates, quotas and fair share — pure tests of
gpu_allocator.core.queue / quota / fairshare (hypothesis where it pays)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_allocator.core.fairshare import FairShare, interval
from gpu_allocator.core.model import Allocation, Device, Host, Request, Share
from gpu_allocator.core.queue import Queued, Sim, order, plan, run_of, simulate
from gpu_allocator.core.quota import Held, Limits, Quotas, check
from gpu_allocator.core.placement import NoFit
from gpu_allocator.core.state import PoolState

PER = 20
H = 3600.0
NOW = 1_000_000.0


def host(name: str, n: int = 4, model: str = "A100", cpus: float = 64.0, mem: int = 512_000) -> Host:
    return Host(name, tuple(Device(name, i, f"{name}-{i}", model, 81920) for i in range(n)), cpus, mem)


def drawn_pool(sizes, runs) -> tuple[PoolState, list[tuple[Allocation, float]]]:
    """A pool of hosts ``(devices, model)`` with the drawn ``(gpus, hours left)``
    shares running where they fit (those that fit nowhere are left out)."""
    state = PoolState.build([host(f"n{i}", n, m) for i, (n, m) in enumerate(sizes)], units_per_gpu=PER)
    run = []
    for i, (g, left) in enumerate(runs):
        try:
            run.append(running(state, f"r{i}", f"u{i}", g, left))
        except AssertionError:
            pass
    return state, run


def running(state: PoolState, aid: str, user: str, gpus: float, hours_left: float,
            max_hours: float = 8.0, now: float = NOW) -> tuple[Allocation, float]:
    """Grant ``gpus`` on the first devices that have room; ends in ``hours_left``."""
    units = round(gpus * PER)
    shares = None
    for name in sorted(state.hosts):
        devs = [d.uuid for d in state.hosts[name].devices]
        if units < PER:
            ok = [u for u in devs if state.free[u] >= units]
            if ok:
                shares = [Share(ok[0], units)]
        else:
            idle = [u for u in devs if state.free[u] == PER]
            if len(idle) >= units // PER:
                shares = [Share(u, PER) for u in idle[: units // PER]]
        if shares:
            break
    assert shares
    hostname = state.devices[shares[0].device_uuid].host
    created = now - (max_hours - hours_left) * H
    a = Allocation(aid, user, hostname, units, 1.0, 1024, max_hours, tuple(shares), created=created)
    state.grant(a)
    return a, created + max_hours * H


def q(qid: str, user: str, gpus: float, hours: float, submitted: float = NOW, groups=()) -> Queued:
    return Queued(qid, Request(user, round(gpus * PER), 1.0, 1024, hours), submitted, tuple(groups))


def run_plan(state, run, pending, quotas=None, fs=None, held=None, now=NOW, **kw):
    return plan(state, run, pending, now=now, quotas=quotas or Quotas.empty(),
                fairshare=fs or FairShare(), held=held if held is not None else {}, **kw)


# --- estimates and backfill ----------------------------------------------------------


def test_what_fits_starts_and_what_does_not_waits_with_a_start_estimate():
    state = PoolState.build([host("n", 4)], units_per_gpu=PER)
    run = [running(state, "r1", "ann", 4, hours_left=2)]
    p = run_plan(state, run, [q("w1", "bob", 2, 1), q("w2", "cat", 0.5, 1, NOW + 1)])
    assert p.admitted == []
    e1, e2 = p.estimates["w1"], p.estimates["w2"]
    assert (e1.position, e2.position) == (1, 2)
    assert e1.latest == NOW + 2 * H and e1.expected == NOW + 2 * H
    assert e2.latest == NOW + 2 * H  # both fit once r1 ends
    assert "waiting for 2 GPUs to be free" == e1.reason
    # the estimate with a ratio: shares are expected to use 50% of their time
    p = run_plan(state, run, [q("w1", "bob", 2, 1)], ratio=0.5)
    e = p.estimates["w1"]
    assert e.latest == NOW + 2 * H and e.expected == max(NOW, run[0][0].created + 4 * H)


def test_backfill_starts_only_what_cannot_delay_the_head():
    state = PoolState.build([host("n", 4)], units_per_gpu=PER)
    run = [running(state, "r1", "ann", 2, hours_left=2)]
    pending = [
        q("head", "bob", 4, 4, NOW),  # needs the whole host: at +2 h at the latest
        q("long", "cat", 1, 3, NOW + 1),  # fits now but would hold a GPU past +2 h
        q("short", "dan", 1, 1.5, NOW + 2),  # fits now and ends before +2 h
        q("frac", "eve", 0.5, 2, NOW + 3),  # ends exactly at +2 h: cannot delay it
    ]
    p = run_plan(state, run, pending)
    assert [x.id for x, _ in p.admitted] == ["short", "frac"]
    assert p.estimates["head"].latest == NOW + 2 * H and p.estimates["head"].position == 1
    assert p.estimates["long"].reason == "waiting: starting now would delay requests ahead"
    assert p.estimates["long"].latest == NOW + 6 * H  # after the head's 4 h
    state.check_indexes()


def test_a_request_that_never_fits_does_not_block_the_others():
    state = PoolState.build([host("n", 2, "L4")], units_per_gpu=PER)
    never = Queued("x", Request("ann", 20, 1.0, 1024, 1, frozenset({"H100"})), NOW)
    p = run_plan(state, [], [never, q("ok", "bob", 1, 1, NOW + 1)])
    assert [x.id for x, _ in p.admitted] == ["ok"]
    assert p.estimates["x"].latest is None


def test_no_cap_on_admissions_per_pass():
    state = PoolState.build([host(f"n{i}", 8) for i in range(8)], units_per_gpu=PER)
    pending = [q(f"w{i}", f"u{i % 7}", 1, 1, NOW + i) for i in range(64)]
    p = run_plan(state, [], pending)
    assert len(p.admitted) == 64 and not p.estimates


pools = st.lists(st.integers(1, 4), min_size=1, max_size=3)
amounts = st.sampled_from([0.25, 0.5, 1, 2, 3, 4])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=pools, runs=st.lists(st.tuples(amounts, st.floats(0.1, 8)), max_size=6),
       waiting=st.lists(st.tuples(amounts, st.floats(0.1, 8)), min_size=1, max_size=10))
def test_backfill_never_delays_the_head(sizes, runs, waiting):
    state = PoolState.build([host(f"n{i}", n) for i, n in enumerate(sizes)], units_per_gpu=PER)
    run = []
    for i, (g, left) in enumerate(runs):
        try:
            run.append(running(state, f"r{i}", f"u{i}", g, left))
        except AssertionError:
            pass  # did not fit: fewer running shares
    pending = [q(f"w{i}", f"w{i}", g, h, NOW + i) for i, (g, h) in enumerate(waiting)]
    # the head: the first request in order that cannot start now
    before = Sim(state)
    base_runs = [run_of(a, e) for a, e in run]
    p = run_plan(state, run, pending)
    admitted = {x.id for x, _ in p.admitted}
    ahead = [x for x in pending if x.id not in admitted]
    if not ahead:
        return
    head = ahead[0]
    alone = simulate(before, base_runs, [head.req], NOW)[0]
    after = Sim(state)
    with_new = simulate(after, base_runs + [run_of(a, NOW + a.max_hours * H) for _, a in p.admitted],
                        [head.req], NOW)[0]
    # the head's start: not later than if nothing had been admitted after it
    # (those admitted ahead of it in order are its right)
    ahead_of_head = [a for x, a in p.admitted if pending.index(x) < pending.index(head)]
    if not ahead_of_head:
        assert alone is None or (with_new is not None and with_new <= alone + 1e-6)
    assert p.estimates[head.id].latest == with_new
    state.check_indexes()


def simulate_every_host(sim, running, waiting, now, excludes=None, wake=()):
    """simulate() as it was before it looked only at the hosts whose room grew:
    every fit looks at every host (the reference)."""
    import heapq

    from gpu_allocator.core.queue import Run

    sim = sim.copy()
    heap = [(max(now, r.end), i, r) for i, r in enumerate(running)]
    seq = len(running)
    for w in wake:
        seq += 1
        heap.append((max(now, w), seq, Run(w, "", (), 0, 0)))
    heapq.heapify(heap)
    t, out = now, []
    for k, req in enumerate(waiting):
        while True:
            found = sim.fit(req, excludes[k](t)) if excludes else sim.fit(req)
            if found is not None:
                host, shares = found
                sim.take(host, shares, round(req.cpu * 1000), req.mem_mb)
                seq += 1
                heapq.heappush(heap, (t + req.max_hours * H, seq,
                                      Run(0, host, shares, round(req.cpu * 1000), req.mem_mb)))
                out.append(t)
                break
            if not heap:
                return out + [None] * (len(waiting) - len(out))
            t = max(t, heap[0][0])
            while heap and heap[0][0] <= t:
                _, _, r = heapq.heappop(heap)
                sim.take(r.host, r.shares, r.cpu, r.mem, sign=+1)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["A100", "L4"])), min_size=1, max_size=4),
       runs=st.lists(st.tuples(amounts, st.floats(0.1, 8)), max_size=8),
       waiting=st.lists(st.tuples(amounts | st.just(0), st.floats(0.1, 8), st.sampled_from(["", "A100", "L4"])),
                        min_size=1, max_size=8))
def test_simulate_looking_only_where_room_grew_gives_every_start_as_looking_everywhere(sizes, runs, waiting):
    state, run = drawn_pool(sizes, runs)
    reqs = [Request(f"w{i}", round(g * PER), 1.0, 1024, h, frozenset({m}) if m else frozenset())
            for i, (g, h, m) in enumerate(waiting)]
    runs_ = [run_of(a, e) for a, e in run]
    assert simulate(Sim(state), runs_, reqs, NOW) == simulate_every_host(Sim(state), runs_, reqs, NOW)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["A100", "L4"])), min_size=1, max_size=3),
       runs=st.lists(st.tuples(amounts, st.floats(0.1, 8)), max_size=6),
       waiting=st.lists(st.tuples(amounts, st.floats(0.1, 8), st.sampled_from(["", "A100", "L4"])),
                        min_size=1, max_size=6),
       held=st.lists(st.tuples(st.integers(0, 11), st.floats(0.1, 10)), max_size=6))
def test_simulate_with_exclusions_rechecks_the_hosts_a_reservations_end_frees(sizes, runs, waiting, held):
    """Exclusions (others' reservations) that end at a wake time free devices
    without any share ending: simulate must look at those hosts again."""
    state, run = drawn_pool(sizes, runs)
    devs = [d.uuid for h in state.hosts.values() for d in h.devices]
    until = {devs[i % len(devs)]: NOW + hours * H for i, hours in held}  # device -> excluded until

    def excl(t):
        return frozenset(u for u, end in until.items() if t < end)

    reqs = [Request(f"w{i}", round(g * PER), 1.0, 1024, h, frozenset({m}) if m else frozenset())
            for i, (g, h, m) in enumerate(waiting)]
    runs_ = [run_of(a, e) for a, e in run]
    excludes, wake = [excl] * len(reqs), sorted(set(until.values()))
    assert simulate(Sim(state), runs_, reqs, NOW, 1.0, excludes, wake) == \
        simulate_every_host(Sim(state), runs_, reqs, NOW, excludes, wake)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=pools,
       limits=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                              st.tuples(st.none() | st.integers(0, 80), st.none() | st.integers(0, 3),
                                        st.none() | st.floats(0, 40)), max_size=3),
       waiting=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), amounts, st.floats(0.1, 8)),
                        min_size=1, max_size=12))
def test_a_quota_is_never_exceeded(sizes, limits, waiting):
    state = PoolState.build([host(f"n{i}", n) for i, n in enumerate(sizes)], units_per_gpu=PER)
    quotas = Quotas({u: Limits(gpus=g, sessions=s, gpu_hours=h) for u, (g, s, h) in limits.items()}, {})
    pending = [q(f"w{i}", u, g, h, NOW + i) for i, (u, g, h) in enumerate(waiting)]
    p = run_plan(state, [], pending, quotas=quotas)
    for u in "abc":
        mine = [a for _, a in p.admitted if a.user == u]
        lim = quotas.resolve(u)
        if lim.gpus is not None:
            assert sum(a.units for a in mine) <= lim.gpus
        if lim.sessions is not None:
            assert len(mine) <= lim.sessions
        if lim.gpu_hours is not None:
            assert sum(a.units / PER * a.max_hours for a in mine) <= lim.gpu_hours + 1e-6
    for x in pending:
        r = check(quotas.resolve(x.req.user), Held(), x.req, PER)
        assert (x.id in p.refused) == (r.verdict == "hard")


# --- order -----------------------------------------------------------------------------


def test_order_is_priority_then_fair_share_then_arrival():
    fs = FairShare(half_life_s=24 * H)
    fs.add("user:heavy", 4, NOW - 10 * H, NOW - H)
    quotas = Quotas({}, {"vip": Limits(priority=10), "big": Limits(), "small": Limits()})
    pending = [
        q("a", "heavy", 1, 1, NOW, ["big"]),
        q("b", "light", 1, 1, NOW + 5, ["small"]),
        q("c", "boss", 1, 1, NOW + 9, ["vip"]),
        q("d", "light", 1, 1, NOW + 7, ["small"]),
    ]
    got = [x.id for x in order(pending, [], quotas, fs, NOW, PER)]
    assert got == ["c", "b", "d", "a"]


def test_running_shares_count_as_usage():
    state = PoolState.build([host("n", 4)], units_per_gpu=PER)
    run = [running(state, "r", "busy", 2, hours_left=1, max_hours=5)]
    pending = [q("a", "busy", 1, 1, NOW), q("b", "idle", 1, 1, NOW + 1)]
    assert [x.id for x in order(pending, run, Quotas.empty(), FairShare(), NOW, PER)] == ["b", "a"]


def test_fair_share_converges_for_two_users_with_equal_entitlements():
    """Two users who always have work waiting — one in 1-hour, one in 3-hour
    jobs — on 2 GPUs: over a long run their GPU-seconds end within 10%."""
    state = PoolState.build([host("n", 2)], units_per_gpu=PER)
    fs = FairShare(half_life_s=12 * H)
    now, seq = NOW, 0
    pending, live, used = [], {}, {"short": 0.0, "long": 0.0}
    hours = {"short": 1.0, "long": 3.0}
    for _ in range(2000):
        for u in hours:
            while sum(1 for x in pending if x.req.user == u) < 2:
                seq += 1
                pending.append(q(f"j{seq}", u, 1, hours[u], now))
        run = [(a, a.created + a.max_hours * H) for a in live.values()]
        p = run_plan(state, run, pending, fs=fs, now=now)
        for x, a in p.admitted:
            pending.remove(x)
            live[a.id] = a
        if now - NOW > 600 * H:
            break
        end = min(a.created + a.max_hours * H for a in live.values())
        now = end
        for a in [a for a in live.values() if a.created + a.max_hours * H <= now]:
            state.release(a.id)
            del live[a.id]
            fs.add(f"user:{a.user}", a.units / PER, a.created, now)
            used[a.user] += a.units / PER * (now - a.created)
    for a in live.values():  # what still runs counts as far as it ran
        used[a.user] += a.units / PER * (now - a.created)
    assert used["short"] > 0 and used["long"] > 0
    assert abs(used["short"] - used["long"]) / max(used.values()) < 0.10, used


# --- quotas ------------------------------------------------------------------------------


def test_limits_resolve_user_first_else_most_generous_group_else_default():
    quotas = Quotas(
        {"ann": Limits(gpus=20)},
        {"students": Limits(gpus=20, sessions=1, priority=1), "staff": Limits(gpus=80, gpu_hours=100.0)},
        Limits(gpus=10, sessions=2),
    )
    assert quotas.resolve("ann", ["staff"]) == Limits(gpus=20, gpu_hours=100.0, sessions=2)
    assert quotas.resolve("bob", ["students", "staff"]) == Limits(gpus=80, sessions=1, gpu_hours=100.0,
                                                                  priority=1)
    assert quotas.resolve("cat", []) == Limits(gpus=10, sessions=2)
    assert quotas.charged_group("bob", ["staff", "students"]) == "students"


def test_quota_check_hard_wait_ok():
    lim = Limits(gpus=40, sessions=2, gpu_hours=10.0)
    two_h = Request("a", 20, 1.0, 1024, 2.0)
    assert check(lim, Held(), two_h, PER).ok
    assert check(lim, Held(units=40), two_h, PER).verdict == "wait"
    r = check(lim, Held(units=20, sessions=2), two_h, PER)
    assert r.verdict == "wait" and "2 of 2 sessions" in r.reason
    assert check(lim, Held(gpu_hours=9.0), two_h, PER).verdict == "wait"
    r = check(lim, Held(), Request("a", 60, 1.0, 1024, 1.0), PER)
    assert r.verdict == "hard" and "your limit is 2 GPUs at once" in r.reason
    assert check(lim, Held(), Request("a", 20, 1.0, 1024, 11.0), PER).verdict == "hard"


# --- fair share ------------------------------------------------------------------------


def test_decayed_usage_halves_every_half_life():
    fs = FairShare(half_life_s=H)
    fs.add("user:a", 1.0, 0.0, 60.0)
    v0 = fs.value("user:a", 60.0)
    assert v0 == pytest.approx(60.0, rel=0.02)
    assert fs.value("user:a", 60.0 + H) == pytest.approx(v0 / 2)
    # a running share's usage seen now equals the same share finished now
    assert fs.usage("user:b", 500.0, [(2.0, 100.0)]) == pytest.approx(interval(2.0, 100.0, 500.0, 500.0, H))
    assert math.isclose(interval(1.0, 0, 10, 10, 1e9), 10.0, rel_tol=1e-4)  # no decay: plain GPU-s


# --- the live pool: submit, queue, restart (SQLite and PostgreSQL) --------------------

import asyncio  # noqa: E402

from gpu_allocator.core.model import AllocationState  # noqa: E402
from gpu_allocator.pool import QuotaExceeded  # noqa: E402
from tests.support import box, open_pool, reopen, settle  # noqa: E402


async def test_a_request_that_does_not_fit_waits_then_starts_when_capacity_returns(db_url):
    pool = await open_pool(db_url, [box("n", 2, "A100")])
    first, created = await pool.submit(Request("ann", 40, 1.0, 1024, 2.0), groups=["lab"])
    assert created and first.state == AllocationState.GRANTED
    waiting, created = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0), groups=["lab"], key="bob//1")
    assert created and isinstance(waiting, Queued)
    est = pool.estimates[waiting.id]
    assert est.position == 1 and est.latest == pytest.approx(first.created + 2 * H, abs=1)
    assert "waiting for 1 GPU to be free" in est.reason
    again, created = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0), key="bob//1")
    assert not created and again.id == waiting.id  # a retried key: the same request
    third, _ = await pool.submit(Request("cat", 10, 1.0, 1024, 1.0))
    assert isinstance(third, Queued)
    # kill -9: the queue is in the database
    pool = await reopen(pool)
    assert set(pool.queue) == {waiting.id, third.id}
    assert pool.queue[waiting.id].groups == ("lab",) and pool.queue[waiting.id].key == "bob//1"
    await pool.finish(first.id)
    await settle(pool)
    assert pool.queue == {}
    got = pool.state.allocations[waiting.id]
    assert got.user == "bob" and got.key == "bob//1" and pool.state.allocations[third.id].user == "cat"
    pool = await reopen(pool)
    assert set(pool.state.allocations) == {waiting.id, third.id} and pool.queue == {}
    req = (await pool.get_request(waiting.id))
    assert req[1] == "granted"
    pool.close()


async def test_cancel_leaves_the_queue_and_quotas_queue_or_refuse(db_url):
    pool = await open_pool(db_url, [box("n", 4, "A100")])
    await pool.set_quota("group", "students", Limits(gpus=20, sessions=2))
    await pool.set_quota("user", "ann", Limits(gpus=60))
    with pytest.raises(QuotaExceeded, match="your limit is 1 GPUs at once"):
        await pool.submit(Request("bob", 40, 1.0, 1024, 1.0), groups=["students"])
    a, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0), groups=["students"])
    assert a.state == AllocationState.GRANTED
    w, _ = await pool.submit(Request("bob", 10, 1.0, 1024, 1.0), groups=["students"])
    assert isinstance(w, Queued) and "over your GPU quota: 1 of 1 GPUs in use" in pool.estimates[w.id].reason
    # the explicit user limit wins over the group's
    big, _ = await pool.submit(Request("ann", 60, 1.0, 1024, 1.0), groups=["students"])
    assert big.state == AllocationState.GRANTED
    assert (await pool.cancel(w.id)).id == w.id and w.id not in pool.queue
    pool = await reopen(pool)
    assert pool.queue == {} and (await pool.get_request(w.id))[1] == "cancelled"
    assert pool.quotas.groups["students"] == Limits(gpus=20, sessions=2)
    pool.close()


async def test_run_time_warnings_then_expiry_and_one_extension(db_url):
    pool = await open_pool(db_url, [box("n", 1, "A100")])
    a, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 1.0), now=NOW)
    warned, expired = await pool.expire_due(NOW + 46 * 60)
    assert [(x.id, m) for x, m in warned] == [(a.id, 15)] and not expired
    assert "save your work" in pool.notices[a.id]["message"]
    assert (await pool.expire_due(NOW + 47 * 60)) == ([], [])
    waiting, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0), now=NOW + 50 * 60)
    from gpu_allocator.pool import ExtendRefused

    with pytest.raises(ExtendRefused, match="delay 1 queued"):
        await pool.extend(a.id, 1.0, 8.0, now=NOW + 50 * 60)
    await pool.cancel(waiting.id)
    await settle(pool)
    longer = await pool.extend(a.id, 1.0, 8.0, now=NOW + 50 * 60)
    assert longer.max_hours == 2.0
    with pytest.raises(ExtendRefused, match="once"):
        await pool.extend(a.id, 1.0, 8.0, now=NOW + 50 * 60)
    warned, expired = await pool.expire_due(NOW + 2 * H + 1)
    assert [x.id for x in expired] == [a.id]
    assert (await pool.get(a.id)).state == AllocationState.EXPIRED
    pool.close()


def test_strict_fifo_and_arrival_order_knobs():
    """fair=False orders by arrival only; backfill=False lets nothing pass a
    request that waits for capacity (the comparison policies of
    benchmarks/queue_replay.py)."""
    state = PoolState.build([host("a", 4)], units_per_gpu=PER)
    run = [running(state, "r1", "x", 2, hours_left=2)]
    fs = FairShare()
    fs.add("user:heavy", 4, NOW - 10 * H, NOW - H)  # heavy used a lot: fair share puts it last
    big = q("big", "heavy", 4, 1, submitted=NOW - 60)  # waits for the 2 busy GPUs
    small = q("small", "light", 1, 1, submitted=NOW - 30)  # fits now and ends before big starts
    p = run_plan(state, run, [big, small], fs=fs, fair=False, backfill=False)
    assert not p.admitted
    assert p.estimates["big"].position == 1 and p.estimates["small"].position == 2
    assert p.estimates["small"].latest >= p.estimates["big"].latest
    p = run_plan(state, run, [big, small], fs=fs, fair=False, backfill=True)
    assert [x.id for x, _ in p.admitted] == ["small"]
    for a in [a for _, a in p.admitted]:
        state.release(a.id)
    p = run_plan(state, run, [big, small], fs=fs)  # gpuhub: light first by fair share
    assert [x.id for x, _ in p.admitted] == ["small"]


# --- promises: the first "at the latest" bound holds ----------------------------------------


def replay(sizes, arrivals, quotas, used=1.0):
    """Run ``arrivals`` ((user, GPUs, max_hours, arrival in hours, groups)) through
    ``plan`` as the live pool does (a pass at every arrival and end); every share
    runs ``used`` × its max_hours. Returns {id: (first latest, start or None)}."""
    state = PoolState.build([host(f"n{i}", n) for i, n in enumerate(sizes)], units_per_gpu=PER)
    fs = FairShare(half_life_s=4 * H)
    todo = sorted((NOW + t * H, f"w{i}", u, g, h, gs) for i, (u, g, h, t, gs) in enumerate(arrivals))
    pending: dict[str, Queued] = {}
    live: dict[str, Allocation] = {}
    seen: dict[str, list] = {}
    now, last = NOW, {}
    while todo or live:
        ends = [a.created + used * a.max_hours * H for a in live.values()]
        now = min(ends + [todo[0][0]] if todo else ends)
        for a in [a for a in live.values() if a.created + used * a.max_hours * H <= now]:
            state.release(a.id)
            del live[a.id]
            fs.add(f"user:{a.user}", a.units / PER, a.created, now)
        while todo and todo[0][0] <= now:
            t, qid, u, g, h, gs = todo.pop(0)
            pending[qid] = Queued(qid, Request(u, round(g * PER), 1.0, 1024, h), t, gs)
        run = [(a, a.created + a.max_hours * H) for a in live.values()]
        p = run_plan(state, run, list(pending.values()), quotas=quotas, fs=fs, now=now, previous=last)
        last = p.estimates
        for x, a in p.admitted:
            del pending[x.id]
            live[a.id] = a
            seen.setdefault(x.id, [x.first_latest, None])[1] = now
        for qid, e in p.estimates.items():
            if qid not in seen:
                seen[qid] = [e.latest, None]
                pending[qid] = replace(pending[qid], first_eta=e.expected, first_latest=e.latest)
        state.check_indexes()
    return seen


users = st.sampled_from([("ann", ("g0",)), ("bob", ("g0",)), ("cat", ("g1",)), ("dan", ("vip",))])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=2),
       arrivals=st.lists(st.tuples(users, amounts, st.sampled_from([0.25, 0.5, 1, 2, 5, 12]),
                                   st.floats(0, 6)), min_size=2, max_size=16))
def test_no_request_starts_after_its_first_latest(sizes, arrivals):
    """Random pools and arrivals, users of different groups (one of higher
    priority) and usage, every share running its full time: every request that
    was given an "at the latest" start started by then (fair share and priority
    still order the rest; the promise is kept by the admission rule)."""
    quotas = Quotas({}, {"g0": Limits(), "g1": Limits(share=2.0), "vip": Limits(priority=5)})
    seen = replay(sizes, [(u, g, h, t, gs) for (u, gs), g, h, t in arrivals], quotas)
    for qid, (latest, start) in seen.items():
        if latest is not None:
            assert start is not None and start <= latest + 1e-6, (qid, latest, start)


def test_a_requests_own_priority_replaces_its_users():
    """An admin's priority on one request (Queued.priority) replaces its user's
    and groups' for that request only; a negative one puts it last."""
    fs = FairShare(half_life_s=24 * H)
    fs.add("user:heavy", 4, NOW - 10 * H, NOW - H)
    quotas = Quotas({"light": Limits(priority=3)}, {"vip": Limits(priority=10)})
    pending = [
        q("a", "heavy", 1, 1, NOW),
        q("b", "light", 1, 1, NOW + 1),
        q("c", "boss", 1, 1, NOW + 2, ["vip"]),
        q("d", "heavy", 1, 1, NOW + 3),
        q("e", "light", 1, 1, NOW + 4),
    ]
    assert [x.id for x in order(pending, [], quotas, fs, NOW, PER)] == ["c", "b", "e", "a", "d"]
    pending[3] = replace(pending[3], priority=20)  # heavy's later request, above everyone
    pending[1] = replace(pending[1], priority=-1)  # light's first, below the default 0
    pending[2] = replace(pending[2], priority=0)  # boss's: 0, not their group's 10
    assert [x.id for x in order(pending, [], quotas, fs, NOW, PER)] == ["d", "e", "c", "a", "b"]


async def test_what_delays_nobody_starts_without_a_pass_as_a_pass_would_start_it(db_url):
    """LivePool's QueueView: with a request waiting for L4s, a request elsewhere or
    one that ends before the waiting one's start is granted without a pass (also
    when ordered behind `depth` waiting requests); one that would delay it goes
    through the pass (and waits there)."""
    pool = await open_pool(db_url, [box("l4", 2, "L4"), box("h", 2, "H100")])
    ann, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 2.0, frozenset({"L4"})))
    bob, _ = await pool.submit(Request("bob", 40, 1.0, 1024, 1.0, frozenset({"L4"})))
    assert isinstance(bob, Queued)
    await settle(pool)
    start = pool.estimates[bob.id].latest
    assert start == pytest.approx(ann.created + 2 * H, abs=1)
    passes, fast = pool.passes, pool.fast_grants
    # on a host bob cannot use, for longer than bob waits: granted at once, no pass
    cat, _ = await pool.submit(Request("cat", 20, 1.0, 1024, 8.0, frozenset({"H100"})))
    assert cat.state == AllocationState.GRANTED and cat.host == "h"
    # on bob's host, but over before bob can start: granted at once, no pass
    dan, _ = await pool.submit(Request("dan", 20, 1.0, 1024, 1.0, frozenset({"L4"})))
    assert dan.state == AllocationState.GRANTED and dan.host == "l4"
    assert pool.fast_grants == fast + 2
    await pool.finish(cat.id)  # a host bob cannot use: nothing for a pass to do
    await settle(pool)
    assert pool.passes == passes and pool.estimates[bob.id].latest == start
    await pool.finish(dan.id)  # bob's host: a pass
    await settle(pool)
    assert pool.passes == passes + 1 and pool.estimates[bob.id].latest == pytest.approx(start, abs=1)
    # fits now on bob's host but runs past bob's start: the pass decides, it waits
    eve, _ = await pool.submit(Request("eve", 20, 1.0, 1024, 8.0, frozenset({"L4"})))
    assert isinstance(eve, Queued) and "would delay" in pool.estimates[eve.id].reason
    await pool.cancel(eve.id)
    await settle(pool)
    # ordered behind `depth` waiting requests (not simulated, no estimate): it
    # still starts at once where it delays none of them (no cap on admissions) ...
    pool.scheduler.depth = 1
    pool.kick()
    await settle(pool)
    fast = pool.fast_grants
    fay, _ = await pool.submit(Request("fay", 20, 1.0, 1024, 8.0, frozenset({"H100"})))
    assert fay.state == AllocationState.GRANTED and fay.host == "h"
    assert pool.fast_grants == fast + 1
    # ... and where it would delay one, it waits behind them
    gus, _ = await pool.submit(Request("gus", 20, 1.0, 1024, 8.0, frozenset({"L4"})))
    await settle(pool)
    assert isinstance(gus, Queued) and "waiting behind 1 requests" in pool.estimates[gus.id].reason
    assert pool.fast_grants == fast + 1
    pool.state.check_indexes()
    pool.close()


async def test_requests_arriving_together_are_decided_by_one_pass(db_url):
    """What cannot start at once waits for the next pass, which decides every
    request that arrived meanwhile (a burst costs one pass, not one each): each is
    queued (committed, with its first estimate) or granted, and a retried key
    waits for that answer."""
    pool = await open_pool(db_url, [box("l4", 1, "L4"), box("h", 1, "H100")])
    ann, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 2.0, frozenset({"L4"})))
    bob, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0, frozenset({"L4"})))
    await settle(pool)
    passes = pool.passes
    got = await asyncio.gather(
        *(pool.submit(Request(f"u{i}", 20, 1.0, 1024, 1.0, frozenset({"L4"})), key=f"k{i}") for i in range(5)),
        pool.submit(Request("u0", 20, 1.0, 1024, 1.0, frozenset({"L4"})), key="k0"),  # a retry
        pool.submit(Request("cat", 20, 1.0, 1024, 1.0, frozenset({"H100"}))),  # fits: granted by the pass
    )
    assert pool.passes == passes + 1
    waiting = [x for x, _ in got[:5]]
    assert all(isinstance(x, Queued) for x in waiting) and got[5] == (waiting[0], False)
    assert sorted(pool.estimates[x.id].position for x in waiting) == [2, 3, 4, 5, 6]
    assert all(pool.queue[x.id].first_latest == pool.estimates[x.id].latest for x in waiting)
    cat, created = got[6]
    assert created and cat.state == AllocationState.GRANTED and cat.host == "h"
    pool = await reopen(pool)
    assert set(pool.queue) == {bob.id, *(x.id for x in waiting)} and cat.id in pool.state.allocations
    pool.close()


async def test_held_gpu_hours_follow_the_window_as_shares_end(db_url):
    """LivePool.held keeps a user's finished GPU-hours between calls; what it says
    is what counting every finished share within the 7-day window says."""
    from gpu_allocator.core.quota import WINDOW_S

    pool = await open_pool(db_url, [box("h", 2, "H100")])
    t = NOW
    for i in range(6):
        a, _ = await pool.submit(Request("ann", 10 * (1 + i % 2), 1.0, 1024, 4.0), now=t)
        t += (1 + i) * H
        await pool.finish(a.id, now=t)
        t += 3 * 24 * H if i == 3 else H

    def counted(now):
        start = now - WINDOW_S
        return sum(f.units / PER * (f.released - max(f.created, start)) / H
                   for f in pool.finished.get("ann", ()) if f.released > start)

    for now in (t, t + 1, t + 2 * 24 * H, t + 4 * 24 * H, t + 4 * 24 * H + 30 * 60, t + 9 * 24 * H):
        expect = counted(now)
        assert pool.held("ann", now).gpu_hours == pytest.approx(expect, abs=1e-9)
        assert pool.held("ann", now).gpu_hours == pytest.approx(expect, abs=1e-9)  # (kept)
    assert pool.held("ann", t + 9 * 24 * H).gpu_hours == 0
    pool.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["A100", "L4"])), min_size=1, max_size=3),
       runs=st.lists(st.tuples(amounts, st.floats(0.1, 8)), min_size=1, max_size=6),
       waiting=st.lists(st.tuples(amounts, st.floats(0.1, 8), st.sampled_from(["", "A100", "L4"])),
                        min_size=2, max_size=8),
       new=st.tuples(amounts, st.floats(0.05, 8), st.sampled_from(["", "A100", "L4"])),
       booking=st.none() | st.tuples(st.integers(0, 11), st.integers(1, 3), st.floats(0, 4), st.floats(0.5, 6)))
def test_the_fast_path_admits_only_what_a_pass_would_admit(sizes, runs, waiting, new, booking):
    """QueueView (LivePool's grant without a pass): whatever it lets start, placed
    as the fast path places it (under the reservations' rule), plan() on the same
    state and queue (promises set by the earlier passes) admits too."""
    from gpu_allocator.core.queue import QueueView
    from gpu_allocator.core.reservations import Reservation, restriction

    state, run = drawn_pool(sizes, runs)
    reserved = []
    if booking is not None:  # someone else's reservation of a few devices of one host
        first, n, start, hours = booking
        names = sorted(state.hosts)
        h = state.hosts[names[first % len(names)]]
        devs = tuple(d.uuid for d in h.devices[:n])
        reserved.append(Reservation("res", "owner", h.name, h.devices[0].model, len(devs), devs,
                                    NOW + start * H, NOW + (start + hours) * H))

    def restrict(req, t):
        return restriction(reserved, req.user, t, t + req.max_hours * H)

    kw = dict(restrict=restrict) if reserved else {}
    queue = [Queued(f"w{i}", Request(f"w{i % 3}", round(g * PER), 1.0, 1024, h, frozenset({m}) if m else frozenset()),
                    NOW + i) for i, (g, h, m) in enumerate(waiting)]
    previous = None
    for _ in range(3):  # passes until one admits nothing: every waiting request has its promise
        p = run_plan(state, run, queue, previous=previous, **kw)
        gone = {x.id for x, _ in p.admitted} | p.refused.keys()
        run += [(a, NOW + a.max_hours * H) for _, a in p.admitted]
        queue = [x if x.first_latest is not None or x.id not in p.estimates
                 else replace(x, first_eta=p.estimates[x.id].expected, first_latest=p.estimates[x.id].latest)
                 for x in queue if x.id not in gone]
        previous = p.estimates
        if not gone:
            break
    else:
        return
    view = QueueView.build(p, {x.id: x for x in queue}, state, 32)
    assert view is not None and set(p.protected) <= {x.id for x in queue}
    g, hours, m = new
    xq = Queued("x", Request("newcomer", round(g * PER), 1.0, 1024, hours, frozenset({m}) if m else frozenset()),
                NOW + 100)
    try:
        found = restrict(xq.req, NOW).place(state, xq.req)
    except NoFit:
        return
    if not view.delays_none(found.host, NOW + hours * H):
        return  # a pass decides
    after = run_plan(state, run, queue + [xq], previous=previous, **kw)
    assert "x" in {x.id for x, _ in after.admitted}, after.estimates.get("x")


async def test_each_grant_is_counted_once_and_only_a_wait_is_observed_as_one(db_url):
    """The pool's counters (pool.metrics, observed where things happen): a grant at
    once, a grant decided by the pass its request arrived at, and a grant from the
    queue count one each; only the request that waited observes a queue wait."""
    pool = await open_pool(db_url, [box("h", 1, "L4"), box("k", 1, "A100")])
    value = pool.metrics.registry.get_sample_value
    a, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 1.0, frozenset({"L4"})))  # nobody waits
    w, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0, frozenset({"L4"})))
    assert isinstance(w, Queued)
    # bob waits, so his usage orders the queue: his next request is the pass's to decide
    b, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0, frozenset({"A100"})))
    assert b.state == AllocationState.GRANTED
    assert value("gpuhub_allocations_granted_total") == 2
    assert value("gpuhub_queue_wait_duration_seconds_count") == 0
    await pool.finish(a.id)
    for _ in range(200):
        if w.id in pool.state.allocations:
            break
        await asyncio.sleep(0.01)
    assert w.id in pool.state.allocations, "the waiting request was not granted"
    assert value("gpuhub_allocations_granted_total") == 3
    assert value("gpuhub_queue_wait_duration_seconds_count") == 1
    assert value("gpuhub_allocations_released_total", {"reason": "released"}) == 1
    assert value("gpuhub_allocation_decision_duration_seconds_count") == 3
    pool.close()
