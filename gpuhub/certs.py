"""gpuhub-certs: a site CA and the certificates of the links between hosts.

    gpuhub-certs init DIR                      # DIR/ca.crt, DIR/ca.key (0600)
    gpuhub-certs issue DIR allocator --role allocator --dns hub.example --ip 10.0.0.2
    gpuhub-certs issue DIR gpu-07 --role agent --dns gpu-07.example
    gpuhub-certs issue DIR gpu-07-docker --role docker --dns gpu-07.example --ip 10.0.0.7
    gpuhub-certs issue DIR hub-docker-client --role docker-client

Each certificate is signed by the site CA in DIR, for both TLS server and client
authentication (one file serves a host's both ends of mutual TLS), with the
names and addresses given as subject alternative names; keys are ECDSA P-256,
written with mode 0600. ``issue`` prints where each file goes for its role: the
paths of hub_config/jupyterhub_config.production.py and the systemd units in
hub_config/systemd/ (docs: "Add a GPU host").

The TLS contexts that use these files are here too: :func:`server_context`
(the allocator's port for agents) and :func:`client_context` (gpuhub.client).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import ssl
import sys
from pathlib import Path

#: where each role's files go: (file in DIR, destination, on which host)
DESTINATIONS = {
    "allocator": {
        "host": "the hub host",
        "files": {"ca.crt": "/etc/gpuhub/tls/ca.crt", "{name}.crt": "/etc/gpuhub/tls/allocator.crt",
                  "{name}.key": "/etc/gpuhub/tls/allocator.key"},
        "then": [
            "in /etc/gpuhub/gpu_allocator_config.py (hub_config/jupyterhub_config.production.py):",
            "    c.GPUAllocator.agent_tls_port = 8443",
            '    c.GPUAllocator.agent_tls_cert = "/etc/gpuhub/tls/allocator.crt"',
            '    c.GPUAllocator.agent_tls_key = "/etc/gpuhub/tls/allocator.key"',
            '    c.GPUAllocator.agent_tls_ca = "/etc/gpuhub/tls/ca.crt"',
            "the key is read by the hub's account (root under gpuhub-hub.service)",
        ],
    },
    "agent": {
        "host": "the GPU host",
        "files": {"ca.crt": "/etc/gpuhub/tls/ca.crt", "{name}.crt": "/etc/gpuhub/tls/agent.crt",
                  "{name}.key": "/etc/gpuhub/tls/agent.key"},
        "then": [
            "in /etc/gpuhub/agent.env (hub_config/systemd/agent.env.example), GPUHUB_AGENT_ARGS gets",
            "    --allocator-url=https://HUB:8443/services/gpu-allocator/api/v1/",
            "    --ca-file=/etc/gpuhub/tls/ca.crt --cert-file=/etc/gpuhub/tls/agent.crt"
            " --key-file=/etc/gpuhub/tls/agent.key",
        ],
    },
    "docker": {
        "host": "the GPU host (its Docker engine)",
        "files": {"ca.crt": "/etc/docker/tls/ca.pem", "{name}.crt": "/etc/docker/tls/server-cert.pem",
                  "{name}.key": "/etc/docker/tls/server-key.pem"},
        "then": [
            "in /etc/docker/daemon.json (the engine asks every client for a certificate of the site CA):",
            '    {"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": true,',
            '     "tlscacert": "/etc/docker/tls/ca.pem", "tlscert": "/etc/docker/tls/server-cert.pem",',
            '     "tlskey": "/etc/docker/tls/server-key.pem"}',
        ],
    },
    "docker-client": {
        "host": "the hub host (DockerGPUSpawner's client of the engines)",
        "files": {"ca.crt": "/etc/gpuhub/tls/ca.crt", "{name}.crt": "/etc/gpuhub/tls/client.crt",
                  "{name}.key": "/etc/gpuhub/tls/client.key"},
        "then": [
            "the production config's c.DockerGPUSpawner.docker_endpoints[HOST]['tls'] names them",
        ],
    },
}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` from the first byte (a key is never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def init_ca(directory: str | os.PathLike, name: str = "gpuhub site CA", days: int = 3650,
            force: bool = False) -> tuple[Path, Path]:
    """Make the site CA: DIR/ca.crt and DIR/ca.key (0600). An existing CA is kept
    (every certificate it signed would stop being trusted) unless ``force``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    out = Path(directory)
    crt, key_path = out / "ca.crt", out / "ca.key"
    if (crt.exists() or key_path.exists()) and not force:
        raise FileExistsError(f"{crt} exists: a new CA would invalidate every certificate it signed "
                              "(--force to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpuhub")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _pem_key(key), 0o600)
    _write(crt, _pem_cert(cert), 0o644)
    return crt, key_path


