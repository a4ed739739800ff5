"""Host pools per group (issue #20 item 4): the configuration's checks, who may
use which pool, and — hypothesis over random pools, groups and requests — that
no share placed or admitted by the queue ever lands on a host in a pool closed
to its user; the inventory's and the live pool's pools (a named pool refused,
a queued request's reason, the pool kept across a restart); quotas per pool:
a request lands only in pools whose quota allows it, counted exactly within a
pass (hypothesis: no share ever takes a user over a pool's quota), the
reason of one whose pools are all over quota, GET quota's and the REST's
rows per pool. POST estimates' ``starts_now`` with pools and pool quotas:
tests/test_starts_now.py; through a real hub: tests/test_pools_e2e.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.core.fairshare import FairShare
from gpu_allocator.core.model import Allocation, Device, Host, Request
from gpu_allocator.core.placement import NoFit, place
from gpu_allocator.core.pools import (
    DEFAULT, PoolError, check_hosts, open_pools, parse_host_pools, parse_pools, request_pools,
)
from gpu_allocator.core.queue import Queued, plan
from gpu_allocator.core.quota import Held, Limits, Quotas, add
from gpu_allocator.core.state import PoolState
from gpu_allocator.core.validation import RequestError, parse_request
from gpu_allocator.inventory import InventoryError, load_inventory
from gpu_allocator.pool import LivePool
from gpu_allocator.store import Ledger

from .support import open_pool, reopen, settle

PER = 20
NOW = 1_000_000.0
CONFIG = {"default": {"groups": ["*"]}, "team-a": {"groups": ["team-a"], "description": "team A's H100s"},
          "lab": {"groups": [], "users": ["dave"]}}


def host(name: str, pools=(DEFAULT,), n: int = 2, model: str = "H100", cpus: float = 16.0) -> Host:
    return Host(name, tuple(Device(name, i, f"{name}-{i}", model, 81920) for i in range(n)), cpus, 65536,
                pools=tuple(sorted(pools)))


# --- configuration ------------------------------------------------------------------------


def test_default_is_added_open_to_everyone():
    pools = parse_pools({"team-a": {"groups": ["team-a"]}})
    assert list(pools) == ["default", "team-a"]
    assert open_pools(pools, "bob", ()) == {"default"}
    assert open_pools(pools, "bob", ("team-a",)) == {"default", "team-a"}


def test_default_can_be_closed():
    pools = parse_pools({"default": {"groups": []}, "team-a": {"groups": ["team-a"]}})
    assert open_pools(pools, "bob", ()) == frozenset()


def test_users_and_everyone():
    pools = parse_pools(CONFIG)
    assert open_pools(pools, "dave", ()) == {"default", "lab"}
    assert open_pools(parse_pools({"x": {"groups": ["*"]}}), "bob", ()) == {"default", "x"}


@pytest.mark.parametrize("config, words", [
    ({"team a": {}}, "pool name"),
    ({"t": {"group": ["a"]}}, "unknown key(s) group; allowed: groups, users, description"),
    ({"t": {"groups": "team-a"}}, "groups must be a list of names"),
    ({"t": {"users": [1]}}, "users must be a list of names"),
    ({"t": {"description": 3}}, "description must be text"),
    ({"t": ["team-a"]}, "must be a mapping"),
    (["t"], "pools must be a mapping"),
])
def test_malformed_configuration_is_refused_naming_the_entry(config, words):
    with pytest.raises(PoolError, match=None) as e:
        parse_pools(config)
    assert words in str(e.value)


def test_allocator_trait_is_checked():
    from traitlets import TraitError

    from gpu_allocator.app import GPUAllocator

    app = GPUAllocator(pools={"team-a": {"groups": ["team-a"]}})
    assert list(app.pool_specs) == ["default", "team-a"]
    with pytest.raises(TraitError, match="GPUAllocator.pools: pools\\['t'\\]: unknown key"):
        GPUAllocator(pools={"t": {"groupz": []}})


def test_a_named_pool_not_open_is_refused_naming_the_open_ones():
    pools = parse_pools(CONFIG)
    assert request_pools(pools, "bob", ("team-a",), "team-a") == {"team-a"}
    assert request_pools(pools, "bob", (), None) == {"default"}
    with pytest.raises(PoolError, match="pool 'team-a' is not open to bob; open to bob: default"):
        request_pools(pools, "bob", (), "team-a")
    with pytest.raises(PoolError, match="no pool 'gpu9' is not open"):
        request_pools(pools, "bob", (), "gpu9")
    assert request_pools(pools, "bob", (), "team-a", strict=False) == frozenset()


def test_request_names_a_pool():
    req = parse_request({"gpus": 1, "pool": "team-a"}, user="bob", units_per_gpu=PER, max_hours=8)
    assert req.pool == "team-a" and req.pools is None
    assert parse_request({"gpus": 1, "pool": ""}, user="bob", units_per_gpu=PER, max_hours=8).pool is None
    with pytest.raises(RequestError, match="pool must be a pool name"):
        parse_request({"gpus": 1, "pool": "../x"}, user="bob", units_per_gpu=PER, max_hours=8)


def test_host_pools_and_their_check():
    assert parse_host_pools(None, "h") == ("default",)
    assert parse_host_pools(["b", "a", "a"], "h") == ("a", "b")
    with pytest.raises(PoolError, match="h\\[0\\] must be a pool name"):
        parse_host_pools([""], "h")
    with pytest.raises(PoolError, match="host x: pool\\(s\\) gpu9 not configured; GPUAllocator.pools has "
                                        "default, lab, team-a"):
        check_hosts(parse_pools(CONFIG), [("x", ("gpu9",))])


def test_inventory_puts_hosts_in_pools(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text("hosts:\n"
                   "  - {name: a, cpus: 8, memory: 16G, gpus: [{model: L4, count: 1}]}\n"
                   "  - {name: b, cpus: 8, memory: 16G, pools: [team-a, lab], gpus: [{model: L4, count: 1}]}\n")
    a, b = load_inventory(inv)
    assert a.pools == ("default",) and b.pools == ("lab", "team-a")
    inv.write_text("hosts:\n  - {name: b, cpus: 8, pools: {x: 1}, gpus: [{model: L4}]}\n")
    with pytest.raises(InventoryError, match="hosts\\[0\\].pools must be a list of pool names"):
        load_inventory(inv)


# --- placement and the queue never use a closed pool --------------------------------------

NAMES = ("default", "team-a", "lab")
host_st = st.tuples(st.integers(1, 4), st.sampled_from(["H100", "L4"]), st.sampled_from([4.0, 16.0]),
                    st.lists(st.sampled_from(NAMES), max_size=2))
req_st = st.tuples(st.sampled_from([0, 5, 10, 20, 40]), st.sampled_from([1.0, 8.0]),
                   st.sampled_from(["bob", "carol", "dave"]), st.sampled_from([None, *NAMES]))
groups_st = st.fixed_dictionaries({u: st.sampled_from([(), ("team-a",), ("x",)]) for u in ("bob", "carol", "dave")})


def resolved(pools, groups, user, units, cpu, named):
    """The request as the allocator resolves it (Usage.resolve_pools); None: refused."""
    try:
        allowed = request_pools(pools, user, groups[user], named)
    except PoolError:
        return None
    return Request(user, units, cpu, 1024, 1.0, pool=named, pools=allowed)


#: quotas per pool: {pool: (its default's gpus, sessions)} and bob's own row in one pool
pool_quota_st = st.tuples(
    st.dictionaries(st.sampled_from(NAMES), st.tuples(st.sampled_from([None, 0, 10, 20, 40]),
                                                      st.sampled_from([None, 1, 2])), max_size=2),
    st.none() | st.tuples(st.sampled_from(NAMES), st.sampled_from([5, 20, 60]), st.sampled_from([None, 1, 3])))


def pool_quotas(spec) -> Quotas:
    defaults, bobs = spec
    q = Quotas.empty()
    for name, (gpus, sessions) in defaults.items():
        q.in_pool(name).default = Limits(gpus=gpus, sessions=sessions)
    if bobs is not None:
        name, gpus, sessions = bobs
        q.in_pool(name).users["bob"] = Limits(gpus=gpus, sessions=sessions)
    return q


def held_in(state, user: str) -> Held:
    """What ``user`` holds in ``state``, per pool too (as Usage.held counts it)."""
    h = Held()
    for a in state.allocations.values():
        if a.user == user:
            h = add(h, Request(user, a.units, a.cpu, a.mem_mb, a.max_hours), PER, state.hosts[a.host].pools)
    return h


@settings(max_examples=150, deadline=None)
@given(st.lists(host_st, min_size=1, max_size=5), st.lists(req_st, min_size=1, max_size=12), groups_st,
       st.dictionaries(st.sampled_from(["team-a", "lab"]),
                       st.fixed_dictionaries({"groups": st.lists(st.sampled_from(["*", "team-a", "x"]), max_size=2)}),
                       max_size=2), pool_quota_st)
def test_no_share_lands_in_a_pool_closed_to_its_user(hosts, reqs, groups, config, quota_spec):
    """… nor takes its user over a quota of a pool its host is in: counted per
    pool as the pass admits, every admitted share leaves each pool's quota kept
    (or, where a user was over it already, adds nothing there)."""
    pools = parse_pools(config)
    hs = [host(f"h{i}", pools=[p for p in ps if p in pools] or [DEFAULT], n=n, model=m, cpus=c)
          for i, (n, m, c, ps) in enumerate(hosts)]
    state = PoolState.build(hs, units_per_gpu=PER)
    every = PoolState.build(hs, units_per_gpu=PER)  # the same pool, pools ignored
    pending = []
    for k, (units, cpu, user, named) in enumerate(reqs):
        r = resolved(pools, groups, user, units, cpu, named)
        if r is None:
            assert named is not None and named not in open_pools(pools, user, groups[user])
            continue
        allowed = r.pools
        try:
            p = place(state, r)
        except NoFit:
            # then no host in its pools has room: it does not fit in the same pool
            # restricted to those hosts either
            sub = PoolState.build([replace(h, state=h.state) for h in hs if set(h.pools) & allowed],
                                  units_per_gpu=PER)
            for a in state.allocations.values():
                if a.host in sub.hosts:
                    sub.grant(a)
            with pytest.raises(NoFit):
                place(sub, replace(r, pools=None))
        else:
            assert set(state.hosts[p.host].pools) & allowed, (p.host, allowed)
            if named is not None:
                assert named in state.hosts[p.host].pools
            a = Allocation(f"a{k}", user, p.host, units, cpu, 1024, 1.0, p.shares)
            state.grant(a)
            every.grant(a)
        pending.append(Queued(f"q{k}", r, NOW + k, groups[user]))
    # the queue: what a pass admits is in its user's pools; a waiting request's
    # reason names the closed pools it would fit in now
    quotas = pool_quotas(quota_spec)
    users = ("bob", "carol", "dave")
    before = {u: held_in(every, u) for u in users}
    p = plan(every, [], pending, now=NOW + 100, quotas=quotas, fairshare=FairShare(),
             held={u: held_in(every, u) for u in users})
    by_id = {q.id: q for q in pending}
    for x, a in p.admitted:
        assert set(every.hosts[a.host].pools) & x.req.pools, (a.host, x.req.pools)
    for u in users:  # per pool, what each holds after the pass is within its quota there
        after = held_in(every, u)
        for name in quotas.pools:
            limits = quotas.resolve_pool(name, u, groups[u])
            if limits is None:
                continue
            was, now_ = before[u].pools.get(name, Held()), after.pools.get(name, Held())
            if now_ == was:
                continue  # nothing admitted there
            assert limits.gpus is None or now_.units <= limits.gpus, (u, name, limits, was, now_)
            assert limits.sessions is None or now_.sessions <= limits.sessions, (u, name, limits, was, now_)
    for qid, est in p.estimates.items():  # a reason naming a pool's quota names one over it
        if est.reason.startswith("over your quota in pool "):
            name = est.reason.split()[5].rstrip(":")
            assert quotas.resolve_pool(name, by_id[qid].req.user, groups[by_id[qid].req.user]) is not None
    for qid, est in p.estimates.items():
        if "not open to you" in est.reason:
            q = by_id[qid]
            closed = {n for n in NAMES if n in est.reason.split("it would fit now in ")[1]}
            assert closed and not closed & q.req.pools, est.reason
    every.check_indexes()


def test_a_class_is_in_one_set_of_pools():
    """Hosts alike but in different pools are in different classes, so that
    placement's filter by class is exact."""
    state = PoolState.build([host("a"), host("b", pools=("team-a",))], units_per_gpu=PER)
    assert state.host_class["a"] != state.host_class["b"]
    assert place(state, Request("bob", 20, pools=frozenset({"team-a"}))).host == "b"
    assert place(state, Request("bob", 20, pools=frozenset({"default"}))).host == "a"
    with pytest.raises(NoFit, match="right now in pool lab \\(open to you\\); 2 other host\\(s\\) are in pools "
                                    "not open to you"):
        place(state, Request("bob", 20, pools=frozenset({"lab"})))


