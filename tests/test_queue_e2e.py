"""The queue end to end: the real hub with the demo config (4 × A100 on node-a,
2 × L4 on node-b), the allocator as its managed service, sessions as local
processes, the progress page in Chromium."""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import sync_playwright

from tests.support import API, browser_login, wait_for

# the queue's timer and the run-time checks every second
pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.hub(config={"GPUAllocator": {"time_limit_interval": 1.0}})]

A100 = "A100-SXM4-80GB"
VFOLDERS = "/services/vfolders/api/v1"
WHOLE_A100 = {"gpus": 4, "gpu_model": A100, "max_hours": 1, "cpu": 1, "mem": "1G"}


@pytest.fixture(autouse=True)
def nothing_left(hub):
    yield
    admin = hub.admin_allocator()
    for q in admin.call("GET", API + "/queue").json()["queued"]:
        admin.call("DELETE", f"{API}/allocations/{q['id']}")
    for a in admin.allocations():
        admin.call("DELETE", f"{API}/allocations/{a['id']}")


def queued(client) -> list[dict]:
    return client.call("GET", API + "/allocations").json()["queued"]



def test_a_full_pool_queues_the_spawn_with_position_and_eta_then_it_starts_or_is_stopped(hub, tmp_path):
    ann, bob, cat = hub.login("gpuhub-q-ann"), hub.login("gpuhub-q-bob"), hub.login("gpuhub-q-cat")
    r = ann.spawn(WHOLE_A100)
    assert r.status_code in (201, 202), r.text
    ann.wait_ready()
    with ThreadPoolExecutor(2) as pool, sync_playwright() as p:
        # bob asks for the same 4 A100: queued, his progress page says where and when
        spawning = pool.submit(bob.spawn, WHOLE_A100)
        (waiting,) = wait_for(lambda: queued(bob), 30, "bob's queued request")
        assert waiting["state"] == "queued" and waiting["position"] == 1
        assert waiting["eta"] and waiting["eta_latest"] and "4 × A100" in waiting["reason"].replace(A100, "A100")
        assert spawning.result().status_code == 202
        browser, page = browser_login(p, hub, "gpuhub-q-bob")
        page.goto(f"{hub.url}/hub/spawn-pending/gpuhub-q-bob")
        page.wait_for_function(
            "document.querySelector('#progress-message').textContent.includes('queued: 1st for 4 × ')",
            timeout=30_000,
        )
        shown = page.inner_text("#progress-message")
        assert f"queued: 1st for 4 × {A100}, expected start " in shown, shown
        page.screenshot(path=str(tmp_path / "queued.png"))
        # ann stops: bob's server starts by itself, the page lands in JupyterLab
        ann.stop()
        page.wait_for_url("**/user/gpuhub-q-bob/**", timeout=120_000)
        browser.close()
        bob.wait_ready()
        (granted,) = bob.allocations()
        assert granted["id"] == waiting["id"] and granted["gpus"] == "4"
        assert queued(bob) == []

        # cat asks too, and presses Stop on the progress page: she leaves the queue
        spawning = pool.submit(cat.spawn, WHOLE_A100)
        (mine,) = wait_for(lambda: queued(cat), 30, "cat's queued request")
        browser, page = browser_login(p, hub, "gpuhub-q-cat")
        # the home page shows the queued server as queued, with its expected start
        page.goto(f"{hub.url}/hub/home")
        home = page.locator(".gpuhub-queued")
        assert "is waiting in the queue for 4 × " in home.inner_text(), home.inner_text()
        assert "1st in line, expected start " in home.inner_text()
        page.screenshot(path=str(tmp_path / "home-queued.png"), full_page=True)
        # the waiting page: place, expected start, at the latest, what it waits for
        page.goto(f"{hub.url}/hub/spawn-pending/gpuhub-q-cat")
        page.wait_for_selector("#gpuhub-queue:not([hidden])", timeout=30_000)
        assert page.inner_text("#gpuhub-queue .gpuhub-q-position") == "1st"
        mine = queued(cat)[0]
        assert page.inner_text("#gpuhub-queue .gpuhub-q-eta") == page.evaluate("gpuhubClock", mine["eta"])
        assert page.inner_text("#gpuhub-queue .gpuhub-q-latest") == page.evaluate("gpuhubClock", mine["eta_latest"])
        reason = page.inner_text("#gpuhub-queue .gpuhub-q-reason")
        assert mine["reason"].lower() == "waiting for " + reason.lower(), (reason, mine["reason"])
        assert not page.is_visible(".progress") and not page.is_visible("#stop-server-btn")
        page.screenshot(path=str(tmp_path / "waiting-page.png"), full_page=True)
        # leaving asks first: dismissed, she stays in line
        page.once("dialog", lambda d: d.dismiss())
        page.click("#gpuhub-leave")
        assert [q["id"] for q in queued(cat)] == [mine["id"]]
        # accepted: she leaves the queue and the page says so (not "Server not running")
        page.once("dialog", lambda d: d.accept())
        page.click("#gpuhub-leave")
        page.wait_for_selector("#gpuhub-left:not([hidden])", timeout=30_000)
        assert "You left the queue" in page.inner_text("#gpuhub-left")
        wait_for(lambda: cat.server() is None, 30, "cat's spawn to stop")
        page.screenshot(path=str(tmp_path / "left-queue.png"), full_page=True)
        browser.close()
        spawning.result()
    assert queued(cat) == []
    assert cat.call("GET", f"{API}/allocations/{mine['id']}").json()["state"] == "cancelled"
    assert hub.admin_allocator().call("GET", API + "/queue").json()["queued"] == []
    bob.stop()


