"""The Slurm runtime on a real Slurm: the demo with ``GPUHubDemo.runtime =
"slurm"`` and ``slurm_node = "node-a"`` starts its own one-node cluster
(munged, slurmctld, slurmd on this machine with GPU GRES on device files:
node-a, 4 × A100, 40 shards) and SlurmGPUSpawner submits each server as a batch
job. One hub and one cluster for the module.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge; skipped
otherwise, with the reason."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import (
    API, ENV_CODE, cli_login, device_shares, job, job_servers, pids_with_env, run_to_the_end, slurm_unavailable, submitted,
    wait_for,
)

_reason = slurm_unavailable()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = [
    pytest.mark.e2e,
    # tests/conftest.py: the hub's cluster stopped after the module, nothing left after each test
    pytest.mark.usefixtures("slurm_nothing_left"),
    pytest.mark.hub(config={
        "GPUHubDemo": {"runtime": "slurm", "slurm_node": "node-a"},
        # the allocator frees mirrors of jobs gone from squeue within seconds
        "GPUAllocator": {"slurm_reconcile_interval": 1.0, "slurm_reconcile_grace": 2.0},
    }),
]

NODE = "node-a"
V = "/services/vfolders/api/v1"


def spawn_ready(user, options: dict, timeout: float = 90) -> float:
    started = time.monotonic()
    r = user.spawn(options)
    assert r.status_code in (201, 202), r.text
    user.wait_ready(timeout)
    return time.monotonic() - started


def test_one_gpu_is_one_running_job_mirrored_then_stop_cancels_and_frees(hub, slurm):
    alice = hub.login("gpuhub-sa")
    assert hub.admin_allocator().pool()["hosts"][0]["state"] == "external"
    seconds = spawn_ready(alice, {"gpus": 1})
    (job,) = slurm.jobs("gpuhub-gpuhub-sa", "RUNNING")
    info = slurm.job(job.job_id)
    (gres,) = info.gres[NODE]
    assert (gres.name, gres.type, gres.count) == ("gpu", "a100_sxm4_80gb", 1) and info.node == NODE
    (allocation,) = alice.allocations()
    assert allocation["source"] == "slurm" and allocation["job"] == job.job_id and allocation["host"] == NODE
    assert [d["index"] for d in allocation["devices"]] == list(gres.indexes)
    shares = device_shares(hub.admin_allocator().pool(), NODE)
    assert shares == {gres.indexes[0]: [{
        "allocation": allocation["id"], "user": "gpuhub-sa", "units": 20, "fraction": "1",
        "source": "slurm", "job": job.job_id, "use": None}]}  # no heartbeat use on a Slurm node
    env = json.loads(alice.run_code(ENV_CODE))
    assert env["CUDA_VISIBLE_DEVICES"] == str(gres.indexes[0])  # Slurm's, by index
    assert env["USER"] == "gpuhub-sa" and env["uid"] != 0
    # the job's script waited for the mirror: the session knows its allocation,
    # and so does the lab panel, which reads GPUHUB_ALLOCATION
    assert env["GPUHUB_ALLOCATION"] == allocation["id"]
    r = alice.call("GET", "/user/gpuhub-sa/gpuhub/status")
    assert r.status_code == 200 and r.json()["share"]["allocation"]["id"] == allocation["id"], r.text[:500]
    print(f"spawn-to-ready of a 1-GPU JupyterLab under Slurm: {seconds:.1f}s")

    alice.stop()
    assert slurm.job(job.job_id).state in ("CANCELLED", "COMPLETED")
    assert alice.allocations() == [] and device_shares(hub.admin_allocator().pool(), NODE) == {}


def test_fraction_runs_as_a_shard_job_on_one_gpu(hub, slurm):
    bea = hub.login("gpuhub-sb")
    form = bea.session.get(hub.url + "/hub/spawn").text
    assert 'id="gpuhub-slurm-fractions"' in form and "a Slurm shard" in form
    assert "nothing is fenced, neither the GPU's memory nor its compute" in form
    spawn_ready(bea, {"gpus": 0.5})
    (job,) = slurm.jobs("gpuhub-gpuhub-sb", "RUNNING")
    (gres,) = slurm.job(job.job_id).gres[NODE]
    assert (gres.name, gres.count, len(gres.indexes)) == ("shard", 5, 1)
    env = json.loads(bea.run_code(ENV_CODE))
    assert env["CUDA_VISIBLE_DEVICES"] == str(gres.indexes[0])
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] is None  # a shard limits nothing
    (allocation,) = bea.allocations()
    assert allocation["gpus"] == "0.5" and allocation["devices"][0]["index"] == gres.indexes[0]
    bea.stop()


def test_a_spawn_waits_with_slurms_reason_and_starts_when_a_job_ends(hub, slurm):
    filler = slurm.sbatch("--gres=gpu:4", "--job-name=filler")
    wait_for(lambda: slurm.job(filler).state == "RUNNING", 30, "the job that takes every GPU")
    cleo = hub.login("gpuhub-sc")
    with ThreadPoolExecutor(1) as ex:
        r = cleo.spawn({"gpus": 1})
        assert r.status_code == 202, r.text
        watching = ex.submit(cleo.progress)
        wait_for(lambda: [j for j in slurm.jobs("gpuhub-gpuhub-sc", "PENDING") if j.reason == "Resources"],
                 30, "the server's job to wait for Resources")
        assert cleo.allocations() == []  # nothing mirrored while Slurm has granted nothing
        time.sleep(3)  # a progress poll or two with the reason
        slurm.scancel(filler)
        events = watching.result(timeout=90)
    messages = [e["message"] for e in events]
    waiting = [m for m in messages if "waiting in Slurm's queue (Resources" in m]
    assert waiting, messages
    assert any(m.startswith("allocated 1 × A100-SXM4-80GB") for m in messages), messages
    cleo.wait_ready()
    cleo.stop()


def test_scancel_outside_gpuhub_stops_the_server_and_frees_the_mirror(hub, slurm):
    dan = hub.login("gpuhub-sd")
    spawn_ready(dan, {"gpus": 1})
    (job,) = slurm.jobs("gpuhub-gpuhub-sd", "RUNNING")
    assert dan.allocations()
    slurm.scancel(job.job_id)
    dan.wait_stopped(30)
    wait_for(lambda: dan.allocations() == [], 10, "the mirror to be freed")
    form = dan.session.get(hub.url + "/hub/spawn").text
    assert f"its Slurm job {job.job_id} was cancelled" in form


def test_reconcile_frees_the_mirror_of_a_job_gone_from_squeue(hub, slurm):
    """Without the hub's spawner: the allocator's own timer compares its mirrors
    with squeue."""
    job = slurm.sbatch("--gres=gpu:2")
    wait_for(lambda: slurm.job(job).state == "RUNNING", 30, "the job to run")
    (gres,) = slurm.job(job).gres[NODE]
    admin = hub.admin_allocator()
    body = {"source": "slurm", "job": job, "host": NODE, "devices": list(gres.indexes), "user": "gpuhub-se"}
    r = admin.call("POST", API + "/external", json=body)
    assert r.status_code == 201, r.text
    assert admin.call("POST", API + "/external", json=body).json()["id"] == r.json()["id"]  # never twice
    assert admin.call("GET", API + "/external").json()["allocations"][0]["job"] == job
    slurm.scancel(job)
    wait_for(lambda: admin.allocations() == [], 15, "the reconciliation to free the mirror")


def test_quota_refusal_submits_nothing(hub, slurm):
    admin = hub.admin_allocator()
    r = admin.call("PUT", API + "/quotas/user/gpuhub-sf", json={"gpus": "1"})
    assert r.status_code == 200, r.text
    try:
        fay = hub.login("gpuhub-sf")
        r = fay.spawn({"gpus": 2})
        assert r.status_code == 400, r.text
        assert fay.server() is None
        assert slurm.jobs("gpuhub-gpuhub-sf") == []
    finally:
        admin.call("DELETE", API + "/quotas/user/gpuhub-sf")


def test_a_fraction_that_is_no_whole_number_of_shards_is_a_400_and_submits_nothing(hub, slurm):
    """0.25 GPU on 10 shards per GPU would be 2.5 shards: refused when the spawn
    is asked for (the allocator's dry run passed it), with the allowed steps."""
    hal = hub.login("gpuhub-sh")
    form = hal.session.get(hub.url + "/hub/spawn").text
    assert '<option value="0.5"' in form and '<option value="0.25"' not in form  # not offered either
    r = hal.spawn({"gpus": 0.25})
    assert r.status_code == 400 and "a multiple of 0.1 GPU" in r.text, r.text
    assert hal.server() is None and slurm.jobs("gpuhub-gpuhub-sh") == []



def test_home_and_vfolders_are_mounted_in_the_job_from_the_storage_paths(hub, slurm):
    """#22: the job's script mounts the user's home vfolder at ~ and a chosen
    vfolder at ~/vfolders/NAME on the node (submitted as root, it drops to the
    user's account itself); what the session writes is in the vfolders."""
    gil = hub.login("gpuhub-sg")
    r = gil.call("POST", V + "/vfolders", json={"name": "data"})
    assert r.status_code == 201, r.text
    data = r.json()
    spawn_ready(gil, {"gpus": 1, "vfolders": ["data"]})
    (job,) = slurm.jobs("gpuhub-gpuhub-sg", "RUNNING")
    out = json.loads(gil.run_code(
        "import os, json\nh = os.path.expanduser('~')\n"
        "open(h + '/x.txt', 'w').write('written in Slurm job ' + os.environ['GPUHUB_SLURM_JOB'])\n"
        "open(h + '/vfolders/data/y.txt', 'w').write('in data')\n"
        "print(json.dumps({'listing': sorted(os.listdir(h + '/vfolders')), 'uid': os.getuid(), "
        "'groups': os.getgroups(), 'live': os.environ.get('GPUHUB_VFOLDERS_LIVE'), 'cwd': os.getcwd()}))"))
    assert out["listing"] == ["data"] and out["uid"] != 0 and out["live"] == "0", out
    (home,) = [v for v in gil.call("GET", V + "/vfolders").json()["vfolders"] if v["kind"] == "home"]
    r = gil.call("GET", V + f"/vfolders/{home['id']}/files/x.txt")
    assert r.status_code == 200 and r.text == f"written in Slurm job {job.job_id}", r.text
    r = gil.call("GET", V + f"/vfolders/{data['id']}/files/y.txt")
    assert r.status_code == 200 and r.text == "in data", r.text
    gil.stop()
    assert gil.call("DELETE", V + f"/vfolders/{data['id']}").status_code == 204  # no session holds it


def test_a_batch_job_is_one_slurm_job_its_exit_code_comes_back_and_nothing_is_left(hub, slurm, cli):
    """#22 item 1: `gpuhub run --gpus 1` on Slurm as on the other runtimes: its
    runner is the Slurm job's process (in place of JupyterLab, on the node, in
    the home vfolder mounted at ~), with Slurm's GPU; when the command exits the
    runner exits, so does the Slurm job, and the hub's poll (the job's 1 s)
    frees the mirror and the allocator removes the job's server."""
    user = cli_login(hub, cli, "gpuhub-sj")
    j, fields, seconds = run_to_the_end(hub, cli, user, "1",
                                        "CVD=$CUDA_VISIBLE_DEVICES SLURM=$SLURM_JOB_ID PWD=$(pwd) UID=$(id -u)", 120)
    assert j["host"] == NODE, j
    (slurm_job,) = slurm.jobs(f"gpuhub-gpuhub-sj-job-{j['id']}")
    assert fields["SLURM"] == slurm_job.job_id, fields
    info = slurm.job(slurm_job.job_id)
    assert fields["CVD"].isdigit(), fields  # Slurm's GPU, by index
    assert fields["PWD"].endswith("/gpuhub-sj") and fields["UID"] != "0", fields
    # the runner's exit ended the Slurm job with the command's code
    assert info.state == "FAILED" and info.exit_code.startswith("3"), info
    # nothing left: no mirror, no job server, no Slurm job
    wait_for(lambda: not hub.admin_allocator().allocations() and not job_servers(user), 30,
             "the mirror and the job's server gone")
    print(f"submit-to-end of a 1-GPU batch job under Slurm: {seconds:.1f}s")
    # cancelled while it runs: the Slurm job is cancelled whole, nothing of it runs on
    running = submitted(cli("run", "--gpus", "1", "--", "sh", "-c", "echo up; sleep 600"))
    wait_for(lambda: "up" in cli("logs", running).stdout.decode(), 60, "the second job's output")
    assert pids_with_env("GPUHUB_JOB_ID", running, "sleep")
    cli("cancel", running)
    wait_for(lambda: not hub.admin_allocator().allocations() and not job_servers(user), 30, "everything freed")
    assert job(cli, running)["state"] == "cancelled"
    assert slurm.jobs(f"gpuhub-gpuhub-sj-job-{running}", "PENDING,RUNNING,COMPLETING") == []
    assert not pids_with_env("GPUHUB_JOB_ID", running, "sleep")
