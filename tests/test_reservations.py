"""Advance reservations: the pure rules (core.reservations) with hypothesis, and
placement's exclude/only hook they use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.core.fairshare import FairShare
from gpu_allocator.core.model import Allocation, Device, Host, Request, Share
from gpu_allocator.core.placement import NoFit, place
from gpu_allocator.core.queue import Queued, plan
from gpu_allocator.core.quota import Quotas
from gpu_allocator.core.reservations import (
    Conflict, Reservation, ReservationState, book, restriction,
)
from gpu_allocator.core.state import PoolState

H = 3600.0
T0 = 1_700_000_000.0
PER = 20


def box(name: str, n: int, model: str = "A100", island: str = "nv0") -> Host:
    return Host(name, tuple(Device(name, i, f"GPU-{name}-{i}", model, 81920, island) for i in range(n)),
                64.0, 512 * 1024)


def pool() -> PoolState:
    return PoolState.build([box("a", 4), box("b", 2, "L4", ""), box("c", 8, "A100", "")])


def reserve(state, reservations, running, user, host, model, gpus, start, end, rid):
    devices = book(state, host, model, gpus, start, end, reservations, running)
    return Reservation(rid, user, host, model, gpus, devices, start, end)


bookings = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cy"]), st.sampled_from([("a", "A100"), ("b", "L4"), ("c", "A100")]),
              st.integers(1, 8), st.integers(0, 48), st.integers(1, 24), st.booleans()),
    min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(bookings, st.lists(st.tuples(st.integers(0, 13), st.integers(0, 30), st.integers(1, 30)), max_size=6))
def test_no_two_active_reservations_overlap_on_a_device(attempts, shares):
    state = pool()
    uuids = sorted(state.devices)
    running = []
    for k, (i, created, hours) in enumerate(shares):
        u = uuids[i]
        if state.free[u] == PER:
            a = Allocation(f"x{k}", "zed", state.devices[u].host, PER, 1.0, 1024, float(hours),
                           (Share(u, PER),), created=T0 + created * H)
            state.grant(a)
            running.append((a, a.created + a.max_hours * H))
    made: list[Reservation] = []
    for n, (user, (host, model), gpus, start, length, cancel) in enumerate(attempts):
        s, e = T0 + start * H, T0 + (start + length) * H
        try:
            r = reserve(state, made, running, user, host, model, gpus, s, e, f"r{n}")
        except ValueError:
            assert gpus > len([d for d in state.hosts[host].devices if d.model == model])
            continue
        except Conflict as c:
            assert "in the way" in str(c) and (c.reservations or c.shares)
            continue
        assert len(r.devices) == gpus and len(set(r.devices)) == gpus
        assert all(state.devices[u].host == host and state.devices[u].model == model for u in r.devices)
        # capacity already promised: no running share on its devices at its start
        for a, end in running:
            if end > s:
                assert not {x.device_uuid for x in a.shares} & set(r.devices)
        made.append(r)
        if cancel:  # cancelled: its devices are free again for the next bookings
            made[-1] = Reservation(**{**r.__dict__, "state": ReservationState.CANCELLED})
    active = [r for r in made if r.state == ReservationState.ACTIVE]
    for i, x in enumerate(active):
        for y in active[i + 1:]:
            if set(x.devices) & set(y.devices):
                assert x.end <= y.start or y.end <= x.start, (x, y)


def test_a_conflict_names_the_reservation_and_the_running_share():
    state = pool()
    r = reserve(state, [], [], "ann", "b", "L4", 1, T0 + 2 * H, T0 + 4 * H, "r1")
    a = Allocation("busy", "zed", "b", PER, 1.0, 1024, 8.0,
                   (Share(next(u for u in ("GPU-b-0", "GPU-b-1") if u not in r.devices), PER),), created=T0)
    state.grant(a)
    with pytest.raises(Conflict) as e:
        book(state, "b", "L4", 1, T0 + 3 * H, T0 + 5 * H, [r], [(a, T0 + 8 * H)])
    assert "reservation r1" in str(e.value) and "allocation busy" in str(e.value)
    # after the share's declared end and the reservation: both devices
    assert len(book(state, "b", "L4", 2, T0 + 8 * H, T0 + 9 * H, [r], [(a, T0 + 8 * H)])) == 2
    with pytest.raises(ValueError):
        book(state, "b", "L4", 3, T0, T0 + H, [], [])
    with pytest.raises(ValueError):
        book(state, "b", "A100", 1, T0, T0 + H, [], [])


def test_booking_takes_the_best_connected_devices():
    h = Host("m", tuple(Device("m", i, f"GPU-m-{i}", "A100", 1, "nv0" if i < 2 else "nv1") for i in range(4)),
             8.0, 65536)
    state = PoolState.build([h])
    busy = Allocation("x", "zed", "m", PER, 1.0, 1, 1.0, (Share("GPU-m-0", PER),), created=T0)
    state.grant(busy)
    # device 0 is busy until T0+1h only: for a booking from T0+2h, the pair on one island
    assert set(book(state, "m", "A100", 2, T0 + 2 * H, T0 + 3 * H, [], [(busy, T0 + H)])) in (
        {"GPU-m-0", "GPU-m-1"}, {"GPU-m-2", "GPU-m-3"})
    assert set(book(state, "m", "A100", 2, T0, T0 + 3 * H, [], [(busy, T0 + H)])) == {"GPU-m-2", "GPU-m-3"}


requests = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cy"]), st.sampled_from([0, 5, 10, 20, 40, 80]),
              st.integers(0, 40), st.integers(1, 12), st.sampled_from([None, "A100", "L4"])),
    min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(bookings, requests)
def test_a_non_holder_never_gets_a_reserved_device_while_it_is_reserved(attempts, reqs):
    state = pool()
    made = []
    for n, (user, (host, model), gpus, start, length, _) in enumerate(attempts):
        try:
            made.append(reserve(state, made, [], user, host, model, gpus, T0 + start * H,
                                T0 + (start + length) * H, f"r{n}"))
        except (ValueError, Conflict):
            pass
    placed = []
    for k, (user, units, at, hours, model) in enumerate(sorted(reqs, key=lambda r: r[2])):
        now = T0 + at * H
        req = Request(user, units, 1.0, 1024, float(hours), frozenset({model}) if model else frozenset())
        rule = restriction(made, user, now, now + hours * H)
        try:
            p = rule.place(state, req)
        except NoFit:
            continue
        a = Allocation(f"s{k}", user, p.host, units, 1.0, 1024, float(hours), p.shares, created=now)
        state.grant(a)
        placed.append(a)
        # others' reservations that overlap [now, end) keep their devices from it
        for r in made:
            if r.user != user and r.holds(now, now + hours * H):
                assert not {s.device_uuid for s in p.shares} & set(r.devices), (r, a)
    state.check_indexes()  # the masked placements gave every device back


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from([5, 10, 20, 40, 60, 80]), st.integers(0, 5))
def test_the_holder_gets_the_reserved_devices(gpus, other, units, into):
    """While their reservation is active, the holder's shares go onto its devices,
    also when idle devices outside it would fit better."""
    state = pool()
    r = reserve(state, [], [], "ann", "c", "A100", gpus + other if gpus + other <= 8 else gpus,
                T0, T0 + 10 * H, "r1")
    now = T0 + into * H
    # one of her sessions already holds 0.25 of a reserved device
    state.grant(Allocation("mine", "ann", "c", 5, 1.0, 1024, 8.0, (Share(r.devices[-1], 5),), created=T0))
    whole = PER * (len(r.devices) - 1)
    req = Request("ann", min(units, whole) if units >= PER else units, 1.0, 1024, 2.0)
    p = restriction([r], "ann", now, now + 2 * H).place(state, req)
    assert {s.device_uuid for s in p.shares} <= set(r.devices)
    state.grant(Allocation("next", "ann", p.host, req.units, 1.0, 1024, 2.0, p.shares, created=now))  # it fits
    # anyone else: never there
    q = restriction([r], "bob", now, now + 2 * H).place(state, Request("bob", min(req.units, 80), 1.0, 1024, 2.0))
    assert not {s.device_uuid for s in q.shares} & set(r.devices)


def test_before_t1_only_work_that_ends_in_time():
    state = PoolState.build([box("b", 2, "L4", "")])
    r = reserve(state, [], [], "ann", "b", "L4", 2, T0 + 4 * H, T0 + 8 * H, "r1")
    short = Request("bob", PER, 1.0, 1024, 3.0)
    long = Request("bob", PER, 1.0, 1024, 5.0)
    assert restriction([r], "bob", T0, T0 + 3 * H).place(state, short).host == "b"
    rule = restriction([r], "bob", T0, T0 + 5 * H)
    with pytest.raises(NoFit):
        rule.place(state, long)
    assert "reserved until" in rule.reason(T0) and "ann" not in rule.reason(T0)
    assert "reserved for ann until" in rule.reason(T0, admin=True)
    # after T2 everybody again
    assert restriction([r], "bob", T0 + 8 * H, T0 + 13 * H).place(state, long).host == "b"


def test_placement_without_restrictions_is_unchanged_and_only_is_strict():
    state = pool()
    req = Request("ann", 40, 1.0, 1024, 1.0)
    assert place(state, req) == place(state, req, exclude=frozenset())
    only = frozenset({"GPU-c-3", "GPU-c-5"})
    p = place(state, req, only=only)
    assert {s.device_uuid for s in p.shares} == only
    with pytest.raises(NoFit):
        place(state, Request("ann", 60, 1.0, 1024, 1.0), only=only)
    every_a100 = frozenset(u for u, d in state.devices.items() if d.model == "A100")
    assert place(state, req, exclude=every_a100).host == "b"
    state.check_indexes()


def test_the_queue_keeps_reserved_devices_for_their_holder_and_says_why():
    state = PoolState.build([box("b", 2, "L4", "")])
    r = reserve(state, [], [], "ann", "b", "L4", 2, T0 + 4 * H, T0 + 8 * H, "r1")
    qs = [Queued("q1", Request("bob", PER, 1.0, 1024, 6.0), T0 - 10),
          Queued("q2", Request("cy", PER, 1.0, 1024, 2.0), T0 - 5)]
    p = plan(state, [], qs, now=T0, quotas=Quotas.empty(), fairshare=FairShare(), held={},
             restrict=lambda req, t: restriction([r], req.user, t, t + req.max_hours * H))
    assert [q.id for q, _ in p.admitted] == ["q2"]  # ends before T1
    est = p.estimates["q1"]
    assert est.reason.startswith("waiting: 2 × L4 on b reserved until") and "ann" not in est.reason
    # it starts when the reservation is over (not "unknown", not before)
    assert est.latest == r.end


def test_a_promised_request_kept_out_by_a_reservation_keeps_its_promise_and_reason():
    """queuefix's promises with the reservations' rule: the promise (the
    reservation's end) holds pass after pass, backfill still fills the gap
    before T1, and strict order says the same reason."""
    state = PoolState.build([box("b", 2, "L4", "")])
    r = reserve(state, [], [], "ann", "b", "L4", 2, T0 + 4 * H, T0 + 8 * H, "r1")
    rule = lambda req, t: restriction([r], req.user, t, t + req.max_hours * H)  # noqa: E731
    q1 = Queued("q1", Request("bob", 2 * PER, 1.0, 1024, 6.0), T0 - 10, first_latest=r.end)
    q2 = Queued("q2", Request("cy", PER, 1.0, 1024, 2.0), T0 - 5)
    q3 = Queued("q3", Request("cy", PER, 1.0, 1024, 9.0), T0 - 1)  # would run into T1
    for backfill in (True, False):
        p = plan(PoolState.build([box("b", 2, "L4", "")]), [], [q1, q2, q3], now=T0, quotas=Quotas.empty(),
                 fairshare=FairShare(), held={}, restrict=rule, backfill=backfill)
        est = p.estimates["q1"]
        assert est.reason.startswith("waiting: 2 × L4 on b reserved until") and "ann" not in est.reason
        assert est.latest == r.end
        if backfill:
            assert [q.id for q, _ in p.admitted] == ["q2"]
            assert p.estimates["q3"].latest is not None and p.estimates["q3"].latest >= r.end
        else:  # nothing starts behind a request that waits
            assert p.admitted == []


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ann", "bob", "cy"]), st.sampled_from([("a", "A100"), ("c", "A100")]),
                          st.integers(1, 8), st.integers(0, 6), st.integers(1, 12)), max_size=5),
       st.lists(st.tuples(st.sampled_from(["ann", "bob", "cy", "dee"]), st.sampled_from([5, 10, 20, 40, 80, 160]),
                          st.integers(1, 10), st.one_of(st.none(), st.integers(0, 20))), min_size=1, max_size=10),
       st.booleans())
def test_nothing_the_queue_starts_uses_anothers_reserved_device(bookings, requests, backfill):
    """Whichever way a request starts (placement's choice or, for a promise,
    the simulation's own), it stays off devices others have reserved during
    its run; the holder's own reserved devices stay open to it."""
    state = pool()
    made: list[Reservation] = []
    for n, (user, (host, model), gpus, start, length) in enumerate(bookings):
        try:
            made.append(reserve(state, made, [], user, host, model, gpus, T0 + start * H,
                                T0 + (start + length) * H, f"r{n}"))
        except (Conflict, ValueError):
            pass
    qs = [Queued(f"q{k}", Request(user, units, 1.0, 1024, float(hours)), T0 - 100 + k,
                 first_latest=None if promise is None else T0 + promise * H)
          for k, (user, units, hours, promise) in enumerate(requests)]
    rule = lambda req, t: restriction(made, req.user, t, t + req.max_hours * H)  # noqa: E731
    p = plan(state, [], qs, now=T0, quotas=Quotas.empty(), fairshare=FairShare(), held={},
             restrict=rule, backfill=backfill)
    for q, a in p.admitted:
        used = {s.device_uuid for s in a.shares}
        assert not used & rule(q.req, T0).exclude, (q, a, made)
    state.check_indexes()