def test_a_session_past_max_hours_is_warned_and_stopped(hub):
    dan = hub.login("gpuhub-q-dan")
    r = dan.spawn({"gpus": 0.5, "max_hours": 0.03})  # 108 s: warned at once (under 5 min left)
    assert r.status_code in (201, 202), r.text
    dan.wait_ready()
    (a,) = dan.allocations()
    got = wait_for(lambda: dan.call("GET", f"{API}/allocations/{a['id']}").json().get("notice"), 20, "notice")
    assert "save your work" in got
    # the hub's home page shows the end and the notice too (the spawner's poll brings it)
    home = wait_for(lambda: (lambda t: "save your work" in t and t)(dan.session.get(hub.url + "/hub/home").text),
                    20, "the notice on the home page")
    assert "Your server stops at " in home and "gpuhub-notice" in home
    wait_for(lambda: dan.server() is None, 180, "the session to be stopped at its run time")
    assert dan.call("GET", f"{API}/allocations/{a['id']}").json()["state"] == "expired"
    form = dan.session.get(hub.url + "/hub/spawn").text  # the spawn form says why
    assert "its run time (max_hours, 0.03 h) was over" in form, form[-2000:]


def test_quotas_refuse_what_is_over_a_hard_limit_and_queue_what_is_over_now(hub):
    admin = hub.login("admin")
    erin = hub.login("gpuhub-q-erin")
    r = admin.call("POST", "/hub/api/groups/gpuhub-q-students", json={"users": ["gpuhub-q-erin"]})
    assert r.status_code in (201, 409), r.text
    r = admin.call("PUT", API + "/quotas/group/gpuhub-q-students", json={"gpus": 0.5, "sessions": 2})
    assert r.status_code == 200 and r.json()["limits"]["gpus"] == "0.5", r.text
    try:
        r = erin.spawn({"gpus": 1})
        assert r.status_code == 400 and "your limit is 0.5 GPUs at once" in r.json()["message"], r.text
        r = erin.spawn({"gpus": 0.5})
        assert r.status_code in (201, 202), r.text
        erin.wait_ready()
        quota = erin.call("GET", API + "/quota").json()
        assert quota["groups"] == ["gpuhub-q-students"] and quota["limits"]["gpus"] == "0.5"
        assert quota["left"]["gpus"] == "0" and quota["left"]["sessions"] == 1
        r = erin.call("POST", API + "/allocations", json={"gpus": 0.25})
        assert r.status_code == 202 and r.json()["state"] == "queued", r.text
        assert "over your GPU quota: 0.5 of 0.5 GPUs in use" in r.json()["reason"]
        assert erin.call("GET", API + "/quotas").status_code == 403  # admins only
        assert erin.call("DELETE", f"{API}/allocations/{r.json()['id']}").json()["state"] == "cancelled"
        erin.stop()
        usage = erin.call("GET", API + "/usage").json()
        assert usage["users"]["gpuhub-q-erin"]["gpu_hours"] > 0
        csv = erin.call("GET", API + "/usage", params={"format": "csv"})
        assert csv.headers["Content-Type"].startswith("text/csv")
        assert csv.text.splitlines()[0] == "day,user,groups,gpu_hours,cpu_hours,sessions_started,job_gpu_hours"
    finally:
        admin.call("DELETE", API + "/quotas/group/gpuhub-q-students")


