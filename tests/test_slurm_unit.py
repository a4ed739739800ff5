"""The Slurm runtime's pure parts, without a cluster: what is submitted (sbatch
arguments, the script, GRES for a share), what Slurm's tools print read back
(real outputs of Slurm 22.05), the demo cluster's config, and external
allocations in the allocator (core.external, the live pool, the ledger)."""

from __future__ import annotations

import asyncio

import pytest

from gpu_allocator.core.external import Grant, shares_of, stale
from gpu_allocator.core.model import HostState
from gpu_allocator.core.state import StateError
from gpu_allocator.core.validation import RequestError
from gpu_allocator.inventory import InventoryError, load_inventory
from gpuhub.slurm import SlurmOutputError, parse_index_list, parse_job, parse_squeue, pending_message
from spawner.slurm import (
    SlurmGPUSpawner, batch_script, end_reason, fraction_note, gres_args, job_name, mirror_body, sbatch_args, time_limit,
)
from spawner.slurm_cluster import ClusterError, Node, SlurmCluster, gres_conf, netns_nodes, node_gres, slurm_conf
from tests.support import box, open_pool, reopen

#: scontrol show job -d of a 2-GPU job, as Slurm 22.05 printed it here
SHOW_JOB = """\
JobId=1 JobName=gpuhub-proto
   UserId=gpuhub-proto(1093) GroupId=gpuhub-proto(1093) MCS_label=N/A
   Priority=1 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   RunTime=00:00:02 TimeLimit=01:00:00 TimeMin=N/A
   SubmitTime=2026-12-07T17:13:41 EligibleTime=2026-12-07T17:13:41
   StartTime=2026-12-07T17:13:41 EndTime=2026-12-07T18:13:41 Deadline=N/A
   NodeList=node-a
   ReqNodeList=(null) ExcNodeList=(null)
   JOB_GRES=gpu:a100:2
     Nodes=node-a CPU_IDs=0 Mem=4096 GRES=gpu:a100:2(IDX:0-1)
   ExitCode=0:0
"""
SHOW_SHARD = SHOW_JOB.replace("JOB_GRES=gpu:a100:2", "JOB_GRES=shard:5").replace(
    "GRES=gpu:a100:2(IDX:0-1)", "GRES=shard:5(IDX:2)")
#: scontrol show job -d of ``sbatch --gres=mps:50`` on a node with 2 GPUs of
#: ``Name=mps Count=100`` each, as Slurm 22.05.8 printed it here (the job's
#: environment: CUDA_VISIBLE_DEVICES=0, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=50,
#: SLURM_JOB_GPUS=0, no CUDA_MPS_PINNED_DEVICE_MEM_LIMIT)
SHOW_MPS = """\
JobId=1 JobName=sbatch
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   Priority=4294901759 Nice=0 Account=(null) QOS=(null)
   JobState=RUNNING Reason=None Dependency=(null)
   Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0
   DerivedExitCode=0:0
   RunTime=00:00:04 TimeLimit=365-00:00:00 TimeMin=N/A
   SubmitTime=2026-12-07T20:19:10 EligibleTime=2026-12-07T20:19:10
   AccrueTime=2026-12-07T20:19:10
   StartTime=2026-12-07T20:19:12 EndTime=2027-12-07T20:19:12 Deadline=N/A
   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-12-07T20:19:12 Scheduler=Backfill
   Partition=gpu AllocNode:Sid=localhost:26741
   ReqNodeList=(null) ExcNodeList=(null)
   NodeList=node-m
   BatchHost=node-m
   NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:*
   TRES=cpu=1,mem=256M,node=1,billing=1
   Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=*
   JOB_GRES=mps:50
     Nodes=node-m CPU_IDs=0 Mem=256 GRES=mps:50(IDX:0)
   MinCPUsNode=1 MinMemoryNode=256M MinTmpDiskNode=0
   Features=(null) DelayBoot=00:00:00
   OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null)
   Command=(null)
   WorkDir=/work/wt/mpsgres
   StdErr=/tmp/mpsx/1.out
   StdIn=/dev/null
   StdOut=/tmp/mpsx/1.out
   Power=
   TresPerNode=gres:mps:50
"""
PENDING = """\
JobId=2 JobName=s5
   JobState=PENDING Reason=Resources Dependency=(null)
   StartTime=Unknown EndTime=Unknown Deadline=N/A
   NodeList=(null)
"""

