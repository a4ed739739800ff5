"""Host pools through the real hub (issue #20 item 4): the demo config with an
inventory where node-a is in the pool team-a, open only to the hub group
team-a (JupyterHub.load_groups), and node-b in default. A user outside
team-a asking for an A100 queues, though node-a is idle, and the queue says
why; a member of team-a lands there; naming a closed pool is a 400 naming the
open ones; GET pool shows each host's pools and which are open; a quota per
pool set through REST makes another A100 of ann's wait, and says why."""

from __future__ import annotations

import pytest

from tests.support import API, DATA, wait_for

A100 = "A100-SXM4-80GB"
pytestmark = [pytest.mark.e2e, pytest.mark.hub(config={
    "GPUAllocator": {"inventory_file": str(DATA / "pools-inventory.yaml"), "time_limit_interval": 1.0,
                     "pools": {"default": {"groups": ["*"]},
                               "team-a": {"groups": ["team-a"], "description": "team A's A100s"}}},
    "JupyterHub": {"load_groups": {"team-a": {"users": ["gpuhub-p-ann"]}}},
})]


def test_a_user_outside_the_pools_groups_queues_rather_than_landing_on_its_host(hub):
    admin = hub.admin_allocator()
    bob = hub.login("gpuhub-p-bob")
    ann = hub.login("gpuhub-p-ann")
    try:
        pool = bob.pool()
        assert {h["name"]: h["pools"] for h in pool["hosts"]} == {"node-a": ["team-a"], "node-b": ["default"]}
        assert {p["name"]: p["open"] for p in pool["pools"]} == {"default": True, "team-a": False}
        shown = {p["name"]: p for p in admin.pool()["pools"]}
        assert shown["team-a"]["groups"] == ["team-a"] and shown["team-a"]["hosts"] == ["node-a"]

        # bob names team-a: refused at once, the message names what is open to him
        r = bob.spawn({"gpus": 1, "gpu_model": A100, "pool": "team-a", "max_hours": 1})
        assert r.status_code == 400, r.text
        assert "pool 'team-a' is not open to gpuhub-p-bob; open to gpuhub-p-bob: default" in r.text

        # bob asks for an A100: only node-a has them and it is idle, but it is
        # team-a's: he queues, and the queue says why
        r = bob.spawn({"gpus": 1, "gpu_model": A100, "max_hours": 1})
        assert r.status_code in (201, 202), r.text  # (the hub answers a slow spawn either way)
        (waiting,) = wait_for(lambda: bob.call("GET", API + "/allocations").json()["queued"], 30,
                              "bob's queued request")
        assert "not open to you" in waiting["reason"] and "team-a" in waiting["reason"], waiting
        assert not admin.allocations("gpuhub-p-bob")
        assert not any(d["shares"] for h in admin.pool()["hosts"] for d in h["devices"])

        # ann is in team-a: the same request lands on node-a at once
        r = ann.spawn({"gpus": 1, "gpu_model": A100, "max_hours": 1})
        assert r.status_code in (201, 202), r.text
        ann.wait_ready()
        (mine,) = admin.allocations("gpuhub-p-ann")
        assert mine["host"] == "node-a"
        # the estimates the form shows: ann has two pools to pick from, bob one
        est = ann.call("POST", API + "/estimates", json={"requests": [{"gpus": 1}]}).json()
        assert [p["name"] for p in est["pools"]] == ["default", "team-a"]
        est = bob.call("POST", API + "/estimates", json={"requests": [{"gpus": 1, "gpu_model": A100}]}).json()
        assert [p["name"] for p in est["pools"]] == ["default"]
        assert est["estimates"][0]["starts_now"] is False and est["estimates"][0]["lands"]["hosts"] == []
        # still waiting, still not on node-a
        assert bob.call("GET", API + "/allocations").json()["queued"]
        assert not admin.allocations("gpuhub-p-bob")

        # a quota per pool, through REST: ann may hold 1 GPU in team-a, and holds it;
        # another A100 (only team-a has them) would wait, and says why
        r = admin.call("PUT", API + "/quotas/user/gpuhub-p-ann?pool=team-a", json={"gpus": 1})
        assert r.status_code == 200 and r.json()["pool"] == "team-a", r.text
        assert admin.call("GET", API + "/quotas").json()["pools"]["team-a"]["users"]["gpuhub-p-ann"]["gpus"] == "1"
        est = ann.call("POST", API + "/estimates", json={"requests": [{"gpus": 1, "gpu_model": A100}]}).json()
        assert est["estimates"][0]["starts_now"] is False, est
        assert est["estimates"][0]["quota"]["verdict"] == "wait", est
        assert est["estimates"][0]["quota"]["reason"].startswith("over your quota in pool team-a: "), est
        assert est["quota"]["pools"]["team-a"]["held"]["gpus"] == "1", est["quota"]
        r = admin.call("PUT", API + "/quotas/user/gpuhub-p-ann?pool=gpu9", json={"gpus": 1})
        assert r.status_code == 400 and "no pool 'gpu9'" in r.text, r.text
        assert admin.call("DELETE", API + "/quotas/user/gpuhub-p-ann?pool=team-a").status_code == 204
    finally:
        for q in admin.call("GET", API + "/queue").json()["queued"]:
            admin.call("DELETE", f"{API}/allocations/{q['id']}")
        for u in (ann, bob):
            u.call("DELETE", f"/hub/api/users/{u.name}/server")