def test_queued_reason_names_the_closed_pool():
    state = PoolState.build([host("a", pools=("team-a",))], units_per_gpu=PER)
    q = Queued("x", Request("bob", 20, pools=frozenset({"default"})), NOW)
    p = plan(state, [], [q], now=NOW, quotas=Quotas.empty(), fairshare=FairShare(), held={})
    assert not p.admitted
    assert p.estimates["x"].reason == ("waiting for 1 GPU to be free in pool default (open to you); it would fit "
                                       "now in pool team-a, which is not open to you")
    assert p.estimates["x"].latest is None  # nothing in its pools will ever hold it


# --- the live pool -------------------------------------------------------------------------


def test_live_pool_refuses_queues_and_keeps_the_named_pool(tmp_path):
    async def go():
        url = f"sqlite:///{tmp_path / 'pool.sqlite'}"
        pool = await open_pool(url, [host("a"), host("b", pools=("team-a",))], pools=parse_pools(CONFIG))
        try:
            with pytest.raises(PoolError, match="open to bob: default"):
                await pool.submit(Request("bob", 20, pool="team-a"), groups=[], now=NOW)
            got, _ = await pool.submit(Request("bob", 40), groups=[], now=NOW)
            assert got.host == "a"
            # a second 2-GPU share: b is idle, but closed to bob: he waits
            q, _ = await pool.submit(Request("bob", 40), groups=[], now=NOW + 1)
            assert isinstance(q, Queued)
            assert "it would fit now in pool team-a, which is not open to you" in pool.estimates[q.id].reason
            # carol (team-a) names team-a: she lands on b at once
            mine, _ = await pool.submit(Request("carol", 20, pool="team-a"), groups=["team-a"], now=NOW + 2)
            assert mine.host == "b"
            waiting, _ = await pool.submit(Request("carol", 40, pool="team-a"), groups=["team-a"], now=NOW + 3)
            assert isinstance(waiting, Queued) and waiting.req.pools == {"team-a"}
            await settle(pool)
            pool = await reopen(pool)
            kept = pool.queue[waiting.id]
            assert kept.req.pool == "team-a" and kept.req.pools == {"team-a"}
            assert pool.queue[q.id].req.pools is None or pool.queue[q.id].req.pools == {"default"}
        finally:
            pool.close()
            pool.ledger.close()

    asyncio.run(go())


