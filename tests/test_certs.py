"""gpuhub-certs (gpuhub/certs.py): the site CA and the certificates it signs
(SANs, usages, key modes, where each file goes), and the TLS contexts built on
them, on a real tornado TLS server in this process: the shared client
(gpuhub.client) gets in with a certificate of the site CA, and is refused over
plain HTTP, with a certificate of another CA, without a certificate where one
is required, and when the server's certificate is of another CA. The same
refusals across network namespaces, against the allocator itself:
tests/test_multihost.py."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tornado import web

from gpuhub.certs import client_context, init_ca, issue, server_context
from gpuhub.client import ServiceClient, ServiceError
from tests.support import REPO, free_port


def certs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpuhub.certs", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def load(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site CA with a server (127.0.0.1) and a client certificate, and another CA
    with a client certificate of its own, made by the command line."""
    d = tmp_path_factory.mktemp("site")
    other = tmp_path_factory.mktemp("other")
    for args in (("init", d), ("issue", d, "allocator", "--role", "allocator", "--dns", "localhost",
                               "--ip", "127.0.0.1", "--ip", "10.0.0.2"),
                 ("issue", d, "gpu-07", "--role", "agent"),
                 ("init", other), ("issue", other, "gpu-07", "--ip", "127.0.0.1")):
        r = certs(*args)
        assert r.returncode == 0, r.stderr
    return d, other


