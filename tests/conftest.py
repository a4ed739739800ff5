"""The tests' shared fixtures; their helpers are in tests/support.py.

Tiers (markers, pyproject.toml): ``e2e`` tests start real processes — a hub, the
services, an agent, a Docker engine — and ``browser`` tests drive Chromium;
``make test-fast`` runs the others. A test that uses the ``hub``, ``own_hub`` or
``engine`` fixture is an e2e test whether or not it says so."""

import os
import secrets
import signal
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.support import REPO, Hubs, hub_in

#: jp_fetch and friends for the lab panel's server extension (tests/labextension);
#: plugins may only be named in the top-level conftest
pytest_plugins = ["pytest_jupyter.jupyter_server"]

# the proxy and the venv's scripts, also when pytest is run without `make`
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), str(REPO / "hub_config/proxy/node_modules/.bin"), os.environ["PATH"]]
)

#: fixtures that start processes: their tests are e2e tests
E2E_FIXTURES = {"hub", "own_hub", "engine"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if E2E_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)


def hub_options(node) -> dict:
    """The options (keyword arguments of support.Hub) of the closest ``hub`` marker:
    ``pytestmark = pytest.mark.hub(GPUHUB_RUNTIME="docker")``; none: the demo's hub."""
    marker = node.get_closest_marker("hub")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture(scope="session")
def hubs(request, tmp_path_factory):
    """The session's shared hubs (support.Hubs): one per set of options, for the
    modules whose tests use the ``hub`` fixture."""
    modules = {item.getparent(pytest.Module) for item in request.session.items if "hub" in item.fixturenames}
    shared = Hubs(tmp_path_factory.mktemp)
    shared.expect(hub_options(m) for m in modules)
    yield shared
    shared.stop_all()


@pytest.fixture(scope="module")
def hub(request, hubs):
    """A real JupyterHub with the demo's config (support.Hub) for the module's
    tests, with the options of the module's ``hub`` marker; modules with the same
    options share one hub (tests that need a pristine one use ``own_hub``). A
    module's module-scoped autouse fixtures are set up before its hub starts and
    torn down after the hub is done with the module, after it stops where the
    module is its last (so they prepare what the hub needs and clean up what it left)."""
    options = hub_options(request.node)
    try:
        yield hubs.get(**options)
    finally:
        hubs.done(**options)


@pytest.fixture
def own_hub(request, tmp_path):
    """A hub of the test's own in ``tmp_path`` (options: the ``hub`` marker),
    stopped after the test."""
    h = hub_in(tmp_path, hub_options(request.node))
    try:
        yield h.start()
    finally:
        h.stop()


#: set by `make test` (.ci/postgres starts Debian's PostgreSQL)
POSTGRES_URL = os.environ.get("GPUHUB_TEST_POSTGRES_URL", "")


def _postgres_database() -> tuple[str, object]:
    """A new, empty PostgreSQL database for one test; returns (url, drop())."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"gpuhub_t_{secrets.token_hex(4)}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on a SQLite file and on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gpuhub.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip("GPUHUB_TEST_POSTGRES_URL is not set (make test starts PostgreSQL and sets it)")
    url, drop = _postgres_database()
    yield url
    drop()


FAKE_MPS = """\
#!/bin/sh
# records each call: arguments, stdin, the pipe and log directories
input=""
if [ "$#" -eq 0 ]; then input=$(cat); fi
echo "args=$* stdin=$input pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY" >> "$FAKE_MPS_CALLS"
if [ "$1" = "-d" ]; then
  [ -n "$FAKE_MPS_FAIL" ] && { echo "cannot start" ; exit 3; }
  sleep 300 >/dev/null 2>&1 </dev/null &
  echo $! > "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid"
  : > "$CUDA_MPS_PIPE_DIRECTORY/control"
elif [ "$input" = "quit" ]; then
  kill "$(cat "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid")"
  rm -f "$CUDA_MPS_PIPE_DIRECTORY/control" "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid"
