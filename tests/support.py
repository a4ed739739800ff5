"""A real JupyterHub process (demo config, real configurable-http-proxy, the
allocator as a managed service) on free ports in a private data dir, plus the
HTTP helpers tests use to drive it like a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
#: Debian's Chromium, driven by Playwright (never a downloaded browser)
CHROMIUM = "/usr/bin/chromium"
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


class Hub:
    """jupyterhub -f hub_config/jupyterhub_config.py, isolated by its env.

    By default the checkout under test with this interpreter; ``repo`` and
    ``python`` start another checkout's demo config with another interpreter.
    An ``extra_env`` value of None removes that variable (e.g. PYTHONPATH)."""

    def __init__(self, workdir: Path, repo: Path = REPO, python: str = sys.executable,
                 **extra_env: str | None):
        self.workdir = workdir
        self.config = Path(repo) / "hub_config" / "jupyterhub_config.py"
        self.python = str(python)
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.allocator_port = free_port()
        self.env = {
            **os.environ,
            "GPUHUB_DATA_DIR": str(self.data_dir),
            "GPUHUB_PORT": str(self.port),
            "GPUHUB_HUB_PORT": str(free_port()),
            "GPUHUB_PROXY_API_PORT": str(free_port()),
            "GPUHUB_ALLOCATOR_PORT": str(self.allocator_port),
            "GPUHUB_VFOLDERS_PORT": str(free_port()),
            "GPUHUB_POLL_INTERVAL": "2",
            "GPUHUB_RUNTIME": "local",
            "PATH": f"{Path(self.python).parent}:{REPO / 'hub_config/proxy/node_modules/.bin'}:{os.environ['PATH']}",
            **extra_env,
        }
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
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
        # nothing of this hub may outlive it (servers, proxy, allocator)
        for pid in pids_with_env("GPUHUB_DATA_DIR", str(self.data_dir), "python"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def spawner_token(self) -> str:
        return (self.data_dir / "gpuhub-spawner-token").read_text().strip()

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
        return pids_with_env("GPUHUB_DATA_DIR", str(self.data_dir), "gpu_allocator", "gpuhub.supervise")

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

    def spawn(self, options: dict | None = None) -> requests.Response:
        return self.call("POST", f"/hub/api/users/{self.name}/server", json=options or {})

    def model(self) -> dict:
        r = self.call("GET", f"/hub/api/users/{self.name}")
        r.raise_for_status()
        return r.json()

    def server(self) -> dict | None:
        return self.model()["servers"].get("")

    def wait_ready(self, timeout: float = 90) -> dict:
        def ready():
            s = self.server()
            if s is None:
                raise RuntimeError(f"server of {self.name} is gone: {self.hub.log_tail()}")
            return s if s["ready"] else None

        return wait_for(ready, timeout, f"{self.name}'s server", interval=0.3)

    def wait_stopped(self, timeout: float = 60) -> None:
        wait_for(lambda: self.server() is None, timeout, f"{self.name}'s server to stop", 0.3)

    def stop(self) -> None:
        r = self.call("DELETE", f"/hub/api/users/{self.name}/server")
        assert r.status_code in (202, 204), r.text
        self.wait_stopped()

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
    page = browser.new_page(**page_options)
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "anything")
    page.click("#login_submit")
    page.wait_for_load_state()
    return browser, page
