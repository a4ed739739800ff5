"""The systemd units of hub_config/systemd: they parse (``systemd-analyze verify``,
where systemd is installed), they have what a service of the product needs
(restarts, state directory, secrets, ordering, hardening that keeps mounts and
devices), their example environment files give what the units and the production
config read, and the agent started exactly as its unit starts it — ExecStart=,
EnvironmentFile=, Environment=, LoadCredential= and the specifiers, with the
install's paths moved into a temporary directory — registers with a real
allocator."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpu_allocator.agent.app import GPUAgent
from tests.support import API, DATA, REPO, wait_for

UNITS = REPO / "hub_config" / "systemd"
PREFIX = "/opt/gpuhub/bin"  # where the units expect the install's scripts
VENV_BIN = Path(sys.executable).parent  # this install's
#: systemd's PATH for system services when a unit sets none
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: options that give a service its own mount namespace or a device policy: the
#: vfolder mounts, new accounts in /etc and the MPS daemon's /dev/nvidia* need neither
NAMESPACING = {"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
               "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem",
               "BindPaths", "BindReadOnlyPaths", "ProtectKernelTunables", "ProtectKernelModules",
               "ProtectKernelLogs", "ProtectControlGroups", "ProtectHostname", "ProtectClock",
               "ProtectProc", "DeviceAllow", "DevicePolicy", "MountFlags", "RootDirectory"}

#: the agent's hub: no declared hosts (the agent registers its own), heartbeats every second
pytestmark = pytest.mark.hub(config={"GPUAllocator": {"inventory_file": str(DATA / "empty-inventory.yaml"),
                                                  "heartbeat_interval": 1.0}})


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values in order]}}: systemd's syntax of
    comments (# ;), sections and backslash-continued lines."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None and "=" in line, f"{path.name}: not a setting: {raw!r}"
        key, value = (s.strip() for s in line.split("=", 1))
        section.setdefault(key, []).append(value)
    return sections


def parse_env_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile= syntax: KEY=VALUE, comments, one pair of quotes."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def exec_start(command: str, env: dict[str, str], specifiers: dict[str, str]) -> list[str]:
    """ExecStart= as systemd runs it: words split with its quoting, ``%x``
    specifiers replaced, ``${VAR}`` replaced within a word, a word that is only
    ``$VAR`` split on whitespace into words (none when empty or unset)."""
    argv = []
    for word in shlex.split(command):
        word = re.sub(r"%(.)", lambda m: "%" if m[1] == "%" else specifiers[m[1]], word)
        if m := re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word):
            argv += env.get(m[1], "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m[1], ""), word))
    return argv


def units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def test_the_units_are_there():
    assert [p.name for p in units()] == ["gpuhub-agent.service", "gpuhub-hub.service"]


@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_systemd_analyze_verifies_the_unit(unit, tmp_path):
    """systemd's own parser: no warning at all (an unknown key or a bad value is
    only a warning, with exit status 0). systemd-analyze checks that ExecStart='s
    program exists, so this install's script stands in for /opt/gpuhub/bin's."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd); the units were "
                    "checked by test_the_units_have_what_a_service_needs only")
    program = parse_unit(unit)["Service"]["ExecStart"][0].split()[0]
    assert program.startswith(PREFIX + "/")
    local = VENV_BIN / Path(program).name
    assert local.exists(), f"{local}: the install has no {Path(program).name}"
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(program, str(local)))
    r = subprocess.run([analyze, "verify", "--man=no", "--generators=no", str(copy)],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
    # and it does complain where a unit is wrong
    copy.write_text(copy.read_text().replace("Restart=on-failure", "Restart=sometimes\nRestartt=1"))
    r = subprocess.run([analyze, "verify", "--man=no", "--generators=no", str(copy)],
                       capture_output=True, text=True, timeout=60)
    assert "restart specifier" in r.stderr and "Unknown key 'Restartt'" in r.stderr, r.stderr


@pytest.mark.parametrize("unit", units(), ids=lambda p: p.name)
def test_the_units_have_what_a_service_needs(unit):
    u = parse_unit(unit)
    s, unit_s = u["Service"], u["Unit"]
    one = {k: v[-1] for k, v in s.items()}
    assert one["Restart"] == "on-failure"
    assert one["RestartSec"] == "5s"
    assert unit_s["StartLimitIntervalSec"] == ["300"] and unit_s["StartLimitBurst"] == ["5"]
    assert "network-online.target" in unit_s["Wants"][0].split()
    assert {"network-online.target", "docker.service"} <= set(unit_s["After"][0].split())
    assert u["Install"]["WantedBy"] == ["multi-user.target"]
    assert one["Type"] == "exec"
    assert one["SyslogIdentifier"] == unit.stem  # journalctl -u / -t NAME
    assert "StandardOutput" not in s and "StandardError" not in s  # the journal
    assert one["ExecStart"].startswith(PREFIX + "/")
    # hardening that keeps mounts, /etc and devices shared with the host
    assert {"RestrictRealtime", "LockPersonality", "SystemCallArchitectures"} <= set(s)
    assert not NAMESPACING & set(s), NAMESPACING & set(s)
    assert "User" not in s  # root: accounts, mounts, MPS, Docker
    if unit.name == "gpuhub-agent.service":
        assert one["StateDirectory"] == "gpuhub-agent"
        assert one["StateDirectoryMode"] == "0755"  # the MPS pipes, reached by sessions
        assert "--state-dir=%S/gpuhub-agent" in one["ExecStart"].split()
        assert "Default: /var/lib/gpuhub-agent as root" in GPUAgent.state_dir.help  # the same
        assert s["EnvironmentFile"] == ["-/etc/gpuhub/agent.env"]
        assert s["LoadCredential"] == ["agent-token:/etc/gpuhub/agent-token"]
        assert "--token-file=%d/agent-token" in one["ExecStart"].split()
        assert one["KillMode"] == "process"  # the MPS daemon outlives a restart
        assert one["NoNewPrivileges"] == one["RestrictSUIDSGID"] == "yes"
    else:
        assert one["StateDirectory"] == "gpuhub" and one["StateDirectoryMode"] == "0700"
        assert one["WorkingDirectory"] == "%S/gpuhub"
        assert s["EnvironmentFile"] == ["/etc/gpuhub/hub.env"]  # the secrets: required
        assert one["ExecStart"].split()[1:] == ["--config=/etc/gpuhub/jupyterhub_config.py"]
        assert one["KillMode"] == "mixed"  # SIGTERM to the hub alone: it stops servers first
        # local sessions are the hub's children: sudo, setgid vfolder directories
        assert "NoNewPrivileges" not in s and "RestrictSUIDSGID" not in s
        # the production config's cookie secret is in the state directory
        production = (REPO / "hub_config" / "jupyterhub_config.production.py").read_text()
        assert 'cookie_secret_file = "/var/lib/gpuhub/' in production


def test_the_example_environment_files_give_what_is_read():
    # the hub's: every variable the production config reads, and nothing else
    production = (REPO / "hub_config" / "jupyterhub_config.production.py").read_text()
    read = set(re.findall(r"os\.environ(?:\.get\(|\[)\"(\w+)\"", production))
    hub_env = (UNITS / "hub.env.example").read_text()
    given = set(parse_env_file(UNITS / "hub.env.example"))
    commented = set(re.findall(r"^#(\w+)=", hub_env, re.M))
    assert given | commented == read, (given, commented, read)
    assert commented == {"GPUHUB_PROMETHEUS_TOKEN"}  # the only optional one
    # the agent's: the variable its ExecStart= expands, with options the agent has
    agent = parse_unit(UNITS / "gpuhub-agent.service")["Service"]["ExecStart"][0]
    env = parse_env_file(UNITS / "agent.env.example")
    assert set(env) == set(re.findall(r"\$\{?(\w+)", agent)) == {"GPUHUB_AGENT_ARGS"}
    options = [w.split("=", 1)[0].lstrip("-") for w in env["GPUHUB_AGENT_ARGS"].split()]
    assert options == ["allocator-url", "ca-file", "cert-file", "key-file", "host-name", "docker-url"]
    assert set(options) <= set(GPUAgent.aliases)


def test_the_agent_started_as_its_unit_starts_it_registers(hub, tmp_path):
    """/etc/gpuhub → tmp/etc, /opt/gpuhub/bin → this install's scripts, %S →
    tmp/state, %d → tmp/credentials (filled from LoadCredential=); the process
    gets the environment systemd gives a system service: PATH, the unit's
    Environment= and EnvironmentFile=, $CREDENTIALS_DIRECTORY, $STATE_DIRECTORY
    (and PYTHONPATH where the tests run on a checkout beside the install), and /
    as its working directory."""
    service = parse_unit(UNITS / "gpuhub-agent.service")["Service"]
    etc, state, creds = tmp_path / "etc", tmp_path / "state", tmp_path / "credentials"

    def moved(path: str) -> Path:
        assert path.startswith("/etc/gpuhub/"), path
        return etc / path.removeprefix("/etc/")

    (tmp_path / "agents.yaml").write_text(textwrap.dedent("""
        hosts:
          - name: systemd-box
            cpus: 8
            memory: 32G
            gpus: [{model: L4, memory: 24G, count: 2}]
    """))
    moved("/etc/gpuhub/agent-token").parent.mkdir(parents=True)
    shutil.copy(hub.agent_token_file, moved("/etc/gpuhub/agent-token"))
    # the site's /etc/gpuhub/agent.env, in the example's form
    (env_file,) = service["EnvironmentFile"]
    moved(env_file.lstrip("-")).write_text(
        "# as hub_config/systemd/agent.env.example\n"
        f'GPUHUB_AGENT_ARGS="--allocator-url={hub.allocator_api()} --host-name=systemd-box '
        f'--inventory={tmp_path / "agents.yaml"} --inventory-host=systemd-box"\n')
    # LoadCredential=ID:PATH: systemd copies PATH to $CREDENTIALS_DIRECTORY/ID, mode 400
    creds.mkdir(mode=0o700)
    for spec in service["LoadCredential"]:
        name, source = spec.split(":", 1)
        shutil.copy(moved(source), creds / name)
        (creds / name).chmod(0o400)
    for name in service["StateDirectory"][-1].split():
        (state / name).mkdir(parents=True, mode=int(service["StateDirectoryMode"][-1], 8))

    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "CREDENTIALS_DIRECTORY": str(creds),
           "STATE_DIRECTORY": str(state / service["StateDirectory"][-1])}
    for assignments in service.get("Environment", []):
        for pair in shlex.split(assignments):
            key, value = pair.split("=", 1)
            env[key] = value
    for path in service["EnvironmentFile"]:
        optional, path = path.startswith("-"), path.lstrip("-")
        if moved(path).exists() or not optional:
            env.update(parse_env_file(moved(path)))
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    argv = exec_start(service["ExecStart"][-1], env, {"d": str(creds), "S": str(state)})
    assert argv[0] == f"{PREFIX}/gpuhub-agent"
    argv[0] = str(VENV_BIN / "gpuhub-agent")
    assert argv[1:3] == [f"--token-file={creds}/agent-token", f"--state-dir={state}/gpuhub-agent"]

    admin = hub.admin_allocator()

    def host() -> dict:
        return next((h for h in admin.pool()["hosts"] if h["name"] == "systemd-box"), {})

    log = tmp_path / "journal.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen(argv, env=env, cwd="/", stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: host().get("state") == "up" or agent.poll() is not None, 20,
                 "the agent to register")
        assert agent.poll() is None, log.read_text()
        h = host()
        assert h["source"] == "agent" and len(h["devices"]) == 2, h
        first = h["last_heartbeat"]
        wait_for(lambda: host()["last_heartbeat"] > first, 5, "a heartbeat")
        assert (state / "gpuhub-agent").is_dir()
        assert "registered host" in log.read_text()
        # systemctl stop: SIGTERM, and a clean exit (not a failure to restart)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        admin.call("POST", f"{API}/hosts/systemd-box/drain")