REQUEST = {"gpus": "1", "units": 20, "units_per_gpu": 20, "cpu": "2", "mem": "4096M", "max_hours": 1.5,
           "gpu_model": []}


def test_index_lists():
    assert parse_index_list("0-1,3") == [0, 1, 3]
    assert parse_index_list("N/A") == []
    with pytest.raises(SlurmOutputError):
        parse_index_list("3-1")


def test_scontrol_show_job_reads_node_and_gres():
    job = parse_job(SHOW_JOB)
    assert (job.job_id, job.state, job.node, job.user, job.holding) == ("1", "RUNNING", "node-a", "gpuhub-proto", True)
    (gres,) = job.gres["node-a"]
    assert (gres.name, gres.type, gres.count, gres.indexes) == ("gpu", "a100", 2, (0, 1))
    (shard,) = parse_job(SHOW_SHARD).gres["node-a"]
    assert (shard.name, shard.type, shard.count, shard.indexes) == ("shard", "", 5, (2,))
    pending = parse_job(PENDING)
    assert pending.waiting and pending.node == "" and pending.start is None and pending.gres == {}


def test_squeue_lines_and_the_pending_message():
    (line,) = parse_squeue("7|PENDING|Resources|2030-01-01T10:00:00||gpuhub-a\n")
    assert (line.job_id, line.state, line.reason, line.nodes, line.name) == ("7", "PENDING", "Resources", "", "gpuhub-a")
    text = pending_message(line, line.start - 600)
    assert text.startswith("waiting in Slurm's queue (Resources: the GPUs it needs are in use)")
    assert "at 10:00 (in 10 min)" in text
    (unknown,) = parse_squeue("8|PENDING|Priority|N/A||x\n")
    assert "no start estimate yet" in pending_message(unknown, 0)


def test_gres_for_whole_gpus_typed_and_fractions_as_shards():
    assert gres_args({**REQUEST, "units": 0}, 20, 10) == []
    assert gres_args({**REQUEST, "units": 40}, 20, 10) == ["--gres=gpu:2"]
    assert gres_args({**REQUEST, "gpu_model": ["A100-SXM4-80GB"]}, 20, 10) == ["--gres=gpu:a100_sxm4_80gb:1"]
    assert gres_args({**REQUEST, "units": 10}, 20, 10) == ["--gres=shard:5"]
    with pytest.raises(ValueError, match="multiple of 0.1 GPU"):
        gres_args({**REQUEST, "units": 1}, 20, 10)
    with pytest.raises(ValueError, match="no shards"):
        gres_args({**REQUEST, "units": 10}, 20, 0)


def test_gres_for_fractions_as_mps_percentages_and_the_refusals():
    """fraction_gres "mps": a fraction is mps:P, P of mps_per_gpu (100: the
    percentage of one GPU); whole GPUs stay gpu GRES; a share that is not a
    whole number of mps is refused, saying which multiples are allowed."""
    assert gres_args({**REQUEST, "units": 10}, 20, 10, "mps") == ["--gres=mps:50"]
    assert gres_args({**REQUEST, "units": 1}, 20, 10, "mps") == ["--gres=mps:5"]  # 0.05: what shards refuse
    assert gres_args({**REQUEST, "units": 3}, 20, 0, "mps") == ["--gres=mps:15"]  # shards play no part
    assert gres_args({**REQUEST, "units": 10}, 20, 10, "mps", 200) == ["--gres=mps:100"]  # Count=200 per GPU
    assert gres_args({**REQUEST, "units": 40}, 20, 10, "mps") == ["--gres=gpu:2"]
    assert gres_args({**REQUEST, "units": 0}, 20, 10, "mps") == []
    with pytest.raises(ValueError, match=r"0\.025 GPU is 2\.5% of a GPU; .*a multiple of 0\.05 GPU"):
        gres_args({**REQUEST, "units": 1}, 40, 10, "mps")  # 40 units per GPU: 2.5 % is no whole mps
    assert gres_args({**REQUEST, "units": 2}, 40, 10, "mps") == ["--gres=mps:5"]
    with pytest.raises(ValueError, match="declares no mps"):
        gres_args({**REQUEST, "units": 10}, 20, 10, "mps", 0)
    with pytest.raises(ValueError, match="whole number of GPUs"):
        gres_args({**REQUEST, "units": 30}, 20, 10, "mps")
    args = sbatch_args({**REQUEST, "units": 10}, user="ann", server="", units_per_gpu=20, shards_per_gpu=10,
                       fraction_gres="mps")
    assert "--gres=mps:50" in args and not [a for a in args if "shard" in a]


