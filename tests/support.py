"""What the tests share beyond their fixtures (tests/conftest.py): the one place a
test module imports helpers from (no test module imports another).

- waits that fail loudly: ``wait_for`` (threads, processes) and ``until`` (the
  event loop), both raising with what they waited for;
- a real JupyterHub process (demo config, real configurable-http-proxy, the
  allocator as a managed service) on free ports in a private data dir (``Hub``),
  the session's shared hubs (``Hubs``), and the HTTP helpers tests use to drive a
  hub like a user would;
- the live pool on a database of the test's own (``box``, ``open_pool``, ``reopen``);
- a fake NVML driver (``FakeNVML``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import socket
import subprocess
import sys
import time
import types
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from gpu_allocator.core.model import Device, Host
from gpu_allocator.pool import LivePool
from gpu_allocator.store import Ledger

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: files the tests read (an old database, an empty inventory)
DATA = TESTS / "data"
#: Debian's Chromium, driven by Playwright (never a downloaded browser)
CHROMIUM = "/usr/bin/chromium"
#: the browser's locale in the tests (the pages show times in it: "14:20")
LOCALE = "en-GB"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CONFIG = REPO / "hub_config" / "jupyterhub_config.py"
API = "/services/gpu-allocator/api/v1"

#: run in a kernel (User.run_code): the session's environment, uid and interpreter, as JSON
ENV_CODE = (
    "import os, sys, json; print(json.dumps({k: os.environ.get(k) for k in ["
    "'CUDA_VISIBLE_DEVICES', 'GPUHUB_ALLOCATION', 'GPUHUB_GPUS', 'GPUHUB_HOST', "
    "'CUDA_MPS_ACTIVE_THREAD_PERCENTAGE', 'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT', 'USER']}"
    " | {'uid': os.getuid(), 'python': sys.executable}))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Calls ``predicate`` every ``interval`` seconds until it returns something
    true, and returns that; raises TimeoutError naming ``what`` (and the last
    answer) after ``timeout`` seconds. A refused connection counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (requests.ConnectionError, OSError) as e:
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


async def until(predicate, timeout: float = 30, what: str = "condition", interval: float = 0.1):
    """``wait_for`` on the event loop: ``predicate`` may be a coroutine function;
    the loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


def pids_with_env(key: str, value: str, cmd_part: str, not_part: str | None = None) -> list[int]:
    """Processes whose environment has key=value and whose command line contains
    cmd_part (and not not_part): how tests find the allocator or a user's server
    to kill."""
    found = []
    needle = f"{key}={value}".encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes()
            if cmd_part.encode() not in cmdline or (not_part and not_part.encode() in cmdline):
                continue
            if needle in (p / "environ").read_bytes().split(b"\0"):
                found.append(int(p.name))
        except OSError:
            continue
    return found


def config_lines(config: dict) -> list[str]:
    """``{"GPUAllocator": {"heartbeat_interval": 1.0}}`` as config-file lines."""
    return [f"c.{cls}.{trait} = {value!r}" for cls, traits in config.items()
            for trait, value in traits.items()]


