"""The panel's server extension and batch jobs (#21 item 4): ``gpuhub/jobs`` passes
the allocator's jobs API through as this session's user (JSON in and out, its
refusals as the same 4xx with its message), and the status lists the newest
jobs with the executed notebook of a *Run as job* once it exists. Against the
fake allocator of conftest.py, in pytest-jupyter's server (see
test_server_extension.py for why the tests are plain functions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from gpuhub.lab.handlers import notebook_of

from .conftest import TOKEN, fake_job

SCRIPT = 'jupyter nbconvert --to notebook --execute "$1" --output-dir "$HOME/jobs/$GPUHUB_JOB_ID"'


@pytest.fixture
def jp_root_dir(tmp_path):
    """The server's root holds the home (in a session it is the home)."""
    return tmp_path


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop):
    def run(*parts, **kw):
        return jp_asyncio_loop.run_until_complete(jp_fetch(*parts, **kw))

    return run


def body(r) -> dict:
    return json.loads(r.body)


def error(fetch, *parts, **kw) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as e:
        fetch(*parts, **kw)
    return e.value.code, json.loads(e.value.response.body)


def test_submit_list_get_cancel_pass_through_as_the_user(fetch, fake):
    job = {"command": ["sh", "-c", SCRIPT, "sh", "my work/nb one.ipynb"], "gpus": "0.5", "max_hours": 2,
           "workdir": "my work"}
    r = fetch("gpuhub", "jobs", method="POST", body=json.dumps(job))
    assert r.code == 201
    made = body(r)
    assert made["state"] == "queued" and made["command"] == job["command"] and made["workdir"] == "my work"
    method, path, headers, sent = fake.calls[-1]
    assert (method, path) == ("POST", "/services/gpu-allocator/api/v1/jobs")
    assert headers["Authorization"] == f"token {TOKEN}" and json.loads(sent) == job
    # list (a limit passes on), one job, cancel
    fake.jobs.append(fake_job("0000000000aa", ["true"], state="succeeded", exit_code=0))
    assert [j["id"] for j in body(fetch("gpuhub", "jobs"))["jobs"]] == [made["id"], "0000000000aa"]
    assert [j["id"] for j in body(fetch("gpuhub", "jobs", params={"limit": "1"}))["jobs"]] == [made["id"]]
    assert fake.calls[-1][1] == "/services/gpu-allocator/api/v1/jobs"
    assert body(fetch("gpuhub", "jobs", made["id"]))["id"] == made["id"]
    r = fetch("gpuhub", "jobs", made["id"], method="DELETE")
    assert r.code == 200 and body(r)["state"] == "cancelled"
    assert fake.calls[-1][0] == "DELETE"


def test_refusals_come_back_as_the_allocators_4xx_and_message(fetch, fake):
    code, err = error(fetch, "gpuhub", "jobs", method="POST", body=json.dumps({"command": ["true"], "gpus": "9"}))
    assert code == 400 and "9 GPUs is more than allowed" in err["error"]
    code, err = error(fetch, "gpuhub", "jobs", method="POST", body="[1]")
    assert code == 400 and err == {"error": "send a JSON object"}
    fake.jobs.append(fake_job("0000000000bb", ["true"], state="failed", exit_code=3))
    code, err = error(fetch, "gpuhub", "jobs", "0000000000bb", method="DELETE")
    assert code == 409 and "already failed" in err["error"]
    code, err = error(fetch, "gpuhub", "jobs", "0000000000cc")
    assert code == 404 and "error" in err
    # not a job id: not passed on at all
    calls = len(fake.calls)
    with pytest.raises(HTTPClientError) as e:
        fetch("gpuhub", "jobs", "..", "allocations")
    assert e.value.code == 404 and len(fake.calls) == calls


def test_status_lists_the_newest_jobs_with_the_executed_notebook(fetch, fake, tmp_path):
    nb = "my work/nb one.ipynb"
    fake.jobs = [fake_job(f"{i:012x}", ["sh", "-c", SCRIPT, "sh", nb], state="running") for i in range(7, 0, -1)]
    fake.jobs[1].update(state="succeeded", exit_code=0, ended="2030-01-01T10:05:00+00:00")
    fake.jobs[2].update(command=["python", "train.py"], state="failed", exit_code=3,
                        reason="the command exited with 3")
    fake.jobs[0].update(state="queued", queue={"position": 2, "eta": "2030-01-01T12:00:00+00:00"})
    done = Path.home() / "jobs" / fake.jobs[1]["id"] / "nb one.ipynb"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    jobs = body(fetch("gpuhub", "status"))["jobs"]
    assert jobs["available"] is True
    items = jobs["items"]
    assert [j["id"] for j in items] == [j["id"] for j in fake.jobs[:5]]  # the newest five
    queued, succeeded, failed, running = items[0], items[1], items[2], items[3]
    assert queued["state"] == "queued" and queued["position"] == 2 and queued["eta"] == 1893499200.0
    assert queued["notebook"] == nb and queued["output"] is None  # not run yet
    assert succeeded["exit_code"] == 0 and succeeded["ended"] == 1893492300.0
    # the executed copy, as a path under the server's root
    assert succeeded["output"] == os.path.relpath(os.path.realpath(done), os.path.realpath(tmp_path))
    assert succeeded["output"].endswith(f"jobs/{succeeded['id']}/nb one.ipynb")
    assert failed["notebook"] is None and failed["command"] == "python train.py" and failed["exit_code"] == 3
    assert failed["reason"] == "the command exited with 3" and running["output"] is None
    assert succeeded["gpus"] == "0.5"


def test_an_allocator_without_jobs_is_no_section(fetch, fake):
    fake.jobs_api = False
    assert body(fetch("gpuhub", "status"))["jobs"] == {"available": False, "items": []}


def test_notebook_of_knows_only_the_panels_command():
    assert notebook_of(["sh", "-c", SCRIPT, "sh", "a b.ipynb"]) == "a b.ipynb"
    assert notebook_of(["sh", "-c", SCRIPT, "sh", "a.py"]) is None
    assert notebook_of(["sh", "-c", "echo", "sh", "a.ipynb"]) is None
    assert notebook_of(["python", "x.ipynb"]) is None and notebook_of(None) is None
