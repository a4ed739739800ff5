"""Per-share GPU use (issue #23, item 4): NVML's host pids mapped to allocations
through /proc/PID/cgroup (recorded cgroup v1 and v2 texts), each allocation's own
utilisation and memory — two fractions of one device each get their own
processes' numbers — a real container's host pid reported by a fake NVML landing
on the container's allocation, the allocator keeping the latest figure per
allocation (GET allocations/{id}, the pool view), and idle reclaim judging a
fraction by it."""

from __future__ import annotations

import shutil
import subprocess
import types

import pytest

from gpu_allocator.agent import containers, owners
from gpu_allocator.agent.nvml import NVMLSampler
from gpu_allocator.core.reclaim import allocation_utilisation
from tests.support import FakeNVML, wait_for

MB = 1024**2
CID = "f2548cc721c5e0facbcf13600636b2c5835018994b901707202badd7b1965c7b"
OTHER = "0123456789abcdef" * 4

#: recorded: a container on a cgroup v1 host (Docker's cgroupfs driver)
CGROUP_V1 = "\n".join(
    [f"9:name=systemd:/docker/{CID}"]
    + [f"{i}:{c}:/docker/{CID}" for i, c in ((8, "pids"), (7, "blkio"), (6, "freezer"), (5, "devices"),
                                             (4, "memory"), (3, "cpuset"), (2, "cpuacct"), (1, "cpu"))]
    + [f"0::/docker/{CID}"]) + "\n"
#: recorded: cgroup v2, Docker's systemd driver
CGROUP_V2_SYSTEMD = f"0::/system.slice/docker-{CID}.scope\n"
#: cgroup v2, the cgroupfs driver
CGROUP_V2 = f"0::/docker/{CID}\n"
#: a host process (a local session's kernel) on v1 and v2
HOST_V1 = "9:name=systemd:/user.slice/user-1000.slice/session-3.scope\n4:memory:/user.slice\n0::/\n"
HOST_V2 = "0::/user.slice/user-1000.slice/session-3.scope\n"
#: a site that starts local sessions in a unit of their own (systemd-run --scope --unit gpuhub-ID)
SCOPE_V2 = "0::/system.slice/gpuhub-a1b2c3d4e5f60718.scope\n"


@pytest.mark.parametrize("text", [CGROUP_V1, CGROUP_V2_SYSTEMD, CGROUP_V2])
def test_a_containers_process_is_its_allocations_by_the_label(text):
    assert owners.container_id(text) == CID
    assert owners.allocation_of(text, {CID: "alloc-a", OTHER: "alloc-b"}) == "alloc-a"
    # a container that is no gpuhub session's: nobody's, whatever its environment says
    assert owners.allocation_of(text, {OTHER: "alloc-b"}, b"GPUHUB_ALLOCATION=alloc-b\0") is None


@pytest.mark.parametrize("text", [HOST_V1, HOST_V2])
def test_a_local_sessions_process_is_known_by_its_environment(text):
    assert owners.container_id(text) is None
    env = b"HOME=/home/alice\0GPUHUB_ALLOCATION=alloc-l\0PATH=/usr/bin\0"
    assert owners.allocation_of(text, {CID: "alloc-a"}, env) == "alloc-l"
    assert owners.allocation_of(text, {CID: "alloc-a"}, b"HOME=/root\0") is None


def test_the_agents_own_container_is_its_host():
    """An agent that runs in a container (a CI job's, or one deployed so) sees
    its own processes in that container: they are host processes to it, known
    by their environment; a session container started inside it is still a
    container, known by its label."""
    env = b"GPUHUB_ALLOCATION=alloc-l\0"
    assert owners.allocation_of(CGROUP_V2, {}, env) is None
    assert owners.allocation_of(CGROUP_V2, {}, env, home=CID) == "alloc-l"
    assert owners.allocation_of(CGROUP_V2, {}, env, home=OTHER) is None
    nested = f"0::/docker/{CID}/docker/{OTHER}\n"
    assert owners.in_container(nested, home=CID) == OTHER
    assert owners.allocation_of(nested, {OTHER: "alloc-b"}, env, home=CID) == "alloc-b"


