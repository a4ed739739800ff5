"""Several GPU hosts, each an agent in its own network namespace (``ip netns`` +
veth), registered with one real JupyterHub + allocator over the veth links — over
TLS: the allocator's port for agents (GPUAllocator.agent_tls_port) with
certificates from gpuhub-certs, each agent presenting its own (mutual TLS), while
the hub talks to the allocator on loopback; plain HTTP, a certificate of another
CA and no certificate are refused from a host's namespace. A
spawn lands on the host the allocator chose; killing a host's namespace marks it
lost within 3 heartbeats and frees its shares; the agent restarting brings it
back; a drained host keeps its shares and takes no new ones.

Needs root (network namespaces); skipped otherwise, with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support import API, REPO, Hub, free_port, wait_for

pytestmark = pytest.mark.e2e

INTERVAL = 1.0  # heartbeat interval of the test hub (GPUAllocator.heartbeat_interval)
SLACK = 1.5  # seconds beyond 3 heartbeat intervals that detection may take
SUBNET = "10.213.7"  # a private /24, cut into one /30 per host
HOSTS = {1: 1, 2: 1, 3: 4}  # namespace number → GPUs of its host


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"gpuhub-t-probe{os.getpid()}"
    try:
        r = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if r.returncode != 0:
        return f"ip netns add fails here: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


_reason = netns_unavailable()
if _reason:
    pytest.skip(_reason, allow_module_level=True)


def certs(*args) -> None:
    """gpuhub-certs, as a site runs it."""
    subprocess.run([sys.executable, "-m", "gpuhub.certs", *map(str, args)], cwd=REPO, check=True,
                   capture_output=True)


class GPUHost:
    """Namespace gpuhub-t-N linked to the host by a veth pair with a /30, and the
    gpuhub-agent running inside it, reaching the allocator's TLS port for agents
    (``tls_port``) with the site CA and its own certificate in ``tls``."""

    tls_port = 0

    def __init__(self, n: int, workdir: Path):
        self.n = n
        self.tls = workdir / "tls"
        self.name = f"gpuhub-t-{n}"
        self.outside, self.inside = f"ghub-t{n}-o", f"ghub-t{n}-i"
        self.outside_ip, self.inside_ip = f"{SUBNET}.{4 * n + 1}", f"{SUBNET}.{4 * n + 2}"
        self.workdir = workdir
        self.agent: subprocess.Popen | None = None

    def create(self) -> None:
        self.delete()  # left over from an interrupted run
        ip("netns", "add", self.name)
        ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside, "netns", self.name)
        ip("addr", "add", f"{self.outside_ip}/30", "dev", self.outside)
        ip("link", "set", self.outside, "up")
        ip("-n", self.name, "addr", "add", f"{self.inside_ip}/30", "dev", self.inside)
        ip("-n", self.name, "link", "set", self.inside, "up")
        ip("-n", self.name, "link", "set", "lo", "up")

    def start_agent(self, hub: Hub, inventory: Path) -> None:
        log = open(self.workdir / f"{self.name}-agent.log", "ab")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "gpu_allocator.agent",
             f"--allocator-url={self.allocator_url()}",
             f"--ca-file={self.tls / 'ca.crt'}", f"--cert-file={self.tls / (self.name + '.crt')}",
             f"--key-file={self.tls / (self.name + '.key')}",
             f"--inventory={inventory}", f"--inventory-host={self.name}",
             f"--state-dir={self.workdir / self.name}", f"--token-file={hub.agent_token_file}"],
            cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT,
        )

    def allocator_url(self, scheme: str = "https", port: int = 0) -> str:
        """The allocator's API as this host reaches it (its TLS port for agents)."""
        return f"{scheme}://{self.outside_ip}:{port or self.tls_port}{API}/"

    def kill(self) -> None:
        """The host dies: its agent is killed and its network is gone."""
        if self.agent and self.agent.poll() is None:
            self.agent.kill()  # `ip netns exec` execs the agent: this is its pid
            self.agent.wait()
        self.delete()

    def delete(self) -> None:
        ip("netns", "del", self.name, check=False)
        ip("link", "del", self.outside, check=False)  # gone with the namespace, normally

    def log(self) -> str:
        path = self.workdir / f"{self.name}-agent.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The hub (the allocator on loopback, its TLS port for agents on every address,
    1 s heartbeats, no declared hosts) and three GPU hosts with their agents; the
    site CA and every certificate from gpuhub-certs, and another CA's."""
    work = tmp_path_factory.mktemp("multihost")
    tls = work / "tls"
    began = time.monotonic()
    certs("init", tls)
    certs("issue", tls, "allocator", "--role", "allocator",
          *[f"--ip={SUBNET}.{4 * n + 1}" for n in HOSTS])  # each host reaches it at its veth's far end
    for n in HOSTS:
        certs("issue", tls, f"gpuhub-t-{n}", "--role", "agent")
    certs("init", work / "other-ca")
    certs("issue", work / "other-ca", "gpuhub-t-1")
    print(f"gpuhub-certs: a CA and {len(HOSTS) + 1} certificates in {time.monotonic() - began:.2f}s")
    GPUHost.tls_port = free_port()
    (work / "hub-inventory.yaml").write_text("hosts: []\n")
    inventory = work / "agents.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": [
        {"name": f"gpuhub-t-{n}", "cpus": 8, "memory": "32G",
         "gpus": [{"model": "L4", "memory": "24G", "count": gpus}]}
        for n, gpus in HOSTS.items()
    ]}))
    hosts = {n: GPUHost(n, work) for n in HOSTS}
    hub = Hub(
        work / "hub",
        config={"GPUAllocator": {"inventory_file": str(work / "hub-inventory.yaml"),
                                 "heartbeat_interval": INTERVAL,
                                 "agent_tls_port": GPUHost.tls_port,
                                 "agent_tls_cert": str(tls / "allocator.crt"),
                                 "agent_tls_key": str(tls / "allocator.key"),
                                 "agent_tls_ca": str(tls / "ca.crt")}},
    )
    try:
        for h in hosts.values():
            h.create()
        hub.start()
        admin = hub.admin_allocator()
        # a GPU machine adds its own GPUs (NVML discovery): keep spawns off them
        for h in admin.pool()["hosts"]:
            admin.call("POST", f"{API}/hosts/{h['name']}/drain")
        for h in hosts.values():
            h.start_agent(hub, inventory)
        yield hub, hosts, inventory
    finally:
        for h in hosts.values():
            h.kill()
        hub.stop()
        for h in hosts.values():
            print(f"--- {h.name} agent log\n{h.log()[-3000:]}")


