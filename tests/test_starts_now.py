"""The form never says "starts now" when it would not (issue #19): POST estimates'
``starts_now`` (LivePool.start_estimate) equals whether the same request with
``"queue": false`` is granted at once, over random pools: hosts (in host pools
open to some groups, issue #20), running shares, waiting requests, a
reservation and a quota, a quota per pool (with a share of bob's that may
count against it), the user's groups and the pool they name; where it lands is
where it is granted, never on a host in a pool closed to them, and never takes
bob over a pool's quota."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_allocator.core.model import Allocation, Device, Host, Request
from gpu_allocator.core.placement import NoFit
from gpu_allocator.core.pools import PoolError, open_pools, parse_pools
from gpu_allocator.core.quota import Limits
from gpu_allocator.core.reservations import Conflict
from gpu_allocator.pool import LivePool, QuotaExceeded
from gpu_allocator.store import Ledger

PER = 20
NOW = 1_900_000_000.0
H = 3600.0
MODELS = ("A100", "L4")

#: the host pools: default open to everyone, team-a to its group, lab to nobody but dave
POOLS = parse_pools({"team-a": {"groups": ["team-a"]}, "lab": {"users": ["dave"]}})
HOST_POOLS = (("default",), ("team-a",), ("default", "team-a"), ("lab",))

hosts_st = st.lists(st.tuples(st.integers(1, 4), st.sampled_from(MODELS), st.sampled_from([4.0, 8.0, 16.0]),
                              st.sampled_from([8192, 32768]), st.sampled_from(HOST_POOLS)), min_size=1, max_size=3)
req_st = st.tuples(st.sampled_from([0, 5, 10, 20, 40]), st.sampled_from([1.0, 4.0, 8.0, 16.0]),
                   st.sampled_from([1024, 16384]), st.sampled_from([1.0, 8.0]),
                   st.sampled_from([(), ("A100",), ("L4",)]))
#: bob's groups and the pool he names (None: any open to him)
who_st = st.tuples(st.sampled_from([(), ("team-a",), ("other",)]), st.sampled_from([None, "default", "team-a", "lab"]))


def request(user: str, r, pool: str | None = None) -> Request:
    units, cpu, mem, hours, models = r
    return Request(user, units, cpu, mem, hours, frozenset(models), pool=pool)


#: a quota of bob's in one pool (gpus, sessions), and whether he holds a share first
pool_quota_st = st.none() | st.tuples(st.sampled_from(["default", "team-a"]), st.sampled_from([None, 0, PER // 4, PER]),
                                      st.sampled_from([None, 1, 2]), st.booleans())


def in_pool(pool: LivePool, user: str, name: str) -> tuple[int, int]:
    """(units, sessions) ``user`` holds on hosts in pool ``name``."""
    mine = [a for a in pool.state.allocations.values()
            if a.user == user and name in pool.state.hosts[a.host].pools]
    return sum(a.units for a in mine), len(mine)


async def scenario(url: str, sizes, running, waiting, booking, quota, mine, who=((), None),
                   pool_quota=None) -> None:
    ledger = await asyncio.get_running_loop().run_in_executor(None, Ledger, url, PER)
    pool = LivePool(ledger, PER, pools=POOLS)
    groups, named = who
    try:
        await pool.load()
        hosts = [Host(f"h{i}", tuple(Device(f"h{i}", k, f"GPU-h{i}-{k}", m, 81920) for k in range(n)), c, mem,
                      pools=p)
                 for i, (n, m, c, mem, p) in enumerate(sizes)]
        await pool.sync_hosts(hosts, "inventory")
        for k, r in enumerate(running):  # (run0 is in team-a: it may use every pool but lab)
            try:
                await pool.submit(request(f"run{k}", r), groups=["team-a"] if k == 0 else [], queue=False,
                                  now=NOW - H)
            except NoFit:
                pass
        for k, r in enumerate(waiting):
            try:
                await pool.submit(request(f"wait{k}", r), groups=["team-a"] if k % 2 else [], queue=True,
                                  now=NOW - 60 + k)
            except NoFit:
                pass
        if booking is not None:
            host, gpus = booking
            name = f"h{host % len(hosts)}"
            try:
                await pool.reserve("carol", name, hosts[host % len(hosts)].devices[0].model, gpus,
                                   NOW - H, NOW + 4 * H, created_by="admin", now=NOW - H)
            except (Conflict, ValueError):
                pass
        if quota is not None:
            await pool.set_quota("user", "bob", Limits(gpus=quota))
        if pool_quota is not None:
            name, gpus, sessions, holds = pool_quota
            if holds:  # a share of bob's first, anywhere open to him: it may count in the pool
                try:
                    await pool.submit(Request("bob", PER // 4, 1.0, 1024, 1.0), groups=list(groups), queue=False,
                                      now=NOW - 30)
                except (NoFit, QuotaExceeded):
                    pass
            await pool.set_quota("user", "bob", Limits(gpus=gpus, sessions=sessions), pool=name)
            before = in_pool(pool, "bob", name)
        req = request("bob", mine, named)
        opened = open_pools(POOLS, "bob", groups)
        try:
            est = pool.start_estimate(req, groups, NOW)
        except PoolError:  # a pool not open to bob: refused by both, never granted
            assert named is not None and named not in opened
            with pytest.raises(PoolError):
                await pool.submit(req, groups=list(groups), queue=False, now=NOW)
            return
        try:
            got, _ = await pool.submit(req, groups=list(groups), queue=False, now=NOW)
        except (NoFit, QuotaExceeded):
            got = None
        granted = isinstance(got, Allocation)
        assert est["queue"]["starts_now"] == granted, (est, got, pool.queue)
        if granted:
            assert est["lands"]["host"] == got.host, (est["lands"], got)
            models = {pool.state.devices[s.device_uuid].model for s in got.shares}
            assert set(est["lands"]["models"]) == models
            # never in a pool closed to bob, and in the one he named
            assert set(pool.state.hosts[got.host].pools) & (opened if named is None else {named}), got.host
            if pool_quota is not None and name in pool.state.hosts[got.host].pools:
                # never over bob's quota in a pool it counts in
                units, sessions_ = in_pool(pool, "bob", name)
                assert gpus is None or units <= gpus, (got, before, pool_quota)
                assert sessions is None or sessions_ <= sessions, (got, before, pool_quota)
        else:
            assert est["lands"]["host"] is None
        for name in est["lands"]["hosts"]:  # "any of …" names only hosts he may use
            assert set(pool.state.hosts[name].pools) & opened, (name, est["lands"])
        # every live share is on a host in a pool open to its user's groups
        for a in pool.state.allocations.values():
            assert set(pool.state.hosts[a.host].pools) & pool.open_pools(a.user), a
    finally:
        pool.close()
        ledger.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts_st, st.lists(req_st, max_size=5), st.lists(req_st, max_size=3),
       st.none() | st.tuples(st.integers(0, 2), st.integers(1, 2)),
       st.none() | st.sampled_from([PER // 4, PER]), req_st, who_st, pool_quota_st)
def test_starts_now_is_what_a_request_without_queueing_gets(sizes, running, waiting, booking, quota, mine, who,
                                                            pool_quota):
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(f"sqlite:///{Path(d) / 'pool.sqlite'}", sizes, running, waiting, booking, quota, mine,
                             who, pool_quota))