def issue(directory: str | os.PathLike, name: str, dns: list[str] = (), ips: list[str] = (),
          days: int = 825) -> tuple[Path, Path]:
    """A certificate NAME signed by the CA in DIR: DIR/NAME.crt and DIR/NAME.key
    (0600), for TLS servers and clients, with ``dns`` and ``ips`` as its subject
    alternative names (``name`` itself when both are empty)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = Path(directory)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a file name")
    if name == "ca":
        raise ValueError("'ca' is the CA's own name")
    try:
        ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"no CA in {out}: run gpuhub-certs init {out} first") from None
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    for a in ips:
        names.append(x509.IPAddress(ipaddress.ip_address(a)))  # ValueError: not an address
    if not names:
        names = [x509.DNSName(name)]
    key = _key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gpuhub")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt, key_path = out / f"{name}.crt", out / f"{name}.key"
    _write(key_path, _pem_key(key), 0o600)
    _write(crt, _pem_cert(cert), 0o644)
    return crt, key_path


def where(directory: str | os.PathLike, name: str, role: str | None) -> list[str]:
    """Lines that say where NAME's files (and the CA's certificate) go for ``role``."""
    out = Path(directory)
    if role is None:
        return [f"{out / (name + '.crt')} and {out / (name + '.key')} (mode 600), with {out / 'ca.crt'}:",
                "  --role allocator|agent|docker|docker-client says where they go"]
    spec = DESTINATIONS[role]
    lines = [f"on {spec['host']} (keys mode 600, owned by the account that reads them):"]
    for src, dst in spec["files"].items():
        lines.append(f"  {out / src.format(name=name)} -> {dst}")
    lines += [f"  {line}" for line in spec["then"]]
    lines.append(f"never copy {out / 'ca.key'} off this machine: it signs every certificate")
    return lines


# --- the TLS contexts that use them -------------------------------------------------

def server_context(cert_file: str, key_file: str, ca_file: str = "",
                   require_client_cert: bool = True) -> ssl.SSLContext:
    """A TLS server's context: its certificate and key; clients' certificates
    checked against ``ca_file`` (required when ``require_client_cert``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("client certificates are required but no CA file checks them")
    return ctx


def client_context(ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A TLS client's context: the server is verified (name and chain) against
    ``ca_file``, else the system's trusted CAs; ``cert_file``/``key_file`` are the
    client's own certificate for mutual TLS."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file or None)
    return ctx


def docker_api(url: str, tls: dict | None, version: str = "auto", **kw):
    """A docker.APIClient for the engine at ``url``, over TLS with ``tls``
    (docker.tls.TLSConfig arguments: client_cert, ca_cert, verify) when given.
    With TLS, the CA checked is the one given: requests would let
    $REQUESTS_CA_BUNDLE override it (psf/requests#3829), so the client ignores
    the environment — and asks the engine for its API version only then."""
    import docker

    if not tls:
        return docker.APIClient(base_url=url, version=version, **kw)
    auto = version in (None, "auto")
    api = docker.APIClient(base_url=url, tls=docker.tls.TLSConfig(**tls),
                           version=docker.constants.MINIMUM_DOCKER_API_VERSION if auto else version, **kw)
    api.trust_env = False
    if auto:
        api._version = api.version(api_version=False)["ApiVersion"]
    return api


# --- the command line ---------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpuhub-certs",
        description="A site CA and the certificates of gpuhub's links between hosts "
                    "(the allocator's port for agents, each agent, each Docker engine).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="make the site CA: DIR/ca.crt and DIR/ca.key (0600)")
    p.add_argument("dir")
    p.add_argument("--name", default="gpuhub site CA", help="the CA's common name")
    p.add_argument("--days", type=int, default=3650, help="validity (default 3650 days)")
    p.add_argument("--force", action="store_true", help="replace an existing CA")
    p = sub.add_parser("issue", help="a certificate signed by the site CA: DIR/NAME.crt, DIR/NAME.key (0600)")
    p.add_argument("dir")
    p.add_argument("name", help="the file name and common name, e.g. allocator or gpu-07")
    p.add_argument("--dns", action="append", default=[], help="a DNS name it answers to (repeat)")
    p.add_argument("--ip", action="append", default=[], help="an IP address it answers at (repeat)")
    p.add_argument("--role", choices=sorted(DESTINATIONS), help="say where the files go for this role")
    p.add_argument("--days", type=int, default=825, help="validity (default 825 days)")
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            crt, key = init_ca(args.dir, args.name, args.days, args.force)
            print(f"site CA: {crt} (every host gets a copy) and {key} (mode 600, stays here)")
        else:
            crt, key = issue(args.dir, args.name, args.dns, args.ip, args.days)
            print(f"issued {crt} and {key}")
            print("\n".join(where(args.dir, args.name, args.role)))
    except (OSError, ValueError) as e:
        print(f"gpuhub-certs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def cert_names(peercert: dict | None) -> set[str]:
    """The names a peer's certificate (``ssl``'s ``getpeercert()``) is for: its
    common name and its DNS and IP subject alternative names."""
    if not peercert:
        return set()
    names = {value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in peercert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}
    return names

