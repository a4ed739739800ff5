"""A hub restart with the Slurm runtime: a hub that keeps its servers across
restarts (``cleanup_servers`` off) keeps its Slurm cluster too, and finds each
server's job again by the id in the spawner's state — the same job, the same
mirror in the allocator, never a second job. A hub of the test's own (after
tests/test_slurm_e2e.py's shared hub and cluster have stopped: this machine runs
one demo cluster at a time in the tests).

Needs root and Debian's Slurm packages; skipped otherwise, with the reason."""

from __future__ import annotations

import json
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
def test_a_restarted_hub_finds_its_job_again(own_hub):
    """A hub that keeps its servers across restarts (cleanup_servers off) keeps its
    cluster too; restarted, it finds the server's job by the id in the spawner's
    state: the same job, the same mirror, no second job."""
    slurm = Slurm(own_hub.data_dir / "slurm" / "slurm.conf")
    try:
        gus = own_hub.login("gpuhub-sg")
        spawn_ready(gus, {"gpus": 1})
        (job,) = slurm.jobs("gpuhub-gpuhub-sg", "RUNNING")
        (mirror,) = gus.allocations()
        own_hub.stop()
        assert slurm.job(job.job_id).state == "RUNNING"  # the server outlives the hub
        own_hub.start()
        assert gus.wait_ready(30)
        assert [j.job_id for j in slurm.jobs("gpuhub-gpuhub-sg")] == [job.job_id]
        assert [a["id"] for a in gus.allocations()] == [mirror["id"]]
        assert json.loads(gus.run_code(ENV_CODE))["USER"] == "gpuhub-sg"
        gus.stop()
        assert gus.allocations() == [] and slurm.job(job.job_id).state == "CANCELLED"
    finally:
        own_hub.stop()
        SlurmCluster(own_hub.data_dir / "slurm").stop()