fi
"""


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-cuda-mps-control"
    script.write_text(FAKE_MPS)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "mps-calls"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_CALLS", str(calls))
    yield types.SimpleNamespace(bin=bin_dir, calls=lambda: calls.read_text().splitlines())
    for pidfile in tmp_path.rglob("nvidia-cuda-mps-control.pid"):
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass


@pytest.fixture
def box_agent(tmp_path, monkeypatch):
    """Makes a GPUAgent for the declared host box-1 (one L4) with a Docker engine at
    tcp://10.1.2.3:2376 and no MPS binary, not started; tests stub the engine
    calls (gpu_allocator.agent.containers) before they discover(). A factory, so
    the agent's log goes where the test captures it at the time."""
    from gpu_allocator.agent.app import GPUAgent

    inv = tmp_path / "hosts.yaml"
    inv.write_text("hosts:\n  - {name: box-1, cpus: 4, memory: 8G, gpus: [{model: L4, count: 1}]}\n")

    def make() -> GPUAgent:
        agent = GPUAgent(token="not-a-real-token")
        agent.initialize([
            f"--inventory={inv}", "--inventory-host=box-1", f"--state-dir={tmp_path / 'state'}",
            "--docker-url=tcp://10.1.2.3:2376", "--docker-ip=10.1.2.3",
            "--allocator-url=http://127.0.0.1:9/services/gpu-allocator/api/v1/",
        ])
        agent.mps.binary = "no-such-mps-control-binary"
        return agent

    return make


@pytest.fixture(scope="session")
def engine():
    """A Docker engine (`.ci/dockerd start` when none answers) with the
    gpuhub/singleuser image built from this checkout; a docker-py client."""
    import docker  # only the Docker tests need docker-py

    subprocess.run(["bash", str(REPO / ".ci/dockerd"), "start"], check=True)
    # the image's pins come from the venv running the tests (a worktree has no .venv)
    env = {**os.environ, "VENV": os.environ.get("VENV") or sys.prefix}
    subprocess.run(["bash", str(REPO / "spawner/image/build.sh")], check=True, env=env)
    return docker.from_env()


@pytest.fixture
def cli(hub, tmp_path):
    """Run ``python -m gpuhub.cli`` as a subprocess, with a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUHUB_", "JUPYTERHUB_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO))

    def run(*args, input=None, check=True, **kw):
        p = subprocess.run([sys.executable, "-m", "gpuhub.cli", *args], env={**env, **kw.pop("env", {})},
                           input=input, capture_output=True, timeout=120, cwd=tmp_path, **kw)
        assert "Traceback" not in p.stderr.decode(errors="replace"), p.stderr.decode()
        if check:
            assert p.returncode == 0, (args, p.returncode, p.stderr.decode())
        return p

    run.env, run.tmp = env, tmp_path
    return run


# --- the Slurm runtime's modules (tests/test_slurm_e2e.py, tests/test_slurm_mps.py) -----------


@pytest.fixture(scope="module")
def slurm_cluster_stopped():
    """Whatever happens, the module's cluster does not outlive it (the hub stops
    it at exit; this makes sure, after the hub is done)."""
    from spawner.slurm_cluster import SlurmCluster

    started = []
    yield started
    for data in started:
        SlurmCluster(data).stop()


@pytest.fixture(scope="module")
def slurm(hub, slurm_cluster_stopped):
    """The Slurm cluster of the module's hub (support.Slurm)."""
    from tests.support import Slurm

    slurm_cluster_stopped.append(hub.data_dir / "slurm")
    return Slurm(hub.data_dir / "slurm" / "slurm.conf")


@pytest.fixture
def slurm_nothing_left(hub, slurm):
    """Every test leaves no allocation and no running Slurm job behind (a module
    names it in ``pytest.mark.usefixtures``)."""
    from tests.support import API

    yield
    admin = hub.admin_allocator()
    leftovers = admin.allocations()
    for a in leftovers:
        admin.call("DELETE", f"{API}/allocations/{a['id']}")
    running = slurm.jobs(states="PENDING,RUNNING")
    for j in running:
        slurm.scancel(j.job_id)
    assert not leftovers, f"allocations leaked by the test: {leftovers}"
    assert not running, f"jobs left by the test: {running}"

