"""Fixtures of the lab panel's tests: fake allocator and vfolder services for the
server extension (jp_fetch), and the prebuilt extension in a world-readable
prefix for servers started by a real hub."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import datetime, timezone

import pytest
from tornado import web

TOKEN = "server-token-of-alice"
ALLOC = {
    "id": "a-123", "state": "granted", "user": "alice", "server": "", "host": "node-a",
    "gpus": "0.5", "units": 50, "units_per_gpu": 100, "cpu": "2", "mem": "4096M",
    "max_hours": 8.0, "created": 1_700_000_000.0, "released": None,
    "devices": [{"uuid": "GPU-aaaa", "index": 0, "model": "A100-SXM4-80GB", "memory_mb": 81920,
                 "island": "nvswitch0", "units": 50, "fraction": "0.5"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fake:
    """What the fake services answer, and what they were asked."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict, bytes]] = []
        self.pool_usage = None
        self.pool_source = "inventory"
        #: the share's own use as its host's agent reports it (GET allocations/{id} "use")
        self.use = None
        self.down: set[str] = set()
        self.vfolders = [{
            "id": "vf1", "name": "data", "mount_name": "data", "owner": "alice", "access": "owner",
            "state": "ready", "usage": {"bytes": 1024, "files": 1}, "quota": {"bytes": 4096, "files": None},
            "over_quota": False, "shares": [],
        }]
        self.uploads: dict[str, bytearray] = {}
        #: an allocator with the queue (issue #10): quota, queue, extend, ends_at/notice
        self.queue_api = True
        self.extended = False
        self.notice = None
        self.ends_at = None  # ISO 8601, or None: created + max_hours
        self.extend_refusal = None  # a message: the allocator refuses (409)
        self.extend_asked: list[dict] = []
        self.queued = [
            {"id": "q-2", "state": "queued", "user": "alice", "server": "big", "gpus": "2", "units": 200,
             "gpu_model": ["A100-SXM4-80GB"], "position": 3, "eta": "2030-01-01T12:00:00+00:00",
             "eta_latest": "2030-01-01T14:00:00+00:00", "reason": "waiting for 2 × A100-SXM4-80GB to be free"},
            {"id": "q-3", "state": "queued", "user": "alice", "server": "", "gpus": "0.25", "units": 25,
             "gpu_model": [], "position": 5, "eta": None, "eta_latest": None,
             "reason": "over your GPU quota: 0.5 of 0.5 GPUs in use"},
        ]
        self.quota = {
            "user": "alice", "groups": ["students"],
            "limits": {"gpus": "1", "sessions": 2, "gpu_hours": 40.0, "priority": None, "share": None,
                       "max_wait_hours": None},
            "held": {"gpus": "0.5", "sessions": 1, "gpu_hours": 4.0},
            "left": {"gpus": "0.5", "sessions": 1, "gpu_hours": 36.0}, "window_hours": 168.0,
        }
        #: the user's batch jobs (the allocator's GET jobs: newest first)
        self.jobs: list[dict] = []
        self.jobs_api = True


def fake_job(job_id: str, command: list, state: str = "queued", **extra) -> dict:
    """A job as the allocator's jobs API answers it (gpu_allocator/api/jobs.py job_json)."""
    return {"id": job_id, "user": "alice", "server": f"job-{job_id}", "command": command,
            "options": {"gpus": "0.5"}, "workdir": "", "state": state,
            "submitted": "2030-01-01T10:00:00+00:00", "started": None, "ended": None,
            "exit_code": None, "reason": None, "host": None, "folder": f"jobs/{job_id}",
            "home_vfolder": None, "queue": None, "allocation": None, **extra}