def test_a_host_keeps_its_pools_across_a_restart(tmp_path):
    async def go():
        url = f"sqlite:///{tmp_path / 'pool.sqlite'}"
        pool = await open_pool(url, [host("b", pools=("lab", "team-a"))], pools=parse_pools(CONFIG))
        pool = await reopen(pool)
        try:
            assert pool.state.hosts["b"].pools == ("lab", "team-a")
        finally:
            pool.close()
            pool.ledger.close()

    asyncio.run(go())


def test_a_request_does_not_see_every_pool_as_a_restriction(tmp_path):
    """Where every pool is open to a user and they name none, Request.pools is None
    (placement filters nothing: the cost of a site without pools is unchanged)."""
    async def go():
        ledger = Ledger(f"sqlite:///{tmp_path / 'pool.sqlite'}", PER)
        pool = LivePool(ledger, PER)
        try:
            assert pool.usage.resolve_pools(Request("bob", 20), ()).pools is None
            assert pool.usage.resolve_pools(Request("bob", 20, pool="default"), ()).pools == {"default"}
        finally:
            pool.close()
            ledger.close()

    asyncio.run(go())


def test_the_admin_map_and_get_pool_show_a_hosts_pools(tmp_path):
    from gpu_allocator import poolview
    from gpu_allocator.shapes import pool_json

    async def go():
        pools = parse_pools(CONFIG)
        pool = await open_pool(f"sqlite:///{tmp_path / 'pool.sqlite'}",
                               [host("a"), host("b", pools=("lab", "team-a"))], pools=pools)
        try:
            page = poolview.host_page(pool.state, pool.info, poolview.Filters())
            assert {h["name"]: h["pools"] for h in page.hosts} == {"a": ["default"], "b": ["lab", "team-a"]}
            admin = pool_json(pool.state, pool.info, viewer=None, pools=pools)
            assert admin["pools"][2] == {"name": "team-a", "description": "team A's H100s", "hosts": ["b"],
                                         "groups": ["team-a"], "users": []}
            mine = pool_json(pool.state, pool.info, viewer="bob", pools=pools,
                             open_to=pool.open_pools("bob", ()))
            assert [(p["name"], p["open"]) for p in mine["pools"]] == [
                ("default", True), ("lab", False), ("team-a", False)]
            assert "groups" not in mine["pools"][0]
        finally:
            pool.close()
            pool.ledger.close()

    asyncio.run(go())