def test_the_queue_survives_an_allocator_kill_9(hub):
    admin = hub.admin_allocator()
    body = {"user": "gpuhub-q-fay", "gpus": 4, "gpu_model": A100, "max_hours": 2}
    first = admin.call("POST", API + "/allocations", json=body)
    assert first.status_code == 201, first.text
    second = admin.call("POST", API + "/allocations", json={**body, "user": "gpuhub-q-gus"})
    assert second.status_code == 202 and second.json()["position"] == 1, second.text
    qid = second.json()["id"]
    (pid,) = hub.allocator_pids()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: hub.allocator_pids() not in ([], [pid]), 30, "the allocator to be restarted")
    back = wait_for(lambda: admin.call("GET", f"{API}/allocations/{qid}"), 30, "the allocator to answer")
    got = back.json()
    assert got["state"] == "queued" and got["user"] == "gpuhub-q-gus" and got["position"] == 1, got
    admin.call("DELETE", f"{API}/allocations/{first.json()['id']}")
    wait_for(lambda: admin.call("GET", f"{API}/allocations/{qid}").json()["state"] == "granted",
             15, "the queued request to be granted")
    admin.call("DELETE", f"{API}/allocations/{qid}")


def test_the_spawn_form_says_when_each_choice_starts_and_home_says_when_the_server_stops(hub, tmp_path):
    """Issue #10: with room, "starts now" beside a choice; with the pool full, an
    expected start; the quota line; the home page's time-limit line."""
    ann = hub.login("gpuhub-q-form")
    # POST estimates: a user asks for themself; a malformed body changes nothing and says why
    r = ann.call("POST", API + "/estimates", json={"user": "gpuhub-q-other", "requests": [{"gpus": 1}]})
    assert r.status_code == 403, r.text
    r = ann.call("POST", API + "/estimates", json={"requests": []})
    assert r.status_code == 400 and "1 to 200 requests" in r.json()["error"], r.text
    r = ann.call("POST", API + "/estimates", json={"requests": [{"gpus": 1}, {"gpus": 8}]})
    assert r.status_code == 200, r.text
    first, second = r.json()["estimates"]
    assert first["starts_now"] and second["error"] == "gpus: at most 4 GPUs on one host in this pool"
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "gpuhub-q-form")
        page.goto(f"{hub.url}/hub/spawn")
        page.wait_for_selector("#gpuhub-gpus")
        shown = page.inner_text("#gpuhub-gpus option[value='0.5']")
        assert re.fullmatch(r"0\.5 GPU — starts now on node-[ab] \((A100-SXM4-80GB|L4)\)", shown), shown
        assert page.inner_text("#gpuhub-quota").startswith("GPUs: 0 in use · GPU-hours this week: 0")
        page.screenshot(path=str(tmp_path / "form-with-room.png"), full_page=True)
        # a running server with a time limit: the home page says when it stops
        r = ann.spawn({"gpus": 0.5, "max_hours": 1, "cpu": 1, "mem": "1G"})
        assert r.status_code in (201, 202), r.text
        ann.wait_ready()
        page.goto(f"{hub.url}/hub/home")
        shown = page.inner_text(".gpuhub-time-limit")
        assert re.fullmatch(r"Your server stops at \d\d:\d\d \((59 min|1 h)\); extend it once in "
                            r"JupyterLab's GPU panel\.", shown.strip().replace("(in ", "(")), shown
        page.screenshot(path=str(tmp_path / "home-time-limit.png"), full_page=True)
        # the pool full (shares of an hour): every choice waits, with its expected start
        admin = hub.admin_allocator()
        while admin.call("POST", API + "/allocations", json={
                "user": "gpuhub-q-filler", "gpus": 0.5, "max_hours": 1, "cpu": 0.1, "mem": "64M",
                "queue": False}).status_code == 201:
            pass
        browser.close()
        # another user (ann's form would redirect to her server), with 10 GPU-hours a week
        root = hub.login("admin")
        r = root.call("PUT", API + "/quotas/user/gpuhub-q-form2", json={"gpu_hours": 10})
        assert r.status_code == 200, r.text
        # and a vfolder, under a 1 GiB quota: the form shows its space left
        r = hub.login("gpuhub-q-form2").call("POST", VFOLDERS + "/vfolders", json={"name": "results"})
        assert r.status_code == 201, r.text
        r = root.call("PUT", VFOLDERS + "/quotas/user/gpuhub-q-form2", json={"bytes": 2**30})
        assert r.status_code == 200, r.text
        try:
            browser, page = browser_login(p, hub, "gpuhub-q-form2")
            page.goto(f"{hub.url}/hub/spawn")
            page.wait_for_selector("#gpuhub-gpus")
            eta = r"expected start \d\d:\d\d( \(at the latest \d\d:\d\d\))?( on (any of )?node-[ab].*)?"
            shown = page.inner_text("#gpuhub-gpus option[value='0.5']")
            assert re.fullmatch(r"0\.5 GPU — " + eta, shown), shown
            assert page.inner_text("#gpuhub-quota") == "GPUs: 0 in use · GPU-hours this week: 0 used of 10"
            four = "#gpuhub-starts li[data-gpus='4'] .gpuhub-start"
            assert page.inner_text(four).startswith("GPU-hours: your limit is 10 GPU-hours")  # 4 × 8 h
            page.fill("#gpuhub-hours", "1.5")  # the script shows those for 2 h (the next computed): 8 GPU-hours fit
            assert re.fullmatch(eta, page.inner_text(four)), page.inner_text(four)
            assert re.fullmatch(r"4 GPU — " + eta, page.inner_text("#gpuhub-gpus option[value='4']"))
            page.select_option("#gpuhub-model", "L4")  # and for the model picked
            assert page.inner_text(four).startswith("gpus: at most 2 GPUs on one host")
            page.select_option("#gpuhub-model", "")
            assert "results (1.0 GiB free of 1.0 GiB)" in page.inner_text(".gpuhub-vfolders")
            page.screenshot(path=str(tmp_path / "form-pool-full.png"), full_page=True)
            browser.close()
        finally:
            root.call("DELETE", API + "/quotas/user/gpuhub-q-form2")
    ann.stop()
    print(f"screenshots in {tmp_path}")


