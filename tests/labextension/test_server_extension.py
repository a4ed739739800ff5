"""The panel's server extension (gpuhub.lab) in a real jupyter_server
(pytest-jupyter's jp_fetch), against fake allocator and vfolder services.

The tests are plain functions that run jp_fetch on pytest-jupyter's loop (the one
its server runs on): the project's pytest-asyncio auto mode would otherwise run
async tests on a loop of its own, where the server never answers."""

from __future__ import annotations

import base64
import json

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import ALLOC, TOKEN


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    def run(*parts, **kw):
        return jp_asyncio_loop.run_until_complete(jp_fetch(*parts, **kw))

    return run


def get_status(fetch) -> dict:
    r = fetch("gpuhub", "status")
    assert r.code == 200
    return json.loads(r.body)


def test_status_shows_share_time_left_live_vfolders_storage(fetch, fake):
    s = get_status(fetch)
    share = s["share"]
    assert share["allocation"]["id"] == "a-123" and share["allocation"]["host"] == "node-a"
    assert share["ends_at"] == ALLOC["created"] + 8 * 3600
    assert share["time_left_s"] == 0  # created long ago: ended
    assert share["env"]["GPUHUB_GPUS"] == "0.5"
    assert share["extend"] == {"allowed": True, "reason": "", "hours": 1.0}
    assert share["notice"] is None
    # a declared (mock) GPU: simulated, labelled so, against the share's half of 80 GB
    live = s["live"]
    assert live["source"] == "simulated" and "simulated" in live["label"]
    assert live["memory_limit_mb"] == 40960
    assert 0 <= live["utilization_gpu"] <= 100 and 0 <= live["memory_used_mb"] <= 40960
    assert len(live["history"]) == 1
    # quotas: used / limit of concurrent GPUs, sessions, GPU-hours this week (GET quota)
    q = s["quotas"]
    assert q["available"] is True and q["groups"] == ["students"]
    assert [(i["key"], i["name"], i["used"], i["limit"]) for i in q["items"]] == [
        ("gpus", "GPUs at once", "0.5", "1"), ("sessions", "Sessions", 1, 2),
        ("gpu_hours", "GPU-hours (last 7 days)", 4.0, 40.0)]
    assert [i["fraction"] for i in q["items"]] == [0.5, 0.5, 0.1]
    # the queue: the user's other pending requests, with position and ETA (GET queue)
    queue = s["queue"]
    assert queue["available"] is True and queue["waiting"] == 7
    assert [(i["id"], i["position"], i["gpus"]) for i in queue["items"]] == [("q-2", 3, "2"), ("q-3", 5, "0.25")]
    assert queue["items"][0]["eta"] == 1893499200.0 and queue["items"][0]["eta_latest"] == 1893506400.0
    assert queue["items"][1]["eta"] is None and "quota" in queue["items"][1]["reason"]
    (vf,) = s["vfolders"]["items"]
    assert vf["name"] == "data" and vf["here"] == {"path": "~/vfolders/data", "mounted": False, "mode": None,
                                                "live": True}
    assert s["vfolders"]["invitations"][0]["id"] == "s9"
    assert s["vfolders"]["quota"]["usage"]["bytes"] == 1024
    (host,) = s["storage"]["hosts"]
    assert host["used_bytes"] == 40 and host["io_bytes_write"] == 2.5 and len(host["history"]) == 1
    assert host["used_percent"] == 40.0  # the vfolder service's one definition, as the admin page shows it
    # every service call carried the server's own token
    assert fake.calls and all(h["Authorization"] == f"token {TOKEN}" for _, _, h, _ in fake.calls)


def test_agent_samples_are_used_when_the_host_has_them(fetch, fake):
    fake.pool_source = "agent"
    fake.pool_usage = {"at": 1, "devices": [{"uuid": "GPU-aaaa", "utilization_gpu": 37, "memory_used_mb": 1000},
                                            {"uuid": "GPU-other", "utilization_gpu": 99, "memory_used_mb": 9}]}
    live = (get_status(fetch))["live"]
    assert live["source"] == "agent" and live["utilization_gpu"] == 37 and live["memory_used_mb"] == 1000


def test_the_shares_own_use_from_the_agent_beats_pids_and_the_whole_device(fetch, fake, monkeypatch):
    """Where the host's agent reports the share's own use (its processes, told
    apart by their cgroups: right in a container, where the session's pids are
    not NVML's), the panel shows it, not the whole device's, and does not match
    pids itself."""
    from gpuhub.lab import handlers

    def no_pid_matching(*a):
        raise AssertionError("the session's pids were matched although the agent reports the share's use")

    monkeypatch.setattr(handlers, "nvml_sample", no_pid_matching)
    fake.pool_source = "agent"
    fake.pool_usage = {"at": 1, "devices": [{"uuid": "GPU-aaaa", "utilization_gpu": 90, "memory_used_mb": 30000}]}
    fake.use = {"utilization_gpu": 12.0, "memory_used_mb": 512.0, "sampled_at": 1.0, "complete": True}
    live = get_status(fetch)["live"]
    assert live["source"] == "share" and "this session's processes" in live["label"]
    assert live["utilization_gpu"] == 12.0 and live["memory_used_mb"] == 512.0
    # no agent figure: the whole device's samples, as before
    fake.use = None
    monkeypatch.setattr(handlers, "nvml_sample", lambda uuids, pids: None)
    live = get_status(fetch)["live"]
    assert live["source"] == "agent" and live["utilization_gpu"] == 90


