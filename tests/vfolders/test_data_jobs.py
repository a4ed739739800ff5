"""The Data page's jobs section (vfolder_manager.data.jobs and its templates),
without a hub: how a job's command, times and GPUs are shown, and that the
page renders when the allocator is not configured or says no (the browser test,
tests/test_data_page.py, has the real thing)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from gpuhub.client import ServiceError
from vfolder_manager.data import jobs
from vfolder_manager.data.pages import make_env


def test_short_command_quotes_and_cuts():
    assert jobs.short_command(["python", "train.py", "--lr", "0.1"]) == "python train.py --lr 0.1"
    assert jobs.short_command(["sh", "-c", "echo hi; exit 3"]) == "sh -c 'echo hi; exit 3'"
    long = jobs.short_command(["echo", "x" * 100], width=20)
    assert len(long) == 20 and long.endswith("…")


def test_clock_shows_local_minutes():
    t = time.mktime((2031, 5, 6, 7, 8, 9, 0, 0, -1))
    iso = datetime.fromtimestamp(t, timezone.utc).isoformat()
    assert jobs.clock(iso) == "2031-05-06 07:08"
    assert jobs.clock(iso.replace("+00:00", "Z")) == "2031-05-06 07:08"
    assert jobs.clock(None) == "—" and jobs.clock("soon") == "soon"


def test_gpus_the_share_while_it_runs_else_what_was_asked():
    assert jobs.gpus({"options": {"gpus": "0.5"}}) == "0.5"
    assert jobs.gpus({"options": {"gpus": "0.5"}, "allocation": {"gpus": 0.5}}) == "0.5"
    assert jobs.gpus({"options": {}}) == "—"


def test_a_refused_sign_in_says_what_to_do():
    assert "sign out and in again" in jobs.unreachable_message(ServiceError(403, "forbidden"))
    assert jobs.unreachable_message(ServiceError(503, "the GPU allocator is not reachable: x")).endswith(": x")


def namespace(**ns) -> dict:
    return {
        "static_url": lambda path, include_version=True: f"/hub/static/{path}",
        "data_static": lambda path: f"/services/vfolders/data/static/{path}",
        "base_url": "/hub/", "prefix": "/services/vfolders/", "logo_url": "/hub/home", "user": None,
        "admin_access": False, "no_spawner_check": True, "xsrf_token": "X", "logout_url": "/hub/logout",
        "login_url": "/hub/login", "parsed_scopes": set(), "services": [], "announcement": None,
        "version_hash": None, "data_url": "/services/vfolders/data/", "flash": "", "error": "",
        "title": "Data", "vfolders": [], "invitations": [],
        "storage": {"bytes": 0, "files": 0, "limit": None, "limit_files": None, "pct": None},
        "active_states": jobs.ACTIVE, **ns,
    }


def test_the_page_renders_without_an_allocator():
    html = make_env().get_template("data/index.html").render(
        **namespace(jobs=None, jobs_error="No GPU allocator is configured for this page."))
    assert 'id="data-jobs-error"' in html and "No GPU allocator is configured" in html
    assert 'id="data-create"' in html  # the rest of the page is there


def test_the_jobs_table_cancel_only_while_not_over():
    listed = [
        {"id": "a" * 12, "command": ["sleep", "60"], "state": "running", "exit_code": None, "reason": None,
         "options": {"gpus": "1"}, "submitted": None, "started": None, "ended": None},
        {"id": "b" * 12, "command": ["false"], "state": "failed", "exit_code": 1,
         "reason": "the command exited with 1", "options": {}, "submitted": None, "started": None, "ended": None},
    ]
    html = make_env().get_template("data/index.html").render(**namespace(jobs=listed, jobs_error=""))
    assert html.count('data-testid="cancel"') == 1
    assert f'action="/services/vfolders/data/jobs/{"a" * 12}/cancel"' in html
    assert "text-bg-danger" in html and "the command exited with 1" in html