def test_the_form_follows_cpu_and_memory_and_agrees_with_the_api(hub, tmp_path):
    """Issue #19: "starts now" must hold for every field of the form. A share that
    fits by GPU but not by CPU cores waits; the form says so as soon as the cores
    are typed, and agrees with POST estimates; where it lands is named."""
    admin = hub.admin_allocator()
    # node-a (32 cores) keeps 2 free; node-b (16 cores) all
    r = admin.call("POST", API + "/allocations", json={
        "user": "gpuhub-q-cpuhog", "gpus": "0.25", "gpu_model": A100, "cpu": 30, "mem": "1G",
        "max_hours": 1, "queue": False})
    assert r.status_code == 201 and r.json()["host"] == "node-a", r.text
    fay = hub.login("gpuhub-q-fay")
    option = "#gpuhub-gpus option[value='0.25']"
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "gpuhub-q-fay")
        page.goto(f"{hub.url}/hub/spawn")
        page.wait_for_selector("#gpuhub-gpus")
        assert page.inner_text(option).startswith("0.25 GPU — starts now on node-"), page.inner_text(option)
        mem, hours = page.input_value("#gpuhub-mem"), float(page.input_value("#gpuhub-hours"))
        # 20 cores fit no host now: the choice waits, as the API says
        page.fill("#gpuhub-cpu", "20")
        page.wait_for_function(f"!document.querySelector(\"{option}\").textContent.includes('starts now')",
                               timeout=30_000)
        shown = page.inner_text(option)
        (api,) = fay.call("POST", API + "/estimates", json={"requests": [
            {"gpus": "0.25", "cpu": "20", "mem": mem, "max_hours": hours}]}).json()["estimates"]
        assert not api["starts_now"] and api["lands"]["host"] is None, api
        assert shown.startswith("0.25 GPU — expected start "), shown
        # (node-b has 16 cores: only node-a could ever hold 20)
        assert shown.endswith(f" on node-a ({A100})") and api["lands"]["hosts"] == ["node-a"], (shown, api)
        page.screenshot(path=str(tmp_path / "form-20-cores.png"), full_page=True)
        # back to 2 cores: starts now again, where the API says it lands
        page.fill("#gpuhub-cpu", "2")
        page.wait_for_function(f"document.querySelector(\"{option}\").textContent.includes('starts now')",
                               timeout=30_000)
        (api,) = fay.call("POST", API + "/estimates", json={"requests": [
            {"gpus": "0.25", "cpu": "2", "mem": mem, "max_hours": hours}]}).json()["estimates"]
        assert api["starts_now"], api
        assert page.inner_text(option) == (f"0.25 GPU — starts now on {api['lands']['host']} "
                                           f"({'/'.join(api['lands']['models'])})")
        browser.close()
    # spawned with 20 cores, it waits, and its reason names the cores, not the GPU
    spawning = fay.spawn({"gpus": "0.25", "cpu": 20, "mem": mem, "max_hours": hours})
    assert spawning.status_code == 202, spawning.text
    (waiting,) = wait_for(lambda: queued(fay), 30, "fay's queued request")
    assert waiting["reason"].startswith("waiting for 20 CPU cores: 0.25 GPU is free, but at most "), waiting
    fay.stop()
