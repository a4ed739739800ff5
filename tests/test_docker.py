"""The Docker runtime for real: a Docker engine (started by `.ci/dockerd start`
when none runs), the locally built gpuhub/singleuser image (both from the
``engine`` fixture in conftest.py), and a real hub."""

from __future__ import annotations

import json
import time

import pytest

from spawner import DockerGPUSpawner
from tests.support import cli_login, job, job_servers, pids_with_env, run_to_the_end, submitted, wait_for

#: a profile with an image of its own (#20 item 3), for the group "imagers" only
TAGGED = "gpuhub/singleuser:profile-test"
pytestmark = [pytest.mark.e2e, pytest.mark.hub(config={
    "GPUHubDemo": {"runtime": "docker"},
    "GPUSpawner": {"profiles": [{"slug": "tagged", "display_name": "Tagged image", "gpus": "0", "cpu": 0.5,
                                 "mem": "512M", "image": TAGGED, "groups": ["imagers"]}]},
    "JupyterHub": {"load_groups": {"imagers": {"users": ["gpuhub-dimg"]}}},
})]

CODE = (
    "import os, json, pathlib\n"
    "cg = pathlib.Path('/sys/fs/cgroup')\n"
    "mem = cg / 'memory.max' if (cg / 'memory.max').exists() else cg / 'memory/memory.limit_in_bytes'\n"
    "print(json.dumps({'uid': os.getuid(), 'mem': mem.read_text().strip(),\n"
    "  'home': sorted(os.listdir(os.environ['HOME'])) if os.path.isdir(os.environ['HOME']) else None,\n"
    "  **{k: os.environ.get(k) for k in ['CUDA_VISIBLE_DEVICES', 'GPUHUB_GPUS', 'GPUHUB_ALLOCATION',\n"
    "  'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE', 'JUPYTERHUB_USER']}}))"
)


@pytest.fixture(scope="module", autouse=True)
def no_containers_left(engine):
    """The engine runs before the hub starts; the sessions' containers go after it stops."""
    yield
    for c in engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2dd"}):
        c.remove(force=True)


def test_session_runs_in_a_limited_container_with_its_share(hub, engine):
    jane = hub.login("gpuhub-dj")
    r = jane.spawn({"gpus": 0.5, "cpu": 0.5, "mem": "512M"})
    assert r.status_code in (201, 202), r.text
    jane.wait_ready(timeout=120)
    (allocation,) = jane.allocations()
    (container,) = engine.containers.list(filters={"name": "jupyter-gpuhub-2ddj"})
    config = container.attrs["HostConfig"]
    assert config["NetworkMode"] == "host"
    assert config["Memory"] == 512 * 1024**2
    assert config["CpuQuota"] == 50_000 and config["CpuPeriod"] == 100_000
    assert container.attrs["Config"]["User"] not in ("", "0", "root")

    env = json.loads(jane.run_code(CODE))
    assert env["uid"] != 0
    assert int(env["mem"]) == 512 * 1024**2
    assert env["CUDA_VISIBLE_DEVICES"] == allocation["devices"][0]["uuid"]
    assert env["GPUHUB_GPUS"] == "0.5" and env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["JUPYTERHUB_USER"] == "gpuhub-dj"

    jane.stop()
    assert jane.allocations() == []
    assert engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2ddj"}) == []


def test_sessions_do_not_share_files(hub, engine):
    a, b = hub.login("gpuhub-da"), hub.login("gpuhub-db")
    for u in (a, b):
        assert u.spawn({"gpus": 0.25, "cpu": 0.5, "mem": "512M"}).status_code in (201, 202)
    for u in (a, b):
        u.wait_ready(timeout=120)
    a.run_code("open('/home/jovyan/secret.txt', 'w').write('a')")
    listing = b.run_code("import os; print(sorted(os.listdir('/home/jovyan')))")
    assert "secret.txt" not in listing
    homes = {
        u.name: [(m["Type"], m["Source"]) for m in engine.containers.get(
            f"jupyter-{u.name.replace('-', '-2d')}").attrs["Mounts"] if m["Destination"] == "/home/jovyan"]
        for u in (a, b)
    }
    # each user's own home vfolder (a bind from the storage host), not a per-host volume
    (ha,), (hb,) = homes["gpuhub-da"], homes["gpuhub-db"]
    assert ha[0] == hb[0] == "bind" and ha[1] != hb[1], homes
    (home,) = [v for v in a.call("GET", "/services/vfolders/api/v1/vfolders").json()["vfolders"]
               if v["kind"] == "home"]
    assert ha[1].endswith(home["id"])
    for u in (a, b):
        u.stop()