class Hub:
    """The demo config (hub_config/jupyterhub_config.py) on free ports in a private
    data dir, configured through a config file of the test's own that sets
    ``config`` and then runs the demo config on it.

    ``config`` is {class: {trait: value}} over the defaults here, e.g.
    ``{"GPUAllocator": {"heartbeat_interval": 1.0}, "GPUHubDemo": {"runtime":
    "docker"}}`` (GPUHubDemo: the demo's own settings, see the demo config). By
    default the checkout under test with this interpreter; ``repo`` and
    ``python`` start another checkout's demo config with another interpreter.
    ``extra_env`` is the hub process's environment (not its config); a value of
    None removes that variable (e.g. PYTHONPATH)."""

    def __init__(self, workdir: Path, repo: Path = REPO, python: str = sys.executable,
                 config: dict | None = None, **extra_env: str | None):
        self.workdir = workdir
        self.demo_config = Path(repo) / "hub_config" / "jupyterhub_config.py"
        self.config = workdir / "gpuhub_test_config.py"
        self.python = str(python)
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.allocator_port = free_port()
        settings = {
            "GPUHubDemo": {"data_dir": str(self.data_dir), "runtime": "local",
                           "allocator_port": self.allocator_port, "vfolders_port": free_port()},
            "JupyterHub": {"port": self.port, "hub_port": free_port()},
            "ConfigurableHTTPProxy": {"api_url": f"http://127.0.0.1:{free_port()}"},
            "Spawner": {"poll_interval": 2},
        }
        for cls, traits in (config or {}).items():
            settings[cls] = {**settings.get(cls, {}), **traits}
        self.settings = settings
        self.env = {
            **os.environ,
            "PATH": f"{Path(self.python).parent}:{REPO / 'hub_config/proxy/node_modules/.bin'}:{os.environ['PATH']}",
            **extra_env,
        }
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        demo = str(self.demo_config)
        self.config.write_text("\n".join([
            "c = get_config()  # noqa: F821",
            *config_lines(self.settings),
            # the demo config on this same config object (load_subconfig would give it a fresh one)
            f"demo = {demo!r}",
            'exec(compile(open(demo).read(), demo, "exec"), {"get_config": get_config, "__file__": demo})',
            "",
        ]))

    def start(self, timeout: float = 60) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.log = open(self.workdir / "jupyterhub.log", "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=self.workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited: {self.log_tail()}")
            return (
                requests.get(self.url + "/hub/api/", timeout=2).status_code == 200
                and requests.get(self.url + API + "/health", timeout=2).status_code == 200
            )

        wait_for(up, timeout, "JupyterHub and the allocator to answer")
        wait_for(lambda: requests.get(self.url + "/services/vfolders/api/v1/health", timeout=2).status_code == 200,
                 timeout, "the vfolder service to answer")
        return self

    def log_tail(self, n: int = 60) -> str:
        path = self.workdir / "jupyterhub.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # nothing of this hub may outlive it (its services and agents: their config
        # files are in its data dir)
        for pid in pids_with_cmdline(f"--config={self.data_dir}/", "python"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # nor its sessions' mount directories (spawner/mounts.py), where a test left a
        # server running when the hub stopped (the servers outlive a hub, as in production)
        if os.getuid() == 0 and (self.data_dir / "sessions").exists():
            subprocess.run(["umount", "--recursive", "--lazy", str(self.data_dir / "sessions")],
                           capture_output=True)

    @property
    def spawner_token(self) -> str:
        return (self.data_dir / "gpuhub-spawner-token").read_text().strip()

    @property
    def agent_token_file(self) -> Path:
        """The file that holds the gpuhub-agent service's token (GPUAgent.token_file)."""
        return self.data_dir / "gpuhub-agent-token"

    @property
    def agent_token(self) -> str:
        """The token of the gpuhub-agent service (what GPU host agents use)."""
        return (self.data_dir / "gpuhub-agent-token").read_text().strip()

    def agent_client(self) -> Client:
        """The allocator as the GPU host agents' service identity."""
        return Client(self.url, self.agent_token)

    def allocator_api(self, ip: str = "127.0.0.1") -> str:
        """The allocator's API URL without the proxy, as agents on other hosts use it."""
        return f"http://{ip}:{self.allocator_port}{API}/"

    def allocator_pids(self) -> list[int]:
        """The allocator process itself (not the supervisor that restarts it)."""
        return pids_with_cmdline(f"--config={self.data_dir}/gpu_allocator_config.py", "gpu_allocator",
                                 not_part="gpuhub.supervise")

    def admin_allocator(self) -> Client:
        """The allocator as the spawner's service identity (admin scope)."""
        return Client(self.url, self.spawner_token)

    def login(self, name: str, password: str = "any") -> User:
        """Log in through the login form, then ask the hub for an API token."""
        s = requests.Session()
        s.get(self.url + "/hub/login").raise_for_status()
        r = s.post(
            self.url + "/hub/login",
            data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]},
            allow_redirects=False,
        )
        assert r.status_code == 302, (r.status_code, r.text[:300])
        r = s.post(
            f"{self.url}/hub/api/users/{name}/tokens",
            json={"note": "gpuhub tests"},
            headers={"X-XSRFToken": s.cookies["_xsrf"]},
        )
        r.raise_for_status()
        return User(self, name, r.json()["token"], s)