def test_sbatch_arguments_and_script():
    args = sbatch_args(REQUEST, user="ann", server="gpu", units_per_gpu=20, shards_per_gpu=10,
                       partition="gpu", workdir="/home/ann", output="/tmp/%j.log", account=(1001, 1001),
                       extra=["--qos=interactive"])
    assert args == ["--parsable", "--job-name=gpuhub-ann-gpu", "--nodes=1", "--ntasks=1", "--cpus-per-task=2",
                    "--mem=4096M", "--time=90", "--export=ALL", "--no-requeue", "--gres=gpu:1",
                    "--partition=gpu",
                    "--chdir=/home/ann", "--output=/tmp/%j.log", "--uid=1001", "--gid=1001", "--qos=interactive"]
    assert job_name("ann") == "gpuhub-ann" and time_limit(0.01) == "1" and time_limit(8) == "480"
    script = batch_script(["/opt/env/bin/python", "-m", "jupyterhub.singleuser", "--arg=a b"])
    assert script.startswith("#!/bin/bash\n")
    assert "exec /opt/env/bin/python -m jupyterhub.singleuser '--arg=a b'\n" in script
    assert "GPUHUB_ALLOCATION" not in script  # no Python given: no wait for the mirror


def test_the_batch_script_exports_the_mirrors_id_found_with_the_servers_token(tmp_path):
    """GPUHUB_ALLOCATION in a Slurm session: the script asks the allocator (a
    stand-in HTTP server here) for the user's allocations until the one of
    SLURM_JOB_ID is there, and exports its id; a session without GPUs never waits."""
    import http.server
    import json as json_
    import os
    import subprocess
    import sys
    import threading

    asked = []

    class Allocator(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers.get("Authorization")))
            found = [{"id": "a-7", "source": "slurm", "job": "42"}] if len(asked) > 1 else []
            body = json_.dumps({"allocations": [{"id": "x", "source": "slurm", "job": "4"}, *found]}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Allocator)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = batch_script(["sh", "-c", 'echo "allocation=${GPUHUB_ALLOCATION-unset}"'], sys.executable, 10)
        env = {**os.environ, "SLURM_JOB_ID": "42", "JUPYTERHUB_API_TOKEN": "t0k",
               "GPUHUB_ALLOCATOR_URL": f"http://127.0.0.1:{server.server_port}/api/v1/"}
        env.pop("GPUHUB_ALLOCATION", None)
        run = subprocess.run(["bash", "-c", script], env={**env, "GPUHUB_GPUS": "1"}, capture_output=True,
                             text=True, timeout=30)
        assert run.stdout.strip() == "allocation=a-7", run.stderr
        assert asked[0] == ("/api/v1/allocations", "token t0k") and len(asked) == 2
        run = subprocess.run(["bash", "-c", script], env={**env, "GPUHUB_GPUS": "0"}, capture_output=True,
                             text=True, timeout=30)
        assert run.stdout.strip() == "allocation=unset" and len(asked) == 2
    finally:
        server.shutdown()