def test_a_gpuhub_cgroup_names_its_allocation():
    assert owners.allocation_of(SCOPE_V2, {}, b"GPUHUB_ALLOCATION=other\0") == "a1b2c3d4e5f60718"
    assert owners.scope_allocation(HOST_V2) is None


def test_two_fractions_of_one_device_get_their_own_processes_numbers():
    gpu, gpu2 = "GPU-0", "GPU-1"
    samples = [
        {"uuid": gpu, "utilization_gpu": 95, "memory_used_mb": 30000, "process_utilization": True,
         "processes": [{"pid": 11, "memory_mb": 20000, "sm_util": 70},
                       {"pid": 12, "memory_mb": 4000, "sm_util": 25},
                       {"pid": 21, "memory_mb": 6000, "sm_util": 0}]},
        {"uuid": gpu2, "utilization_gpu": 0, "memory_used_mb": 0, "process_utilization": True, "processes": []},
    ]
    use = owners.allocation_use(samples, {11: "busy", 12: "busy", 21: "idle"},
                                {"busy": [gpu], "idle": [gpu], "none": [gpu2]})
    assert (use["busy"]["utilization_gpu"], use["busy"]["memory_used_mb"], use["busy"]["processes"]) == (95, 24000, 2)
    assert (use["idle"]["utilization_gpu"], use["idle"]["memory_used_mb"], use["idle"]["processes"]) == (0, 6000, 1)
    # a share without processes computes nothing: 0, not absent
    assert (use["none"]["utilization_gpu"], use["none"]["memory_used_mb"]) == (0, 0)
    assert all(u["complete"] for u in use.values())
    # an unattributed process on the device: the fractions there are lower bounds
    use = owners.allocation_use(samples, {11: "busy", 12: "busy"}, {"busy": [gpu], "idle": [gpu]})
    assert not use["busy"]["complete"] and not use["idle"]["complete"]
    # a driver without per-process utilisation: memory only
    samples[0]["process_utilization"] = False
    use = owners.allocation_use(samples, {11: "busy", 21: "idle"}, {"busy": [gpu], "idle": [gpu]})
    assert use["busy"]["utilization_gpu"] is None and use["busy"]["memory_used_mb"] == 20000


def test_idle_reclaim_judges_a_fraction_by_its_own_processes():
    usage = {"devices": [{"uuid": "GPU-0", "utilization_gpu": 95}],
             "allocations": {"idle": {"utilization_gpu": 0.0, "complete": True},
                             "busy": {"utilization_gpu": 95.0, "complete": True},
                             "unsure": {"utilization_gpu": 0.0, "complete": False}}}
    assert allocation_utilisation("idle", ["GPU-0"], usage) == 0.0
    assert allocation_utilisation("busy", ["GPU-0"], usage) == 0.95
    # not every process attributed, or no figure: the whole device's (an upper bound)
    assert allocation_utilisation("unsure", ["GPU-0"], usage) == 0.95
    assert allocation_utilisation("absent", ["GPU-0"], usage) == 0.95


# --------------------------------------------------------------------------- a real container


class ProcessNVML(FakeNVML):
    """A fake driver whose devices run given host pids: {index: [(pid, MB, SM %)]}."""

    def __init__(self, n, processes):
        super().__init__(n, set())
        self.processes = processes

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=min(100, sum(u for _, _, u in self.processes.get(h[1], []))), memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=mb * MB) for pid, mb, _ in self.processes.get(h[1], [])]

    def nvmlDeviceGetProcessUtilization(self, h, since):
        rows = self.processes.get(h[1], [])
        if not rows:
            raise self.NVMLError("Not Found")
        return [types.SimpleNamespace(pid=pid, smUtil=u, memUtil=0, timeStamp=since + 1) for pid, _, u in rows]


def docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    r = subprocess.run(["docker", "image", "inspect", "gpuhub/singleuser:latest"], capture_output=True)
    return None if r.returncode == 0 else "no Docker engine with the gpuhub/singleuser image"


