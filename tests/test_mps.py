"""Fractional shares are enforced before the session's first instruction: the
spawn waits until the host's agent reports its CUDA MPS daemon running, and hosts
that cannot run MPS get no fractions (with the reason on the spawn form). The
daemon is the fake `nvidia-cuda-mps-control` of tests/conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpu_allocator.core.model import Device, Host, Request
from gpu_allocator.core.placement import NoFit, place
from gpu_allocator.core.state import PoolState
from gpu_allocator.core.validation import RequestError, check_capacity
from spawner.options import render_form
from tests.support import API, DATA, REPO, Hub, wait_for

PER_GPU = 20

#: own_hub: a hub of each test's own with no inventory hosts (the agents of the test
#: register theirs), heartbeats every second
pytestmark = pytest.mark.hub(config={"GPUAllocator": {"inventory_file": str(DATA / "empty-inventory.yaml"),
                                                  "heartbeat_interval": 1.0}})


def host(name, fractions=True, n=2):
    devs = tuple(Device(name, i, f"{name}-{i}", "A100", 81920) for i in range(n))
    return Host(name, devs, 32.0, 65536, fractions=fractions)


def test_no_fractions_on_hosts_without_mps_whole_gpus_still_go_there():
    state = PoolState.build([host("no-mps", fractions=False), host("mps")], (), PER_GPU)
    for _ in range(4):
        p = place(state, Request("u", 10))
        assert p.host == "mps"
        from gpu_allocator.core.model import Allocation

        state.grant(Allocation(f"a{len(state.allocations)}", "u", p.host, 10, 1.0, 1024, 1.0, p.shares))
    with pytest.raises(NoFit):
        place(state, Request("u", 10))  # "mps" is full; "no-mps" takes no fraction
    assert place(state, Request("u", PER_GPU)).host == "no-mps"
    state.check_indexes()


def test_a_pool_without_mps_refuses_fractions_and_the_form_says_why():
    state = PoolState.build([host("no-mps", fractions=False)], (), PER_GPU)
    with pytest.raises(RequestError, match="CUDA MPS is not available"):
        check_capacity(state, Request("u", 10))
    check_capacity(state, Request("u", PER_GPU))
    pool = {"units_per_gpu": 20, "quantum": "0.05", "models": ["A100"], "hosts": [
        {"name": "no-mps", "state": "up", "cpus": "32", "fractions": False,
         "devices": [{"model": "A100", "free_units": 20}, {"model": "A100", "free_units": 20}]}]}
    form = render_form(pool, {"gpus": "1", "cpu": 1, "mem": "1G", "max_hours": 1})
    assert 'value="0.5"' not in form and 'value="1"' in form
    assert "Fractions of a GPU are not offered" in form and "CUDA MPS is not available" in form


def started_ticks(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])


def start_agent(hub, tmp_path, name="mps-box"):
    inventory = tmp_path / "agents.yaml"
    inventory.write_text(textwrap.dedent(f"""
        hosts:
          - name: {name}
            cpus: 8
            memory: 32G
            gpus: [{{model: A100-SXM4-80GB, memory: 80G, count: 1}}]
    """))
    state = tmp_path / "agent-state"
    state.mkdir(exist_ok=True)
    state.chmod(0o755)
    log = open(tmp_path / "agent.log", "ab")
    return state, subprocess.Popen(
        [sys.executable, "-m", "gpu_allocator.agent", f"--allocator-url={hub.allocator_api()}",
         f"--inventory={inventory}", f"--inventory-host={name}", f"--state-dir={state}",
         f"--token-file={hub.agent_token_file}"],
        cwd=REPO,
        stdout=log, stderr=subprocess.STDOUT,
    )


def test_the_server_starts_only_once_mps_runs_with_its_limits(own_hub, tmp_path, fake_mps):
    state, agent = start_agent(own_hub, tmp_path)
    try:
        admin = own_hub.admin_allocator()
        wait_for(lambda: any(h["name"] == "mps-box" and h["state"] == "up" for h in admin.pool()["hosts"]),
                 30, "the agent to register")
        assert not any(c.startswith("args=-d") for c in fake_mps.calls())  # no fraction yet: no daemon
        user = own_hub.login("gpuhub-mps")
        with ThreadPoolExecutor(1) as pool:  # watch the progress as the spawn page does
            spawning = pool.submit(user.spawn, {"gpus": 0.5})
            wait_for(lambda: (user.server() or {}).get("pending") == "spawn", 30, "pending spawn", 0.05)
            events = [e["message"] for e in user.progress()]
            r = spawning.result()
        assert r.status_code in (201, 202), r.text
        user.wait_ready(120)
        assert "waiting for CUDA MPS on mps-box to enforce the share" in events, events
        assert "CUDA MPS on mps-box enforces the share" in events
        daemon = int((state / "mps" / "pipe" / "nvidia-cuda-mps-control.pid").read_text())
        env = json.loads(user.run_code(
            "import os, json; print(json.dumps({k: os.environ.get(k) for k in ["
            "'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE', 'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT', "
            "'CUDA_MPS_PIPE_DIRECTORY']} | {'server': os.getppid()}))"
        ))
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
        assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == str(state / "mps" / "pipe")
        # the daemon (with the pipes the limits go through) was up before the server ran
        # (start times in clock ticks since boot, one clock for both processes)
        assert started_ticks(daemon) < started_ticks(env["server"])
        user.stop()
    finally:
        agent.kill()
        agent.wait(10)


def test_a_host_without_mps_gets_no_fraction(own_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-cuda-mps-control anywhere
    _, agent = start_agent(own_hub, tmp_path, name="plain-box")
    try:
        admin = own_hub.admin_allocator()
        wait_for(lambda: any(h["name"] == "plain-box" for h in admin.pool()["hosts"]), 30, "registration")
        (h,) = [h for h in admin.pool()["hosts"] if h["name"] == "plain-box"]
        assert h["fractions"] is False and h["mps"]["available"] is False
        r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-x", "gpus": "0.5"})
        assert r.status_code == 400 and "CUDA MPS is not available" in r.json()["error"]
        r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-x", "gpus": "1"})
        assert r.status_code == 201
        admin.call("DELETE", f"{API}/allocations/{r.json()['id']}")
        page = own_hub.login("gpuhub-formviewer").session.get(own_hub.url + "/hub/spawn").content.decode()
        assert "Fractions of a GPU are not offered" in page
    finally:
        agent.kill()
        agent.wait(10)


@pytest.mark.e2e
def test_the_demo_runs_an_agent_for_its_own_host(tmp_path, fake_mps):
    """GPUHubDemo.local_agent (automatic where NVIDIA GPUs are): the demo's pool comes
    from this host's agent, so fractions wait for MPS as on any GPU server."""
    h = Hub(tmp_path, config={
        "GPUHubDemo": {"local_agent": "1", "local_agent_inventory_host": "node-a"},
        "GPUAgent": {"state_dir": str(tmp_path / "agent")},
        "GPUAllocator": {"heartbeat_interval": 1.0},
    })
    h.start()
    try:
        admin = h.admin_allocator()
        wait_for(lambda: [x["name"] for x in admin.pool()["hosts"]] == ["node-a"], 30, "the local agent")
        (node,) = admin.pool()["hosts"]
        assert node["source"] == "agent" and node["fractions"] is True
        user = h.login("gpuhub-demo-mps")
        assert user.spawn({"gpus": 0.25}).status_code in (201, 202)
        user.wait_ready(120)
        # the agent's MPS daemon (the fake binary, found on the PATH services keep) runs
        assert (tmp_path / "agent" / "mps" / "pipe" / "control").exists()
        user.stop()
    finally:
        h.stop()