def test_an_agents_registration_names_its_pools():
    from gpu_allocator.api.hosts import BadBody, parse_host

    body = {"host": {"cpus": 8, "memory_mb": 1024, "devices": [], "pools": ["team-a"]}}
    assert parse_host("n", body).pools == ("team-a",)
    assert parse_host("n", {"host": {"cpus": 8, "memory_mb": 1024}}).pools == ("default",)
    with pytest.raises(BadBody, match="host.pools must be a list of pool names"):
        parse_host("n", {"host": {"cpus": 8, "memory_mb": 1024, "pools": {"a": 1}}})


# --- quotas per pool ----------------------------------------------------------------------


def two_pools():
    return PoolState.build([host("a"), host("b", pools=("team-a",))], units_per_gpu=PER)


def team_a_quota(gpus: int) -> Quotas:
    q = Quotas.empty()
    q.in_pool("team-a").groups["team-a"] = Limits(gpus=gpus)
    return q


def test_a_pass_counts_a_pool_quota_as_it_admits():
    """Two requests that may land only in team-a, a quota of 1 GPU there: the
    pass admits one; the other waits, its reason naming the pool's quota."""
    state = two_pools()
    both = frozenset({"team-a"})
    pending = [Queued(f"q{k}", Request("bob", 20, pools=both), NOW + k, ("team-a",)) for k in range(2)]
    p = plan(state, [], pending, now=NOW + 10, quotas=team_a_quota(20), fairshare=FairShare(), held={})
    assert [x.id for x, _ in p.admitted] == ["q0"]
    assert p.estimates["q1"].reason == "over your quota in pool team-a: GPU quota: 1 of 1 GPUs in use"
    assert p.estimates["q1"].latest is None  # over a quota: it reserves nothing