def test_the_mirror_of_a_running_job():
    body = mirror_body(parse_job(SHOW_JOB), REQUEST, user="ann", server="", units_per_gpu=20, shards_per_gpu=10)
    assert body["source"] == "slurm" and body["job"] == "1" and body["host"] == "node-a"
    assert (body["devices"], body["units_each"]) == ([0, 1], 20)
    shard = mirror_body(parse_job(SHOW_SHARD), REQUEST, user="ann", server="", units_per_gpu=20, shards_per_gpu=10)
    assert (shard["devices"], shard["units_each"]) == ([2], 10)
    assert mirror_body(parse_job(PENDING), REQUEST, user="a", server="", units_per_gpu=20, shards_per_gpu=10) is None


def test_an_mps_job_read_back_and_mirrored_on_its_gpu():
    """The real output of an mps:50 job: GRES=mps:50(IDX:0) is half of GPU 0,
    so the mirror holds 10 of its 20 units there."""
    job = parse_job(SHOW_MPS)
    assert (job.job_id, job.state, job.node, job.user) == ("1", "RUNNING", "node-m", "root")
    (mps,) = job.gres["node-m"]
    assert (mps.name, mps.type, mps.count, mps.indexes) == ("mps", "", 50, (0,))
    body = mirror_body(job, {**REQUEST, "units": 10}, user="ann", server="", units_per_gpu=20, shards_per_gpu=10)
    assert (body["host"], body["devices"], body["units_each"], body["job"]) == ("node-m", [0], 10, "1")
    # 200 mps per GPU: mps:50 is a quarter of it
    quarter = mirror_body(job, REQUEST, user="ann", server="", units_per_gpu=20, shards_per_gpu=10, mps_per_gpu=200)
    assert quarter["units_each"] == 5
    shard = mirror_body(parse_job(SHOW_SHARD), REQUEST, user="ann", server="", units_per_gpu=20, shards_per_gpu=10)
    assert (shard["devices"], shard["units_each"]) == ([2], 10)


def test_the_form_says_what_a_fraction_fences():
    shard = fraction_note("shard")
    assert "shard:K" in shard and "nothing is fenced, neither the GPU's memory nor its compute" in shard
    mps = fraction_note("mps")
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" in mps and "limits the GPU's compute" in mps
    assert "Its memory is not fenced" in mps and "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" in mps


def test_a_share_slurm_cannot_express_is_a_400_before_anything_is_submitted(monkeypatch):
    """SlurmGPUSpawner.apply_gpu_options: after the allocator's dry run (here a
    stand-in), a fraction that is no whole number of shards or mps is a 400."""
    from tornado import web

    from spawner.vfolders import SlurmVFolderMixin

    async def checked(self, options):
        self.gpu_request = {**REQUEST, "units": int(options["units"]), "units_per_gpu": options["per_gpu"]}

    monkeypatch.setattr(SlurmVFolderMixin, "apply_gpu_options", checked)
    spawner = SlurmGPUSpawner(fraction_gres="mps")
    asyncio.run(spawner.apply_gpu_options({"units": 10, "per_gpu": 20}))
    assert spawner.gpu_request["units"] == 10
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(spawner.apply_gpu_options({"units": 1, "per_gpu": 40}))
    assert e.value.status_code == 400 and "a multiple of 0.05 GPU" in e.value.log_message
    assert spawner.gpu_request is None
    shards = SlurmGPUSpawner()
    assert shards.fraction_gres == "shard"
    with pytest.raises(web.HTTPError, match="multiple of 0.1 GPU"):
        asyncio.run(shards.apply_gpu_options({"units": 1, "per_gpu": 20}))


def test_the_form_offers_only_the_fractions_the_cluster_can_express():
    pool = {"units_per_gpu": 20}
    choices = ["0", "0.25", "0.5", "1", "2", "0.3"]
    assert SlurmGPUSpawner(gpu_choices=choices).form_gpu_choices(pool) == ["0", "0.5", "1", "2", "0.3"]  # 10 shards
    assert SlurmGPUSpawner(gpu_choices=choices, fraction_gres="mps").form_gpu_choices(pool) == choices
    assert SlurmGPUSpawner(gpu_choices=choices, shards_per_gpu=0).form_gpu_choices(pool) == ["0", "1", "2"]
    assert SlurmGPUSpawner(gpu_choices=["0.025"], fraction_gres="mps").form_gpu_choices({"units_per_gpu": 40}) == []