def test_a_service_down_is_an_error_in_its_section_only(fetch, fake):
    fake.down.add("vfolders")
    s = get_status(fetch)
    assert "503" in s["vfolders"]["error"] or "Service Unavailable" in s["vfolders"]["error"]
    assert "error" in s["storage"]
    assert s["share"]["allocation"]["id"] == "a-123"


def test_vfolder_actions_are_passed_on(fetch, fake):
    r = fetch("gpuhub", "vfolders", method="POST", body=json.dumps({"name": "new", "auto_mount": True}))
    assert r.code == 201 and json.loads(r.body)["name"] == "new"
    r = fetch("gpuhub", "vfolders", "vf1", "shares", method="POST",
                       body=json.dumps({"user": "bob", "permission": "ro"}))
    assert r.code == 201 and json.loads(r.body)["user"] == "bob"
    r = fetch("gpuhub", "invitations", "s9", "accept", method="POST", body="")
    assert json.loads(r.body)["state"] == "accepted"


def test_without_the_queue_api_quotas_and_queue_are_empty_and_extend_is_off(fetch, fake):
    fake.queue_api = False
    s = get_status(fetch)
    assert s["quotas"] == {"available": False, "items": []}
    assert s["queue"] == {"available": False, "items": []}
    assert s["share"]["extend"]["allowed"] is False
    assert s["share"]["ends_at"] == ALLOC["created"] + 8 * 3600
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", "extend", method="POST", body="{}")
    assert e.value.code == 409


def test_time_left_and_notice_come_from_the_allocation(fetch, fake):
    fake.ends_at = "2030-01-01T10:00:00+00:00"
    fake.notice = "This session ends at 10:00 (its run time of 8 h): save your work; it is stopped then."
    share = get_status(fetch)["share"]
    assert share["ends_at"] == 1893492000.0 and share["time_left_s"] > 0
    assert share["notice"] == fake.notice


def test_extend_asks_the_allocator_and_is_offered_once(fetch, fake):
    r = fetch("gpuhub", "extend", method="POST", body="{}")
    assert r.code == 200 and json.loads(r.body)["extended"] is True
    assert fake.extend_asked == [{"hours": 1.0}]
    share = get_status(fetch)["share"]
    assert share["extend"]["allowed"] is False and "once" in share["extend"]["reason"]
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", "extend", method="POST", body="{}")
    assert e.value.code == 409 and len(fake.extend_asked) == 1


def test_extend_refused_by_the_allocator_says_why(fetch, fake):
    fake.extend_refusal = "extending would delay 2 queued request(s)"
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", "extend", method="POST", body=json.dumps({"hours": 2}))
    assert e.value.code == 409
    # the services' error shape, the service named
    assert json.loads(e.value.response.body) == {"error": "allocator: extending would delay 2 queued request(s)"}
    assert fake.extend_asked == [{"hours": 2}]


def test_tus_upload_passes_through_and_resumes(fetch, fake, jp_base_url):
    meta = "filename " + base64.b64encode(b"big.bin").decode()
    r = fetch("gpuhub", "vfolders", "vf1", "uploads/", method="POST", body=b"",
                       headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": meta})
    assert r.code == 201
    loc = r.headers["Location"]
    assert loc.startswith(jp_base_url + "gpuhub/vfolders/vf1/uploads/"), loc  # rewritten to this server
    uid = loc.rsplit("/", 1)[1]
    tus = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    r = fetch("gpuhub", "vfolders", "vf1", "uploads", uid, method="PATCH", body=b"01234",
                       headers={**tus, "Upload-Offset": "0"})
    assert r.code == 204 and r.headers["Upload-Offset"] == "5"
    # a new page asks where the upload stands, then continues from there
    r = fetch("gpuhub", "vfolders", "vf1", "uploads", uid, method="HEAD",
                       headers={"Tus-Resumable": "1.0.0"})
    assert r.headers["Upload-Offset"] == "5"
    r = fetch("gpuhub", "vfolders", "vf1", "uploads", uid, method="PATCH", body=b"56789",
                       headers={**tus, "Upload-Offset": "5"})
    assert r.headers["Upload-Offset"] == "10"
    assert bytes(fake.uploads[uid]) == b"0123456789"


@pytest.mark.parametrize("path", ["status", "vfolders"])
def test_a_token_that_is_not_this_servers_is_refused(fetch, fake, path):
    method = "GET" if path == "status" else "POST"
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", path, method=method, body=None if method == "GET" else "{}",
                       headers={"Authorization": "token someone-elses-token"})
    assert e.value.code == 403
    assert not fake.calls  # nothing reached the services