def pool_hosts(hub: Hub) -> dict[str, dict]:
    return {h["name"]: h for h in hub.admin_allocator().pool()["hosts"]}


def states(hub: Hub) -> dict[str, str]:
    return {name: h["state"] for name, h in pool_hosts(hub).items() if name.startswith("gpuhub-t-")}


def stop_server(user) -> None:
    """Stop the user's server if the hub has not stopped it already."""
    if user.server() is not None:
        r = user.call("DELETE", f"/hub/api/users/{user.name}/server")
        assert r.status_code in (202, 204, 400), r.text
    user.wait_stopped()


def test_agents_register_over_their_veth_links(lab):
    hub, hosts, _ = lab
    want = {h.name: "up" for h in hosts.values()}
    wait_for(lambda: states(hub) == want, 30, "every agent to register")
    pool = pool_hosts(hub)
    for n, h in hosts.items():
        entry = pool[h.name]
        assert entry["source"] == "agent"
        assert len(entry["devices"]) == HOSTS[n]
        assert entry["last_heartbeat"] > time.time() - 3 * INTERVAL
        assert "registered host" in h.log() and h.outside_ip in h.log()
    # and they stay up: heartbeats arrive over the veth links
    first = {name: pool[name]["last_heartbeat"] for name in want}
    wait_for(lambda: all(pool_hosts(hub)[name]["last_heartbeat"] > first[name] for name in want),
             2 * INTERVAL, "a new heartbeat from every host")
    assert states(hub) == want


#: run in a host's namespace: each client of the allocator (gpuhub.client, the one
#: the agents use) asks for the pool; what it got, as JSON
PROBE = """
import asyncio, json, sys
from gpuhub.client import ServiceClient, ServiceError
cases = json.loads(sys.argv[1])
async def main():
    out = {}
    for name, (url, token, tls, *call) in cases.items():
        try:
            await ServiceClient(url, token, 5, *tls).call(*(call or ["GET", "pool"]))
            out[name] = [200, "ok"]
        except ServiceError as e:
            out[name] = [e.status, e.message]
    print(json.dumps(out))
asyncio.run(main())
"""


