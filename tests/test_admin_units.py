"""The admin panel's pieces without a hub: actions and their audit entries,
GPU-hours over a period, utilisation samples, the paged map, fragmentation,
metrics. Store tests run on SQLite and PostgreSQL (fixture db_url)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_allocator import poolview
from gpu_allocator.admin import accounting, actions
from gpu_allocator.admin.charts import utilisation_chart
from gpu_allocator.admin.samples import Samples
from gpu_allocator.core.model import AllocationState, Request
from gpu_allocator.core.placement import NoFit
from gpu_allocator.metrics import AllocatorMetrics
from tests.support import box, demo_hosts, open_pool, reopen

H = 3600.0


def app_for(pool):
    return SimpleNamespace(pool=pool, log=logging.getLogger("test"))


async def test_revoke_and_drain_are_written_with_their_audit_entries(db_url):
    pool = await open_pool(db_url, demo_hosts())
    app = app_for(pool)
    a, _ = await pool.grant(Request("ann", 10, 1.0, 1024, 4.0), server="")
    assert await actions.set_drained(app, "boss", a.host, True, "disk") is True
    assert await actions.set_drained(app, "boss", "no-such-host", True) is False
    done = await actions.revoke(app, "boss", a.id, "maintenance")
    assert done.state == AllocationState.REVOKED and a.id not in pool.state.allocations
    assert await actions.revoke(app, "boss", a.id) is None  # not live: nothing recorded
    entries, total = actions.read_audit(pool.ledger)
    assert total == 2
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("boss", "revoke", f"allocation:{a.id}"), ("boss", "drain", f"host:{a.host}")]
    assert entries[0]["detail"]["reason"] == "maintenance" and entries[0]["detail"]["user"] == "ann"
    assert actions.revoke_reason(pool.ledger, a.id)["detail"]["reason"] == "maintenance"
    # durable: a fresh load sees the revoked allocation and the drained host
    fresh = await reopen(pool)
    assert (await fresh.get(a.id)).state == AllocationState.REVOKED
    assert fresh.info[a.host].drained
    assert actions.read_audit(fresh.ledger, action="drain")[1] == 1
    fresh.close()


async def test_gpu_hours_count_the_overlap_with_the_period(db_url):
    pool = await open_pool(db_url, demo_hosts())
    t0 = 1_700_000_000.0
    # ann: 0.5 GPU from t0 to t0+4h; bob: 2 GPUs from t0+2h, still running
    a, _ = await pool.grant(Request("ann", 10, 1.0, 1024, 8.0), now=t0)
    await pool.finish(a.id, now=t0 + 4 * H)
    await pool.grant(Request("bob", 40, 1.0, 1024, 8.0), now=t0 + 2 * H)
    # ann's batch job (the hub server job-…): 1 GPU for 1 hour, counted apart too
    j, _ = await pool.grant(Request("ann", 20, 1.0, 1024, 8.0), server="job-0123456789ab", now=t0 + 5 * H)
    await pool.finish(j.id, now=t0 + 6 * H)
    now = t0 + 10 * H

    async def hours(start, end):
        spans = await pool.spans(start, end, now=now)
        return accounting.user_hours(spans, start, end, pool.units_per_gpu)

    u = await hours(t0, t0 + 24 * H)
    assert u["ann"].gpu_hours == pytest.approx(3.0) and u["bob"].gpu_hours == pytest.approx(16.0)
    assert u["ann"].job_gpu_hours == pytest.approx(1.0) and u["bob"].job_gpu_hours == 0
    u = await hours(t0 + 3 * H, t0 + 5 * H)
    assert u["ann"].gpu_hours == pytest.approx(0.5) and u["bob"].gpu_hours == pytest.approx(4.0)
    assert u["ann"].job_gpu_hours == 0
    assert await hours(t0 - 5 * H, t0) == {}
    g = accounting.group_hours(u, {"ml": ["ann", "bob"], "empty": ["zed"]})
    assert g["ml"].gpu_hours == pytest.approx(4.5) and g["empty"].gpu_hours == 0
    text = accounting.to_csv("user", accounting.rows(u), t0, t0 + H)
    assert text.splitlines()[0] == "user,gpu_hours,job_gpu_hours,allocations,period_start,period_end"
    assert text.splitlines()[1].startswith("bob,4.0000,0.0000,1,")
    pool.close()


def test_periods():
    assert accounting.parse_time("2025-01-31") == 1738281600.0
    assert accounting.parse_time("2025-01-31", end=True) == 1738281600.0 + 86400
    assert accounting.parse_time("1700000000") == 1700000000.0
    start, end = accounting.period(None, None, now=1000.0 * 86400)
    assert end - start == 7 * 86400
    for bad in (("2025-02-01", "2025-01-01"), ("yesterday", None), ("2020-01-01", "2025-01-01")):
        with pytest.raises(accounting.PeriodError):
            accounting.period(*bad)


async def test_map_pages_filters_and_islands(db_url):
    hosts = [box(f"h{i:03d}", 8, "H100" if i % 2 else "A100", "nv0") for i in range(60)]
    pool = await open_pool(db_url, hosts)
    a, _ = await pool.grant(Request("ann", 10, 1.0, 1024, 1.0, frozenset({"A100"})))
    st, info = pool.state, pool.info
    p = poolview.host_page(st, info, poolview.Filters(page=3))
    assert (p.matched, p.pages, p.page, len(p.hosts)) == (60, 3, 3, 10)
    assert poolview.host_page(st, info, poolview.Filters(page=99)).page == 3
    p = poolview.host_page(st, info, poolview.Filters(user="ann"))
    (h,) = p.hosts
    assert h["name"] == a.host and h["allocations"][0]["id"] == a.id
    (isl,) = h["islands"]
    assert isl["island"] == "nv0" and len(isl["devices"]) == 8
    shares = [s for d in isl["devices"] for s in d["shares"]]
    assert shares[0]["fraction"] == "0.5" and shares[0]["width"] == 50.0
    assert poolview.host_page(st, info, poolview.Filters(model="H100")).matched == 30
    assert poolview.host_page(st, info, poolview.Filters(host="h00")).matched == 10
    totals = {t.model: t for t in poolview.model_totals(st)}
    assert totals["A100"].allocated == 10 and totals["A100"].devices == 240
    cells = poolview.overview(st)
    assert len(cells) == 60 and max(c["allocated"] for c in cells) == pytest.approx(10 / 160)
    assert poolview.Filters(model="A100", page=2).query(page=1) == "model=A100"
    pool.close()


async def test_fragmentation_counts_what_typical_requests_cannot_use(db_url):
    pool = await open_pool(db_url, [box("x", 2, "L4")])
    st = pool.state
    for _ in range(3):  # the typical request: one whole GPU
        st.observe(Request("t", 20, 1.0, 1024))
    await pool.grant(Request("ann", 5, 1.0, 1024, 1.0))  # 0.25 of one device
    frag = poolview.fragmentation(st)
    # the 0.75 left on that device cannot take a whole GPU; the idle one can
    assert frag["L4"] > 0
    assert frag["L4"] <= 15 + 1e-9
    pool.close()


def test_samples_and_chart():
    s = Samples(interval=60)
    st = SimpleNamespace(units_per_gpu=20, devices={}, free={})
    from gpu_allocator.core.model import Device

    st.devices = {"u1": Device("h", 0, "u1", "L4", 1), "u2": Device("h", 1, "u2", "L4", 1)}
    st.free = {"u1": 10, "u2": 20}
    info = {"h": SimpleNamespace(usage={"devices": [{"uuid": "u1", "utilization_gpu": 80}]})}
    now = 1_700_000_000.0
    s.take(st, info, now - 3 * 3600)
    s.take(st, info, now - 60)
    series = s.series("24h", 24, now=now)
    points = series["models"]["L4"]
    assert len(points) == 24
    filled = [p for p in points if p["allocated"] is not None]
    assert len(filled) == 2 and filled[0]["allocated"] == pytest.approx(0.25)
    assert filled[0]["utilisation"] == pytest.approx(0.8)
    svg = str(utilisation_chart(points, series["start"], series["end"], "24h", "L4"))
    assert svg.startswith("<svg") and "polygon" in svg and "utilisation" in svg
    assert "no samples yet" in str(utilisation_chart([], 0, 1, "7d", "x"))


async def test_metrics_count_what_the_pool_does(db_url):
    pool = await open_pool(db_url, demo_hosts())
    app = app_for(pool)
    m = AllocatorMetrics(app)
    # what the API calls (submit): grants, and a refusal of what does not fit now
    a, _ = await pool.submit(Request("ann", 10, 1.0, 1024, 1.0), queue=False)
    with pytest.raises(NoFit):
        await pool.submit(Request("ann", 20 * 5, 1.0, 1024, 1.0), queue=False)
    await pool.finish(a.id, AllocationState.REVOKED)
    b, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0), queue=False)
    values = {}
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert values[("gpuhub_allocations_granted_total", ())] == 2
    assert values[("gpuhub_allocations_refused_total", (("reason", "capacity"),))] == 1
    assert values[("gpuhub_allocations_released_total", (("reason", "revoked"),))] == 1
    assert values[("gpuhub_allocation_decision_duration_seconds_count", ())] == 3
    allocated = sum(v for (n, _), v in values.items() if n == "gpuhub_gpus_allocated")
    assert allocated == 1.0
    assert values[("gpuhub_allocations_active", ())] == 1
    pool.close()


async def test_a_requests_own_priority_moves_it_alone_audited_and_durable(db_url):
    """PATCH queue/{id}'s action: the request's own priority (not its user's)
    reorders the queue, is written with its audit entry, survives a restart,
    and null gives the request its user's priority back."""
    from gpu_allocator.admin import queue_actions

    pool = await open_pool(db_url, demo_hosts())
    app = app_for(pool)
    t0 = 1_700_000_000.0
    a100 = frozenset({"A100"})
    await pool.grant(Request("zed", 80, 1.0, 1024, 8.0, a100), now=t0)  # node-a's 4 A100s held
    qa, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 1.0, a100), now=t0 + 1)
    qb, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0, a100), now=t0 + 2)
    qc, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 1.0, a100), now=t0 + 3)
    await pool.schedule(now=t0 + 4)
    assert [q.id for q, _ in pool.queued()] == [qa.id, qb.id, qc.id]
    detail = await queue_actions.set_priority(app, "boss", qc.id, 5, "deadline")
    assert detail == {"user": "bob", "priority": 5, "previous": None, "user_priority": 0, "reason": "deadline"}
    await pool.schedule(now=t0 + 5)
    assert [q.id for q, _ in pool.queued()] == [qc.id, qa.id, qb.id]  # bob's other request stays
    assert pool.quotas.users == {}  # the user's priority is untouched
    entries, total = actions.read_audit(pool.ledger, action="priority")
    assert total == 1 and (entries[0]["actor"], entries[0]["target"]) == ("boss", f"request:{qc.id}")
    assert entries[0]["detail"] == detail
    fresh = await reopen(pool)
    assert fresh.queue[qc.id].priority == 5 and fresh.queue[qa.id].priority is None
    app = app_for(fresh)
    await queue_actions.set_priority(app, "boss", qc.id, None)
    assert fresh.queue[qc.id].priority is None
    await fresh.schedule(now=t0 + 6)
    assert [q.id for q, _ in fresh.queued()] == [qa.id, qb.id, qc.id]
    with pytest.raises(queue_actions.NotQueued):
        await queue_actions.set_priority(app, "boss", "no-such-request", 1)
    assert actions.read_audit(fresh.ledger, action="priority")[1] == 2  # nothing written for it
    assert queue_actions.parse_priority(None, allow_none=True) is None
    for bad in (None, "x", 1001, True, 2.5):
        with pytest.raises(ValueError):
            queue_actions.parse_priority(bad)
    fresh.close()