def test_mount_state_reads_mountinfo_bind_mounts():
    """Bind mounts from the same filesystem are invisible to os.path.ismount."""
    from pathlib import Path

    from gpuhub.lab.handlers import mount_state, mounts

    table = mounts(
        "36 35 98:0 /v/1 /home/a/vfolders/my\\040data rw,noatime master:1 - ext4 /dev/root rw\n"
        "37 35 98:0 /v/2 /home/a/vfolders/refs ro,relatime - ext4 /dev/root rw\n"
    )
    home = Path("/home/a")
    assert mount_state("my data", home, table) == {
        "path": "~/vfolders/my data", "mounted": True, "mode": "rw", "live": True}
    assert mount_state("refs", home, table)["mode"] == "ro"
    assert mount_state("other", home, table)["mounted"] is False
    # where the hub cannot mount into the running session, the panel says a restart does
    assert mount_state("other", home, table, live=False)["live"] is False


@pytest.mark.parametrize("body", ["[1]", "not json"])
def test_the_panels_own_refusals_have_the_services_error_shape(fetch, fake, body):
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", "vfolders", method="POST", body=body)
    assert e.value.code == 400
    assert json.loads(e.value.response.body) == {"error": "send a JSON object"}
    assert not any(m == "POST" for m, *_ in fake.calls)  # nothing was passed on


def test_configuration_is_traits_and_the_sessions_facts_come_from_the_environment(monkeypatch):
    from traitlets.config import Config

    from gpuhub.lab.config import GPUHubLab

    for k, v in {"GPUHUB_ALLOCATOR_URL": "http://a/api/v1/", "GPUHUB_VFOLDERS_URL": "http://v/api/v1/",
                 "JUPYTERHUB_USER": "bob", "JUPYTERHUB_API_TOKEN": "t0k", "GPUHUB_ALLOCATION": "a-9",
                 "GPUHUB_GPUS": "2", "GPUHUB_HOST": "node-b", "CUDA_VISIBLE_DEVICES": ""}.items():
        monkeypatch.setenv(k, v)
    lab = GPUHubLab()
    assert (lab.allocator_url, lab.vfolders_url, lab.user, lab.api_token, lab.allocation) == (
        "http://a/api/v1/", "http://v/api/v1/", "bob", "t0k", "a-9")
    assert lab.nvml is True and lab.request_timeout == 10 and lab.history_seconds == 600
    assert lab.session_env() == {"GPUHUB_ALLOCATION": "a-9", "GPUHUB_GPUS": "2", "GPUHUB_HOST": "node-b",
                                 "CUDA_VISIBLE_DEVICES": ""}
    # the server's config wins over the spawner's environment
    c = Config()
    c.GPUHubLab.allocator_url = "http://elsewhere/api/v1/"
    c.GPUHubLab.nvml = False
    lab = GPUHubLab(config=c)
    assert lab.allocator_url == "http://elsewhere/api/v1/" and lab.nvml is False
    assert lab.vfolders_url == "http://v/api/v1/"
    # every trait says what it is, with an example and why its default
    for name, trait in lab.traits(config=True).items():
        assert "Example" in trait.help or "Default" in trait.help, name


def test_a_service_without_a_url_is_an_error_that_names_the_setting(monkeypatch):
    import asyncio

    from gpuhub.client import ServiceError
    from gpuhub.lab.config import GPUHubLab
    from gpuhub.lab.handlers import Backend

    monkeypatch.delenv("GPUHUB_VFOLDERS_URL", raising=False)
    backend = Backend(GPUHubLab(allocator_url="http://127.0.0.1:9/api/v1/", api_token="t"))
    with pytest.raises(ServiceError) as e:
        asyncio.run(backend.json("vfolders", "GET", "vfolders"))
    assert e.value.status == 503 and "c.GPUHubLab.vfolders_url is empty" in e.value.message
    # nothing listens on port 9: unreachable, said with the service's name
    with pytest.raises(ServiceError) as e:
        asyncio.run(backend.json("allocator", "GET", "pool"))
    assert e.value.status == 503 and e.value.message.startswith("allocator "), e.value.message


def test_the_template_path_notice_alone_is_dropped():
    """#19 item 8: the one unactionable notice JupyterLab logged at every start."""
    import logging

    from gpuhub.lab import TemplatePathShimNotice

    def record(msg):
        return logging.LogRecord("LabApp", logging.WARNING, __file__, 1, msg, None, None)

    f = TemplatePathShimNotice()
    assert not f.filter(record("'extra_template_paths' has moved from NotebookApp to ServerApp. "
                               "This config will be passed to ServerApp."))
    assert not f.filter(record("'extra_template_paths' was found in both NotebookApp and ServerApp. "
                               "This is likely a recent change."))
    assert f.filter(record("'token' has moved from NotebookApp to ServerApp."))
    assert f.filter(record("something else"))
