"""Traitlets are the only config layer of gpuhub's services and spawner.

- no service code reads a GPUHUB_* environment variable (the single-user
  server's environment, which the spawner *writes*, is the product's interface
  to a session, not config; the lab server extension, gpuhub/lab, and the
  ``gpuhub`` command line, gpuhub/cli, a client, are separate parts); JupyterHub's
  own service variables (JUPYTERHUB_*) are read in one place, gpuhub/service.py's
  trait defaults;
- every configurable trait says what it is (a help text);
- the demo config turns its settings into each service's own config file.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gpu_allocator", "gpuhub", "spawner", "vfolder_manager")
#: parts that are configured their own way: the lab server extension (by the
#: session's environment), and the ``gpuhub`` command line, a client on the user's
#: machine whose settings are its flags, GPUHUB_URL/GPUHUB_TOKEN and its login file
#: (gpuhub/cli/settings.py; no service imports it, tests/test_cli.py checks that),
#: and a batch job's runner, a process of the session that the spawner hands the
#: job through its environment (GPUHUB_JOB_*, as JupyterHub hands a server its own)
EXCLUDED = (REPO / "gpuhub" / "lab", REPO / "gpuhub" / "cli", REPO / "gpuhub" / "jobrun.py")
#: where JupyterHub's service environment (JUPYTERHUB_*) may be read
JUPYTERHUB_ENV_READER = REPO / "gpuhub" / "service.py"


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, variable) of every read of an environment variable named by a string
    constant: os.environ[...], os.environ.get(...), os.getenv(...),
    "X" in os.environ (also through ``environ`` imported from os)."""

    def is_environ(node) -> bool:
        return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
            isinstance(node, ast.Name) and node.id == "environ")

    def key(node) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    found = []
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            name = key(node.slice)
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in ("get", "pop", "setdefault") and is_environ(f.value):
                name = key(node.args[0])
            elif (isinstance(f, ast.Attribute) and f.attr == "getenv") or (
                    isinstance(f, ast.Name) and f.id == "getenv"):
                name = key(node.args[0])
        elif isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators):
            name = key(node.left)
        if name is not None:
            found.append((node.lineno, name))
    return found


def service_sources():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if not any(path.is_relative_to(x) for x in EXCLUDED):
                yield path


def test_the_detector_finds_every_form_of_environment_read():
    source = (
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ['GPUHUB_A']\nb = os.environ.get('GPUHUB_B', '')\nc = os.getenv('GPUHUB_C')\n"
        "d = 'GPUHUB_D' in os.environ\ne = environ.get('GPUHUB_E')\nf = getenv('GPUHUB_F')\n"
        "g = {'GPUHUB_G': 1}.get('GPUHUB_G')\n"  # not the environment
    )
    assert [name for _, name in environment_reads(source)] == [
        "GPUHUB_A", "GPUHUB_B", "GPUHUB_C", "GPUHUB_D", "GPUHUB_E", "GPUHUB_F"]


def test_service_code_reads_no_gpuhub_environment_variable():
    reads = [f"{path.relative_to(REPO)}:{line}: {name}"
             for path in service_sources()
             for line, name in environment_reads(path.read_text())
             if name.startswith("GPUHUB_")]
    assert reads == [], "settings are traits (config file, command line), not environment variables"


def test_jupyterhub_service_environment_is_read_in_one_place():
    reads = [f"{path.relative_to(REPO)}:{line}: {name}"
             for path in service_sources() if path != JUPYTERHUB_ENV_READER
             for line, name in environment_reads(path.read_text())
             if name.startswith("JUPYTERHUB_")]
    assert reads == [], "read JupyterHub's service environment through HubService's traits"
    assert {name for _, name in environment_reads(JUPYTERHUB_ENV_READER.read_text())} == {
        "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_API_URL",
        "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_BASE_URL"}


def configurable_classes():
    from gpu_allocator.agent.app import GPUAgent
    from gpu_allocator.app import GPUAllocator
    from gpuhub.service import HubService, ServiceApp
    from spawner import DockerGPUSpawner, GPUSpawner, LocalGPUSpawner
    from spawner.vfolders import VFolderMixin
    from vfolder_manager.service import VFolderService

    from gpuhub.lab.config import GPUHubLab

    return [ServiceApp, HubService, GPUAllocator, GPUAgent, VFolderService, GPUSpawner,
            LocalGPUSpawner, DockerGPUSpawner, VFolderMixin, GPUHubLab]