def test_a_request_lands_only_in_a_pool_whose_quota_allows_it():
    """bob holds team-a's quota: a request that may use either pool lands in
    default; with the default pool full it waits, its reason naming team-a's quota."""
    state = two_pools()
    state.grant(Allocation("held", "bob", "b", 20, 1.0, 1024, 1.0, place(state, Request("bob", 20,
                                                                                         pools=frozenset({"team-a"}))).shares))
    held = {"bob": held_in(state, "bob")}
    assert held["bob"].pools == {"team-a": Held(20, 1, 1.0)}
    anywhere = Queued("x", Request("bob", 20), NOW, ("team-a",))
    p = plan(state, [], [anywhere], now=NOW, quotas=team_a_quota(20), fairshare=FairShare(), held=dict(held))
    assert [a.host for _, a in p.admitted] == ["a"]
    # (the pass granted it in state) the default pool full: it would fit only in
    # team-a, over bob's quota there
    state.grant(Allocation("full", "carol", "a", 20, 1.0, 1024, 1.0,
                           place(state, Request("carol", 20, pools=frozenset({"default"}))).shares))
    again = Queued("y", Request("bob", 20), NOW, ("team-a",))
    p = plan(state, [], [again], now=NOW, quotas=team_a_quota(20), fairshare=FairShare(), held=dict(held))
    assert not p.admitted
    assert p.estimates["y"].reason == "over your quota in pool team-a: GPU quota: 1 of 1 GPUs in use"
    # placement alone, kept off team-a, says why
    with pytest.raises(NoFit, match="not in pool team-a \\(over your quota there\\)"):
        place(state, Request("bob", 20, closed_pools=frozenset({"team-a"})))


