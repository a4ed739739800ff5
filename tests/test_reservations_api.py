"""Advance reservations through the pool (ledger, restart, placement, queue) and the
REST API's handlers in process (a tornado server on a free port, HubAuth replaced
by a table of tokens). Store tests run on SQLite and PostgreSQL (fixture db_url)."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application

from gpu_allocator.admin import actions
from gpu_allocator.api.base import APIHandler
from gpu_allocator.api.reservations import ReservationHandler, ReservationsHandler
from gpu_allocator.core.model import Request
from gpu_allocator.core.reservations import Conflict
from tests.support import box, open_pool, reopen

H = 3600.0
PER = 20

USERS = {
    "t-ann": {"name": "ann", "scopes": ["custom:gpu-allocator:reserve"]},
    "t-bob": {"name": "bob", "scopes": ["custom:gpu-allocator:reserve"]},
    "t-cy": {"name": "cy", "scopes": []},
    "t-boss": {"name": "boss", "scopes": ["custom:gpu-allocator:admin"]},
}


def hosts():
    return [box("node-a", 4, "A100", "nv0"), box("node-b", 2, "L4")]


async def test_reserve_cancel_and_restart_keep_memory_equal_to_the_ledger(db_url):
    pool = await open_pool(db_url, hosts())
    now = time.time()
    r = await pool.reserve("ann", "node-b", "L4", 2, now + H, now + 3 * H, created_by="ann", note="demo")
    assert len(r.devices) == 2 and pool.reservations("ann") == [r] and pool.reservations("bob") == []
    with pytest.raises(Conflict) as e:
        await pool.reserve("bob", "node-b", "L4", 1, now + 2 * H, now + 4 * H, created_by="bob")
    assert r.id in str(e.value) and "ann" in str(e.value) and "ann" not in e.value.public
    other = await pool.reserve("bob", "node-a", "A100", 2, now, now + H, created_by="boss")
    fresh = await reopen(pool)
    assert fresh.reservations() == [other, r]
    done = await fresh.cancel_reservation(other.id)
    assert done.state.value == "cancelled" and await fresh.cancel_reservation(other.id) is None
    again = await reopen(fresh)
    assert again.reservations() == [r]
    assert (await again.get_reservation(other.id)).state.value == "cancelled"
    again.close()


async def test_grants_and_the_queue_follow_the_reservations(db_url):
    pool = await open_pool(db_url, [box("node-b", 2, "L4")])
    now = time.time()
    r = await pool.reserve("ann", "node-b", "L4", 2, now + 2 * H, now + 6 * H, created_by="boss")
    # ends before T1: starts now; would run into it: waits, saying why (no name)
    short, _ = await pool.submit(Request("bob", PER, 1.0, 1024, 1.0), now=now)
    assert short.host == "node-b" and hasattr(short, "shares")
    long, _ = await pool.submit(Request("cy", PER, 1.0, 1024, 4.0), now=now)
    est = pool.estimates[long.id]
    assert est.reason.startswith("waiting: 2 × L4 on node-b reserved until") and "ann" not in est.reason
    assert est.latest == pytest.approx(r.end)  # when the reservation is over
    # the holder, while active: on the reserved devices
    await pool.finish(short.id, now=now + 60)
    mine, _ = await pool.submit(Request("ann", PER, 1.0, 1024, 1.0), now=now + 2 * H + 60)
    assert {s.device_uuid for s in mine.shares} <= set(r.devices)
    pool.close()


async def test_the_forms_estimate_follows_the_reservations(db_url):
    """LivePool.estimate (the spawn form's "expected start") applies the same rule
    as a pass: a request that would run into another's reservation starts at its
    end; one that ends before it starts now; the holder's starts at T1 at the latest."""
    pool = await open_pool(db_url, [box("node-b", 2, "L4")])
    now = time.time()
    r = await pool.reserve("ann", "node-b", "L4", 2, now + 2 * H, now + 6 * H, created_by="boss")
    assert pool.estimate(Request("cy", PER, 1.0, 1024, 4.0), now=now) == (pytest.approx(r.end),) * 2
    assert pool.estimate(Request("cy", PER, 1.0, 1024, 1.0), now=now) == (now, now)
    assert pool.estimate(Request("ann", PER, 1.0, 1024, 4.0), now=now)[1] <= r.start
    pool.close()


async def test_extend_into_a_reservation_is_refused(db_url):
    from gpu_allocator.pool import ExtendRefused

    pool = await open_pool(db_url, [box("node-b", 1, "L4")])
    now = time.time()
    a, _ = await pool.grant(Request("bob", PER, 1.0, 1024, 1.0), now=now)
    await pool.reserve("ann", "node-b", "L4", 1, now + 2 * H, now + 3 * H, created_by="boss")
    with pytest.raises(ExtendRefused, match="reserved from"):
        await pool.extend(a.id, 2.0, 24.0, now=now)
    assert (await pool.extend(a.id, 0.5, 24.0, now=now)).max_hours == 1.5
    pool.close()


@pytest.fixture
async def api(db_url, monkeypatch):
    """(fetch(token, method, path, body) → (status, json), pool) for a pool with node-a and node-b."""
    pool = await open_pool(db_url, hosts())
    monkeypatch.setattr(APIHandler, "get_current_user",
                        lambda self: USERS.get(self.request.headers.get("Authorization", "")[6:]))
    service = SimpleNamespace(pool=pool, log=logging.getLogger("test"), hub_auth=None,
                              service_name="gpu-allocator", max_hours=24.0)
    kw = {"service": service}
    app = Application([(r"/api/v1/reservations", ReservationsHandler, kw),
                       (r"/api/v1/reservations/([^/]+)", ReservationHandler, kw)])
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    client = AsyncHTTPClient()

    async def fetch(token, method, path, body=None):
        try:
            resp = await client.fetch(
                f"http://127.0.0.1:{port}/api/v1/{path}", method=method,
                headers={"Authorization": f"token {token}"},
                body=None if body is None else json.dumps(body), allow_nonstandard_methods=True)
        except HTTPClientError as e:
            resp = e.response
        return resp.code, json.loads(resp.body or b"{}")

    yield fetch, pool
    server.stop()
    pool.close()


async def test_api_create_conflict_bad_input_and_rights(api):
    fetch, pool = api
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    code, r = await fetch("t-ann", "POST", "reservations",
                          {"host": "node-a", "gpus": 2, "start": iso(now + H), "end": now + 3 * H, "note": "x"})
    assert code == 201, r
    assert r["user"] == "ann" and r["model"] == "A100" and len(r["devices"]) == 2 and r["state"] == "active"
    assert all(u.startswith("GPU-node-a-") for u in r["devices"])
    # the same devices at an overlapping time: 409 naming it (no other user's name to a user)
    code, e = await fetch("t-bob", "POST", "reservations",
                          {"host": "node-a", "model": "A100", "gpus": 3, "start": now + 2 * H, "end": now + 4 * H})
    assert code == 409 and "reservation" in e["error"] and "ann" not in e["error"]
    code, e = await fetch("t-boss", "POST", "reservations",
                          {"host": "node-a", "gpus": 3, "start": now + 2 * H, "end": now + 4 * H, "user": "bob"})
    assert code == 409 and r["id"] in e["error"] and "ann" in e["error"]
    # bad input: 400, nothing booked
    for body in ({"host": "node-a", "gpus": 1, "start": now + 2 * H, "end": now + H},
                 {"host": "node-a", "gpus": 1, "start": now - 3 * H, "end": now - H},
                 {"host": "node-a", "gpus": 5, "start": now, "end": now + H},
                 {"host": "node-a", "gpus": 1, "model": "L4", "start": now, "end": now + H},
                 {"host": "nowhere", "gpus": 1, "start": now, "end": now + H},
                 {"host": "node-a", "gpus": 1, "start": "tomorrow", "end": now + H},
                 {"host": "node-a", "gpus": 1.5, "start": now, "end": now + H},
                 {"host": "node-a", "gpus": 1, "start": now, "end": now + H, "colour": "red"}):
        code, e = await fetch("t-ann", "POST", "reservations", body)
        assert code == 400 and e["error"], (body, code, e)
    # without the scope: 403; for someone else without being an admin: 403
    code, _ = await fetch("t-cy", "POST", "reservations", {"host": "node-b", "gpus": 1, "start": now, "end": now + H})
    assert code == 403
    code, _ = await fetch("t-ann", "POST", "reservations",
                          {"host": "node-b", "gpus": 1, "start": now, "end": now + H, "user": "bob"})
    assert code == 403
    assert len(pool.reservations()) == 1
    entries, total = actions.read_audit(pool.ledger)
    assert total == 0  # a user's own booking is not an admin action


async def test_api_visibility_between_two_users_and_admin_audit(api):
    fetch, pool = api
    now = time.time()
    code, a = await fetch("t-ann", "POST", "reservations", {"host": "node-b", "gpus": 1, "start": now, "end": now + H})
    assert code == 201
    code, b = await fetch("t-boss", "POST", "reservations",
                          {"host": "node-b", "gpus": 1, "start": now, "end": now + H, "user": "bob", "note": "demo"})
    assert code == 201 and b["user"] == "bob" and b["created_by"] == "boss"
    assert set(a["devices"]).isdisjoint(b["devices"])
    for token, mine, theirs in (("t-ann", a, b), ("t-bob", b, a)):
        code, listed = await fetch(token, "GET", "reservations")
        assert [x["id"] for x in listed["reservations"]] == [mine["id"]]
        assert (await fetch(token, "GET", f"reservations/{mine['id']}"))[0] == 200
        assert (await fetch(token, "GET", f"reservations/{theirs['id']}"))[0] == 404
        assert (await fetch(token, "DELETE", f"reservations/{theirs['id']}"))[0] == 404
    code, listed = await fetch("t-boss", "GET", "reservations")
    assert {x["id"] for x in listed["reservations"]} == {a["id"], b["id"]}
    code, listed = await fetch("t-cy", "GET", "reservations?user=ann")
    assert code == 403
    # the owner cancels their own; an admin cancels anyone's (audited)
    code, done = await fetch("t-ann", "DELETE", f"reservations/{a['id']}")
    assert code == 200 and done["state"] == "cancelled"
    code, done = await fetch("t-boss", "DELETE", f"reservations/{b['id']}")
    assert code == 200 and done["state"] == "cancelled"
    assert (await fetch("t-boss", "DELETE", f"reservations/{b['id']}"))[1]["state"] == "cancelled"
    assert pool.reservations() == []
    entries, _ = actions.read_audit(pool.ledger)
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("boss", "unreserve", f"reservation:{b['id']}"), ("boss", "reserve", f"reservation:{b['id']}")]
