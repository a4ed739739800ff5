"""Idle reclaim: the pure decision (core.reclaim) with hypothesis, and the loop
(loops.idle_reclaim) on a live pool fed by an agent's heartbeats: notice, then
the share revoked by "idle-reclaim" with its audit entry."""

from __future__ import annotations

import types
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator import loops
from gpu_allocator.admin.actions import read_audit
from gpu_allocator.core.model import AllocationState, Request
from gpu_allocator.core.reclaim import Policies, Policy, Share, decide, parse_policies, share_utilisation
from tests.support import box, open_pool

NOW = 1_000_000.0
P = Policy(threshold=0.05, minutes=60, only_when_waiting=True, notice_minutes=10)


def idle_for(minutes: float, util: float = 0.0, step: float = 60.0):
    n = int(minutes * 60 / step)
    return tuple((NOW - i * step, util) for i in range(n, -1, -1))


def test_policies_parse_resolve_and_refuse_bad_values():
    ps = parse_policies({"default": {"minutes": 30}, "groups": {"staff": None, "students": {"minutes": 90}}})
    assert ps.default == Policy(minutes=30) and ps.enabled and ps.longest_minutes == 90
    assert ps.resolve(()) == Policy(minutes=30)
    assert ps.resolve(("students",)) == Policy(minutes=90)
    assert ps.resolve(("students", "staff")) is None  # off beats on: the most lenient
    assert not parse_policies({}).enabled
    for bad, words in [({"default": {"threshold": 5}}, "0 to 1"), ({"default": {"minutes": 0}}, "more than 0"),
                       ({"default": {"idle": 1}}, "unknown field"), ({"dflt": {}}, "unknown key"),
                       ({"default": {"only_when_waiting": "yes"}}, "true or false")]:
        with pytest.raises(ValueError, match=words):
            parse_policies(bad)


def test_share_utilisation_is_its_busiest_device_and_unknown_without_a_sample():
    samples = [{"uuid": "a", "utilization_gpu": 3}, {"uuid": "b", "utilization_gpu": 40}]
    assert share_utilisation(["a"], samples) == 0.03
    assert share_utilisation(["a", "b"], samples) == 0.4
    assert share_utilisation(["a", "c"], samples) is None


def test_idle_share_is_warned_then_reclaimed_busy_one_and_unwatched_one_are_not():
    ps = Policies(default=P)
    idle = Share("idle", (), idle_for(55))
    busy = Share("busy", (), idle_for(70)[:-1] + ((NOW, 0.5),))
    d = decide([idle, busy], ps, waiting=True, now=NOW)
    assert [w[0] for w in d.warn] == ["idle"] and not d.reclaim and not d.clear
    # an hour idle, but noticed only 5 minutes ago: not yet
    d = decide([Share("idle", (), idle_for(60), noticed_at=NOW - 300)], ps, True, NOW)
    assert not d.reclaim
    d = decide([Share("idle", (), idle_for(61), noticed_at=NOW - 600)], ps, True, NOW)
    assert [r[0] for r in d.reclaim] == ["idle"]
    # nobody waits: not reclaimed, and the notice is withdrawn
    d = decide([Share("idle", (), idle_for(90), noticed_at=NOW - 1800)], ps, False, NOW)
    assert not d.reclaim and d.clear == ["idle"]
    assert decide([Share("idle", (), idle_for(90))], Policies(P.__class__(only_when_waiting=False)),
                  False, NOW).warn
    # a group without a policy (off) is never warned
    off = Policies(default=P, groups={"staff": None})
    assert decide([Share("x", ("staff",), idle_for(90))], off, True, NOW).warn == []
    # a batch job's share is never reclaimed for idleness (it ends with its command)
    job = decide([Share("job", (), idle_for(90), noticed_at=NOW - 1800, batch=True)], ps, True, NOW)
    assert not job.warn and not job.reclaim and job.clear == ["job"]