def test_a_profiles_image_is_what_the_container_runs(hub, engine):
    """The profile's image (another tag of the single-user image), not the
    spawner's configured one; the next free spawn is back on the configured one."""
    engine.images.get("gpuhub/singleuser:latest").tag(TAGGED)
    try:
        u = hub.login("gpuhub-dimg")
        r = u.spawn({"profile": "tagged"})
        assert r.status_code in (201, 202), r.text
        u.wait_ready(timeout=120)
        (c,) = engine.containers.list(filters={"name": "jupyter-gpuhub-2ddimg"})
        assert c.attrs["Config"]["Image"] == TAGGED
        u.stop()
        r = u.spawn({"profile": "custom", "gpus": "0", "cpu": 0.5, "mem": "512M"})
        assert r.status_code in (201, 202), r.text
        u.wait_ready(timeout=120)
        (c,) = engine.containers.list(filters={"name": "jupyter-gpuhub-2ddimg"})
        assert c.attrs["Config"]["Image"] == "gpuhub/singleuser:latest"
        u.stop()
    finally:
        engine.images.remove(TAGGED, noprune=True)


def test_a_batch_job_runs_in_a_container_with_its_share_and_its_exit_code_comes_back(hub, engine, cli):
    """#21 item 1 in the Docker runtime: `gpuhub run --gpus 0.5` runs the job's
    runner in place of JupyterLab in the session's container (the image's
    Python), with the share's GPU; its exit code and output come back through
    the home vfolder at ~; the container goes when the command ends."""
    user = cli_login(hub, cli, "gpuhub-djob")
    _, fields, seconds = run_to_the_end(hub, cli, user, "0.5",
                                        "CVD=$CUDA_VISIBLE_DEVICES HOME=$HOME PWD=$(pwd) UID=$(id -u)", 180)
    uuids = {d["uuid"] for h in hub.admin_allocator().pool()["hosts"] for d in h["devices"]}
    assert fields["CVD"] in uuids, (fields, uuids)  # the share's device, by UUID as in sessions
    assert fields["HOME"] == fields["PWD"] == "/home/jovyan" and fields["UID"] != "0", fields
    # nothing left: no share, no job server, no container
    wait_for(lambda: not hub.admin_allocator().allocations("gpuhub-djob") and not job_servers(user),
             30, "the share and the job's server gone")
    assert engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2ddjob"}) == []
    print(f"submit-to-end of a 0.5-GPU batch job in Docker: {seconds:.1f}s")
    # cancelled while it runs: the container stops whole, nothing of it runs on
    running = submitted(cli("run", "--gpus", "0.5", "--", "sh", "-c", "echo up; sleep 600"))
    wait_for(lambda: "up" in cli("logs", running).stdout.decode(), 120, "the second job's output")
    assert pids_with_env("GPUHUB_JOB_ID", running, "sleep")
    cli("cancel", running)
    wait_for(lambda: not hub.admin_allocator().allocations("gpuhub-djob") and not job_servers(user),
             60, "everything freed")
    assert job(cli, running)["state"] == "cancelled"
    assert engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2ddjob"}) == []
    assert not pids_with_env("GPUHUB_JOB_ID", running, "sleep")


def test_each_host_has_its_own_engine_client_and_worker():
    """dockerspawner #382: one client and one worker per class. Ours: per host."""
    endpoints = {  # never contacted: a fixed API version needs no handshake
        "node-a": {"url": "unix:///run/gpuhub-test-node-a.sock", "ip": "127.0.0.2"},
        "node-b": {"url": "unix:///run/gpuhub-test-node-b.sock", "ip": "127.0.0.3"},
    }
    spawners = []
    for host in ("node-a", "node-b", "node-a"):
        s = DockerGPUSpawner(docker_endpoints=endpoints, docker_api_version="1.41")
        s.allocation = {"id": "x", "host": host, "devices": []}
        spawners.append(s)
    a1, b, a2 = spawners
    assert a1.client is a2.client and a1.executor is a2.executor
    assert b.client is not a1.client and b.executor is not a1.executor
    assert a1.client.base_url == "http+docker://localhost"  # docker-py's name for unix sockets
    assert a1.endpoint["url"].endswith("node-a.sock") and b.endpoint["ip"] == "127.0.0.3"