def test_end_reasons_name_the_job_and_why():
    job = parse_job(SHOW_JOB.replace("JobState=RUNNING", "JobState=TIMEOUT"))
    assert "reached its time limit (01:00:00)" in end_reason(job, "1")
    assert "was cancelled (scancel" in end_reason(parse_job(SHOW_JOB.replace("RUNNING", "CANCELLED")), "1")
    assert "gone from Slurm" in end_reason(None, "9")


def test_demo_cluster_config(tmp_path):
    node = Node("node-a", 32, 262144, (("A100-SXM4-80GB", 4),))
    assert node_gres(node) == "gpu:a100_sxm4_80gb:4,shard:40"
    conf = slurm_conf("c", [node], tmp_path / "data", tmp_path / "run", (7001, 7002))
    for line in ("ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
                 "GresTypes=gpu,shard", "SlurmctldPort=7001", "SlurmdPort=7002",
                 f"AuthInfo=socket={tmp_path}/run/munge/munge.socket", f"StateSaveLocation={tmp_path}/data/state"):
        assert line in conf.splitlines()
    assert "NodeName=node-a " in conf and "Gres=gpu:a100_sxm4_80gb:4,shard:40" in conf
    assert gres_conf([node], tmp_path / "dev").splitlines() == [
        f"NodeName=node-a Name=gpu Type=a100_sxm4_80gb File={tmp_path}/dev/node-a/nvidia[0-3]",
        "NodeName=node-a Name=shard Count=40",
    ]
    assert "SlurmctldHost=localhost(127.0.0.1)" in conf and "JobRequeue=0" in conf.splitlines()


def test_a_cluster_with_mps(tmp_path):
    """fractions="mps": GresTypes gpu,mps; each GPU's device file carries 100 mps
    beside its gpu GRES (Slurm ties an mps GRES to the gpu of the same file)."""
    node = Node("node-a", 32, 262144, (("A100-SXM4-80GB", 2), ("L4", 1)))
    assert node_gres(node, fractions="mps") == "gpu:a100_sxm4_80gb:2,gpu:l4:1,mps:300"
    conf = slurm_conf("c", [node], tmp_path / "data", tmp_path / "run", (7001, 7002), fractions="mps")
    assert "GresTypes=gpu,mps" in conf.splitlines() and "Gres=gpu:a100_sxm4_80gb:2,gpu:l4:1,mps:300 " in conf
    dev = tmp_path / "dev" / "node-a"
    assert gres_conf([node], tmp_path / "dev", fractions="mps").splitlines() == [
        f"NodeName=node-a Name=gpu Type=a100_sxm4_80gb File={dev}/nvidia[0-1]",
        f"NodeName=node-a Name=gpu Type=l4 File={dev}/nvidia2",
        f"NodeName=node-a Name=mps Count=100 File={dev}/nvidia0",
        f"NodeName=node-a Name=mps Count=100 File={dev}/nvidia1",
        f"NodeName=node-a Name=mps Count=100 File={dev}/nvidia2",
    ]
    with pytest.raises(ValueError, match="shard, mps"):
        gres_conf([node], tmp_path / "dev", fractions="mig")


def test_nodes_in_network_namespaces(tmp_path):
    """Each node in a namespace of its own with a /30: NodeAddr is the namespace's
    end; slurmctld listens on the machine's end of the first node's link."""
    plain = [Node("node-s1", 4, 8192, (("A100", 1),)), Node("node-s2", 4, 8192, (("A100", 1),))]
    s1, s2 = netns_nodes(plain, "gs3-", "10.9.8")
    assert (s1.netns, s1.addr, s1.gateway, s1.veth) == ("gs3-1", "10.9.8.6", "10.9.8.5", ("gs3-1-o", "gs3-1-i"))
    assert (s2.netns, s2.addr, s2.gateway) == ("gs3-2", "10.9.8.10", "10.9.8.9")
    conf = slurm_conf("c", [s1, s2], tmp_path / "data", tmp_path / "run", (7001, 7002), slurmd_timeout=5)
    assert "SlurmctldHost=localhost(10.9.8.5)" in conf.splitlines() and "SlurmdTimeout=5" in conf.splitlines()
    assert " NodeAddr=10.9.8.6 " in conf and " NodeAddr=10.9.8.10 " in conf
    with pytest.raises(ValueError, match="13 characters"):
        netns_nodes(plain, "a-very-long-prefix", "10.9.8")


