"""Three Slurm nodes, each a slurmd in a network namespace of its own (``ip netns``
+ veth: spawner/slurm_cluster.py's ``netns_nodes``), under one slurmctld and one
munged on this machine, and a hub of the module's own submitting to them
(``GPUHubDemo.slurm_conf``, an inventory of both nodes owned by Slurm). Each node
has one GPU: each 1-GPU session fills a node, so Slurm puts the next one on
another. JupyterLab answers on all three through the proxy, which reaches each
server at its node's NodeAddr (the namespace's end of the veth link); the
servers reach the hub at the machine's end of the first node's link.

Then two nodes die at once, each its own way: every process in node-s2's
namespace is killed with ``kill -9`` (slurmd, the job's slurmstepd, the server),
and node-s3's link goes down (its processes run on, unreachable). slurmctld
finds them not responding and sets them DOWN after SlurmdTimeout (5 s here;
about 25 s in all, its ping cycle), their jobs end as NODE_FAIL (never
requeued), the hub's poll ends each server with "the node node-sN of its Slurm
job J failed" on the spawn page, and the allocator's mirrors are freed; the
session on node-s1 keeps running.

The servers in the namespaces cannot reach the allocator (it listens on the
machine's loopback), so their jobs do not wait for the mirror's id
(``allocation_wait`` 0): the hub mirrors each job as always.

Needs root, network namespaces and Debian's Slurm packages; skipped otherwise,
with the reason."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from spawner.slurm_cluster import Node, SlurmCluster, netns_available, netns_nodes
from tests.support import API, ENV_CODE, Hub, Slurm, slurm_unavailable, wait_for

_reason = slurm_unavailable() or netns_available("gs3-probe")
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.e2e

SUBNET = "10.213.33"  # a private /24 of this module's own, one /30 per node
NODES = ("node-s1", "node-s2", "node-s3")
SLURMD_TIMEOUT = 5  # seconds; the cluster's SlurmdTimeout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The three-node cluster in namespaces gs3-1 … gs3-3 and a hub on it; both
    stopped (daemons, namespaces, veths, /run folder) whatever happens."""
    work = tmp_path_factory.mktemp("slurm-multinode")
    nodes = netns_nodes([Node(name, 4, 8192, (("A100-SXM4-80GB", 1),)) for name in NODES], "gs3-", SUBNET)
    cluster = SlurmCluster(work / "slurm", nodes, slurmd_timeout=SLURMD_TIMEOUT)
    inventory = work / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [
        {"name": name, "cpus": 4, "memory": "8G", "owner": "slurm",
         "gpus": [{"model": "A100-SXM4-80GB", "memory": "80G", "count": 1}]} for name in NODES]}))
    hub_addr = nodes[0].gateway  # the machine's end of node-s1's link: every namespace routes there
    hub = Hub(work / "hub", config={
        "GPUHubDemo": {"runtime": "slurm", "slurm_conf": str(cluster.conf)},
        "JupyterHub": {"hub_ip": hub_addr, "hub_connect_ip": hub_addr},
        "SlurmGPUSpawner": {"job_output": f"{cluster.run}/jobs/%u-%j.log", "allocation_wait": 0.0},
        "GPUAllocator": {"slurm_reconcile_interval": 1.0, "slurm_reconcile_grace": 2.0},
    }, GPUHUB_INVENTORY=str(inventory))
    try:
        began = time.monotonic()
        cluster.start(60)
        print(f"three slurmd nodes in namespaces up in {time.monotonic() - began:.1f}s: {cluster.sinfo()}")
        hub.start()
        yield hub, cluster, Slurm(cluster.conf)
    finally:
        hub.stop()
        cluster.stop()
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [line for line in left.splitlines() if line.startswith("gs3-")], left


def spawn_ready(user, options: dict, timeout: float = 90) -> None:
    r = user.spawn(options)
    assert r.status_code in (201, 202), r.text
    user.wait_ready(timeout)


def test_sessions_land_on_every_node_and_a_dead_node_ends_its_session(lab):
    hub, cluster, slurm = lab
    began = time.monotonic()
    users = [hub.login("gpuhub-sm"), hub.login("gpuhub-sn"), hub.login("gpuhub-so")]
    on: dict[str, tuple] = {}  # node → (user, job)
    for user in users:  # one after the other: each fills a node
        spawn_ready(user, {"gpus": 1})
        (job,) = slurm.jobs(f"gpuhub-{user.name}", "RUNNING")
        on[slurm.job(job.job_id).node] = (user, job)
    assert sorted(on) == list(NODES)  # Slurm put them on every node
    for node, (user, job) in on.items():
        # JupyterLab answers through the proxy, which reaches the namespace
        env = json.loads(user.run_code(ENV_CODE))
        assert env["GPUHUB_HOST"] == node and env["USER"] == user.name and env["CUDA_VISIBLE_DEVICES"] == "0"
        (allocation,) = user.allocations()
        assert (allocation["source"], allocation["host"], allocation["job"]) == ("slurm", node, job.job_id)
    assert "NodeAddr=10.213.33.10 " in slurm.run("scontrol", "show", "node", "node-s2")
    print(f"three sessions on three nodes in {time.monotonic() - began:.1f}s")

    survivor, kept = on["node-s1"]
    killed_at = time.monotonic()
    assert cluster.kill_node("node-s2")  # slurmd, slurmstepd and the server: kill -9
    cluster.link_down("node-s3")  # its processes run on, unreachable
    for node in ("node-s2", "node-s3"):
        victim, lost = on[node]
        victim.wait_stopped(SLURMD_TIMEOUT + 45)
        print(f"the server on {node} ended {time.monotonic() - killed_at:.1f}s after it died")
        assert slurm.job(lost.job_id).state == "NODE_FAIL"
        assert cluster.sinfo()[node].startswith("down")
        form = victim.session.get(hub.url + "/hub/spawn").text
        assert f"the node {node} of its Slurm job {lost.job_id} failed" in form
        wait_for(lambda: victim.allocations() == [], 10, f"the mirror on {node} to be freed")
    pool = {h["name"]: h for h in hub.admin_allocator().pool()["hosts"]}
    assert not [d for n in ("node-s2", "node-s3") for d in pool[n]["devices"] if d["shares"]]

    # the session on the other node keeps running
    assert survivor.server() is not None and slurm.job(kept.job_id).state == "RUNNING"
    assert json.loads(survivor.run_code(ENV_CODE))["GPUHUB_HOST"] == "node-s1"
    assert [a["job"] for a in survivor.allocations()] == [kept.job_id]
    survivor.stop()
    assert survivor.allocations() == [] and slurm.job(kept.job_id).state in ("CANCELLED", "COMPLETED")
    assert hub.admin_allocator().allocations() == []