def test_a_request_alone_over_every_pools_quota_is_refused():
    state = two_pools()
    q = Queued("x", Request("bob", 40, pools=frozenset({"team-a"})), NOW, ("team-a",))
    p = plan(state, [], [q], now=NOW, quotas=team_a_quota(20), fairshare=FairShare(), held={})
    assert p.refused == {"x": "over your quota in pool team-a: gpus: your limit is 1 GPUs at once; "
                              "this request asks for 2"}


def test_pool_quotas_in_the_live_pool(tmp_path):
    """set_quota(pool=…): submit keeps bob off a pool over his quota, a request
    that may use only that pool waits with the reason, GET quota shows what he
    holds there, and the row survives a restart (the ledger's pool column)."""
    from gpu_allocator.pool import QuotaExceeded
    from gpu_allocator.shapes import quota_json

    async def go():
        url = f"sqlite:///{tmp_path / 'pool.sqlite'}"
        pool = await open_pool(url, [host("a"), host("b", pools=("team-a",))], pools=parse_pools(CONFIG))
        try:
            await pool.set_quota("user", "bob", Limits(gpus=20, sessions=1), pool="team-a")
            first, _ = await pool.submit(Request("bob", 20, pool="team-a"), groups=["team-a"], now=NOW)
            assert first.host == "b"
            second, _ = await pool.submit(Request("bob", 20), groups=["team-a"], now=NOW + 1)
            assert second.host == "a"  # b has room, but team-a is over bob's quota
            with pytest.raises(QuotaExceeded, match="over your quota in pool team-a: gpus: your limit is 1"):
                await pool.submit(Request("bob", 40, pool="team-a"), groups=["team-a"], now=NOW + 2)
            q, _ = await pool.submit(Request("bob", 20, pool="team-a"), groups=["team-a"], now=NOW + 3)
            assert isinstance(q, Queued)
            assert pool.estimates[q.id].reason == ("over your quota in pool team-a: GPU quota: 1 of 1 GPUs in use")
            est = pool.start_estimate(Request("bob", 20, pool="team-a"), ("team-a",), NOW + 3)
            assert not est["queue"]["starts_now"] and est["quota"]["verdict"] == "wait"
            j = quota_json(pool, "bob", now=NOW + 4)
            assert j["pools"] == {"team-a": {"limits": {"gpus": "1", "sessions": 1, "gpu_hours": None},
                                             "held": {"gpus": "1", "sessions": 1, "gpu_hours": 8.0},
                                             "left": {"gpus": "0", "sessions": 0, "gpu_hours": None}}}
            assert j["held"]["gpus"] == "2"
            await settle(pool)
            pool = await reopen(pool)
            assert pool.quotas.pools["team-a"].users["bob"] == Limits(gpus=20, sessions=1)
            assert pool.quotas.users == {}
            await pool.finish(first.id, now=NOW + 5)
            await settle(pool)
            assert q.id not in pool.queue  # the quota room came back: granted
            await pool.set_quota("user", "bob", None, pool="team-a")
            assert pool.quotas.pools == {}
        finally:
            pool.close()
            pool.ledger.close()

    asyncio.run(go())


def test_a_request_whose_models_are_only_in_a_pool_over_quota_waits_for_the_quota():
    """Hosts it could never use (other models) do not keep it "within quota":
    the only hosts with its model are in team-a, over bob's quota there."""
    state = PoolState.build([host("a", model="L4"), host("b", pools=("team-a",))], units_per_gpu=PER)
    h100 = frozenset({"H100"})
    held = {"bob": add(Held(), Request("bob", 20), PER, ("team-a",))}
    q = Queued("x", Request("bob", 20, models=h100), NOW, ("team-a",))
    p = plan(state, [], [q], now=NOW, quotas=team_a_quota(20), fairshare=FairShare(), held=dict(held))
    assert not p.admitted
    assert p.estimates["x"].reason == "over your quota in pool team-a: GPU quota: 1 of 1 GPUs in use"
    # any model: it lands on a (default), kept off team-a
    q = Queued("y", Request("bob", 20), NOW, ("team-a",))
    p = plan(state, [], [q], now=NOW, quotas=team_a_quota(20), fairshare=FairShare(), held=dict(held))
    assert [a.host for _, a in p.admitted] == ["a"]