def test_inventory_owner(tmp_path):
    inv = tmp_path / "i.yaml"
    inv.write_text("hosts:\n  - {name: n, cpus: 4, memory: 8G, owner: slurm, gpus: [{model: L4, count: 2}]}\n")
    (host,) = load_inventory(inv)
    assert host.state == HostState.EXTERNAL
    inv.write_text("hosts:\n  - {name: n, cpus: 4, memory: 8G, owner: kubernetes}\n")
    with pytest.raises(InventoryError, match="not a scheduler gpuhub mirrors"):
        load_inventory(inv)


def test_shares_of_a_grant_are_checked():
    from gpu_allocator.core.state import PoolState
    from dataclasses import replace

    state = PoolState.build([replace(box("s", 4), state=HostState.EXTERNAL), box("own", 2)], units_per_gpu=20)
    shares = shares_of(state, Grant("slurm", "5", "s", (1, 0), 20))
    assert [s.device_uuid for s in shares] == ["GPU-s-0", "GPU-s-1"]
    for grant, words in [(Grant("slurm", "5", "own", (0,), 20), "gpuhub decides there"),
                         (Grant("slurm", "5", "s", (7,), 20), "no GPU with index 7"),
                         (Grant("slurm", "5", "s", (0, 0), 20), "listed twice"),
                         (Grant("pbs", "5", "s", (0,), 20), "source must be"),
                         (Grant("slurm", "5", "s", (0,), 21), "units_each")]:
        with pytest.raises(RequestError, match=words):
            shares_of(state, grant)


def test_stale_mirrors_respect_the_grace():
    from gpu_allocator.core.model import Allocation

    old = Allocation("a", "u", "s", 20, 1, 1024, 8, source="slurm", job="1", created=100.0)
    new = Allocation("b", "u", "s", 20, 1, 1024, 8, source="slurm", job="2", created=195.0)
    own = Allocation("c", "u", "s", 20, 1, 1024, 8, created=0.0)
    assert stale([old, new, own], "slurm", set(), taken_at=200.0, grace=10) == [old]
    assert stale([old, new, own], "slurm", {"1"}, taken_at=200.0, grace=10) == []


def test_live_pool_mirrors_once_never_places_there_and_keeps_it(tmp_path):
    from dataclasses import replace

    from gpu_allocator.core.model import Request
    from gpu_allocator.core.placement import NoFit

    async def go():
        pool = await open_pool(f"sqlite:///{tmp_path / 'p.sqlite'}",
                               [replace(box("s", 2), state=HostState.EXTERNAL)])
        with pytest.raises(NoFit):  # the allocator never places its own share on Slurm's host
            await pool.grant(Request("u", 20))
        a, created = await pool.record_external(Grant("slurm", "42", "s", (1,), 20), "u", cpu=2, mem_mb=1024,
                                                max_hours=1)
        again, created_again = await pool.record_external(Grant("slurm", "42", "s", (1,), 20), "u", cpu=2,
                                                          mem_mb=1024, max_hours=1)
        assert created and not created_again and again.id == a.id
        with pytest.raises(StateError):  # another job on the same GPU: a stale mirror here
            await pool.record_external(Grant("slurm", "43", "s", (1,), 20), "v", cpu=1, mem_mb=1, max_hours=1)
        spans = await pool.spans(0, a.created + 3600, now=a.created + 1800)
        assert spans == [("u", 20, 2, a.created, a.created + 1800, "")]  # GPU-hours count it
        pool = await reopen(pool)
        (kept,) = pool.live()
        assert (kept.source, kept.job, kept.host, kept.shares) == ("slurm", "42", "s", a.shares)
        assert pool.state.hosts["s"].state == HostState.EXTERNAL
        await pool.finish(kept.id)
        assert pool.live() == []
        pool.close()
        pool.ledger.close()

    asyncio.run(go())