samples_st = st.lists(st.tuples(st.floats(0, 7200), st.one_of(st.none(), st.floats(0, 1))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(samples_st, st.floats(0, 1), st.floats(1, 90), st.floats(0, 30), st.booleans(), st.booleans(),
       st.one_of(st.none(), st.floats(0, 7200)))
def test_never_reclaimed_unless_idle_for_minutes_warned_long_enough_and_allowed(
        raw, threshold, minutes, notice, only_waiting, waiting, noticed_ago):
    p = Policy(threshold, minutes, only_waiting, notice)
    samples = tuple(sorted({NOW - ago: u for ago, u in raw}.items()))
    noticed = None if noticed_ago is None else NOW - noticed_ago
    d = decide([Share("s", (), samples, noticed)], Policies(default=p), waiting, NOW)
    if d.reclaim:
        assert noticed is not None and NOW - noticed >= notice * 60
        assert waiting or not only_waiting
        start = NOW - minutes * 60
        before = [i for i, (t, _) in enumerate(samples) if t <= start]
        assert before  # the samples cover the whole window …
        assert all(u is not None and u < threshold for _, u in samples[before[-1]:])  # … all idle
    if d.warn:
        assert noticed is None and samples and samples[-1][1] is not None and samples[-1][1] < threshold
    assert len(d.warn) + len(d.reclaim) + len(d.clear) <= 1


# --------------------------------------------------------------------------- the loop


def heartbeat(pool, host: str, util: float, now: float):
    """What HeartbeatHandler hands the pool (api.hosts.parse_usage's shape)."""
    devices = [{"uuid": d.uuid, "utilization_gpu": util, "memory_used_mb": 0, "processes": []}
               for d in pool.state.hosts[host].devices]
    assert pool.heartbeat(host, running=list(pool.state.by_host.get(host, {})),
                          usage={"at": now, "devices": devices}, now=now) is not None


async def agent_pool(db_url):
    pool = await open_pool(db_url)
    await pool.register_host(box("gpu-1", 2, "L4"), running=[], now=NOW)
    return pool


def app_for(pool, config: dict):
    return types.SimpleNamespace(pool=pool, log=logging.getLogger("test"), idle_history={},
                                 time_limit_interval=30.0, reclaim_policies=parse_policies(config))


async def test_idle_share_with_someone_waiting_is_noticed_then_reclaimed_busy_one_is_not(db_url):
    pool = await agent_pool(db_url)
    app = app_for(pool, {"groups": {"lab": {"threshold": 0.05, "minutes": 30, "notice_minutes": 10}}})
    idle, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 8.0), groups=["lab"], now=NOW)
    busy, _ = await pool.submit(Request("bob", 20, 1.0, 1024, 8.0), groups=["lab"], now=NOW)
    waiting, _ = await pool.submit(Request("cat", 20, 1.0, 1024, 8.0), groups=["lab"], now=NOW)
    assert waiting.id in pool.queue
    devs = {a.id: a.shares[0].device_uuid for a in (idle, busy)}
    warned_at = None
    for minute in range(0, 45):
        t = NOW + minute * 60
        usage = [{"uuid": devs[idle.id], "utilization_gpu": 1}, {"uuid": devs[busy.id], "utilization_gpu": 80}]
        pool.heartbeat("gpu-1", running=[idle.id, busy.id], usage={"at": t, "devices": usage}, now=t)
        warned, reclaimed = await loops.idle_reclaim(app, now=t + 1)
        if warned:
            assert [a.id for a in warned] == [idle.id] and warned_at is None
            warned_at = minute
            assert "idle" in pool.notices[idle.id]["message"] and "Save your work" in pool.notices[idle.id]["message"]
        if reclaimed:
            assert [a.id for a in reclaimed] == [idle.id]
            break
    assert warned_at == 20 and minute == 30  # noticed 10 min before, reclaimed at 30 min idle
    got = await pool.get(idle.id)
    assert got.state == AllocationState.REVOKED
    assert busy.id in pool.state.allocations
    entries, _ = read_audit(pool.ledger, action="revoke", target=f"allocation:{idle.id}")
    assert entries[0]["actor"] == "idle-reclaim" and entries[0]["detail"]["reason"] == "reclaimed: GPU idle for 30 min"
    pool.close()