def test_init_makes_a_ca_with_a_private_key_and_keeps_it(site):
    d, _ = site
    ca = load(d / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.issuer == ca.subject
    assert stat.S_IMODE((d / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    before = (d / "ca.crt").read_bytes()
    r = certs("init", d)  # a second init would invalidate every certificate
    assert r.returncode == 1 and "exists" in r.stderr
    assert (d / "ca.crt").read_bytes() == before


def test_issue_signs_with_the_site_ca_with_the_names_given(site):
    d, _ = site
    ca, crt = load(d / "ca.crt"), load(d / "allocator.crt")
    crt.verify_directly_issued_by(ca)
    assert crt.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "allocator"
    san = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("10.0.0.2")]
    usages = crt.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not crt.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("allocator", "gpu-07"):
        assert stat.S_IMODE((d / f"{name}.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((d / f"{name}.crt").stat().st_mode) == 0o644
    # no names given: the certificate's own name
    san = load(d / "gpu-07.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gpu-07"]


def test_issue_says_where_each_file_goes(tmp_path):
    assert certs("init", tmp_path).returncode == 0
    out = certs("issue", tmp_path, "allocator", "--role", "allocator", "--ip", "10.0.0.2").stdout
    assert f"{tmp_path}/allocator.key -> /etc/gpuhub/tls/allocator.key" in out
    assert "c.GPUAllocator.agent_tls_port" in out
    out = certs("issue", tmp_path, "gpu-07", "--role", "agent").stdout
    assert f"{tmp_path}/ca.crt -> /etc/gpuhub/tls/ca.crt" in out
    assert "--cert-file=/etc/gpuhub/tls/agent.crt" in out
    out = certs("issue", tmp_path, "gpu-07-docker", "--role", "docker", "--ip", "10.0.0.7").stdout
    assert f"{tmp_path}/gpu-07-docker.key -> /etc/docker/tls/server-key.pem" in out
    # the paths it prints are the ones the production config and the units use
    production = (REPO / "hub_config/jupyterhub_config.production.py").read_text()
    agent_env = (REPO / "hub_config/systemd/agent.env.example").read_text()
    for path in ("/etc/gpuhub/tls/allocator.crt", "/etc/gpuhub/tls/allocator.key", "/etc/gpuhub/tls/ca.crt",
                 "/etc/gpuhub/tls/client.crt"):
        assert path in production, path
    for path in ("/etc/gpuhub/tls/agent.crt", "/etc/gpuhub/tls/agent.key", "/etc/gpuhub/tls/ca.crt"):
        assert path in agent_env, path
    r = certs("issue", tmp_path / "nothing", "x")
    assert r.returncode == 1 and "gpuhub-certs init" in r.stderr


class Ping(web.RequestHandler):
    def get(self):
        self.write({"ok": True, "token": self.request.headers.get("Authorization", "")})


@pytest.fixture
async def tls_server(site):
    """A tornado app on 127.0.0.1 over TLS with the site's server certificate;
    ``start(require)`` listens with client certificates required or optional."""
    d, _ = site
    servers = []

    def start(require: bool = True) -> str:
        port = free_port()
        app = web.Application([(r"/api/ping", Ping)])
        ctx = server_context(str(d / "allocator.crt"), str(d / "allocator.key"), str(d / "ca.crt"), require)
        servers.append(app.listen(port, "127.0.0.1", ssl_options=ctx))
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop()


async def test_a_client_with_a_site_certificate_gets_in(site, tls_server):
    d, _ = site
    where = tls_server()
    client = ServiceClient(f"https://{where}/api/", "tok", 5, str(d / "ca.crt"), str(d / "gpu-07.crt"),
                           str(d / "gpu-07.key"))
    assert await client.call("GET", "ping") == {"ok": True, "token": "token tok"}
    # the name checked is the address in the URL: localhost is in the SANs too
    port = where.split(":")[1]
    client = ServiceClient(f"https://localhost:{port}/api/", "tok", 5, str(d / "ca.crt"),
                           str(d / "gpu-07.crt"), str(d / "gpu-07.key"))
    assert (await client.call("GET", "ping"))["ok"]


async def test_plain_http_to_the_tls_port_is_refused(site, tls_server):
    where = tls_server()
    with pytest.raises(ServiceError) as e:
        await ServiceClient(f"http://{where}/api/", "tok", 5).call("GET", "ping")
    assert e.value.status == 503


async def test_a_certificate_of_another_ca_is_refused(site, tls_server):
    d, other = site
    where = tls_server()
    client = ServiceClient(f"https://{where}/api/", "tok", 5, str(d / "ca.crt"), str(other / "gpu-07.crt"),
                           str(other / "gpu-07.key"))
    with pytest.raises(ServiceError) as e:
        await client.call("GET", "ping")
    assert e.value.status == 503


async def test_no_client_certificate_is_refused_when_required_and_not_otherwise(site, tls_server):
    d, _ = site
    with pytest.raises(ServiceError):
        await ServiceClient(f"https://{tls_server(True)}/api/", "tok", 5, str(d / "ca.crt")).call("GET", "ping")
    optional = tls_server(False)
    assert (await ServiceClient(f"https://{optional}/api/", "tok", 5, str(d / "ca.crt")).call("GET", "ping"))["ok"]


async def test_the_client_refuses_a_server_of_another_ca(site, tls_server):
    d, other = site
    where = tls_server(False)
    with pytest.raises(ServiceError) as e:  # its own CA is another one
        await ServiceClient(f"https://{where}/api/", "tok", 5, str(other / "ca.crt")).call("GET", "ping")
    assert "CERTIFICATE_VERIFY_FAILED" in e.value.message
    with pytest.raises(ServiceError):  # the system's CAs know nothing of the site CA
        await ServiceClient(f"https://{where}/api/", "tok", 5).call("GET", "ping")


async def test_a_raw_handshake_without_a_certificate_gets_no_answer(site, tls_server):
    """What the refusal looks like on the wire: the handshake (TLS 1.3: the first
    read after it) fails with an alert, before any HTTP is read."""
    d, _ = site
    host, port = tls_server().split(":")
    ctx = client_context(str(d / "ca.crt"))

    def ask():
        with socket.create_connection((host, int(port)), 5) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(b"GET /api/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(100):
                raise ConnectionError("closed without an answer")

    with pytest.raises((ssl.SSLError, ConnectionError)) as e:
        await asyncio.get_running_loop().run_in_executor(None, ask)
    print(f"refused: {e.value!r}")


def test_cert_names_are_the_common_name_and_the_alternative_names():
    from gpuhub.certs import cert_names

    peer = {"subject": ((("countryName", "XX"),), (("commonName", "gpu-07"),)),
            "subjectAltName": (("DNS", "gpu-07.example"), ("IP Address", "10.0.0.7"), ("email", "x@y"))}
    assert cert_names(peer) == {"gpu-07", "gpu-07.example", "10.0.0.7"}
    assert cert_names(None) == cert_names({}) == set()
