"""Docker engines over TLS with gpuhub-certs' certificates.

Against a real engine: a private ``dockerd --tlsverify`` with the site CA and
the engine's certificate for 127.0.0.1, on tcp://127.0.0.1:PORT only (no unix
socket), with its own data root, exec root (and so its own managed containerd),
pidfile and config file, the ``vfs`` storage driver, no bridge, no iptables, no
IP masquerading or forwarding: nothing of the machine's own engine is touched,
and the daemon is stopped (SIGTERM, then SIGKILL), its mounts undone and its
directory removed at the end. It knows a runtime named ``nvidia`` (runc under
that name) for has_gpu_runtime to see, and the hub, through TLS, imports a
small image and starts a container labelled as an allocation's. The agent
(containers.configure_tls, GPUAgent.docker_tls) and the hub
(DockerGPUSpawner.docker_tls, for engines the agents register) get the engine's
version and info, the agent its allocations and stops them; plain TCP, a client
certificate of another CA, none, and a client that checks the engine against
another CA are refused, each with its own error. Skipped without ``dockerd`` or
root.

Against a stand-in engine (no root, no ``dockerd`` needed): a tornado server
with the engine's certificate that, as ``dockerd --tlsverify`` does, asks every
client for a certificate of the site CA and answers the few Docker API calls
used here; the same clients get in, and plain TCP, a client certificate of
another CA and none are refused."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
from tornado import web

from gpu_allocator.agent import containers
from gpuhub.certs import server_context
from spawner.docker import DockerGPUSpawner
from tests.support import REPO, free_port, wait_for

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
def sites(tmp_path_factory):
    """The site (CA, the engine's certificate for 127.0.0.1, the agent's and the
    hub's client certificates) and another CA with a client certificate of its
    own."""
    site, other = tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("other")
    certs("init", site)
    certs("issue", site, "node-t-docker", "--role", "docker", "--ip", "127.0.0.1")
    certs("issue", site, "node-t", "--role", "agent")
    certs("issue", site, "hub-docker-client", "--role", "docker-client")
    certs("init", other)
    certs("issue", other, "node-t")
    return site, other


@pytest.fixture(scope="module")
def engine(sites):
    """The stand-in engine on tcp://127.0.0.1:PORT in a thread of its own."""
    site, other = sites
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


# --- a real dockerd --tlsverify -----------------------------------------------------------

def find_dockerd() -> str | None:
    return shutil.which("dockerd") or next(
        (p for p in ("/usr/sbin/dockerd", "/usr/bin/dockerd") if os.access(p, os.X_OK)), None)


def dockerd_unavailable() -> str | None:
    if find_dockerd() is None:
        return "dockerd is not installed (Debian: apt-get install docker.io), so no real engine with TLS"
    if os.geteuid() != 0:
        return "starting a private dockerd needs root"
    return None


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root`` (from /proc/self/mountinfo), deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def pids_under(root: Path) -> list[int]:
    """Processes whose command line names ``root`` (the daemon's managed containerd
    and shims, should the daemon die without them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if str(root).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def sleep_image() -> bytes:
    """A root file system tar with /usr/bin/sleep and the libraries it loads."""
    paths = ["/usr/bin/sleep"]
    ldd = subprocess.run(["ldd", "/usr/bin/sleep"], capture_output=True, text=True, check=True).stdout
    paths += [w for w in ldd.split() if w.startswith("/")]
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for path in paths:
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
    return data.getvalue()


class Dockerd:
    """A private ``dockerd --tlsverify`` on tcp://127.0.0.1:PORT; all its files
    (data root, exec root, pidfile, config, log) in one directory of its own."""

    def __init__(self, site: Path):
        self.dir = Path(tempfile.mkdtemp(prefix="gpuhub-dtls-", dir="/tmp"))  # short: socket paths
        self.log = self.dir / "dockerd.log"
        (self.dir / "daemon.json").write_text("{}")  # not the machine's /etc/docker/daemon.json
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.argv = [
            find_dockerd(), "--config-file", str(self.dir / "daemon.json"),
            "--tlsverify", "--tlscacert", str(site / "ca.crt"),
            "--tlscert", str(site / "node-t-docker.crt"), "--tlskey", str(site / "node-t-docker.key"),
            "-H", self.url, "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
            "--pidfile", str(self.dir / "dockerd.pid"), "--storage-driver", "vfs",
            "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--add-runtime", "nvidia=runc",
        ]
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, less containerd's gRPC chatter."""
        try:
            log = self.log.read_text(errors="replace").splitlines()
            return "\n".join([line for line in log if "module=grpc" not in line][-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def start(self, client, timeout: float = 30) -> float:
        """Starts the daemon and waits until ``client()`` (a docker.APIClient
        factory) gets its version; returns the seconds that took."""
        t0 = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}")
            return client().version()

        try:
            wait_for(up, timeout, f"dockerd --tlsverify on {self.url}", interval=0.1)
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(f"{e}\n{' '.join(self.argv)}\n--- last lines of {self.log}:\n{self.log_tail()}")
        return time.monotonic() - t0

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            for pid in pids_under(self.dir):  # its containerd (and shims), had it died without them
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for point in mounts_under(self.dir):
                subprocess.run(["umount", "-l", point], capture_output=True)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd(sites):
    """A private ``dockerd --tlsverify`` with the site CA and the engine's
    certificate, and, started by the hub over TLS, a container labelled as
    allocation alloc-1's (``.cid``); ``.site`` and ``.other`` are the CAs'
    directories."""
    if reason := dockerd_unavailable():
        pytest.skip(reason)
    from gpuhub.certs import docker_api

    site, other = sites
    daemon = Dockerd(site)
    daemon.site, daemon.other = site, other
    hub_tls = {"client_cert": (str(site / "hub-docker-client.crt"), str(site / "hub-docker-client.key")),
               "ca_cert": str(site / "ca.crt"), "verify": str(site / "ca.crt")}
    try:
        seconds = daemon.start(lambda: docker_api(daemon.url, hub_tls, timeout=5))
        print(f"dockerd --tlsverify answered after {seconds:.1f} s")
        api = docker_api(daemon.url, hub_tls, timeout=30)
        api.import_image_from_data(sleep_image(), repository="gpuhub-tls-sleep", tag="t")
        daemon.cid = api.create_container(
            "gpuhub-tls-sleep:t", ["/usr/bin/sleep", "600"], name="jupyter-ann",
            labels={LABEL: "alloc-1"}, host_config=api.create_host_config(network_mode="none"))["Id"]
        api.start(daemon.cid)
        yield daemon
        api.remove_container(daemon.cid, force=True)
        api.close()
    finally:
        daemon.stop()
        assert not mounts_under(daemon.dir) and not daemon.dir.exists()


#: what a client sees when the engine ends the handshake over its certificate:
#: the engine's alert, or, when the client (TLS 1.3) has sent its request before
#: the alert came, the connection closed under it
DROPPED = (r"SSLError.*(?:alert bad certificate|alert certificate required"
           r"|EOF occurred in violation of protocol)|Connection reset by peer")
#: what the engine logs for a client certificate of another CA, and for none
OTHER_CA = "tls: failed to verify client certificate: x509: certificate signed by unknown authority"
NO_CERT = "tls: client didn't provide a certificate"
#: what a client that checks the engine against another CA sees
UNTRUSTED = "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate"
#: what the engine answers plain HTTP with
PLAIN = "400 Client Error for http://127.0.0.1:{port}/version: Bad Request " \
        '("Client sent an HTTP request to an HTTPS server.")'


def refusal(daemon: Dockerd, call, engine_says: str = "") -> str:
    """The error ``call()`` raises, as text; with ``engine_says``, the line that
    the engine logs for it too."""
    logged = len(daemon.log.read_bytes())
    with pytest.raises(Exception) as e:
        call()
    error = f"{type(e.value).__name__}: {e.value}"
    if engine_says:
        def said():
            return engine_says in daemon.log.read_bytes()[logged:].decode(errors="replace")

        try:
            wait_for(said, 5, f"dockerd to log {engine_says!r}")
        except TimeoutError as timeout:
            new = daemon.log.read_bytes()[logged:].decode(errors="replace")
            pytest.fail(f"{timeout}\nthe client's error: {error}\ndockerd logged since:\n{new}")
    return error


def check_refusals(daemon: Dockerd, call, set_tls, own: str) -> None:
    """``call()`` refused over plain TCP (``set_tls()``), with a client certificate
    of another CA, without one, and with its ``own`` certificate (a name in the
    site's directory) but checking the engine against another CA."""
    site, other = daemon.site, daemon.other
    set_tls()
    assert PLAIN.format(port=daemon.port) in (e := refusal(daemon, call)), e
    set_tls(ca=site / "ca.crt", cert=other / "node-t.crt", key=other / "node-t.key")
    assert re.search(DROPPED, e := refusal(daemon, call, OTHER_CA)), e
    set_tls(ca=site / "ca.crt")
    assert re.search(DROPPED, e := refusal(daemon, call, NO_CERT)), e
    set_tls(ca=other / "ca.crt", cert=site / f"{own}.crt", key=site / f"{own}.key")
    # the client ends it: the engine logs a handshake error (its text depends on
    # how the two TLS stacks part; "local error: tls: bad record MAC" here)
    assert UNTRUSTED in (e := refusal(daemon, call, "http: TLS handshake error from 127.0.0.1")), e


def test_the_agent_reaches_a_real_engine_with_its_own_certificate(dockerd, monkeypatch):
    url, site = dockerd.url, dockerd.site
    monkeypatch.setattr(containers, "TLS", {})
    containers.configure_tls(url, str(site / "ca.crt"), str(site / "node-t.crt"), str(site / "node-t.key"))
    client = containers._client(url)
    try:
        assert client.api.base_url == f"https://127.0.0.1:{dockerd.port}"
        assert client.version()["Version"] and client.info()["Driver"] == "vfs"
    finally:
        client.close()
    assert containers.has_gpu_runtime(url)
    assert containers.running_allocations(url) == ["alloc-1"]
    assert containers.allocation_containers(url) == {dockerd.cid: "alloc-1"}


def test_a_real_engine_refuses_the_agent_without_the_site_certificates(dockerd, monkeypatch):
    url = dockerd.url
    monkeypatch.setattr(containers, "TLS", {})

    def set_tls(ca=None, cert="", key=""):
        containers.TLS.clear()
        if ca:
            containers.configure_tls(url, str(ca), str(cert), str(key))

    check_refusals(dockerd, lambda: containers.has_gpu_runtime(url), set_tls, "node-t")


def test_the_agent_fences_an_allocation_on_a_real_engine(dockerd, monkeypatch, tmp_path):
    from gpu_allocator.agent.app import GPUAgent

    url, site = dockerd.url, dockerd.site
    monkeypatch.setattr(containers, "TLS", {})
    token = tmp_path / "token"
    token.write_text("t")
    agent = GPUAgent()
    agent.initialize([f"--token-file={token}", f"--docker-url={url}", f"--state-dir={tmp_path}",
                      f"--ca-file={site / 'ca.crt'}", f"--cert-file={site / 'node-t.crt'}",
                      f"--key-file={site / 'node-t.key'}"])
    assert agent.docker_tls and containers.running_allocations(url) == ["alloc-1"]
    try:
        assert containers.stop_allocation(url, "alloc-1", timeout=0) == ["jupyter-ann"]
        assert containers.running_allocations(url) == []
    finally:
        client = containers._client(url)
        client.api.start(dockerd.cid)  # as the fixture left it, for the tests after this one
        client.close()


def test_the_hub_reaches_a_real_engine_with_its_client_certificate(dockerd):
    url, site = dockerd.url, dockerd.site
    tls = {}

    def spawner() -> DockerGPUSpawner:
        DockerGPUSpawner._clients.pop(url, None)
        s = DockerGPUSpawner(docker_endpoints={"node-t": {"url": url, "ip": "127.0.0.1"}}, docker_tls=tls)
        s.allocation = {"id": "x", "host": "node-t", "devices": []}
        return s

    def set_tls(ca=None, cert=None, key=None):
        tls.clear()
        if ca:
            tls.update(ca_cert=str(ca), verify=str(ca), client_cert=(str(cert), str(key)) if cert else None)

    try:
        set_tls(ca=site / "ca.crt", cert=site / "hub-docker-client.crt", key=site / "hub-docker-client.key")
        client = spawner().client
        version = client.version()
        assert client.api_version == version["ApiVersion"]  # docker_api_version "auto": asked over TLS
        assert "nvidia" in client.info()["Runtimes"]
        check_refusals(dockerd, lambda: spawner().client.info(), set_tls, "hub-docker-client")
    finally:
        DockerGPUSpawner._clients.pop(url, None)