def test_node_mount_wrapper_mounts_home_and_vfolders_then_drops_to_the_user(tmp_path):
    """The job script's prefix (SlurmVFolderMixin), run for real as root here
    (no Slurm needed): the home source over the home, each vfolder at
    ~/vfolders/NAME (read-only ones read-only), a tmpfs under them, the command
    as the account; a storage path missing on the node fails with a message."""
    import os
    import subprocess

    from spawner.vfolders import node_mount_wrapper

    wrapper = node_mount_wrapper("/home/ann", 1001, 1001, [1001, 5000],
                                 [{"name": "data", "path": "/v/a b", "mode": "ro"}], "/v/home")
    assert wrapper[:5] == ["unshare", "--mount", "--propagation", "slave", "--"]
    assert "mount --bind '/v/a b' /home/ann/vfolders/data\nmount -o remount,bind,ro /home/ann/vfolders/data" \
        in wrapper[7]
    assert wrapper[7].endswith('exec setpriv --reuid=1001 --regid=1001 --groups=1001,5000 -- "$@"')
    if os.geteuid() != 0:
        pytest.skip("running the wrapper needs root")
    home, source, ro, rw = (tmp_path / n for n in ("home", "homevf", "ro", "rw"))
    for d in (home, source, ro, rw):
        d.mkdir()
        d.chmod(0o777)
    (ro / "r.txt").write_text("read me\n")
    nobody = 65534
    mounts = [{"name": "ro", "path": str(ro), "mode": "ro"}, {"name": "rw", "path": str(rw), "mode": "rw"}]
    script = ("echo from-job > x.txt; echo w > vfolders/rw/w.txt; ls vfolders; cat vfolders/ro/r.txt; "
              "id -u; touch vfolders/ro/no 2>/dev/null || echo ro-refused")
    out = subprocess.run([*node_mount_wrapper(str(home), nobody, nobody, [nobody], mounts, str(source)),
                          "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ro", "rw", "read", "me", str(nobody), "ro-refused"]
    assert (source / "x.txt").read_text() == "from-job\n" and (rw / "w.txt").read_text() == "w\n"
    assert not (home / "x.txt").exists() and sorted(os.listdir(source)) == ["vfolders", "x.txt"]
    assert os.listdir(source / "vfolders") == []  # only a mount point in the home vfolder
    missing = subprocess.run([*node_mount_wrapper(str(home), nobody, nobody, [nobody], [], str(tmp_path / "gone")),
                              "true"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "the vfolder root must be mounted at the same path on every node" in missing.stderr


def test_the_runtime_and_the_gpu_life_cycle_name_nothing_alike():
    """SlurmGPUSpawner mixes GPUSpawner before SlurmRuntime: a name both define
    that is not Spawner's own (where each calls super()) hides the runtime's —
    as GPUSpawner.job, a batch job's record, once hid SlurmRuntime.job(), the
    ``scontrol show job`` of every poll."""
    from jupyterhub.spawner import Spawner

    from spawner.gpuspawner import GPUSpawner
    from spawner.slurm import SlurmRuntime

    both = {n for n in set(vars(SlurmRuntime)) & set(vars(GPUSpawner)) if not n.startswith("__")}
    assert {n for n in both if not hasattr(Spawner, n)} == set()


def test_a_data_dir_with_spaces_is_refused_before_anything_starts(tmp_path):
    """slurm.conf has no quoting for paths: a data dir with a space would give
    slurmctld's parse errors; the cluster says what to do instead, and makes
    nothing."""
    data = tmp_path / "my data" / "slurm"
    with pytest.raises(ClusterError, match="GPUHUB_DATA_DIR"):
        SlurmCluster(data, [Node("node-a", 4, 8192, (("A100-SXM4-80GB", 1),))]).start()
    assert not data.exists()
