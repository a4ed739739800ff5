"""The form never says "starts now" when it would not (issue #19): POST estimates'
``starts_now`` (LivePool.start_estimate) equals whether the same request with
``"queue": false`` is granted at once, over random pools: hosts, running shares,
waiting requests, a reservation and a quota; and where it lands is where it is
granted."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_allocator.core.model import Allocation, Device, Host, Request
from gpu_allocator.core.placement import NoFit
from gpu_allocator.core.quota import Limits
from gpu_allocator.core.reservations import Conflict
from gpu_allocator.pool import LivePool, QuotaExceeded
from gpu_allocator.store import Ledger

PER = 20
NOW = 1_900_000_000.0
H = 3600.0
MODELS = ("A100", "L4")

hosts_st = st.lists(st.tuples(st.integers(1, 4), st.sampled_from(MODELS), st.sampled_from([4.0, 8.0, 16.0]),
                              st.sampled_from([8192, 32768])), min_size=1, max_size=3)
req_st = st.tuples(st.sampled_from([0, 5, 10, 20, 40]), st.sampled_from([1.0, 4.0, 8.0, 16.0]),
                   st.sampled_from([1024, 16384]), st.sampled_from([1.0, 8.0]),
                   st.sampled_from([(), ("A100",), ("L4",)]))


def request(user: str, r) -> Request:
    units, cpu, mem, hours, models = r
    return Request(user, units, cpu, mem, hours, frozenset(models))


async def scenario(url: str, sizes, running, waiting, booking, quota, mine) -> None:
    ledger = await asyncio.get_running_loop().run_in_executor(None, Ledger, url, PER)
    pool = LivePool(ledger, PER)
    try:
        await pool.load()
        hosts = [Host(f"h{i}", tuple(Device(f"h{i}", k, f"GPU-h{i}-{k}", m, 81920) for k in range(n)), c, mem)
                 for i, (n, m, c, mem) in enumerate(sizes)]
        await pool.sync_hosts(hosts, "inventory")
        for k, r in enumerate(running):
            try:
                await pool.submit(request(f"run{k}", r), queue=False, now=NOW - H)
            except NoFit:
                pass
        for k, r in enumerate(waiting):
            try:
                await pool.submit(request(f"wait{k}", r), queue=True, now=NOW - 60 + k)
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
        req = request("bob", mine)
        est = pool.start_estimate(req, (), NOW)
        try:
            got, _ = await pool.submit(req, queue=False, now=NOW)
        except (NoFit, QuotaExceeded):
            got = None
        granted = isinstance(got, Allocation)
        assert est["queue"]["starts_now"] == granted, (est, got, pool.queue)
        if granted:
            assert est["lands"]["host"] == got.host, (est["lands"], got)
            models = {pool.state.devices[s.device_uuid].model for s in got.shares}
            assert set(est["lands"]["models"]) == models
        else:
            assert est["lands"]["host"] is None
    finally:
        pool.close()
        ledger.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts_st, st.lists(req_st, max_size=5), st.lists(req_st, max_size=3),
       st.none() | st.tuples(st.integers(0, 2), st.integers(1, 2)),
       st.none() | st.sampled_from([PER // 4, PER]), req_st)
def test_starts_now_is_what_a_request_without_queueing_gets(sizes, running, waiting, booking, quota, mine):
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(f"sqlite:///{Path(d) / 'pool.sqlite'}", sizes, running, waiting, booking, quota, mine))