@pytest.mark.parametrize("cls", configurable_classes(), ids=lambda c: c.__name__)
def test_every_setting_has_a_help_text(cls):
    own = cls.class_own_traits(config=True)
    assert own, f"{cls.__name__} has no settings of its own"
    missing = [name for name, t in own.items() if len((t.help or "").split()) < 8]
    assert missing == [], f"{cls.__name__}: settings without a help text: {missing}"


def test_a_service_has_no_setting_from_the_environment(monkeypatch):
    from gpu_allocator.app import GPUAllocator

    monkeypatch.setenv("GPUHUB_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("GPUHUB_DATA_DIR", "/nowhere")
    app = GPUAllocator()
    assert app.heartbeat_interval == 5.0 and app.data_dir == os.path.abspath("data")
    app = GPUAllocator(heartbeat_interval=1.0, data_dir="/srv/gpuhub")
    assert app.heartbeat_interval == 1.0
    assert app.db_url == "sqlite:////srv/gpuhub/gpu_allocator.sqlite"


def test_the_demo_config_writes_each_service_its_own_config_file(tmp_path, monkeypatch):
    """What a config that runs the demo config sets (tests/support.py does this)
    reaches the services through their config files in the data dir; the demo's
    environment variables fill in only what it leaves unset."""
    from gpu_allocator.app import GPUAllocator
    from vfolder_manager.service import VFolderService

    monkeypatch.setenv("GPUHUB_RECONCILE_GRACE", "42")
    monkeypatch.setenv("GPUHUB_HEARTBEAT_INTERVAL", "9")  # set by the config below: ignored
    data = tmp_path / "data"
    demo = REPO / "hub_config" / "jupyterhub_config.py"
    (tmp_path / "jupyterhub_config.py").write_text("\n".join([
        "c = get_config()",
        f"c.GPUHubDemo.data_dir = {str(data)!r}",
        "c.GPUHubDemo.runtime = 'docker'",  # (local would look for the servers' environment)
        "c.GPUHubDemo.local_agent = '0'",
        "c.GPUHubDemo.allocator_port = 18051",
        "c.GPUAllocator.heartbeat_interval = 1.0",
        "c.JupyterHub.port = 18000",
        f"demo = {str(demo)!r}",
        'exec(compile(open(demo).read(), demo, "exec"), {"get_config": get_config, "__file__": demo})',
    ]))
    c = PyFileConfigLoader("jupyterhub_config.py", str(tmp_path)).load_config()
    assert c.JupyterHub.port == 18000
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["gpu-allocator"]["url"] == "http://127.0.0.1:18051"
    assert not any(k.startswith("GPUHUB_") for s in services.values() for k in s.get("environment", {}))
    # users reach both services through extra_user_scopes; JupyterHub's `user` role is
    # not redefined (JupyterHub would ignore extra_user_scopes, and warn so)
    assert "user" not in {r["name"] for r in c.JupyterHub.load_roles}
    assert c.JupyterHub.extra_user_scopes >= {"access:services!service=gpu-allocator",
                                              "access:services!service=vfolders"}

    flag = services["gpu-allocator"]["command"][-1]
    assert flag == f"--config={data / 'gpu_allocator_config.py'}"
    app = GPUAllocator()
    app.initialize([flag])
    assert (app.heartbeat_interval, app.reconcile_grace, app.data_dir) == (1.0, 42.0, str(data))
    assert app.vfolders_url.endswith("/services/vfolders/api/v1/")

    vf = VFolderService()
    vf.load_config_file(services["vfolders"]["command"][-1].split("=", 1)[1])
    assert vf.data_dir == str(data)
    assert vf.storage_hosts == {"local": {"path": str(data / "vfolders"), "default": True}}
    assert vf.allocator_url == "http://127.0.0.1:18051/services/gpu-allocator/api/v1/"
    # the Data page calls the allocator with the user's OAuth token
    assert "access:services!service=gpu-allocator" in services["vfolders"]["oauth_client_allowed_scopes"]


@pytest.mark.parametrize("trait", ["heartbeat_interval", "sample_interval"])
def test_an_interval_must_be_more_than_zero(trait):
    from traitlets import TraitError

    from gpu_allocator.app import GPUAllocator

    with pytest.raises(TraitError, match=f"{trait} must be more than 0 seconds, got 0.0"):
        GPUAllocator(**{trait: 0})
