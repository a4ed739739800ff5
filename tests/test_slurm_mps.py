"""Fractions as CUDA MPS shares on a real Slurm: the demo with
``GPUHubDemo.slurm_fractions = "mps"`` and ``slurm_node = "node-a"`` starts its
own one-node cluster with 100 ``mps`` GRES on each GPU's device file
(``GresTypes=gpu,mps``: node-a, 4 × A100) and SlurmGPUSpawner asks for a fraction as ``--gres=mps:P``
(``fraction_gres = "mps"``). A hub and a cluster of the module's own (the
options differ from tests/test_slurm_e2e.py's).

No MPS daemon runs (there is no GPU): what is checked is what Slurm grants and
sets, and what gpuhub mirrors. Needs root and Debian's slurmctld, slurmd,
slurm-client and munge; skipped otherwise, with the reason."""

from __future__ import annotations

import json

import pytest

from tests.support import ENV_CODE, device_shares, slurm_unavailable

_reason = slurm_unavailable()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

pytestmark = [
    pytest.mark.e2e,
    # tests/conftest.py: the hub's cluster stopped after the module, nothing left after each test
    pytest.mark.usefixtures("slurm_nothing_left"),
    pytest.mark.hub(config={
        "GPUHubDemo": {"runtime": "slurm", "slurm_node": "node-a", "slurm_fractions": "mps"},
        "GPUAllocator": {"slurm_reconcile_interval": 1.0, "slurm_reconcile_grace": 2.0},
    }),
]

NODE = "node-a"


def test_a_half_gpu_is_an_mps_50_job_with_slurms_cuda_environment_mirrored_then_freed(hub, slurm):
    gres_conf = (hub.data_dir / "slurm" / "gres.conf").read_text()
    assert "Name=mps Count=100 File=" in gres_conf and "GresTypes=gpu,mps" in slurm.conf.read_text()
    mia = hub.login("gpuhub-sm")
    form = mia.session.get(hub.url + "/hub/spawn").text
    assert 'id="gpuhub-slurm-fractions"' in form and "a CUDA MPS share" in form
    assert "Its memory is not fenced" in form
    r = mia.spawn({"gpus": 0.5})
    assert r.status_code in (201, 202), r.text
    mia.wait_ready(90)
    (job,) = slurm.jobs("gpuhub-gpuhub-sm", "RUNNING")
    info = slurm.job(job.job_id)
    (gres,) = info.gres[NODE]
    assert (gres.name, gres.type, gres.count, len(gres.indexes)) == ("mps", "", 50, 1), info
    (index,) = gres.indexes
    # what Slurm 22.05 sets in an mps job: the GPU by index, the compute
    # percentage; no memory limit
    env = json.loads(mia.run_code(ENV_CODE))
    assert env["CUDA_VISIBLE_DEVICES"] == str(index), env
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50", env
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] is None, env
    (allocation,) = mia.allocations()
    assert allocation["source"] == "slurm" and allocation["job"] == job.job_id and allocation["host"] == NODE
    assert allocation["gpus"] == "0.5" and [d["index"] for d in allocation["devices"]] == [index]
    assert env["GPUHUB_ALLOCATION"] == allocation["id"]
    assert device_shares(hub.admin_allocator().pool(), NODE) == {index: [{
        "allocation": allocation["id"], "user": "gpuhub-sm", "units": 10, "fraction": "0.5",
        "source": "slurm", "job": job.job_id, "use": None}]}

    mia.stop()
    assert slurm.job(job.job_id).state in ("CANCELLED", "COMPLETED")
    assert mia.allocations() == [] and device_shares(hub.admin_allocator().pool(), NODE) == {}
