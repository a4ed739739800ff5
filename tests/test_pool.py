"""The live pool and its ledger: memory is the authority, the database its
durable record. Every test runs on SQLite and on PostgreSQL (fixture db_url)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gpu_allocator.core.model import AllocationState, Host, HostState, Request
from gpu_allocator.core.placement import NoFit
from gpu_allocator.core.reservations import Conflict
from gpu_allocator.pool import HostConflict, KeyConflict, LivePool
from gpu_allocator.store import Ledger, StoreError
from gpuhub.db import WriterLock
from tests.support import DATA, PER_GPU, box, demo_hosts, open_pool, reopen



def same_state(a: LivePool, b: LivePool) -> None:
    assert a.state.snapshot() == b.state.snapshot()
    assert {k: v for k, v in a.hub_server.items()} == {k: v for k, v in b.hub_server.items()}
    b.state.check_indexes()


async def test_grant_get_list_release_round_trip(db_url):
    pool = await open_pool(db_url, demo_hosts())
    a, created = await pool.grant(Request("ann", 10, 2.0, 4096, 4.0), server="s", hub_server="")
    assert created and a.state == AllocationState.GRANTED and a.host in ("node-a", "node-b")
    assert [x.id for x in pool.live("ann")] == [a.id] and pool.live("bob") == []
    again = await reopen(pool)
    same_state(pool, again)
    assert (await again.get(a.id)).shares == a.shares
    released = await again.finish(a.id)
    assert released.state == AllocationState.RELEASED and released.released
    assert await again.finish(a.id) is None  # idempotent
    assert (await again.get(a.id)).state == AllocationState.RELEASED  # history, from the ledger
    third = await reopen(again)
    assert third.state.allocations == {} and third.state.free == {
        d.uuid: PER_GPU for h in demo_hosts() for d in h.devices
    }
    third.close()


async def test_a_retried_key_gets_the_same_allocation_even_after_a_restart(db_url):
    pool = await open_pool(db_url, demo_hosts())
    a, created = await pool.grant(Request("ann", 20), key="ann//k1")
    b, created_again = await pool.grant(Request("ann", 20), key="ann//k1")
    assert created and not created_again and a == b
    assert len(pool.state.allocations) == 1
    with pytest.raises(KeyConflict):
        await pool.grant(Request("bob", 20), key="ann//k1")
    again = await reopen(pool)
    c, created = await again.grant(Request("ann", 20), key="ann//k1")
    assert not created and c.id == a.id
    # concurrent retries of one key: one grant
    results = await asyncio.gather(*(again.grant(Request("cy", 10), key="cy//k") for _ in range(5)))
    assert len({r[0].id for r in results}) == 1 and sum(r[1] for r in results) == 1
    # a released key may be used again (its row no longer carries it)
    await again.finish(c.id)
    d, created = await again.grant(Request("ann", 20), key="ann//k1")
    assert created and d.id != a.id
    again.close()


async def test_nofit_writes_nothing(db_url):
    pool = await open_pool(db_url, demo_hosts())
    with pytest.raises(NoFit, match="Not enough free resources"):
        await pool.grant(Request("ann", 8 * PER_GPU))
    assert pool.commits == 1  # only the hosts' sync
    assert (await reopen(pool)).state.allocations == {}


async def test_concurrent_grants_share_commits_and_never_overcommit(db_url):
    pool = await open_pool(db_url, demo_hosts())
    reqs = [Request(f"u{i}", 5) for i in range(40)]  # 6 GPUs hold 24 quarter shares
    results = await asyncio.gather(*(pool.grant(r) for r in reqs), return_exceptions=True)
    granted = [r[0] for r in results if not isinstance(r, Exception)]
    assert len(granted) == 24 and all(isinstance(r, NoFit) for r in results if isinstance(r, Exception))
    assert all(v == 0 for v in pool.state.free.values())
    assert pool.commits < 1 + 24  # group commit: fewer transactions than grants
    same_state(pool, await reopen(pool))


async def test_a_failed_commit_gives_the_reserved_share_back(db_url, monkeypatch):
    pool = await open_pool(db_url, demo_hosts())
    free = dict(pool.state.free)

    def broken(ops):
        raise StoreError("disk full")

    monkeypatch.setattr(pool.ledger, "write", broken)
    with pytest.raises(StoreError):
        await pool.grant(Request("ann", 10))
    assert pool.state.free == free and pool.state.allocations == {}
    pool.state.check_indexes()
    pool.close()
    pool.ledger.close()


async def test_quantum_change_with_live_shares_is_refused(db_url):
    pool = await open_pool(db_url, demo_hosts())
    a, _ = await pool.grant(Request("ann", 10))
    pool.close()
    pool.ledger.close()
    with pytest.raises(StoreError, match="1/20 GPU units"):
        Ledger(db_url, 10)
    pool = await open_pool(db_url)
    await pool.finish(a.id)
    pool.close()
    pool.ledger.close()
    Ledger(db_url, 10).close()  # nothing live: the quantum may change


async def test_sync_hosts_keeps_busy_vanished_hosts_as_lost_and_deletes_idle_ones(db_url):
    pool = await open_pool(db_url, demo_hosts())
    a, _ = await pool.grant(Request("ann", PER_GPU * 2))  # node-a
    await pool.sync_hosts([box("node-c")], "inventory")
    assert pool.state.hosts["node-a"].state == HostState.LOST
    assert "node-b" not in pool.state.hosts and "node-c" in pool.state.hosts
    again = await reopen(pool)
    same_state(pool, again)
    await again.finish(a.id)
    await again.sync_hosts([box("node-c")], "inventory")
    assert set(again.state.hosts) == {"node-c"}
    again.close()


async def test_register_heartbeat_drain_and_loss(db_url):
    pool = await open_pool(db_url, [])
    view = await pool.register_host(box("b1"), running=[], docker={"url": "tcp://b1:2375"}, now=100.0)
    assert (view["state"], view["shares"], view["unknown"]) == (HostState.UP, [], [])
    a, _ = await pool.grant(Request("ann", 10))
    commits = pool.commits
    view = pool.heartbeat("b1", running=[a.id, "ghost"], usage={"devices": []}, now=101.0)
    assert [s.id for s in view["shares"]] == [a.id] and view["unknown"] == ["ghost"]
    assert pool.commits == commits  # a heartbeat writes nothing
    assert pool.info["b1"].last_heartbeat == 101.0 and pool.info["b1"].unknown == ["ghost"]
    assert pool.heartbeat("nope", running=[], usage=None) is None

    # drained: keeps its share, takes nothing new, stays drained on re-registration
    assert await pool.set_drained("b1", True) and not await pool.set_drained("nope", True)
    with pytest.raises(NoFit):
        await pool.grant(Request("bob", 1))
    assert (await pool.register_host(box("b1"), running=[a.id], now=102.0))["state"] == HostState.DRAINED

    # lost: one transaction; its allocation is lost, its shares free
    assert await pool.mark_lost(cutoff=102.0, now=110.0) == []
    assert await pool.mark_lost(cutoff=102.5, now=110.0) == [("b1", [a.id])]
    assert (await pool.get(a.id)).state == AllocationState.LOST
    assert pool.state.hosts["b1"].state == HostState.LOST
    assert pool.state.free == {"GPU-b1-0": PER_GPU, "GPU-b1-1": PER_GPU}
    assert pool.heartbeat("b1", running=[], usage=None) is None  # must register again
    assert await pool.finish(a.id) is None  # the spawner's release is a no-op
    again = await reopen(pool)
    same_state(pool, again)
    pool = again
    # it comes back still running the lost share: fenced until the agent stopped it
    view = await pool.register_host(box("b1"), running=[a.id], now=120.0)
    assert (view["state"], view["shares"], view["unknown"]) == (HostState.FENCING, [], [a.id])
    # then drained still (an admin's drain outlives a loss)
    view = pool.heartbeat("b1", running=[], usage=None, now=121.0)
    assert view["state"] == HostState.DRAINED
    await pool.set_drained("b1", False)
    assert pool.state.hosts["b1"].state == HostState.UP
    pool.close()


async def test_registration_conflicts_and_inventory_hosts(db_url):
    pool = await open_pool(db_url, [box("inv")])
    with pytest.raises(HostConflict, match="GPU-inv-0 is already registered by host 'inv'"):
        await pool.register_host(Host("other", box("inv").devices, 8.0, 1024), running=[])
    # an agent takes over a declared host of the same name; the inventory does not take it back
    await pool.register_host(box("inv", 1), running=[])
    await pool.sync_hosts([box("inv")], "inventory")
    assert pool.info["inv"].source == "agent" and len(pool.state.hosts["inv"].devices) == 1
    # a registration may not drop a device that carries a share
    await pool.grant(Request("ann", 10))
    with pytest.raises(HostConflict, match="carry live shares"):
        await pool.register_host(box("inv", 0), running=[])
    # only agent hosts can be lost
    await pool.sync_hosts([box("inv2")], "inventory")
    lost = await pool.mark_lost(cutoff=time.time() + 1)
    assert [h for h, _ in lost] == ["inv"]
    pool.close()


def test_a_database_of_gpuhub_0_1_upgrades_in_place(tmp_path):
    """tests/data/allocator-v0.1.sql: a database as gpuhub 0.1 left it (2 live
    allocations, 1 released), made by that version's own Store."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as c:
        c.executescript((DATA / "allocator-v0.1.sql").read_text())
    ledger = Ledger(f"sqlite:///{path}", PER_GPU)
    assert ledger.revision() == "0009"
    loaded = ledger.load()
    assert [h.name for h, _ in loaded.hosts] == ["node-a", "node-b"]
    live = {a.user: a for a, _ in loaded.allocations}
    assert set(live) == {"alice", "bob"}
    assert [(s.device_uuid, s.units) for s in live["alice"].shares] == [("GPU-a0", 10)]
    assert [s.units for s in live["bob"].shares] == [20, 20]
    assert ledger.get("716b485da7554551").state == AllocationState.RELEASED
    ledger.close()
    Ledger(f"sqlite:///{path}", PER_GPU).close()  # a second start: nothing to do