def test_a_docker_session_starts_only_once_mps_runs(engine, tmp_path, fake_mps):
    """The Docker runtime: the container is created only after the host's MPS
    daemon runs, and it gets the MPS pipe variable and the allocation label."""
    from dateutil.parser import isoparse

    h = Hub(tmp_path, config={
        "GPUHubDemo": {"runtime": "docker", "local_agent": "1", "local_agent_inventory_host": "node-a"},
        "GPUAgent": {"state_dir": str(tmp_path / "agent")},
        "GPUAllocator": {"heartbeat_interval": 1.0},
    })
    h.start()
    try:
        admin = h.admin_allocator()
        wait_for(lambda: [x["name"] for x in admin.pool()["hosts"]] == ["node-a"], 30, "the local agent")
        user = h.login("gpuhub-dmps")
        with ThreadPoolExecutor(1) as pool:
            spawning = pool.submit(user.spawn, {"gpus": 0.5, "cpu": 0.5, "mem": "512M"})
            wait_for(lambda: (user.server() or {}).get("pending") == "spawn", 30, "pending spawn", 0.05)
            events = [e["message"] for e in user.progress()]
            assert spawning.result().status_code in (201, 202)
        user.wait_ready(180)
        assert "waiting for CUDA MPS on node-a to enforce the share" in events, events
        (allocation,) = user.allocations()
        (container,) = engine.containers.list(filters={"label": f"gpuhub.allocation={allocation['id']}"})
        daemon = tmp_path / "agent" / "mps" / "pipe" / "nvidia-cuda-mps-control.pid"
        assert daemon.stat().st_mtime < isoparse(container.attrs["Created"]).timestamp()
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
        user.stop()
    finally:
        h.stop()
        for c in engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2ddmps"}):
            c.remove(force=True)