def test_the_allocator_refuses_agents_without_tls_or_a_site_certificate(lab):
    """From a GPU host's namespace, with the agents' own token: only TLS with a
    certificate of the site CA gets an answer from the allocator; the hub's plain
    port is on loopback, out of reach."""
    hub, hosts, _ = lab
    h = hosts[1]
    tls, other = h.tls, h.workdir / "other-ca"
    site = [str(tls / "ca.crt"), str(tls / f"{h.name}.crt"), str(tls / f"{h.name}.key")]
    token = hub.agent_token
    cases = {
        "site certificate": [h.allocator_url(), token, site],
        "plain HTTP to the TLS port": [h.allocator_url("http"), token, []],
        "another CA's certificate": [h.allocator_url(), token,
                                     [str(tls / "ca.crt"), str(other / "gpuhub-t-1.crt"),
                                      str(other / "gpuhub-t-1.key")]],
        "no client certificate": [h.allocator_url(), token, [str(tls / "ca.crt")]],
        "a server of another CA": [h.allocator_url(), token, [str(other / "ca.crt"), *site[1:]]],
        "the hub's plain port": [h.allocator_url("http", hub.allocator_port), token, []],
        # a host's certificate acts for that host only (a bad body: nothing changes
        # even where the certificate passes)
        "its own host's heartbeat": [h.allocator_url(), token, site, "POST", f"hosts/{h.name}/heartbeat",
                                     {"running": "not a list"}],
        "another host's heartbeat": [h.allocator_url(), token, site, "POST", f"hosts/{hosts[2].name}/heartbeat",
                                     {"running": "not a list"}],
    }
    began = time.monotonic()
    r = subprocess.run(["ip", "netns", "exec", h.name, sys.executable, "-c", PROBE, json.dumps(cases)],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    print(f"{len(cases)} clients from {h.name} in {time.monotonic() - began:.2f}s")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for name, (status, message) in got.items():
        print(f"  {name}: {status} {message}")
    # the agents' token passes the allocator's check (a 403 is the scope's answer:
    # agents may not read the pool) only over TLS with the site's certificate
    assert got.pop("site certificate")[0] in (200, 403)
    assert got.pop("its own host's heartbeat")[0] == 400
    status, message = got.pop("another host's heartbeat")
    assert status == 403 and f"not for host {hosts[2].name}" in message, message
    assert {name: status for name, (status, _) in got.items()} == {name: 503 for name in got}
    assert "CERTIFICATE_VERIFY_FAILED" in got["a server of another CA"][1]
    assert "Connection refused" in got["the hub's plain port"][1]
    # and the hub itself still reaches the allocator on loopback (through its proxy)
    assert hub.admin_allocator().pool()["hosts"]


def test_spawn_lands_on_the_chosen_host_and_host_loss_frees_it(lab):
    hub, hosts, inventory = lab
    wait_for(lambda: set(states(hub).values()) == {"up"}, 30, "all hosts up")
    user = hub.login("gpuhub-mh-ann")
    r = user.spawn({"gpus": 1})
    assert r.status_code in (201, 202), r.text
    user.wait_ready()
    try:
        (allocation,) = user.allocations()
        env = json.loads(user.run_code(
            "import os, json; print(json.dumps({k: os.environ.get(k) for k in "
            "['GPUHUB_HOST', 'GPUHUB_ALLOCATION', 'CUDA_VISIBLE_DEVICES']}))"))
        assert env["GPUHUB_HOST"] == allocation["host"] and env["GPUHUB_HOST"].startswith("gpuhub-t-")
        assert env["GPUHUB_ALLOCATION"] == allocation["id"]
        assert env["CUDA_VISIBLE_DEVICES"] == allocation["devices"][0]["uuid"]
        victim = next(h for h in hosts.values() if h.name == allocation["host"])
        device = allocation["devices"][0]["uuid"]

        # the host dies
        killed = time.monotonic()
        victim.kill()
        wait_for(lambda: states(hub)[victim.name] == "lost", 3 * INTERVAL + 10, "the host to be lost", 0.05)
        took = time.monotonic() - killed
        print(f"host lost {took:.2f}s after its namespace was killed (heartbeat {INTERVAL}s)")
        assert took <= 3 * INTERVAL + SLACK, took
        admin = hub.admin_allocator()
        assert admin.call("GET", f"{API}/allocations/{allocation['id']}").json()["state"] == "lost"
        dev = next(d for d in pool_hosts(hub)[victim.name]["devices"] if d["uuid"] == device)
        assert dev["free"] == "1" and dev["shares"] == []
        others = {name: s for name, s in states(hub).items() if name != victim.name}
        assert set(others.values()) == {"up"}, others  # the others keep their heartbeats
        # the hub's poll finds the share lost and reports the session dead
        user.wait_stopped(timeout=30)
        assert user.allocations() == []
    finally:
        stop_server(user)

    # it comes back: a new namespace, the agent starts again, the host is up
    victim.create()
    victim.start_agent(hub, inventory)
    wait_for(lambda: states(hub)[victim.name] == "up", 20, "the host to come back")
    # the new agent reported the share it had been running as unknown
    wait_for(lambda: allocation["id"] in victim.log().split("registered host")[-1], 10, "the report")
    assert f"does not hold there: {allocation['id']}" in hub.log_tail(2000)
    # and takes placements again
    admin = hub.admin_allocator()
    a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-ann", "gpus": 4}).json()
    assert a["host"] == "gpuhub-t-3"  # the only host with 4 GPUs, whether it was the victim or not
    admin.call("DELETE", f"{API}/allocations/{a['id']}")


def test_a_drained_host_keeps_its_shares_and_takes_no_new_ones(lab):
    hub, hosts, _ = lab
    wait_for(lambda: set(states(hub).values()) == {"up"}, 30, "all hosts up")
    admin = hub.admin_allocator()
    held = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-bob", "gpus": 2}).json()
    assert held["host"] == "gpuhub-t-3", held  # the only host with 2 GPUs
    r = admin.call("POST", f"{API}/hosts/gpuhub-t-3/drain")
    assert r.status_code == 200 and r.json()["state"] == "drained"
    try:
        # heartbeats keep coming and do not undrain it; the share stays
        drained = time.time()
        wait_for(lambda: pool_hosts(hub)["gpuhub-t-3"]["last_heartbeat"] > drained + INTERVAL,
                 3 * INTERVAL + 5, "heartbeats of the drained host")
        assert states(hub)["gpuhub-t-3"] == "drained"
        assert admin.call("GET", f"{API}/allocations/{held['id']}").json()["state"] == "granted"
        # 2 more GPUs fit only there: now or never, the allocator says 409
        r = admin.call("POST", API + "/allocations",
                       json={"user": "gpuhub-mh-bob", "gpus": 2, "queue": False})
        assert r.status_code == 409 and "Not enough free resources" in r.json()["error"], r.text
        # by default the request waits in the queue (not on a drained host)
        r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-bob", "gpus": 2})
        assert r.status_code == 202 and r.json()["state"] == "queued", r.text
        assert admin.call("DELETE", f"{API}/allocations/{r.json()['id']}").json()["state"] == "cancelled"
        # a single GPU still lands elsewhere
        one = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-bob", "gpus": 1}).json()
        assert one["host"] in ("gpuhub-t-1", "gpuhub-t-2")
        admin.call("DELETE", f"{API}/allocations/{one['id']}")
    finally:
        r = admin.call("POST", f"{API}/hosts/gpuhub-t-3/undrain")
        assert r.status_code == 200 and r.json()["state"] == "up"
        admin.call("DELETE", f"{API}/allocations/{held['id']}")
    r = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-bob", "gpus": 2})
    assert r.status_code == 201 and r.json()["host"] == "gpuhub-t-3"
    admin.call("DELETE", f"{API}/allocations/{r.json()['id']}")


def test_a_cut_off_host_that_comes_back_is_fenced_before_new_grants(lab):
    """Fencing (#9.5): a running session on a host; the host's link is cut for
    more than 3 heartbeats (the agent keeps running); healed, the agent
    registers again with the session it was running: the host is ``fencing`` — no
    placements — until the agent has stopped it, and the pool never shows a
    device holding more than 1.0."""
    import threading
    from fractions import Fraction

    hub, hosts, _ = lab
    wait_for(lambda: set(states(hub).values()) == {"up"}, 30, "all hosts up")
    user = hub.login("gpuhub-mh-fen")
    r = user.spawn({"gpus": 1})
    assert r.status_code in (201, 202), r.text
    user.wait_ready()
    (allocation,) = user.allocations()
    victim = next(h for h in hosts.values() if h.name == allocation["host"])
    device = allocation["devices"][0]["uuid"]

    # watch the pool all along: no device above 1.0; nothing granted on the
    # victim's devices while it is fencing
    seen, problems, done = [], [], threading.Event()

    def watch():
        admin = hub.admin_allocator()
        while not done.is_set():
            try:
                pool = pool_hosts(hub)
            except Exception:  # the hub is busy: try again
                continue
            for name, h in pool.items():
                for d in h["devices"]:
                    held = sum(Fraction(s["fraction"]) for s in d["shares"])
                    if held > 1:
                        problems.append(f"{name} {d['uuid']} holds {held}")
                if name == victim.name:
                    seen.append(h["state"])
                    if h["state"] == "fencing" and any(d["shares"] for d in h["devices"]):
                        problems.append(f"a share on {name} while fencing: {h['devices']}")
            # and keep asking for the victim's GPU: the first grant that lands there
            # must come after the fence
            a = admin.call("POST", API + "/allocations", json={"user": "gpuhub-mh-fen2", "gpus": 1,
                                                              "queue": False})
            if a.status_code == 201:
                a = a.json()
                if a["host"] == victim.name:
                    landed.append((time.time(), a["id"]))
                admin.call("DELETE", f"{API}/allocations/{a['id']}")
            time.sleep(0.1)

    landed: list = []
    watcher = threading.Thread(target=watch, daemon=True)
    admin = hub.admin_allocator()
    others = [h.name for h in hosts.values() if h is not victim]
    try:
        for name in others:  # grants can land on the victim only
            admin.call("POST", f"{API}/hosts/{name}/drain")
        cut = time.monotonic()
        ip("link", "set", victim.outside, "down")
        wait_for(lambda: states(hub)[victim.name] == "lost", 3 * INTERVAL + 10, "the host to be lost", 0.05)
        took = time.monotonic() - cut
        assert victim.agent.poll() is None  # only cut off: the agent runs on
        watcher.start()
        # the host stays cut off well past 3 heartbeats while the watcher asks for
        # grants (time passing is what is tested: nothing lands on the lost host)
        time.sleep(2 * INTERVAL)
        user.wait_stopped(timeout=30)  # the hub's poll: the share is lost
        healed = time.time()
        ip("link", "set", victim.outside, "up")
        wait_for(lambda: any(e["allocation"] == allocation["id"]
                             for e in pool_hosts(hub)[victim.name]["fenced"]), 60, "the fence")
        wait_for(lambda: states(hub)[victim.name] == "up", 30, "the host up again")
        wait_for(lambda: landed, 30, "a grant on the healed host")
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join(10)
        ip("link", "set", victim.outside, "up", check=False)
        for name in others:
            admin.call("POST", f"{API}/hosts/{name}/undrain")
        stop_server(user)
    print(f"lost {took:.2f}s after the cut; states seen after it: {sorted(set(seen))}")
    assert problems == []
    (entry,) = [e for e in pool_hosts(hub)[victim.name]["fenced"] if e["allocation"] == allocation["id"]]
    assert entry["at"] >= healed and entry["stopped"] is not None
    assert "lost with the host" in entry["reason"]
    # nothing landed on the victim before the agent had fenced the old session
    assert all(at >= entry["stopped"] for at, _ in landed), (landed, entry)
    assert f"fenced allocation {allocation['id']} (lost with the host {victim.name}" in victim.log()
    assert "fencing" in hub.log_tail(3000)
    # the user is told why the server stopped: the spawn form says so
    form = user.session.get(hub.url + "/hub/spawn").text
    assert "Your previous server was stopped" in form and victim.name in form
    assert device  # (the device the old session held: checked through the pool above)