def pids_with_cmdline(*parts: str, not_part: str | None = None) -> list[int]:
    """Processes whose command line contains every one of ``parts`` (and not
    ``not_part``): how tests find a hub's services (named by their config files
    in the hub's data dir) to kill."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if all(part.encode() in cmdline for part in parts) and not (not_part and not_part.encode() in cmdline):
            found.append(int(p.name))
    return found


def hub_in(work: Path, options: dict) -> Hub:
    """A hub (not started) in ``work`` with ``options``, the keyword arguments of
    ``Hub``; an option may be a function of the work directory (a path in it)."""
    return Hub(work, **{k: v(work) if callable(v) else v for k, v in options.items()})


class Hubs:
    """The session's hubs, one per set of options (keyword arguments of ``Hub``):
    the modules that ask for the same options share one hub, started when the
    first of them needs it and stopped when the last of them is done.

    tests/conftest.py's ``hub`` fixture asks for a module's hub; how many modules
    will ask for each set of options comes from the collected tests (``expect``),
    so a hub lives no longer than its last module, and at most until the session ends."""

    def __init__(self, mktemp):
        #: makes a new, empty work directory from a base name (tmp_path_factory.mktemp)
        self._mktemp = mktemp
        self._hubs: dict[str, Hub] = {}
        self._modules: Counter = Counter()

    @staticmethod
    def key(options: dict) -> str:
        # (options may hold dicts: Hub's config=)
        return repr(sorted(options.items()))

    def expect(self, options_of_modules: Iterable[dict]) -> None:
        """One set of options for each module that will ask for a hub."""
        self._modules.update(self.key(o) for o in options_of_modules)

    def get(self, **options) -> Hub:
        """The running hub for these options (see ``hub_in``), started now if none runs."""
        key = self.key(options)
        if key not in self._hubs:
            h = hub_in(self._mktemp("hub"), options)
            try:
                h.start()
            except BaseException:
                h.stop()
                raise
            self._hubs[key] = h
        return self._hubs[key]

    def done(self, **options) -> None:
        """A module that asked for this hub is done; after the last one it stops."""
        key = self.key(options)
        self._modules[key] -= 1
        if self._modules[key] <= 0 and key in self._hubs:
            self._hubs.pop(key).stop()

    def stop_all(self) -> None:
        while self._hubs:
            self._hubs.popitem()[1].stop()


class Client:
    """Token-authenticated JSON calls through the proxy."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.headers = {"Authorization": f"token {token}"}

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers, timeout=30, **kw)

    def pool(self) -> dict:
        r = self.call("GET", API + "/pool")
        r.raise_for_status()
        return r.json()

    def allocations(self, user: str | None = None) -> list[dict]:
        r = self.call("GET", API + "/allocations", params={"user": user} if user else None)
        r.raise_for_status()
        return r.json()["allocations"]


