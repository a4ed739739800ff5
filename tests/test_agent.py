"""GPU host agents: NVML discovery and sampling (fake driver), the MPS manager (a
fake nvidia-cuda-mps-control), the store's host life cycle, and the host API —
register, heartbeat, drain, loss — against a real JupyterHub with the allocator,
including a real gpuhub-agent process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest
import requests

from gpu_allocator.agent import containers
from gpu_allocator.agent.app import GPUAgent
from gpu_allocator.agent.mps import MPSManager
from gpu_allocator.agent.nvml import NoSampler, NVMLSampler, discover
from gpu_allocator.inventory import discover_nvml_details, mock_uuid, nvml_numa, nvml_topology
from tests.support import API, DATA, REPO, FakeNVML, pairs, until, wait_for

INTERVAL = 1.0  # the test hub's heartbeat interval
#: idle for 6 s: noticed after 3 s, reclaimed after 6 s (and 3 s after the notice)
IDLE_POLICY = {"threshold": 0.05, "minutes": 0.1, "notice_minutes": 0.05, "only_when_waiting": True}
MB = 1024**2

#: the host API's hub: no inventory hosts (agents register theirs), heartbeats every
#: INTERVAL, idle reclaim for one group only (test_an_idle_share_…), checked every second
pytestmark = pytest.mark.hub(config={"GPUAllocator": {
    "inventory_file": str(DATA / "empty-inventory.yaml"), "heartbeat_interval": INTERVAL,
    # idle reclaim for one group only (test_an_idle_share_…), checked every second
    "idle_reclaim": {"groups": {"gpuhub-idle": IDLE_POLICY}},
    "time_limit_interval": 1.0,
}})


# --------------------------------------------------------------------------- NVML


class FakeNVMLPlus(FakeNVML):
    """FakeNVML with topology, NVLink, affinity and sampling calls."""

    NVML_FEATURE_ENABLED = 1
    NVML_NVLINK_MAX_LINKS = 18

    def __init__(self, n, links, *, levels=None, nvlinks=None, numa=None, processes=None, **kw):
        super().__init__(n, links, **kw)
        self.levels = levels or {}
        self.nvlinks = nvlinks or {}
        self.numa = numa or {}
        self.processes = processes or {}

    def nvmlDeviceGetTopologyCommonAncestor(self, a, b):
        return self.levels.get(frozenset((a[1], b[1])), 50)

    def nvmlDeviceGetNvLinkState(self, h, link):
        count = self.nvlinks.get(h[1], 0)
        if count == 0:
            raise self.NVMLError("Not Supported")
        if link >= 4:
            raise self.NVMLError("Invalid Argument")
        return 1 if link < count else 0

    def nvmlDeviceGetNumaNodeId(self, h):
        if h[1] not in self.numa:
            raise self.NVMLError("Not Supported")
        return self.numa[h[1]]

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=b"00000000:FF:00.0")  # no such sysfs entry

    def nvmlDeviceGetCpuAffinity(self, h, words):
        assert words == ((os.cpu_count() or 1) + 63) // 64
        # device 0: CPUs 0-3 and 8; others: 64-65 (a second word)
        return [0b1_0000_1111] if h[1] == 0 else [0, 0b11]

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=10 * h[1], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=81559 * MB, used=(1000 + h[1]) * MB, free=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if h[1] == 2:
            raise self.NVMLError("GPU is lost")
        return [
            types.SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in self.processes.get(h[1], [])
        ]


def test_topology_nvlink_and_numa_with_a_fake_driver(monkeypatch):
    fake = FakeNVMLPlus(
        3, pairs((0, 1)), levels={frozenset((0, 1)): 10, frozenset((0, 2)): 40},
        nvlinks={0: 2, 1: 2}, numa={0: 0, 1: 1},
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    host, extra = discover_nvml_details("box")
    assert fake.initialised == 0
    assert [d.island for d in host.devices][:2] == [host.devices[0].island] * 2 != [""] * 2
    assert extra["topology"]["pairs"] == [
        {"a": 0, "b": 1, "common_ancestor": "PIX", "nvlink": True},
        {"a": 0, "b": 2, "common_ancestor": "NODE", "nvlink": False},
        {"a": 1, "b": 2, "common_ancestor": "SYS", "nvlink": False},
    ]
    assert extra["topology"]["nvlinks_active"] == [2, 2, 0]
    numa = extra["numa"]["devices"]
    assert [(d["index"], d["numa_node"]) for d in numa] == [(0, 0), (1, 1), (2, None)]
    assert numa[0]["cpus"] == "0-3,8"
    assert numa[1]["cpus"] == "64-65"  # from the second word of the mask


def test_topology_tolerates_a_driver_without_the_calls():
    fake = FakeNVML(2, set())  # no topology, NVLink state, affinity or NUMA calls
    handles = [("handle", 0), ("handle", 1)]
    assert nvml_topology(fake, handles) == {
        "pairs": [{"a": 0, "b": 1, "common_ancestor": None, "nvlink": False}],
        "nvlinks_active": [0, 0],
    }
    assert nvml_numa(fake, handles) == {
        "devices": [{"index": 0, "numa_node": None, "cpus": None},
                    {"index": 1, "numa_node": None, "cpus": None}]
    }


def test_sampling_per_device_and_process():
    fake = FakeNVMLPlus(3, set(), processes={0: [(101, 512 * MB), (102, None)], 1: []})
    sampler = NVMLSampler(fake)
    sampler.start()
    assert fake.initialised == 1  # NVML stays open while the agent runs
    samples = sampler.sample()
    sampler.stop()
    sampler.stop()
    assert fake.initialised == 0
    assert samples == [
        {"uuid": "GPU-00000000-0000-0000-0000-000000000000", "utilization_gpu": 0,
         "memory_used_mb": 1000,
         # a driver without per-process utilisation: unknown (None), and said so
         "processes": [{"pid": 101, "memory_mb": 512, "sm_util": None},
                       {"pid": 102, "memory_mb": None, "sm_util": None}],
         "process_utilization": False},
        {"uuid": "GPU-00000000-0000-0000-0000-000000000001", "utilization_gpu": 10,
         "memory_used_mb": 1001, "processes": [], "process_utilization": False},
        # a failing per-process query does not lose the device's other numbers
        {"uuid": "GPU-00000000-0000-0000-0000-000000000002", "utilization_gpu": 20,
         "memory_used_mb": 1002, "processes": [], "process_utilization": False},
    ]
    assert NoSampler().sample() == []


def test_discover_from_a_declared_inventory(tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text("hosts:\n  - {name: box-1, cpus: 4, memory: 8G, gpus: [{model: L4, count: 2}]}\n")
    host, extra = discover("renamed", str(inv), "box-1")
    assert host.name == "renamed" and extra == {}
    assert [d.uuid for d in host.devices] == [mock_uuid("box-1", 0), mock_uuid("box-1", 1)]
    assert discover("box-1", str(inv))[0].cpus == 4.0
    with pytest.raises(LookupError, match="no host named 'nope'"):
        discover("x", str(inv), "nope")


# --------------------------------------------------------------------------- the agent's pieces


async def test_agent_reports_containers_shares_and_its_docker_engine(tmp_path, box_agent, monkeypatch):
    monkeypatch.setattr(containers, "running_allocations", lambda url: ["c1", "k1"])
    monkeypatch.setattr(containers, "has_gpu_runtime", lambda url: url == "tcp://10.1.2.3:2376")
    agent = box_agent()
    assert agent.host_name == "box-1" and agent.local_ip() == "127.0.0.1"
    await agent.discover()
    agent.known = ["k1", "k2"]
    body = await agent.register_body()
    assert body["docker"] == {"url": "tcp://10.1.2.3:2376", "ip": "10.1.2.3", "gpu_runtime": True,
                              "mps_pipe_dir": None}  # no MPS on this host
    assert body["host"]["devices"] == [{"index": 0, "uuid": mock_uuid("box-1", 0), "model": "L4",
                                        "memory_mb": 16384, "island": ""}]
    # registering: what it was told about, and its containers; heartbeats: containers only
    assert body["running"] == ["k1", "k2", "c1"]
    beat = await agent.heartbeat_body()
    assert beat["running"] == ["c1", "k1"]
    assert beat["mps"] == {"available": False, "running": False, "pipe_dir": str(tmp_path / "state" / "mps" / "pipe")}

    await agent.absorb({"state": "up", "unknown": ["c1"], "heartbeat_interval": 2.5, "shares": [
        {"id": "k1", "devices": [{"uuid": mock_uuid("box-1", 0), "fraction": 0.5}]}]})
    assert agent.interval == 2.5 and agent.reported_unknown == {"c1"}
    assert json.loads((tmp_path / "state" / "shares.json").read_text()) == ["k1"]
    # a restarted agent remembers what it was told
    again = GPUAgent(token="not-a-real-token")
    again.initialize([f"--state-dir={tmp_path / 'state'}", "--interval=7"])
    assert again.known == ["k1"] and again.interval == 7.0
    agent.executor.shutdown()
    again.executor.shutdown()


# --------------------------------------------------------------------------- MPS


async def test_mps_starts_for_fractions_and_stops_without(tmp_path, fake_mps):
    mps = MPSManager(tmp_path / "mps")
    assert mps.status() == {"available": True, "running": False}
    assert await mps.ensure(False) is False
    assert fake_mps.calls() == []  # nothing to stop

    assert await mps.ensure(True) is True
    assert await mps.ensure(True) is True  # already running: no second daemon
    pipe, log = tmp_path / "mps" / "pipe", tmp_path / "mps" / "log"
    assert fake_mps.calls() == [f"args=-d stdin= pipe={pipe} log={log}"]
    assert pipe.is_dir() and log.is_dir()

    assert await mps.ensure(False) is False
    assert fake_mps.calls()[1:] == [f"args= stdin=quit pipe={pipe} log={log}"]

    # a daemon that died is started again; another manager adopts a running one
    assert await mps.ensure(True) is True
    os.kill(int((pipe / "nvidia-cuda-mps-control.pid").read_text()), signal.SIGKILL)
    await until(lambda: mps.running is False, 5, "the killed daemon to be seen as gone", 0.01)
    assert await mps.ensure(True) is True
    assert len([c for c in fake_mps.calls() if c.startswith("args=-d")]) == 3
    assert await MPSManager(tmp_path / "mps").ensure(True) is True
    assert len([c for c in fake_mps.calls() if c.startswith("args=-d")]) == 3
    await mps.ensure(False)


async def test_mps_start_failure_is_reported(tmp_path, fake_mps, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_MPS_FAIL", "1")
    mps = MPSManager(tmp_path / "mps")
    assert await mps.ensure(True) is False
    assert "starting the MPS control daemon failed (3): cannot start" in caplog.text


async def test_mps_missing_binary_is_logged_once(tmp_path, caplog):
    mps = MPSManager(tmp_path / "mps", binary="no-such-mps-control-binary")
    assert mps.status() == {"available": False, "running": False}
    for _ in range(3):
        assert await mps.ensure(True) is False
    assert caplog.text.count("is not installed: MPS is unavailable") == 1
    assert not (tmp_path / "mps").exists()


# --------------------------------------------------------------------------- host API


@pytest.fixture
def hosts(hub):
    """Registers hosts for one test; afterwards they are drained (so they take no
    placement in later tests) and what the test left granted is released."""
    names: list[str] = []
    agent = hub.agent_client()

    def register(name, n=2, running=(), docker=None, expect=200, **host):
        body = {
            "host": {"cpus": 8, "memory_mb": 32768,
                     "devices": [{"index": i, "uuid": f"GPU-{name}-{i}", "model": "L4",
                                  "memory_mb": 24576, "island": ""} for i in range(n)],
                     **host},
            "docker": docker,
            "running": list(running),
        }
        r = agent.call("POST", f"{API}/hosts/{name}/register", json=body)
        assert r.status_code == expect, r.text
        names.append(name)
        return r.json()

    yield register
    admin = hub.admin_allocator()
    for name in names:
        admin.call("POST", f"{API}/hosts/{name}/drain")
    for a in admin.allocations():
        admin.call("DELETE", f"{API}/allocations/{a['id']}")


def host_of(client, name) -> dict | None:
    return next((h for h in client.pool()["hosts"] if h["name"] == name), None)


def test_register_needs_the_agent_scope(hub, hosts):
    body = {"host": {"cpus": 1, "memory_mb": 1024, "devices": []}, "running": []}
    assert requests.post(hub.url + f"{API}/hosts/x/register", json=body).status_code == 401
    user = hub.login("gpuhub-agentless")
    r = user.call("POST", f"{API}/hosts/x/register", json=body)
    assert r.status_code == 403 and "custom:gpu-allocator:agent" in r.json()["error"]
    r = user.call("POST", f"{API}/hosts/x/heartbeat", json={"running": []})
    assert r.status_code == 403
    assert host_of(hub.admin_allocator(), "x") is None
    # an agent token may not drain
    r = hub.agent_client().call("POST", f"{API}/hosts/x/drain")
    assert r.status_code == 403


@pytest.mark.parametrize(
    "body, words",
    [
        ({"running": []}, '"host" must be an object'),
        ({"host": {"cpus": 0, "memory_mb": 1, "devices": []}}, "host.cpus must be a positive"),
        ({"host": {"cpus": 1, "memory_mb": "1G", "devices": []}}, "host.memory_mb must be"),
        ({"host": {"cpus": 1, "memory_mb": 1, "devices": [{"uuid": "G", "memory_mb": 1}] * 2}},
         "listed twice"),
        ({"host": {"cpus": 1, "memory_mb": 1, "devices": [{"uuid": 3, "memory_mb": 1}]}},
         "host.devices[0].uuid"),
        ({"host": {"cpus": 1, "memory_mb": 1, "devices": []}, "running": "a"}, "running must be"),
        ({"host": {"cpus": 1, "memory_mb": 1, "devices": []}, "docker": {"ip": "x"}}, "docker.url"),
    ],
)
def test_register_refuses_malformed_bodies(hub, body, words):
    r = hub.agent_client().call("POST", f"{API}/hosts/bad-host/register", json=body)
    assert r.status_code == 400 and words in r.json()["error"], r.text
    assert host_of(hub.admin_allocator(), "bad-host") is None


def test_register_heartbeat_and_pool_view(hub, hosts):
    docker = {"url": "tcp://10.0.0.9:2376", "ip": "10.0.0.9", "gpu_runtime": True,
              "mps_pipe_dir": "/var/lib/gpuhub-agent/mps/pipe"}
    topology = {"pairs": [{"a": 0, "b": 1, "common_ancestor": "PIX", "nvlink": False}]}
    before = time.time()
    answer = hosts("api-1", docker=docker, topology=topology)
    assert answer == {"state": "up", "shares": [], "unknown": [], "fenced": [],
                      "heartbeat_interval": INTERVAL}

    admin, user = hub.admin_allocator(), hub.login("gpuhub-viewer")
    h = host_of(admin, "api-1")
    assert (h["state"], h["source"], h["docker"], h["topology"]) == ("up", "agent", docker, topology)
    assert before <= h["last_heartbeat"] <= time.time() and h["usage"] is None
    assert "docker" not in host_of(user, "api-1")  # the engine's address: admins only

    a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-viewer", "gpus": 0.5}).json()
    assert a["host"] == "api-1", a
    sample = {"uuid": "GPU-api-1-0", "utilization_gpu": 87, "memory_used_mb": 12000,
              "processes": [{"pid": 4242, "memory_mb": 11900}]}
    r = hub.agent_client().call("POST", f"{API}/hosts/api-1/heartbeat",
                                json={"devices": [sample], "running": [a["id"], "0ddba11"]})
    assert r.status_code == 200, r.text
    beat = r.json()
    assert beat["state"] == "fencing" and beat["unknown"] == ["0ddba11"]  # something unaccounted runs
    (share,) = beat["shares"]
    assert (share["id"], share["devices"][0]["fraction"]) == (a["id"], "0.5")
    h = host_of(admin, "api-1")
    assert h["usage"]["devices"] == [sample] and h["unknown_allocations"] == ["0ddba11"]
    assert host_of(user, "api-1")["usage"]["devices"][0]["utilization_gpu"] == 87

    # a host the allocator does not know: 404, the agent registers
    r = hub.agent_client().call("POST", f"{API}/hosts/never-registered/heartbeat", json={})
    assert r.status_code == 404 and "register again" in r.json()["error"]
    # a device that another host holds: 409
    r = hub.agent_client().call("POST", f"{API}/hosts/api-1-twin/register", json={
        "host": {"cpus": 1, "memory_mb": 1024,
                 "devices": [{"index": 0, "uuid": "GPU-api-1-0", "model": "L4", "memory_mb": 1}]}})
    assert r.status_code == 409 and "already registered by host 'api-1'" in r.json()["error"]


def test_each_allocations_own_use_is_kept_and_shown_to_its_owner(hub, hosts):
    """A heartbeat's ``allocations`` (each allocation's own processes' use, from
    the agent's cgroup mapping): the allocator keeps the latest per allocation,
    GET allocations/{id} and the pool view's share entries show it (a user sees
    only their own), and a malformed figure is a 400."""
    hosts("api-use", n=1)
    admin, agent = hub.admin_allocator(), hub.agent_client()
    a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-use-a", "gpus": 0.5}).json()
    b = admin.call("POST", API + "/allocations", json={"user": "gpuhub-use-b", "gpus": 0.5}).json()
    assert a["host"] == b["host"] == "api-use" and a["devices"][0]["uuid"] == b["devices"][0]["uuid"]
    uuid = a["devices"][0]["uuid"]
    assert admin.call("GET", f"{API}/allocations/{a['id']}").json()["use"] is None  # nothing reported yet

    def own(util, mem):
        return {"utilization_gpu": util, "memory_used_mb": mem, "processes": 1, "complete": True,
                "devices": [{"uuid": uuid, "utilization_gpu": util, "memory_used_mb": mem, "processes": 1}]}

    before = time.time()
    r = agent.call("POST", f"{API}/hosts/api-use/heartbeat", json={
        "running": [a["id"], b["id"]],
        "devices": [{"uuid": uuid, "utilization_gpu": 90, "memory_used_mb": 20000, "processes": []}],
        "allocations": {a["id"]: own(85.0, 15000.0), b["id"]: own(0.0, 512.0)}})
    assert r.status_code == 200, r.text
    use = admin.call("GET", f"{API}/allocations/{b['id']}").json()["use"]
    assert (use["utilization_gpu"], use["memory_used_mb"], use["complete"]) == (0.0, 512.0, True)
    assert before <= use["sampled_at"] <= time.time()
    assert hub.login("gpuhub-use-a").call("GET", f"{API}/allocations/{a['id']}").json()["use"]["utilization_gpu"] == 85
    (dev,) = host_of(hub.login("gpuhub-use-b"), "api-use")["devices"]
    assert [(s["allocation"], s["use"]["memory_used_mb"]) for s in dev["shares"]] == [(b["id"], 512.0)]
    assert "allocations" not in host_of(hub.login("gpuhub-use-b"), "api-use")["usage"]
    r = agent.call("POST", f"{API}/hosts/api-use/heartbeat", json={
        "running": [a["id"]], "allocations": {a["id"]: {"utilization_gpu": "lots"}}})
    assert r.status_code == 400 and "utilization_gpu" in r.json()["error"]


def test_drain_keeps_running_shares_and_refuses_new_ones(hub, hosts):
    hosts("api-drain", n=1)
    admin, agent = hub.admin_allocator(), hub.agent_client()
    held = admin.call("POST", API + "/allocations", json={"user": "gpuhub-d", "gpus": 0.5}).json()
    assert held["host"] == "api-drain"

    user = hub.login("gpuhub-d")
    assert user.call("POST", f"{API}/hosts/api-drain/drain").status_code == 403
    assert admin.call("POST", f"{API}/hosts/no-such-host/drain").status_code == 404
    r = hub.login("admin").call("POST", f"{API}/hosts/api-drain/drain")  # a hub admin
    assert r.status_code == 200 and r.json()["state"] == "drained", r.text
    assert r.json()["devices"][0]["shares"][0]["allocation"] == held["id"]

    r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-d", "gpus": 0.25, "queue": False})
    assert r.status_code == 409, r.text
    assert admin.call("GET", f"{API}/allocations/{held['id']}").json()["state"] == "granted"
    beat = agent.call("POST", f"{API}/hosts/api-drain/heartbeat", json={"running": [held["id"]]}).json()
    assert beat["state"] == "drained" and [s["id"] for s in beat["shares"]] == [held["id"]]
    assert hosts("api-drain", n=1, running=[held["id"]])["state"] == "drained"

    r = admin.call("POST", f"{API}/hosts/api-drain/undrain")
    assert r.status_code == 200 and r.json()["state"] == "up"
    r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-d", "gpus": 0.25, "queue": False})
    assert r.status_code == 201 and r.json()["host"] == "api-drain"


def test_a_silent_host_is_lost_and_reconciles_when_it_returns(hub, hosts):
    hosts("api-lost", n=1)
    admin, agent = hub.admin_allocator(), hub.agent_client()
    a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-l", "gpus": 1}).json()
    assert a["host"] == "api-lost"
    agent.call("POST", f"{API}/hosts/api-lost/heartbeat", json={"running": [a["id"]]})
    silent_since = time.monotonic()
    wait_for(lambda: host_of(admin, "api-lost")["state"] == "lost", 3 * INTERVAL + 5, "host lost", 0.05)
    took = time.monotonic() - silent_since
    assert 3 * INTERVAL - 0.2 <= took <= 3 * INTERVAL + 1.5, took
    gone = admin.call("GET", f"{API}/allocations/{a['id']}").json()
    assert gone["state"] == "lost"
    assert host_of(admin, "api-lost")["devices"][0]["free"] == "1"  # its share is free
    assert a["id"] not in [x["id"] for x in admin.allocations()]
    # nothing new is placed there
    r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-l", "gpus": 1, "queue": False})
    assert r.status_code in (400, 409) or r.json()["host"] != "api-lost"
    # the agent's next heartbeat is a 404; it registers again and reports the lost share
    r = agent.call("POST", f"{API}/hosts/api-lost/heartbeat", json={"running": [a["id"]]})
    assert r.status_code == 404
    back = hosts("api-lost", n=1, running=[a["id"]])
    # still running the lost share: fenced (no placements) until the agent reports it stopped
    assert (back["state"], back["shares"], back["unknown"]) == ("fencing", [], [a["id"]])
    h = host_of(admin, "api-lost")
    assert h["state"] == "fencing" and h["unknown_allocations"] == [a["id"]]
    r = agent.call("POST", f"{API}/hosts/api-lost/heartbeat", json={"running": []})
    assert r.status_code == 200 and r.json()["state"] == "up"
    assert "missed 3 heartbeats: marked lost" in hub.log_tail(400)


def test_an_idle_share_is_noticed_then_reclaimed_while_someone_waits_and_a_busy_one_is_kept(hub, hosts):
    """Idle reclaim over HTTP: the agent's heartbeats carry per-device utilisation;
    the allocator's loop notices the idle share only once a request waits, then
    revokes it as "idle-reclaim", and the waiting request gets its GPU."""
    hosts("api-idle", n=2)
    admin, agent = hub.admin_allocator(), hub.agent_client()
    body = {"gpus": 1, "cpu": 0.1, "mem": "64M", "max_hours": 1, "groups": ["gpuhub-idle"]}
    idle = admin.call("POST", API + "/allocations", json={**body, "user": "gpuhub-idler"}).json()
    busy = admin.call("POST", API + "/allocations", json={**body, "user": "gpuhub-busy"}).json()
    assert idle["host"] == busy["host"] == "api-idle"
    util = {idle["devices"][0]["uuid"]: 0, busy["devices"][0]["uuid"]: 90}

    def beat_for(seconds: float, until=None):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r = agent.call("POST", f"{API}/hosts/api-idle/heartbeat", json={
                "running": [idle["id"], busy["id"]],
                "devices": [{"uuid": u, "utilization_gpu": v, "memory_used_mb": 100, "processes": []}
                            for u, v in util.items()]})
            assert r.status_code == 200, r.text
            if until is not None and until():
                return
            time.sleep(0.3)  # the agent's heartbeat period: time passing is what is tested
        assert until is None, f"no heartbeat in {seconds} s brought what the test waits for"

    def state(a):
        return admin.call("GET", f"{API}/allocations/{a['id']}").json()

    beat_for(9)  # idle 9 s, nobody waits: kept, no notice
    assert state(idle)["state"] == "granted" and state(idle)["notice"] is None
    r = admin.call("POST", API + "/allocations", json={**body, "user": "gpuhub-waiter", "groups": []})
    assert r.status_code == 202, r.text
    waiter = r.json()
    try:
        beat_for(15, lambda: state(idle).get("notice"))
        assert "idle (under 5% utilisation)" in state(idle)["notice"]
        beat_for(20, lambda: state(idle)["state"] != "granted")
        gone = state(idle)
        assert gone["state"] == "revoked" and gone["revoked_by"] == "idle-reclaim"
        assert gone["reason"].startswith("reclaimed: GPU idle for ") and gone["reason"].endswith(" min")
        assert state(busy)["state"] == "granted" and state(busy)["notice"] is None
        wait_for(lambda: state(waiter)["state"] == "granted", 10, "the waiting request to get the GPU")
        audit = hub.login("admin").call("GET", API + "/audit", params={"actor": "idle-reclaim"}).json()
        assert [e["target"] for e in audit["entries"]] == [f"allocation:{idle['id']}"]
    finally:
        admin.call("DELETE", f"{API}/allocations/{waiter['id']}")


# --------------------------------------------------------------------------- a real agent


def test_agent_process_registers_heartbeats_runs_mps_and_comes_back(hub, tmp_path, fake_mps):
    inventory = tmp_path / "agents.yaml"
    inventory.write_text(textwrap.dedent("""
        hosts:
          - name: agent-box
            cpus: 8
            memory: 32G
            gpus: [{model: A100-SXM4-80GB, memory: 80G, count: 2, nvlink_island: nv0}]
    """))
    state = tmp_path / "state"

    def start_agent():
        log = open(tmp_path / "agent.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "gpu_allocator.agent", f"--allocator-url={hub.allocator_api()}",
             f"--inventory={inventory}", "--inventory-host=agent-box", f"--state-dir={state}",
             f"--token-file={hub.agent_token_file}"],
            cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT,
        )

    admin = hub.admin_allocator()
    agent = start_agent()
    try:
        wait_for(lambda: (host_of(admin, "agent-box") or {}).get("state") == "up", 20, "registration")
        first = host_of(admin, "agent-box")["last_heartbeat"]
        wait_for(lambda: host_of(admin, "agent-box")["last_heartbeat"] > first, 3 * INTERVAL, "a heartbeat")
        assert host_of(admin, "agent-box")["usage"]["devices"] == []  # declared: nothing to sample
        assert host_of(admin, "agent-box")["source"] == "agent"

        # a fractional share there: the agent starts the MPS daemon; released: stops it
        a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-m", "gpus": 0.5}).json()
        assert a["host"] == "agent-box", a
        wait_for(lambda: any(c.startswith("args=-d") for c in fake_mps.calls()), 5 * INTERVAL, "MPS start")
        assert f"pipe={state / 'mps' / 'pipe'}" in fake_mps.calls()[0]
        mps_up = {"available": True, "running": True, "pipe_dir": str(state / "mps" / "pipe")}
        wait_for(lambda: host_of(admin, "agent-box").get("mps") == mps_up,
                 5 * INTERVAL, "MPS running in the pool view")
        assert json.loads((state / "shares.json").read_text()) == [a["id"]]
        admin.call("DELETE", f"{API}/allocations/{a['id']}")
        wait_for(lambda: any("stdin=quit" in c for c in fake_mps.calls()), 5 * INTERVAL, "MPS stop")

        # kill the agent while it holds a share: lost; a new agent reports the lost share
        b = admin.call("POST", API + "/allocations", json={"user": "gpuhub-m", "gpus": 1}).json()
        assert b["host"] == "agent-box"
        wait_for(lambda: json.loads((state / "shares.json").read_text()) == [b["id"]], 5 * INTERVAL,
                 "the agent to learn of its share")
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        wait_for(lambda: host_of(admin, "agent-box")["state"] == "lost", 3 * INTERVAL + 5, "loss", 0.05)
        assert admin.call("GET", f"{API}/allocations/{b['id']}").json()["state"] == "lost"
        agent = start_agent()
        wait_for(lambda: host_of(admin, "agent-box")["state"] == "up", 20, "the host to come back")
        wait_for(lambda: b["id"] in (tmp_path / "agent.log").read_text(), 10, "the agent's report")
        assert "does not hold here" in (tmp_path / "agent.log").read_text()
        assert f"does not hold there: {b['id']}" in hub.log_tail(400)
        # SIGTERM: the agent stops cleanly
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        admin.call("POST", f"{API}/hosts/agent-box/drain")
        for x in admin.allocations():
            admin.call("DELETE", f"{API}/allocations/{x['id']}")
