"""The allocator's database, against a real SQLite file: round trips, restarts,
concurrent grants (threads and two engines), quantum changes and host syncs."""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from gpu_allocator.model import Device, Host, Pool, Request
from gpu_allocator.placement import NoFit, place
from gpu_allocator.store import Store, StoreError

PER_GPU = 20


def demo_hosts() -> list[Host]:
    a = tuple(Device("node-a", i, f"GPU-a{i}", "A100-SXM4-80GB", 81920, "nvswitch0") for i in range(4))
    b = tuple(Device("node-b", i, f"GPU-b{i}", "L4", 24576) for i in range(2))
    return [Host("node-a", a, 32.0, 262144), Host("node-b", b, 16.0, 131072)]


def solo_host(cpus=64.0, mem=10**6) -> list[Host]:
    return [Host("solo", (Device("solo", 0, "GPU-solo0", "L4", 24576),), cpus, mem)]


def url_for(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(tmp_path) -> str:
    return url_for(tmp_path / "allocator.db")


@pytest.fixture
def store(db_url) -> Store:
    s = Store(db_url, PER_GPU)
    s.sync_hosts(demo_hosts(), "inventory")
    yield s
    s.engine.dispose()


def req(units, user="ann", cpu=1.0, mem=1024, hours=8.0) -> Request:
    return Request(user=user, units=units, cpu=cpu, mem_mb=mem, max_hours=hours)


def check_db_invariants(engine, units_per_gpu=PER_GPU) -> None:
    """Read the raw tables: no device over-committed, whole GPUs exclusive, hosts
    within their CPU and memory."""
    with engine.connect() as c:
        shares = c.execute(
            text(
                "SELECT s.device_uuid, s.units, a.id, a.units FROM shares s "
                "JOIN allocations a ON a.id = s.allocation_id WHERE a.state = 'granted'"
            )
        ).all()
        hosts = {r.name: r for r in c.execute(text("SELECT name, cpus, memory_mb FROM hosts"))}
        usage = c.execute(
            text(
                "SELECT host, SUM(cpu) AS cpu, SUM(mem_mb) AS mem FROM allocations "
                "WHERE state = 'granted' GROUP BY host"
            )
        ).all()
        # a share's units match its allocation's total
        totals = c.execute(
            text(
                "SELECT a.id, a.units, COALESCE(SUM(s.units), 0) FROM allocations a "
                "LEFT JOIN shares s ON s.allocation_id = a.id GROUP BY a.id, a.units"
            )
        ).all()
    used: dict[str, int] = defaultdict(int)
    holders: dict[str, set[str]] = defaultdict(set)
    for uuid, units, aid, _ in shares:
        used[uuid] += units
        holders[uuid].add(aid)
    for uuid, n in used.items():
        assert n <= units_per_gpu, f"{uuid} over-committed: {n} units"
    for uuid, _, aid, a_units in shares:
        if a_units >= units_per_gpu:
            assert holders[uuid] == {aid}, f"whole GPU {uuid} shared"
    for host, cpu, mem in usage:
        assert cpu <= hosts[host].cpus + 1e-6 and mem <= hosts[host].memory_mb
    for aid, units, share_units in totals:
        assert units == share_units, f"{aid}: {units} units but shares hold {share_units}"


# --------------------------------------------------------------------------- round trip


def test_grant_get_list_release_round_trip(store):
    idle = store.pool().free_units()
    assert set(idle.values()) == {PER_GPU} and len(idle) == 6

    a = store.grant(req(10, user="ann", cpu=2.5, mem=4096, hours=3), server="ann/gpu")
    assert (a.user, a.server, a.units, a.cpu, a.mem_mb, a.max_hours, a.state) == (
        "ann", "ann/gpu", 10, 2.5, 4096, 3.0, "granted")
    assert a.host == "node-a" and [(s.device_uuid, s.units) for s in a.shares] == [("GPU-a0", 10)]
    assert a.created > 0 and len(a.id) >= 16

    b = store.grant(req(2 * PER_GPU, user="bob"))
    assert b.host == "node-a" and {s.device_uuid for s in b.shares} == {"GPU-a1", "GPU-a2"}

    assert store.get(a.id) == a
    assert store.get("no-such-id") is None
    assert [x.id for x in store.list()] == [a.id, b.id]
    assert [x.id for x in store.list(user="bob")] == [b.id]
    assert store.list(user="carol") == []

    pool = store.pool()
    assert pool.free_units() == idle | {"GPU-a0": 10, "GPU-a1": 0, "GPU-a2": 0}
    assert pool.host_usage("node-a") == (3.5, 4096 + 1024)

    released = store.release(a.id)
    assert released.id == a.id and released.state == "released"
    assert store.get(a.id).state == "released"
    assert [x.id for x in store.list()] == [b.id]
    assert {x.id: x.state for x in store.list(live_only=False)} == {a.id: "released", b.id: "granted"}
    assert store.pool().free_units() == idle | {"GPU-a1": 0, "GPU-a2": 0}

    store.release(b.id)
    assert store.pool().free_units() == idle
    assert store.pool().allocations == ()
    check_db_invariants(store.engine)


def test_release_is_idempotent(store):
    a = store.grant(req(5))
    first = store.release(a.id)
    with store.engine.connect() as c:
        stamp = c.execute(text("SELECT released_at FROM allocations WHERE id = :i"), {"i": a.id}).scalar()
    assert stamp is not None
    second = store.release(a.id)
    assert first == second and second.state == "released"
    with store.engine.connect() as c:
        assert c.execute(text("SELECT released_at FROM allocations WHERE id = :i"), {"i": a.id}).scalar() == stamp
    assert store.release("unknown") is None
    # releasing twice does not hand the shares back twice
    assert store.pool().free_units()["GPU-a0"] == PER_GPU
    assert store.pool().allocations == ()


def test_nofit_writes_nothing(store):
    store.grant(req(4 * PER_GPU))  # all of node-a
    store.grant(req(2 * PER_GPU))  # all of node-b
    before = store.list(live_only=False)
    with pytest.raises(NoFit, match="node-a: 0 idle GPU"):
        store.grant(req(1))
    assert store.list(live_only=False) == before


def test_state_survives_a_restart(db_url):
    first = Store(db_url, PER_GPU)
    first.sync_hosts(demo_hosts(), "inventory")
    a = first.grant(req(15, user="ann"), server="s")
    b = first.grant(req(PER_GPU, user="bob"))
    pool_before = first.pool()
    first.engine.dispose()

    again = Store(db_url, PER_GPU)
    assert again.pool() == pool_before
    assert again.get(a.id) == a and again.get(b.id) == b
    # the new instance places around the old shares: 5 units go next to ann's 15
    c = again.grant(req(5))
    assert [(s.device_uuid, s.units) for s in c.shares] == [(a.shares[0].device_uuid, 5)]
    again.release(b.id)
    again.engine.dispose()

    third = Store(db_url, PER_GPU)
    assert {x.id for x in third.list()} == {a.id, c.id}
    assert third.get(b.id).state == "released"
    third.engine.dispose()


# --------------------------------------------------------------------------- concurrency


def _race(stores: list[Store], units: int) -> tuple[list, list]:
    barrier = threading.Barrier(len(stores))
    wins, losses, errors = [], [], []

    def worker(s: Store, i: int):
        barrier.wait()
        try:
            wins.append(s.grant(req(units, user=f"u{i}")))
        except NoFit:
            losses.append(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return wins, losses


@pytest.mark.parametrize("engines", [1, 2], ids=["two-threads-one-store", "two-stores"])
def test_two_grants_race_for_the_last_share(tmp_path, engines):
    for round_ in range(8):
        url = url_for(tmp_path / f"race{engines}-{round_}.db")
        first = Store(url, PER_GPU)
        first.sync_hosts(solo_host(), "inventory")
        first.grant(req(15))  # 5 units left on the only device
        stores = [first, first] if engines == 1 else [first, Store(url, PER_GPU)]
        wins, losses = _race(stores, 5)
        assert len(wins) == 1 and len(losses) == 1
        assert first.pool().free_units() == {"GPU-solo0": 0}
        check_db_invariants(first.engine)
        for s in {id(s): s for s in stores}.values():
            s.engine.dispose()


def test_many_parallel_grants_never_over_commit(tmp_path):
    url = url_for(tmp_path / "stress.db")
    stores = [Store(url, PER_GPU), Store(url, PER_GPU)]  # two engines, as two processes
    stores[0].sync_hosts(demo_hosts(), "inventory")
    n_threads, per_thread = 8, 32
    granted, refused, released = [], [], []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def worker(i: int):
        rnd = random.Random(i)
        s = stores[i % 2]
        mine = []
        barrier.wait()
        try:
            for _ in range(per_thread):
                if mine and rnd.random() < 0.3:
                    s.release(mine.pop(rnd.randrange(len(mine))).id)
                    with lock:
                        released.append(1)
                units = rnd.choice([1, 3, 5, 10, 19, PER_GPU, 2 * PER_GPU])
                try:
                    a = s.grant(req(units, user=f"u{i}", cpu=rnd.choice([0.1, 0.5, 2.0]), mem=1024))
                except NoFit:
                    with lock:
                        refused.append(1)
                    continue
                mine.append(a)
                with lock:
                    granted.append(a)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(granted) + len(refused) == n_threads * per_thread
    # the pool was contended: some requests were refused, many were granted
    assert refused and len(granted) >= 10
    check_db_invariants(stores[0].engine)
    live = stores[1].list()
    assert len(live) == len(granted) - len(released)
    assert len({a.id for a in granted}) == len(granted)
    # the free map the store reports matches the shares it holds
    pool = stores[0].pool()
    assert all(0 <= f <= PER_GPU for f in pool.free_units().values())
    for s in stores:
        s.engine.dispose()


# --------------------------------------------------------------------------- quantum


def test_quantum_change_with_live_shares_is_refused(db_url):
    s = Store(db_url, 20)
    s.sync_hosts(demo_hosts(), "inventory")
    a = s.grant(req(5))
    with pytest.raises(StoreError) as e:
        Store(db_url, 10)
    assert "1/20" in str(e.value) and "1/10" in str(e.value)
    # the refused start changed nothing
    assert Store(db_url, 20).get(a.id).state == "granted"

    s.release(a.id)
    s.engine.dispose()
    # only released allocations left: the quantum may change, and it sticks
    t = Store(db_url, 10)
    assert t.pool().units_per_gpu == 10
    b = t.grant(req(5))
    assert b.units == 5 and t.pool().free_units()[b.shares[0].device_uuid] == 5
    with pytest.raises(StoreError, match="1/10"):
        Store(db_url, 20)
    t.engine.dispose()


def test_same_quantum_restarts_with_live_shares(db_url):
    s = Store(db_url, 4)
    s.sync_hosts(solo_host(), "inventory")
    s.grant(req(3))
    assert Store(db_url, 4).pool().free_units() == {"GPU-solo0": 1}


# --------------------------------------------------------------------------- hosts


def test_sync_hosts_keeps_a_vanished_busy_host_as_lost(store):
    store.grant(req(4 * PER_GPU))  # node-a, all of it
    on_b = store.grant(req(PER_GPU, user="bob"))
    assert on_b.host == "node-b"
    a_only = [h for h in demo_hosts() if h.name == "node-a"]

    store.sync_hosts(a_only, "inventory")
    hosts = {h.name: h for h in store.pool().hosts}
    assert hosts["node-b"].state == "lost" and hosts["node-a"].state == "up"
    assert len(hosts["node-b"].devices) == 2  # its devices stay, with their shares
    assert store.get(on_b.id).state == "granted"
    assert store.pool().free_units()["GPU-b0"] == 0
    # a lost host takes nothing new, although GPU-b1 is idle
    with pytest.raises(NoFit):
        store.grant(req(1))

    # it comes back: up again with the same shares
    store.sync_hosts(demo_hosts(), "inventory")
    assert {h.name: h.state for h in store.pool().hosts} == {"node-a": "up", "node-b": "up"}
    assert store.pool().free_units()["GPU-b0"] == 0
    assert store.grant(req(1)).shares[0].device_uuid == "GPU-b1"


def test_sync_hosts_deletes_a_vanished_idle_host(store):
    a_only = [h for h in demo_hosts() if h.name == "node-a"]
    store.grant(req(3))  # on node-a: node-b is idle
    store.sync_hosts(a_only, "inventory")
    pool = store.pool()
    assert [h.name for h in pool.hosts] == ["node-a"]
    assert set(pool.free_units()) == {f"GPU-a{i}" for i in range(4)}
    with store.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM devices WHERE host = 'node-b'")).scalar() == 0


def test_a_lost_host_is_deleted_once_its_shares_are_released(store):
    store.grant(req(4 * PER_GPU))
    on_b = store.grant(req(5))
    a_only = [h for h in demo_hosts() if h.name == "node-a"]
    store.sync_hosts(a_only, "inventory")
    assert {h.name: h.state for h in store.pool().hosts}["node-b"] == "lost"
    store.release(on_b.id)
    store.sync_hosts(a_only, "inventory")
    assert [h.name for h in store.pool().hosts] == ["node-a"]


def test_sync_hosts_only_touches_its_own_source(store):
    gpu_box = Host("gpu-box", (Device("gpu-box", 0, "GPU-real0", "H100", 81559, ""),), 16.0, 65536)
    store.sync_hosts([gpu_box], "nvml")
    store.sync_hosts([], "inventory")  # the inventory is emptied
    assert [h.name for h in store.pool().hosts] == ["gpu-box"]


def test_sync_hosts_updates_capacity_and_devices(store):
    a, b = demo_hosts()
    fewer = Host("node-b", b.devices[:1], 8.0, 65536)
    store.sync_hosts([a, fewer], "inventory")
    hosts = {h.name: h for h in store.pool().hosts}
    assert hosts["node-b"] == fewer
    assert hosts["node-a"] == a


# --------------------------------------------------------------------------- stateful


class StoreMachine(RuleBasedStateMachine):
    """The store against a model: what it grants is what placement on its own pool
    says; releasing hands back exactly the released shares; restarts change nothing."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="gpuhub-store-")
        self.url = url_for(Path(self.dir) / "m.db")
        self.store = Store(self.url, PER_GPU)
        self.store.sync_hosts(demo_hosts(), "inventory")
        self.live: dict[str, object] = {}

    def model(self) -> Pool:
        return Pool(tuple(demo_hosts()), tuple(self.live.values()), PER_GPU)

    @rule(
        units=st.one_of(st.integers(1, PER_GPU - 1), st.sampled_from([PER_GPU, 2 * PER_GPU, 3 * PER_GPU])),
        cpu=st.sampled_from([0.5, 1.0, 4.0]),
    )
    def grant(self, units, cpu):
        r = req(units, cpu=cpu)
        try:
            expected = place(self.model(), r)
        except NoFit:
            expected = None
        try:
            a = self.store.grant(r)
        except NoFit:
            assert expected is None, f"store refused what fits: {expected}"
            return
        assert expected is not None, "store granted what does not fit"
        assert (a.host, a.shares) == (expected.host, expected.shares)
        self.live[a.id] = a

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 1000))
    def release(self, pick):
        aid = sorted(self.live)[pick % len(self.live)]
        before = self.store.pool().free_units()
        victim = self.live.pop(aid)
        assert self.store.release(aid).state == "released"
        after = self.store.pool().free_units()
        expected = dict(before)
        for s in victim.shares:
            expected[s.device_uuid] += s.units
        assert after == expected
        assert self.store.release(aid).state == "released"  # again: no change
        assert self.store.pool().free_units() == expected

    @rule()
    def restart(self):
        self.store.engine.dispose()
        self.store = Store(self.url, PER_GPU)

    @invariant()
    def matches_the_model(self):
        pool = self.store.pool()
        assert pool.free_units() == self.model().free_units()
        assert {a.id for a in pool.allocations} == set(self.live)

    def teardown(self):
        self.store.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=10, stateful_step_count=15, deadline=None)
test_store_matches_the_model = StoreMachine.TestCase