async def test_nobody_waiting_keeps_an_idle_share_and_a_busy_again_share_loses_its_notice(db_url):
    pool = await agent_pool(db_url)
    app = app_for(pool, {"default": {"minutes": 20, "notice_minutes": 5}})
    a, _ = await pool.submit(Request("ann", 20, 1.0, 1024, 8.0), now=NOW)
    for minute in range(0, 40):
        heartbeat(pool, "gpu-1", 0, NOW + minute * 60)
        warned, reclaimed = await loops.idle_reclaim(app, now=NOW + minute * 60 + 1)
        assert not warned and not reclaimed  # nobody waits
    assert a.id in pool.state.allocations and not pool.notices.get(a.id)
    # someone waits: noticed; the GPU computes again: the notice is withdrawn
    other, _ = await pool.submit(Request("bob", 40, 1.0, 1024, 8.0), now=NOW + 40 * 60)
    assert other.id in pool.queue
    heartbeat(pool, "gpu-1", 0, NOW + 41 * 60)
    warned, _ = await loops.idle_reclaim(app, now=NOW + 41 * 60 + 1)
    assert [x.id for x in warned] == [a.id] and pool.notices[a.id]["message"]
    heartbeat(pool, "gpu-1", 50, NOW + 42 * 60)
    await loops.idle_reclaim(app, now=NOW + 42 * 60 + 1)
    assert not pool.notices[a.id].get("message") and a.id in pool.state.allocations
    pool.close()


async def test_a_fraction_is_judged_by_its_own_processes_where_the_agent_tells(db_url):
    """Two fractions of one device: the device computes (the busy fraction's
    processes) while the idle fraction's own processes do nothing. With the
    agent's per-allocation figure the idle one is noticed and reclaimed, the
    busy one kept; an agent that could not attribute every process there leaves
    the idle one judged by its whole device (kept)."""
    pool = await agent_pool(db_url)
    app = app_for(pool, {"default": {"minutes": 10, "notice_minutes": 2}})
    idle, _ = await pool.submit(Request("ann", 10, 1.0, 1024, 8.0), now=NOW)
    busy, _ = await pool.submit(Request("bob", 10, 1.0, 1024, 8.0), now=NOW)
    assert idle.shares[0].device_uuid == busy.shares[0].device_uuid  # fractions, packed
    dev = idle.shares[0].device_uuid
    waiting, _ = await pool.submit(Request("cat", 40, 1.0, 1024, 8.0), now=NOW)
    assert waiting.id in pool.queue

    def beat(t, complete=True):
        usage = {"at": t, "devices": [{"uuid": dev, "utilization_gpu": 85}],
                 "allocations": {idle.id: {"utilization_gpu": 0.0, "memory_used_mb": 900.0, "complete": complete},
                                 busy.id: {"utilization_gpu": 85.0, "memory_used_mb": 9000.0, "complete": complete}}}
        pool.heartbeat("gpu-1", running=[idle.id, busy.id], usage=usage, now=t)

    for minute in range(0, 15):  # not every process attributed: the device's figure, busy
        beat(NOW + minute * 60, complete=False)
        warned, reclaimed = await loops.idle_reclaim(app, now=NOW + minute * 60 + 1)
        assert not warned and not reclaimed
    reclaimed_at = None
    for minute in range(15, 40):
        beat(NOW + minute * 60)
        warned, reclaimed = await loops.idle_reclaim(app, now=NOW + minute * 60 + 1)
        assert busy.id not in [a.id for a in warned + reclaimed]
        if reclaimed:
            assert [a.id for a in reclaimed] == [idle.id]
            reclaimed_at = minute
            break
    assert reclaimed_at == 25  # 10 minutes of its own idleness
    assert busy.id in pool.state.allocations
    pool.close()