@pytest.fixture
def labelled():
    """Starts containers labelled gpuhub.allocation=ID; yields a function that
    starts one and returns its host pid."""
    started = []

    def start(aid: str) -> int:
        cid = subprocess.run(
            ["docker", "run", "-d", "--rm", "--label", f"{containers.LABEL}={aid}",
             "gpuhub/singleuser:latest", "sleep", "60"],
            check=True, capture_output=True, text=True).stdout.strip()
        started.append(cid)
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                             check=True, capture_output=True, text=True).stdout.strip()
        return int(pid)

    yield start
    if started:
        subprocess.run(["docker", "rm", "-f", *started], capture_output=True)


@pytest.mark.skipif(docker_unavailable() is not None, reason=str(docker_unavailable()))
async def test_a_containers_host_pid_lands_on_its_allocation(tmp_path, box_agent, labelled, monkeypatch):
    """Two containers share device 0 (two fractions) and a host process of nobody's
    computes there too; the fake NVML reports their host pids, as a real driver
    does. The agent's sampling gives each allocation its own container's numbers."""
    import os

    pid_a, pid_b = labelled("frac-a"), labelled("frac-b")
    stranger = os.getpid()  # a host process of no session (its cgroup is no container's)
    fake = ProcessNVML(2, {0: [(pid_a, 3000, 60), (pid_b, 700, 5), (stranger, 100, 1)]})
    agent = box_agent()
    agent.docker_url = "unix:///var/run/docker.sock"
    agent.sampler = NVMLSampler(fake)
    agent.sampler.start()
    gpu0, gpu1 = "GPU-00000000-0000-0000-0000-000000000000", "GPU-00000000-0000-0000-0000-000000000001"
    agent.holds = {"frac-a": ("alice", [gpu0]), "frac-b": ("bob", [gpu0]), "whole": ("carol", [gpu1])}
    samples = await agent.blocking(agent.sampler.sample)
    use = await agent.blocking(agent.attribute, samples)
    agent.executor.shutdown()
    a, b = use["frac-a"], use["frac-b"]
    assert (a["utilization_gpu"], a["memory_used_mb"], a["processes"]) == (60, 3000, 1)
    assert (b["utilization_gpu"], b["memory_used_mb"], b["processes"]) == (5, 700, 1)
    assert [d["uuid"] for d in a["devices"]] == [gpu0]
    # the stranger's process is nobody's: the fractions on its device say so
    assert not a["complete"] and not b["complete"]
    assert use["whole"] == {"utilization_gpu": 0.0, "memory_used_mb": 0.0, "processes": 0, "complete": True,
                            "devices": [{"uuid": gpu1, "utilization_gpu": 0.0, "memory_used_mb": 0.0,
                                         "processes": 0}]}
    agent.samples, agent.use = samples, use
    body = await agent.heartbeat_body()
    assert body["allocations"] == use


def test_a_local_sessions_process_is_taken_from_its_environment_as_its_users():
    """A host process with GPUHUB_ALLOCATION in its environment is that
    allocation's when it runs as the allocation's user (here: root, the tests'
    account), not when it runs as someone else, nor when the host holds no such
    allocation."""
    import os
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    other = next((p.pw_name for p in pwd.getpwall() if p.pw_uid != os.getuid()), None)
    home = owners.own_container()  # the suite may itself run in a container (CI's)
    proc = subprocess.Popen(["sleep", "30"], env={"GPUHUB_ALLOCATION": "loc-1", "PATH": os.environ["PATH"]})
    try:
        # Popen returns once exec has closed the child's descriptors, which is
        # before the kernel has set up its new environment: until then
        # /proc/PID/environ reads empty (a flake seen in CI and here under load)
        wait_for(lambda: open(f"/proc/{proc.pid}/environ", "rb").read(), 10, "the child's environment")
        seen = open(f"/proc/{proc.pid}/cgroup").read()
        assert owners.read_owner(proc.pid, {}, {"loc-1": me}, home) == "loc-1", (home, seen)
        if other is not None:
            assert owners.read_owner(proc.pid, {}, {"loc-1": other}, home) is None
        assert owners.read_owner(proc.pid, {}, {}, home) is None  # not held here
        # a user without an account here (sessions run as the hub's account): taken
        assert owners.read_owner(proc.pid, {}, {"loc-1": "no-such-account-xyz"}, home) == "loc-1"
    finally:
        proc.kill()
        proc.wait()
