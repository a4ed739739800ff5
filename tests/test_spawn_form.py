"""The spawn form's start estimates, quota and vfolder space, and the hub pages'
time-limit line: pure functions of the allocator's answers, tested without a hub
(the Chromium checks through a real hub are in tests/test_queue_e2e.py)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

from spawner.gpuspawner import stop_reason, time_limit
from spawner.options import candidates, clock, estimate_text, form_runtimes, quota_line, render_form
from spawner.vfolders import form_block

POOL = {
    "units_per_gpu": 20, "quantum": "0.05", "max_hours": 168, "models": ["A100", "L4"],
    "hosts": [{"name": "node-a", "state": "up", "cpus": "32", "fractions": True,
               "devices": [{"model": "A100", "free_units": 0}] * 4}],
}
DEFAULTS = {"gpus": "0.5", "cpu": 2.0, "mem": "4G", "max_hours": 8.0}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def test_candidates_cover_each_choice_model_and_run_time_with_the_defaults():
    runtimes = form_runtimes(8.0, 168)
    assert runtimes == [1.0, 2.0, 4.0, 8.0, 24.0, 72.0, 168.0]
    assert form_runtimes(2.5, 12) == [1.0, 2.0, 2.5, 4.0, 8.0, 12.0]
    reqs = candidates(POOL, DEFAULTS, [8.0])
    assert {(r["gpus"], r["gpu_model"]) for r in reqs} == {
        (g, m) for g in ("0.25", "0.5", "1", "2", "4") for m in (None, "A100", "L4")}
    assert all(r["cpu"] == 2.0 and r["mem"] == "4G" and r["max_hours"] == 8.0 for r in reqs)


def test_estimate_texts():
    now = time.time()
    assert estimate_text({"starts_now": True}) == "starts now"
    got = estimate_text({"starts_now": False, "eta": iso(now + 600), "eta_latest": iso(now + 3600)})
    assert got == f"expected start {clock(iso(now + 600))} (at the latest {clock(iso(now + 3600))})"
    assert estimate_text({"eta": iso(now + 600), "eta_latest": iso(now + 600)}) == \
        f"expected start {clock(iso(now + 600))}"
    assert estimate_text({"quota": {"verdict": "hard", "reason": "your limit is 1 GPUs at once"}}) == \
        "your limit is 1 GPUs at once"
    assert "not estimated" in estimate_text({"starts_now": False, "estimated": False})
    assert estimate_text({"error": "gpus: at most 2 GPUs on one host"}) == "gpus: at most 2 GPUs on one host"


def test_quota_line():
    quota = {"limits": {"gpus": "4", "sessions": None, "gpu_hours": 40.0},
             "held": {"gpus": "1.5", "sessions": 1, "gpu_hours": 12.0}}
    assert quota_line(quota) == "GPUs: 1.5 of 4 in use · GPU-hours this week: 12 used of 40"
    assert quota_line({"limits": {}, "held": {"gpus": "0", "gpu_hours": 0}}) == \
        "GPUs: 0 in use · GPU-hours this week: 0 used"
    assert quota_line(None) == ""


def test_the_form_shows_each_choices_start_the_quota_and_the_data_for_its_script():
    now = time.time()
    runtimes = form_runtimes(8.0, 168)
    reqs = candidates(POOL, DEFAULTS, runtimes)
    ests = [{"starts_now": r["gpus"] in ("0.25", "0.5"), "eta": iso(now + 1200), "eta_latest": iso(now + 4800),
             "estimated": True, "quota": {"verdict": "ok", "reason": ""}} for r in reqs]
    answer = {"estimates": ests, "quota": {"limits": {"gpus": "4", "gpu_hours": 40},
                                           "held": {"gpus": "1.5", "gpu_hours": 12}}}
    html = render_form(POOL, DEFAULTS, [], {"runtimes": runtimes, "requests": reqs, "answer": answer})
    assert '<option value="0.5" selected>0.5 GPU — starts now</option>' in html
    later = f"expected start {clock(iso(now + 1200))} (at the latest {clock(iso(now + 4800))})"
    assert f'<option value="4">4 GPU — {later}</option>' in html
    assert f'<li data-gpus="4">4 GPU: <span class="gpuhub-start">{later}</span></li>' in html
    assert "GPUs: 1.5 of 4 in use · GPU-hours this week: 12 used of 40" in html
    data = json.loads(re.search(r'id="gpuhub-estimates">(.*?)</script>', html, re.S).group(1))
    assert data["runtimes"] == runtimes and len(data["table"]) == len(reqs)
    assert data["table"]["4|L4|24"]["eta"] == iso(now + 1200)
    # without the allocator's estimates: the plain form
    plain = render_form(POOL, DEFAULTS, [])
    assert '<option value="0.5" selected>0.5 GPU</option>' in plain
    assert "gpuhub-estimates" not in plain and "gpuhub-quota" not in plain


def test_vfolders_show_their_space_left():
    block = form_block([
        {"name": "data", "auto_mount": True, "used_bytes": 3 << 30, "free_bytes": 7 << 30, "quota_bytes": 10 << 30},
        {"name": "scratch", "auto_mount": False, "used_bytes": 1 << 20, "free_bytes": None, "quota_bytes": None},
    ])
    assert "data <span class=\"gpuhub-vfolder-space\">(7.0 GiB free of 10.0 GiB)</span>" in block
    assert "(1.0 MiB used, no quota)" in block


def test_time_limit_line_for_the_hub_pages():
    now = time.time()
    a = {"id": "a1", "state": "granted", "ends_at": iso(now + 42 * 60 - 5), "extended": False, "notice": None}
    got = time_limit("", a, now)
    assert got["text"] == (f"Your server stops at {clock(a['ends_at'])} (in 42 min); "
                           "extend it once in JupyterLab's GPU panel")
    got = time_limit("big", {**a, "extended": True, "notice": "This session ends at …"}, now)
    assert got["text"].startswith("Your server big stops at ") and got["text"].endswith("it was extended once already")
    assert got["notice"] == "This session ends at …"
    assert time_limit("", None) is None and time_limit("", {"id": "x"}) is None


def test_the_stop_reason_of_a_reclaimed_share():
    got = stop_reason({"host": "node-a", "max_hours": 8},
                      {"state": "revoked", "revoked_by": "idle-reclaim", "reason": "reclaimed: GPU idle for 60 min"})
    assert got.startswith("Your previous server was stopped: its GPU share was reclaimed for others "
                          "waiting: GPU idle for 60 min.")
    admin = stop_reason({"host": "node-a"}, {"state": "revoked", "revoked_by": "admin", "reason": "maintenance"})
    assert "an administrator (admin) revoked its GPU share: maintenance" in admin


def test_a_drained_host_is_shown_under_maintenance():
    pool = json.loads(json.dumps(POOL))
    pool["hosts"][0]["state"] = "drained"
    html = render_form(pool, DEFAULTS)
    name = pool["hosts"][0]["name"]
    assert re.search(rf"<li>{name}: \d+ × [^<]+<span class=\"gpuhub-maintenance\">under maintenance</span>", html), html
    assert f"<li>{name}: " in html and html.count(f"<li>{name}: ") == 1  # not also among the free ones


def test_long_times_left_read_in_hours_and_days():
    from gpuhub.numbers import human_minutes

    assert [human_minutes(m) for m in (0, 42, 60, 80, 480, 1440, 1500, 2 * 1440 + 180)] == [
        "0 min", "42 min", "1 h", "1 h 20 min", "8 h", "1 day", "1 day 1 h", "2 days 3 h"]
    now = time.time()
    a = {"id": "a1", "state": "granted", "ends_at": iso(now + 480 * 60 - 5), "extended": False, "notice": None}
    assert "(in 8 h);" in time_limit("", a, now)["text"]


def test_where_a_choice_lands():
    from spawner.options import where_text

    assert where_text({"host": "node-a", "models": ["A100"], "hosts": ["node-a"]}) == " on node-a (A100)"
    assert where_text({"host": None, "models": ["L4"], "hosts": ["node-b"], "more_hosts": 0}) == " on node-b (L4)"
    assert where_text({"host": None, "models": ["A100", "L4"], "hosts": ["a", "b"], "more_hosts": 3}) == (
        " on any of a, b and 3 more")
    assert where_text(None) == "" and where_text({"host": None, "hosts": []}) == ""
    assert estimate_text({"starts_now": True, "lands": {"host": "n", "models": ["L4"]}}) == "starts now on n (L4)"


def test_gpu_hours_used_and_reserved_are_labelled():
    from gpuhub.numbers import gpu_hours_text

    assert gpu_hours_text(0.0, 0.0) == "0 used"
    assert gpu_hours_text(0.0417, 3.958, 40) == "0.042 used + 3.96 reserved of 40"
    assert gpu_hours_text(12.5, 0.0, 40) == "12.5 used of 40"
    quota = {"limits": {"gpu_hours": "40"}, "held": {"gpus": "0.5", "gpu_hours": 4.0, "gpu_hours_used": 0.042,
                                                     "gpu_hours_reserved": 3.958}}
    assert quota_line(quota) == "GPUs: 0.5 in use · GPU-hours this week: 0.042 used + 3.96 reserved of 40"


def test_a_pool_choice_only_with_more_than_one_open_pool():
    """The form offers a host pool only to a user with several open to them
    (POST estimates' ``pools``); the choice reaches the spawn's options."""
    from spawner.options import options_from_form

    reqs = candidates(POOL, DEFAULTS, [8.0])
    ests = [{"starts_now": True, "estimated": True, "quota": {"verdict": "ok", "reason": ""}} for _ in reqs]
    one = {"estimates": ests, "pools": [{"name": "default", "description": ""}]}
    html = render_form(POOL, DEFAULTS, [], {"runtimes": [8.0], "requests": reqs, "answer": one})
    assert 'name="pool"' not in html
    two = {**one, "pools": [{"name": "default", "description": ""},
                            {"name": "team-a", "description": "team A's H100s"}]}
    html = render_form(POOL, DEFAULTS, [], {"runtimes": [8.0], "requests": reqs, "answer": two})
    assert '<select class="form-control form-select" name="pool" id="gpuhub-pool">' in html
    assert '<option value="">any open to you</option>' in html
    assert '<option value="team-a">team-a — team A&#x27;s H100s</option>' in html
    assert options_from_form({"gpus": ["1"], "pool": ["team-a"]})["pool"] == "team-a"
    assert "pool" not in options_from_form({"gpus": ["1"], "pool": [""]})