def service_app(fake: Fake) -> web.Application:
    class H(web.RequestHandler):
        def prepare(self):
            fake.calls.append((self.request.method, self.request.path, dict(self.request.headers),
                               self.request.body))
            if self.request.headers.get("Authorization") != f"token {TOKEN}":
                raise web.HTTPError(403)
            svc = self.request.path.split("/")[2]
            if svc in fake.down:
                raise web.HTTPError(503)

        def send(self, data, status=200):
            self.set_status(status)
            self.finish(json.dumps(data))

    class Pool(H):
        def get(self):
            host = {"name": "node-a", "source": fake.pool_source, "usage": fake.pool_usage, "devices": []}
            self.send({"hosts": [host], "max_hours": 24.0})

    class Allocation(H):
        def get(self, aid):
            if aid != ALLOC["id"]:
                raise web.HTTPError(404)
            if not fake.queue_api:
                self.send(ALLOC)
                return
            ends = fake.ends_at or datetime.fromtimestamp(
                ALLOC["created"] + ALLOC["max_hours"] * 3600, timezone.utc).isoformat()
            self.send({**ALLOC, "ends_at": ends, "extended": fake.extended, "notice": fake.notice,
                       **({"use": fake.use} if fake.use is not None else {})})

    class Queue(H):
        def get(self):
            if not fake.queue_api:
                raise web.HTTPError(404)
            self.send({"queued": fake.queued, "waiting": 7, "runtime_ratio": 1.0})

    class UserQuota(H):
        def get(self):
            if not fake.queue_api:
                raise web.HTTPError(404)
            self.send(fake.quota)

    class Extend(H):
        def post(self, aid):
            if not fake.queue_api:
                raise web.HTTPError(404)
            fake.extend_asked.append(json.loads(self.request.body))
            if fake.extend_refusal:
                self.send({"error": fake.extend_refusal}, 409)
                return
            fake.extended = True
            self.send({**ALLOC, "max_hours": ALLOC["max_hours"] + fake.extend_asked[-1]["hours"],
                       "extended": True})

    class Jobs(H):
        def prepare(self):
            super().prepare()
            if not fake.jobs_api:
                raise web.HTTPError(404)

        def get(self):
            limit = int(self.get_argument("limit", "50"))
            self.send({"jobs": fake.jobs[:limit]})

        def post(self):
            body = json.loads(self.request.body)
            if not isinstance(body.get("command"), list):
                self.send({"error": "command must be a non-empty list of arguments"}, 400)
                return
            if body.get("gpus") == "9":
                self.send({"error": "9 GPUs is more than allowed (at most 1)"}, 400)
                return
            job = fake_job(f"{len(fake.jobs) + 1:012x}", body["command"], workdir=body.get("workdir", ""),
                           options={k: v for k, v in body.items() if k not in ("command", "workdir")})
            fake.jobs.insert(0, job)
            self.send(job, 201)

    class Job(Jobs):
        def find(self, jid):
            job = next((j for j in fake.jobs if j["id"] == jid), None)
            if job is None:
                raise web.HTTPError(404)
            return job

        def get(self, jid):
            self.send(self.find(jid))

        def delete(self, jid):
            job = self.find(jid)
            if job["state"] not in ("queued", "running"):
                self.send({"error": f"job {jid} already {job['state']}; nothing to cancel"}, 409)
                return
            job["state"] = "cancelled"
            self.send(job)

    class VFolders(H):
        def get(self):
            self.send({"vfolders": fake.vfolders})

        def post(self):
            body = json.loads(self.request.body)
            self.send({"id": "vf2", "name": body["name"], "auto_mount": body.get("auto_mount")}, 201)

    class Shares(H):
        def post(self, vid):
            self.send({"id": "s1", **json.loads(self.request.body), "state": "pending"}, 201)

    class Invitations(H):
        def get(self):
            self.send({"invitations": [{"id": "s9", "vfolder": "vf9", "permission": "ro"}]})

    class Answer(H):
        def post(self, sid, answer):
            self.send({"id": sid, "state": "accepted" if answer == "accept" else "rejected"})

    class Hosts(H):
        def get(self):
            self.send({"hosts": [{"name": "local", "stats": {
                "capacity_bytes": 100, "used_bytes": 40, "free_bytes": 60, "used_percent": 40.0, "read_bytes": 5,
                "write_bytes": 7, "io_bytes_read": 1.5, "io_bytes_write": 2.5}}]})

    class Quota(H):
        def get(self, name):
            self.send({"kind": "user", "name": name, "bytes": None, "files": None,
                       "usage": {"bytes": 1024, "files": 1}})

    class Uploads(H):
        def post(self, vid):
            uid = "0" * 31 + str(len(fake.uploads) + 1)
            fake.uploads[uid] = bytearray()
            self.set_header("Tus-Resumable", "1.0.0")
            self.set_header("Location", f"/services/vfolders/api/v1/vfolders/{vid}/uploads/{uid}")
            self.set_header("Upload-Offset", "0")
            self.set_status(201)

    class Upload(H):
        def head(self, vid, uid):
            self.set_header("Upload-Offset", str(len(fake.uploads[uid])))
            self.set_header("Tus-Resumable", "1.0.0")

        def patch(self, vid, uid):
            assert self.request.headers["Content-Type"] == "application/offset+octet-stream"
            assert int(self.request.headers["Upload-Offset"]) == len(fake.uploads[uid])
            fake.uploads[uid] += self.request.body
            self.set_header("Upload-Offset", str(len(fake.uploads[uid])))
            self.set_status(204)

    a, v = "/services/gpu-allocator/api/v1", "/services/vfolders/api/v1"
    return web.Application([
        (a + "/pool", Pool), (a + "/allocations/([^/]+)", Allocation),
        (a + "/allocations/([^/]+)/extend", Extend), (a + "/queue", Queue), (a + "/quota", UserQuota),
        (a + "/jobs", Jobs), (a + "/jobs/([^/]+)", Job),
        (v + "/vfolders", VFolders), (v + "/vfolders/([^/]+)/shares", Shares),
        (v + "/invitations", Invitations), (v + "/invitations/([^/]+)/(accept|reject)", Answer),
        (v + "/storage/hosts", Hosts), (v + "/quotas/user/([^/]+)", Quota),
        (v + "/vfolders/([^/]+)/uploads/", Uploads), (v + "/vfolders/([^/]+)/uploads/([0-9a-f]{32})", Upload),
    ])


@pytest.fixture
def fake():
    return Fake()


@pytest.fixture
def jp_server_config(fake, monkeypatch, tmp_path):
    port = free_port()
    # the fake services run on a loop of their own (the server's loop is pytest-jupyter's)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            holder["server"] = service_app(fake).listen(port, "127.0.0.1")
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(10)
    base = f"http://127.0.0.1:{port}/services"
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("GPUHUB_ALLOCATION", ALLOC["id"])
    monkeypatch.setenv("GPUHUB_GPUS", "0.5")
    monkeypatch.setenv("GPUHUB_HOST", "node-a")
    monkeypatch.setenv("HOME", str(tmp_path))
    # the session's facts come from the spawner's environment (above); the rest is config
    yield {"ServerApp": {"jpserver_extensions": {"gpuhub.lab": True}},
           "GPUHubLab": {"allocator_url": f"{base}/gpu-allocator/api/v1/",
                         "vfolders_url": f"{base}/vfolders/api/v1/", "nvml": False}}
    loop.call_soon_threadsafe(holder["server"].stop)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