def test_one_writer_per_database(db_url):
    first = WriterLock(db_url, "gpu-allocator")
    second = WriterLock(db_url, "gpu-allocator")
    assert first.try_acquire()
    assert not second.try_acquire()  # a second allocator waits as a standby
    assert first.alive()
    first.release()
    assert second.try_acquire()  # and takes over once the first is gone
    second.release()


class PoolMachine(RuleBasedStateMachine):
    """Random grants, releases, host losses, drains and restarts: the live state
    always equals what a fresh load from the database gives."""

    url: str = ""

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.pool: LivePool | None = None

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    @initialize()
    def start(self):
        async def go():
            pool = await open_pool(self.url, [], "inventory")
            for h in list(pool.state.hosts):  # a clean slate per example
                for a in list(pool.state.by_host.get(h, {})):
                    await pool.finish(a)
            for r in pool.reservations():
                await pool.cancel_reservation(r.id)
            await pool.sync_hosts([], "inventory")
            for name in list(pool.state.hosts):
                await pool.sync_hosts([], "agent")
            for h in (box("m1", 4, island="nv"), box("m2", 2)):
                await pool.register_host(h, running=[], now=time.time())
            return pool

        self.pool = self.run(go())

    @rule(units=st.sampled_from([1, 5, 10, 19, 20, 40, 80]), user=st.sampled_from(["a", "b"]),
          key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])))
    def grant(self, units, user, key):
        try:
            self.run(self.pool.grant(Request(user, units, 1.0, 1024), key=key and f"{user}/{key}"))
        except (NoFit, KeyConflict):
            pass

    @precondition(lambda self: self.pool and self.pool.state.allocations)
    @rule(data=st.data())
    def release(self, data):
        aid = data.draw(st.sampled_from(sorted(self.pool.state.allocations)))
        self.run(self.pool.finish(aid))

    @rule(name=st.sampled_from(["m1", "m2"]))
    def lose_and_return(self, name):
        async def go():
            self.pool.info[name].last_heartbeat = 0.0
            await self.pool.mark_lost(cutoff=1.0)
            await self.pool.register_host(
                box(name, 4, island="nv") if name == "m1" else box(name, 2), running=[], now=time.time()
            )

        self.run(go())

    @rule(user=st.sampled_from(["a", "b"]), name=st.sampled_from(["m1", "m2"]), gpus=st.integers(1, 4),
          start=st.integers(-1, 10), hours=st.integers(1, 4))
    def reserve(self, user, name, gpus, start, hours):
        now = time.time()
        try:
            self.run(self.pool.reserve(user, name, "H100", gpus, now + start * 3600, now + (start + hours) * 3600,
                                       created_by=user))
        except (Conflict, ValueError):
            pass

    @precondition(lambda self: self.pool and self.pool.reserved)
    @rule(data=st.data())
    def unreserve(self, data):
        rid = data.draw(st.sampled_from(sorted(self.pool.reserved)))
        assert self.run(self.pool.cancel_reservation(rid)).id == rid

    @rule(name=st.sampled_from(["m1", "m2"]), drained=st.booleans())
    def drain(self, name, drained):
        self.run(self.pool.set_drained(name, drained))

    @rule()
    def restart(self):
        self.pool = self.run(reopen(self.pool))

    @invariant()
    def memory_equals_a_fresh_load(self):
        if self.pool is None:
            return
        fresh = self.run(open_pool(self.pool.ledger.url))
        try:
            assert fresh.state.snapshot()["allocations"] == self.pool.state.snapshot()["allocations"]
            assert fresh.state.free == self.pool.state.free
            assert {n: h.state for n, h in fresh.state.hosts.items()} == {
                n: h.state for n, h in self.pool.state.hosts.items()
            }
            self.pool.state.check_indexes()
            assert all(0 <= f <= PER_GPU for f in self.pool.state.free.values())
            now = time.time()
            assert fresh.reservations(now=now) == self.pool.reservations(now=now)
            # nobody else's share runs into a reservation's time on its devices
            for r in self.pool.reservations(now=now):
                for a in self.pool.state.allocations.values():
                    if a.user != r.user and set(r.devices) & {s.device_uuid for s in a.shares}:
                        assert a.created + a.max_hours * 3600 <= r.start or r.end <= a.created, (a, r)
        finally:
            fresh.close()
            fresh.ledger.close()

    def teardown(self):
        if self.pool is not None:
            self.pool.close()
            self.pool.ledger.close()
        self.loop.close()


def test_memory_always_equals_a_fresh_load(db_url):
    PoolMachine.url = db_url
    run = PoolMachine.TestCase
    run.settings = settings(
        max_examples=8, stateful_step_count=15, deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    run().runTest()