class User(Client):
    def __init__(self, hub: Hub, name: str, token: str, session: requests.Session):
        super().__init__(hub.url, token)
        self.hub, self.name, self.token, self.session = hub, name, token, session

    def _server_url(self, name: str = "") -> str:
        """JupyterHub's REST path of the default server, or of the named one."""
        return f"/hub/api/users/{self.name}/servers/{name}" if name else f"/hub/api/users/{self.name}/server"

    def spawn(self, options: dict | None = None, name: str = "") -> requests.Response:
        return self.call("POST", self._server_url(name), json=options or {})

    def model(self) -> dict:
        r = self.call("GET", f"/hub/api/users/{self.name}")
        r.raise_for_status()
        return r.json()

    def server(self, name: str = "") -> dict | None:
        return self.model()["servers"].get(name)

    def wait_ready(self, timeout: float = 90, name: str = "") -> dict:
        def ready():
            s = self.server(name)
            if s is None:
                raise RuntimeError(f"server {name!r} of {self.name} is gone: {self.hub.log_tail()}")
            return s if s["ready"] else None

        return wait_for(ready, timeout, f"{self.name}'s server {name!r}", interval=0.3)

    def wait_stopped(self, timeout: float = 60, name: str = "") -> None:
        wait_for(lambda: self.server(name) is None, timeout, f"{self.name}'s server {name!r} to stop", 0.3)

    def stop(self, name: str = "") -> None:
        r = self.call("DELETE", self._server_url(name))
        assert r.status_code in (202, 204), r.text
        self.wait_stopped(name=name)

    def progress(self) -> list[dict]:
        """JupyterHub's spawn progress stream (what the spawn page shows)."""
        events = []
        with self.call("GET", f"/hub/api/users/{self.name}/server/progress", stream=True) as r:
            r.raise_for_status()
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def run_code(self, code: str, timeout: float = 60) -> str:
        """Execute code in a new kernel of the user's running server (through the
        proxy: REST to start the kernel, websocket for the messages); stdout."""
        return asyncio.run(self._run_code(code, timeout))

    async def _run_code(self, code: str, timeout: float) -> str:
        base = f"/user/{self.name}/api/kernels"
        r = self.call("POST", base, json={})
        r.raise_for_status()
        kernel = r.json()["id"]
        try:
            ws = await websocket_connect(
                HTTPRequest(
                    self.url.replace("http", "ws", 1) + f"{base}/{kernel}/channels",
                    headers=self.headers,
                )
            )
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": self.name, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            out = []
            deadline = time.monotonic() + timeout
            while True:
                raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
                if raw is None:
                    raise RuntimeError("kernel websocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    raise RuntimeError("\n".join(msg["content"]["traceback"]))
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    return "".join(out)
        finally:
            self.call("DELETE", f"{base}/{kernel}")


def browser_login(p, hub: Hub, name: str, **page_options):
    """Chromium (Playwright's sync API ``p``) logged in to ``hub`` as ``name`` through
    the login form; returns (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    # the pages show times in the browser's locale: one with a 24-hour clock
    page = browser.new_page(**{"locale": LOCALE, **page_options})
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "anything")
    page.click("#login_submit")
    page.wait_for_load_state()
    return browser, page


# --- the live pool on a database of the test's own ------------------------------------

#: allocation units per GPU in the pool tests (a twentieth of a GPU)
PER_GPU = 20


def box(name: str, n: int = 2, model: str = "H100", island: str = "") -> Host:
    devices = tuple(Device(name, i, f"GPU-{name}-{i}", model, 81920, island) for i in range(n))
    return Host(name, devices, 16.0, 65536)


def demo_hosts() -> list[Host]:
    return [box("node-a", 4, "A100", "nv0"), box("node-b", 2, "L4")]


async def open_pool(url: str, hosts=None, source="inventory", pools=None) -> LivePool:
    """A LivePool on the database ``url`` (``pools``: core.pools.parse_pools's
    host pools; None: default only)."""
    loop = asyncio.get_running_loop()
    ledger = await loop.run_in_executor(None, Ledger, url, PER_GPU)
    pool = LivePool(ledger, PER_GPU, pools=pools)
    await pool.load()
    if hosts is not None:
        await pool.sync_hosts(hosts, source)
    return pool


async def reopen(pool: LivePool) -> LivePool:
    pool.close()
    pool.ledger.close()
    return await open_pool(pool.ledger.url, pools=pool.pools)


async def settle(pool: LivePool, timeout: float = 10) -> None:
    """Until the pool's scheduling passes have run (``kick`` starts one soon;
    passes never overlap); raises when one still runs after ``timeout`` seconds."""
    await asyncio.sleep(0)  # a pass kicked by what the test just awaited starts
    await until(lambda: not pool._pass_running, timeout, "the pool's scheduling passes to end", 0.01)


# --- a fake NVML driver ------------------------------------------------------------------


class FakeNVML(types.ModuleType):
    """Just enough of pynvml: GPUs with an NVLink topology given as linked pairs."""

    NVML_P2P_CAPS_INDEX_NVLINK = 4
    NVML_P2P_STATUS_OK = 0
    NVML_P2P_STATUS_NOT_SUPPORTED = 5

    class NVMLError(Exception):
        pass

    def __init__(self, n: int, links: set[frozenset], broken: set[frozenset] = frozenset(), fail_init=False):
        super().__init__("pynvml")
        self.n, self.links, self.broken, self.fail_init = n, links, broken, fail_init
        self.initialised = 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return self.n

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3" if h[1] % 2 else "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h):
        u = f"GPU-00000000-0000-0000-0000-{h[1]:012d}"
        return u.encode() if h[1] % 2 else u

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=81559 * 1024**2, free=0, used=0)

    def nvmlDeviceGetP2PStatus(self, a, b, cap):
        assert cap == self.NVML_P2P_CAPS_INDEX_NVLINK
        pair = frozenset((a[1], b[1]))
        if pair in self.broken:
            raise self.NVMLError("Not Supported")
        return self.NVML_P2P_STATUS_OK if pair in self.links else self.NVML_P2P_STATUS_NOT_SUPPORTED


def pairs(*ps):
    return {frozenset(p) for p in ps}


# --- a real Slurm cluster (the demo's own: spawner/slurm_cluster.py) -----------------------


def slurm_unavailable() -> str | None:
    """Why the Slurm tests cannot run here (None: they can)."""
    import shutil

    if os.geteuid() != 0:
        return "a Slurm cluster of the tests' own needs root (munged, slurmd starting jobs as the users)"
    missing = [t for t in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurmctld slurmd slurm-client munge)"
    return None


class Slurm:
    """Slurm's commands against the cluster whose slurm.conf is ``conf`` (what a
    site's admin would type)."""

    def __init__(self, conf: Path):
        self.conf = Path(conf)
        self.env = {**os.environ, "SLURM_CONF": str(conf)}

    def run(self, *cmd: str, check: bool = True, stdin: str | None = None) -> str:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30, input=stdin)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr}")
        return r.stdout

    def jobs(self, name: str | None = None, states: str = "all") -> list:
        """squeue's jobs (gpuhub.slurm.QueueLine), all states by default (the
        cluster keeps ended jobs for MinJobAge=300 s)."""
        from gpuhub.slurm import SQUEUE_FORMAT, parse_squeue

        args = ["squeue", "-h", "-t", states, "-o", SQUEUE_FORMAT] + (["-n", name] if name else [])
        return parse_squeue(self.run(*args))

    def job(self, job_id: str):
        """scontrol show job -d (gpuhub.slurm.JobInfo)."""
        from gpuhub.slurm import parse_job

        return parse_job(self.run("scontrol", "show", "job", "-d", job_id))

    def sbatch(self, *args: str, script: str = "#!/bin/sh\nexec sleep 600\n") -> str:
        """Submit a job as root (outside gpuhub); its id."""
        return self.run("sbatch", "--parsable", "--mem=256M", "--output=/dev/null", *args,
                        stdin=script).strip().split(";")[0]

    def scancel(self, job_id: str) -> None:
        self.run("scancel", job_id)


