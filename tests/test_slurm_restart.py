"""The demo's own Slurm cluster as ``GPUHUB_RUNTIME=slurm make demo`` starts it
(no ``slurm_node``): one slurmd per inventory host (node-a, 4 × A100; node-b,
2 × L4), each in a network namespace of its own, and the hub's API and the
services on this machine's end of the first node's link, where sessions on
every node reach them (the lab panel asks the allocator for its share).

Then a hub restart: a hub that keeps its servers across restarts
(``cleanup_servers`` off) keeps its Slurm cluster too, and finds each server's
job again by the id in the spawner's state — the same job, the same mirror in
the allocator, never a second job. A hub of the test's own (after
tests/test_slurm_e2e.py's shared hub and cluster have stopped: this machine runs
one demo cluster at a time in the tests).

Needs root and Debian's Slurm packages; skipped otherwise, with the reason."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from spawner.slurm_cluster import SlurmCluster
from tests.support import ENV_CODE, Slurm, slurm_unavailable

_reason = slurm_unavailable()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = pytest.mark.e2e


def spawn_ready(user, options: dict, timeout: float = 90) -> float:
    started = time.monotonic()
    r = user.spawn(options)
    assert r.status_code in (201, 202), r.text
    user.wait_ready(timeout)
    return time.monotonic() - started


@pytest.mark.hub(config={"GPUHubDemo": {"runtime": "slurm"}, "JupyterHub": {"cleanup_servers": False}})
def test_the_demo_cluster_runs_every_host_and_a_restarted_hub_finds_its_jobs_again(own_hub):
    """Sessions land on both nodes (4 GPUs fit node-a only; then 2 fit node-b
    only), their panels reach the allocator from the namespaces; a hub that keeps
    its servers across restarts (cleanup_servers off) keeps its cluster too and,
    restarted, finds each server's job by the id in the spawner's state: the same
    jobs, the same mirrors, no second job."""
    data = own_hub.data_dir / "slurm"
    slurm = Slurm(data / "slurm.conf")
    made = [line.split()[0] for line in (data / "netns").read_text().splitlines()]  # the namespaces
    try:
        assert len(made) == 2, made
        assert "NodeAddr=10.213.40.10 " in slurm.run("scontrol", "show", "node", "node-b")
        users = {"node-a": (own_hub.login("gpuhub-sg"), 4), "node-b": (own_hub.login("gpuhub-sh"), 2)}
        jobs, mirrors = {}, {}
        for node, (user, gpus) in users.items():
            seconds = spawn_ready(user, {"gpus": gpus})
            (jobs[node],) = slurm.jobs(f"gpuhub-{user.name}", "RUNNING")
            assert slurm.job(jobs[node].job_id).node == node
            (mirrors[node],) = user.allocations()
            assert (mirrors[node]["host"], mirrors[node]["source"]) == (node, "slurm")
            env = json.loads(user.run_code(ENV_CODE))
            assert env["GPUHUB_HOST"] == node and env["USER"] == user.name
            # the job's script waited for the mirror's id (the allocator answers in
            # the namespace), and the panel's server extension reaches it too
            assert env["GPUHUB_ALLOCATION"] == mirrors[node]["id"]
            r = user.call("GET", f"/user/{user.name}/gpuhub/status")
            assert r.status_code == 200, r.text[:500]
            assert r.json()["share"]["allocation"]["id"] == mirrors[node]["id"], r.text[:500]
            print(f"spawn-to-ready of {gpus} GPUs on {node} (a network namespace): {seconds:.1f}s")

        own_hub.stop()
        for node, job in jobs.items():
            assert slurm.job(job.job_id).state == "RUNNING"  # the servers outlive the hub
        own_hub.start()
        for node, (user, _) in users.items():
            assert user.wait_ready(30)
            assert [j.job_id for j in slurm.jobs(f"gpuhub-{user.name}")] == [jobs[node].job_id]
            assert [a["id"] for a in user.allocations()] == [mirrors[node]["id"]]
            assert json.loads(user.run_code(ENV_CODE))["USER"] == user.name
        for node, (user, _) in users.items():
            user.stop()
            assert user.allocations() == [] and slurm.job(jobs[node].job_id).state == "CANCELLED"
    finally:
        own_hub.stop()
        SlurmCluster(data).stop()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ns for ns in made if ns in left.split()], left
