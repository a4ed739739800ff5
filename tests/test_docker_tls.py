"""Docker engines over TLS with gpuhub-certs' certificates, against a stand-in
engine: a tornado server with the engine's certificate that, as ``dockerd
--tlsverify`` does, asks every client for a certificate of the site CA and
answers the few Docker API calls used here. The agent (containers.configure_tls,
GPUAgent.docker_tls) and the hub (DockerGPUSpawner.docker_tls, for engines the
agents register) get in with their certificates; plain TCP, a client
certificate of another CA and none are refused. (A real ``dockerd`` with TLS is
not started here: the tests never start or stop the machine's engine.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
from tornado import web

from gpu_allocator.agent import containers
from gpuhub.certs import server_context
from spawner.docker import DockerGPUSpawner
from tests.support import REPO, free_port

LABEL = containers.LABEL


def certs(*args) -> None:
    subprocess.run([sys.executable, "-m", "gpuhub.certs", *map(str, args)], cwd=REPO, check=True,
                   capture_output=True)


class Engine(web.RequestHandler):
    def get(self, path):
        if path in ("version", "v1.43/version"):
            return self.write({"ApiVersion": "1.43", "Version": "stand-in"})
        if path == "v1.43/info":
            return self.write({"Runtimes": {"runc": {}, "nvidia": {}}})
        if path == "v1.43/containers/json":
            return self.finish('[{"Id": "c0ffee", "Names": ["/jupyter-ann"]}]')
        if path == "v1.43/containers/c0ffee/json":
            return self.write({"Id": "c0ffee", "Name": "/jupyter-ann",
                               "Config": {"Labels": {LABEL: "alloc-1"}}})
        raise web.HTTPError(404)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The site (CA, the engine's certificate for 127.0.0.1, the agent's and the
    hub's client certificates), another CA's client certificate, and the stand-in
    engine on tcp://127.0.0.1:PORT in a thread of its own."""
    site, other = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("other")
    certs("init", site)
    certs("issue", site, "node-t-docker", "--role", "docker", "--ip", "127.0.0.1")
    certs("issue", site, "node-t", "--role", "agent")
    certs("issue", site, "hub-docker-client", "--role", "docker-client")
    certs("init", other)
    certs("issue", other, "node-t")
    port = free_port()
    ready, loop_box = threading.Event(), {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ctx = server_context(str(site / "node-t-docker.crt"), str(site / "node-t-docker.key"),
                             str(site / "ca.crt"), require_client_cert=True)
        server = web.Application([(r"/(.*)", Engine)]).listen(port, "127.0.0.1", ssl_options=ctx)
        loop_box["loop"], loop_box["server"] = loop, server
        ready.set()
        loop.run_forever()
        server.stop()
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"tcp://127.0.0.1:{port}", site, other
    loop_box["loop"].call_soon_threadsafe(loop_box["loop"].stop)
    thread.join(10)


@pytest.fixture(autouse=True)
def system_ca_bundle(monkeypatch):
    """A site's environment that names the system's CAs for requests: the site CA
    must still be the one checked (psf/requests#3829; gpuhub.certs.docker_api)."""
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())


def test_the_agent_reaches_its_engine_with_its_own_certificate(engine, monkeypatch):
    url, site, other = engine
    monkeypatch.setattr(containers, "TLS", {})
    containers.configure_tls(url, str(site / "ca.crt"), str(site / "node-t.crt"), str(site / "node-t.key"))
    assert containers.has_gpu_runtime(url)
    assert containers.running_allocations(url) == ["alloc-1"]
    assert containers.allocation_containers(url) == {"c0ffee": "alloc-1"}


def test_the_engine_refuses_plain_tcp_another_ca_and_no_certificate(engine, monkeypatch):
    url, site, other = engine
    monkeypatch.setattr(containers, "TLS", {})
    with pytest.raises(Exception):  # plain HTTP to the TLS port
        containers.has_gpu_runtime(url)
    containers.configure_tls(url, str(site / "ca.crt"), str(other / "node-t.crt"), str(other / "node-t.key"))
    with pytest.raises(Exception, match="(?i)ssl|certificate|reset|closed|abort"):
        containers.has_gpu_runtime(url)
    containers.configure_tls(url, str(site / "ca.crt"), "", "")
    with pytest.raises(Exception, match="(?i)ssl|certificate|reset|closed|abort"):
        containers.has_gpu_runtime(url)


def test_the_agent_uses_tls_for_a_tcp_engine_when_it_has_a_certificate(engine, monkeypatch, tmp_path):
    from gpu_allocator.agent.app import GPUAgent

    url, site, _ = engine
    monkeypatch.setattr(containers, "TLS", {})
    token = tmp_path / "token"
    token.write_text("t")
    tls = [f"--ca-file={site / 'ca.crt'}", f"--cert-file={site / 'node-t.crt'}",
           f"--key-file={site / 'node-t.key'}"]
    agent = GPUAgent()
    agent.initialize([f"--token-file={token}", f"--docker-url={url}", f"--state-dir={tmp_path}", *tls])
    assert agent.docker_tls and containers.running_allocations(url) == ["alloc-1"]
    monkeypatch.setattr(containers, "TLS", {})
    local = GPUAgent()
    local.initialize([f"--token-file={token}", "--docker-url=unix:///var/run/docker.sock",
                      f"--state-dir={tmp_path}", *tls])
    assert not local.docker_tls and containers.TLS == {}


def test_the_hub_reaches_a_registered_engine_with_its_client_certificate(engine):
    url, site, other = engine

    def spawner(**tls) -> DockerGPUSpawner:
        DockerGPUSpawner._clients.pop(url, None)
        s = DockerGPUSpawner(docker_endpoints={"node-t": {"url": url, "ip": "127.0.0.1"}},
                             docker_api_version="1.43", **tls)
        s.allocation = {"id": "x", "host": "node-t", "devices": []}
        return s

    client = (str(site / "hub-docker-client.crt"), str(site / "hub-docker-client.key"))
    ca = str(site / "ca.crt")
    s = spawner(docker_tls={"client_cert": client, "ca_cert": ca, "verify": ca})
    assert "nvidia" in s.client.info()["Runtimes"]
    with pytest.raises(Exception):  # no docker_tls: plain TCP to a TLS engine
        spawner().client.info()
    with pytest.raises(Exception, match="(?i)ssl|certificate|reset|closed|abort"):
        spawner(docker_tls={"client_cert": (str(other / "node-t.crt"), str(other / "node-t.key")),
                            "ca_cert": ca, "verify": ca}).client.info()
    DockerGPUSpawner._clients.pop(url, None)