def cli_login(hub, cli, name):
    """Log ``name`` in to the hub, then `gpuhub login` with their token (the ``cli`` fixture)."""
    user = hub.login(name)
    p = cli("login", "--url", hub.url, input=user.token.encode() + b"\n")
    assert f"as {name}" in p.stdout.decode()
    saved = cli.tmp / "config" / "gpuhub" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": hub.url + "/", "token": user.token}
    return user


# --- batch jobs (tests/test_jobs.py, and the Docker and Slurm job tests) ------------------


def jobs_of(cli) -> list[dict]:
    """The user's jobs, as `gpuhub jobs --json` lists them (the ``cli`` fixture)."""
    return json.loads(cli("jobs", "--json").stdout)["jobs"]


def job(cli, job_id) -> dict:
    return next(j for j in jobs_of(cli) if j["id"] == job_id)


def shares_of(hub, name) -> list[dict]:
    return [a for a in hub.admin_allocator().allocations(name)]


def job_servers(user) -> list[str]:
    return sorted(n for n in (user.model().get("servers") or {}) if n.startswith("job-"))


def submitted(p) -> str:
    """The job id `gpuhub run` printed ("Job ID: …")."""
    out = p.stderr.decode() + p.stdout.decode()
    line = next(line for line in out.splitlines() if line.startswith("Job "))
    return line.split()[1].rstrip(":")


def run_to_the_end(hub, cli, user, gpus: str, echo: str, timeout: float) -> tuple[dict, dict, float]:
    """`gpuhub run --gpus GPUS --hours 1 -- sh -c 'echo "ECHO"; exit 3'` until the
    job ends: (the job, the ``KEY=value`` fields it printed, seconds from submit
    to end). It must have failed with exit code 3, the same in its logs."""
    started = time.monotonic()
    p = cli("run", "--gpus", gpus, "--hours", "1", "--", "sh", "-c", f'echo "{echo}"; exit 3')
    job_id = submitted(p)
    wait_for(lambda: job(cli, job_id)["state"] not in ("queued", "running"), timeout, "the job to end")
    seconds = time.monotonic() - started
    j = job(cli, job_id)
    assert j["state"] == "failed" and j["exit_code"] == 3, j
    assert j["reason"] == "the command exited with 3" and j["host"], j
    r = user.call("GET", f"{API}/jobs/{job_id}/logs")
    assert r.status_code == 200 and r.headers["X-Job-Exit-Code"] == "3", r.text
    return j, dict(kv.split("=", 1) for kv in r.text.split()), seconds


def device_shares(pool: dict, node: str) -> dict[int, list]:
    """The shares on each device of ``node`` in the allocator's pool (devices with none left out)."""
    (host,) = [h for h in pool["hosts"] if h["name"] == node]
    return {d["index"]: d["shares"] for d in host["devices"] if d["shares"]}

