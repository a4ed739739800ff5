"""The hub's Data page (vfolder_manager.data) in a real browser (Debian's
Chromium, Playwright) through the real hub (the shared ``hub`` fixture): the
Services menu says "Data"; a user creates a vfolder, uploads a 40 MB file,
reloads the page midway (the upload shows as interrupted), chooses the file
again and it resumes at the service's offset and finishes; downloads it
byte-identical; shares it with another user, who sees the invitation on their
Data page, accepts it and sees the file. A form without the XSRF token changes
nothing. The user's batch jobs: state, exit code, a log that grows, Cancel;
never another user's. Screenshots (light, dark, a phone-sized window) are left in
build/test-artifacts/data/ (GPUHUB_TEST_ARTIFACTS to change it). No server runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.support import REPO, browser_login, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = Path(os.environ.get("GPUHUB_TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "data"
DATA = "/services/vfolders/data/"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def record(page, dest: str) -> dict | None:
    return page.evaluate(
        "(dest) => (JSON.parse(localStorage.getItem('gpuhub-data:uploads') || '[]')).find(r => r.dest === dest) || null",
        dest)


def throttle(page, upload_bytes_per_s: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 5 if upload_bytes_per_s > 0 else 0,
        "downloadThroughput": -1, "uploadThroughput": upload_bytes_per_s})


def test_data_page_create_upload_reload_resume_download_share(hub, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 1000 * 1000))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "data-ann", viewport={"width": 1280, "height": 900})
        try:
            # the hub's own Services menu lists the page as "Data"
            page.goto(hub.url + "/hub/home")
            link = page.locator(".dropdown-menu a.dropdown-item", has_text="Data")
            assert link.get_attribute("href") == "/services/vfolders/"
            page.goto(hub.url + "/services/vfolders/")  # OAuth (no confirmation page), then data/
            page.wait_for_selector("#gpuhub-data")
            assert page.url == hub.url + DATA
            assert page.locator("#data-empty").is_visible()
            page.evaluate("() => localStorage.setItem('jupyterhub-bs-theme', 'light')")

            # create
            page.fill("#data-create-name", "bigdata")
            page.click("#data-create-submit")
            page.wait_for_selector("#data-vfolder")
            assert "Created vfolder bigdata." in page.locator("#data-flash").inner_text()
            vid = page.locator("#data-vfolder").get_attribute("data-id")

            # a resumable upload, interrupted by a reload
            page.evaluate("() => localStorage.setItem('gpuhub-data:chunk-bytes', String(1024 * 1024))")
            throttle(page, 6 * 1024 * 1024)
            page.set_input_files("#data-upload-file", str(big))
            wait_for(lambda: ((r := record(page, "big.bin")) and r["sent"] / r["size"]) > 0.25, 90,
                     "the upload to pass 25%", interval=0.1)
            at_reload = record(page, "big.bin")["sent"] / big.stat().st_size
            assert at_reload < 0.9, f"too fast to interrupt: {at_reload}"
            shot(page, "uploading")
            page.reload()
            rec = page.locator('#data-uploads [data-upload="big.bin"]')
            rec.wait_for()
            assert rec.get_attribute("data-state") == "interrupted"
            assert "choose the same file again in bigdata/" in rec.inner_text()
            shot(page, "interrupted")
            throttle(page, -1)
            page.set_input_files("#data-upload-file", str(big))
            page.wait_for_selector('#data-uploads [data-upload="big.bin"][data-state=done]', timeout=120_000)
            resumed = page.locator("#data-uploads [data-testid=upload-resumed]").inner_text()
            assert resumed.startswith("resumed at") and "resumed at 0 B" not in resumed, resumed
            shot(page, "uploaded")

            # listed, and downloaded whole (the Download link of the folder listing)
            page.reload()
            row = page.locator('#data-files [data-entry="big.bin"]')
            assert "38.1 MiB" in row.inner_text()
            with page.expect_download() as dl:
                row.locator("[data-testid=download]").click()
            saved = tmp_path / "downloaded.bin"
            dl.value.save_as(saved)
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest

            # share it with another user
            page.fill("#data-share-user", "data-ben")
            page.select_option("#data-share-permission", "ro")
            page.click("#data-share-submit")
            page.wait_for_selector("#data-flash")
            assert "Invited data-ben to bigdata (ro)" in page.locator("#data-flash").inner_text()
            assert "pending" in page.locator('#data-shares [data-share="data-ben"]').inner_text()
            shot(page, "vfolder")

            # a form without the page's XSRF token changes nothing
            r = page.request.post(hub.url + DATA + "create", form={"name": "sneaky"}, max_redirects=0)
            assert r.status == 403, r.status
            page.goto(hub.url + DATA)
            assert page.locator('#data-vfolders [data-vfolder="sneaky"]').count() == 0
            assert "38.1 MiB" in page.locator('#data-vfolders [data-vfolder="bigdata"]').inner_text()
            shot(page, "index-light")

            # the hub's one theme: its toggle (stored by the hub's pages) applies here too
            page.click("#dark-theme-toggle")
            assert page.evaluate("() => document.documentElement.getAttribute('data-bs-theme')") == "dark"
            page.reload()
            assert page.evaluate("() => document.documentElement.getAttribute('data-bs-theme')") == "dark"
            shot(page, "index-dark")
            page.goto(hub.url + DATA + f"vfolders/{vid}/")
            shot(page, "vfolder-dark")
            page.evaluate("() => localStorage.setItem('jupyterhub-bs-theme', 'light')")

            # a phone-sized window
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(hub.url + DATA)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            shot(page, "index-narrow")
            page.goto(hub.url + DATA + f"vfolders/{vid}/")
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            shot(page, "vfolder-narrow")
        finally:
            browser.close()

        # the other user sees the invitation, accepts it and sees the file
        browser, page = browser_login(p, hub, "data-ben", viewport={"width": 1280, "height": 800})
        try:
            page.goto(hub.url + "/services/vfolders/")
            inv = page.locator('#data-invitations [data-vfolder="bigdata"]')
            inv.wait_for()
            assert "data-ann" in inv.inner_text() and "read-only" in inv.inner_text()
            shot(page, "invitation")
            inv.locator("[data-testid=accept]").click()
            page.wait_for_selector("#data-flash")
            assert "Accepted data-ann's vfolder bigdata." in page.locator("#data-flash").inner_text()
            row = page.locator('#data-vfolders [data-vfolder="bigdata"]')
            assert "read-only" in row.inner_text()
            row.locator("a").first.click()
            page.wait_for_selector('#data-files [data-entry="big.bin"]')
            assert page.locator("#data-upload").count() == 0  # read-only: no upload, no share, no trash
            assert page.locator("#data-share").count() == 0
            shot(page, "shared-readonly")
        finally:
            browser.close()


# --- batch jobs on the Data page ---------------------------------------------------------

JOBS = "/services/gpu-allocator/api/v1/jobs"


def submit(user, script: str) -> str:
    r = user.call("POST", JOBS, json={"command": ["sh", "-c", script], "gpus": "0"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def job_of(user, job_id: str) -> dict:
    r = user.call("GET", f"{JOBS}/{job_id}")
    r.raise_for_status()
    return r.json()


def test_data_page_jobs_state_logs_cancel_and_only_ones_own(hub):
    """The Data page lists the user's batch jobs (from the allocator, with the
    user's own OAuth token): a running one with its live log and a Cancel
    button, a failed one with its exit code; cancelled from the page it shows
    cancelled. Another user gets a 404 for its log page and cannot cancel it."""
    ann = hub.login("dj-ann")
    failed = submit(ann, "echo done-job; exit 3")
    running = submit(ann, "echo hello-data-page; sleep 4; echo second-line; sleep 60")
    # 1.5 MiB of output: its page shows the last MiB
    chatty = submit(ann, "head -c 1572864 /dev/zero | tr '\\0' x; echo; echo tail-marker")
    wait_for(lambda: job_of(ann, failed)["state"] == "failed", 120, "the failing job to end")
    wait_for(lambda: job_of(ann, chatty)["state"] == "succeeded", 120, "the chatty job to end")
    wait_for(lambda: job_of(ann, running)["state"] == "running", 120, "the long job to run")
    assert job_of(ann, failed)["exit_code"] == 3

    with sync_playwright() as p:
        # another user: not their job, neither its log nor its cancel
        browser, page = browser_login(p, hub, "dj-ben", viewport={"width": 1280, "height": 900})
        try:
            page.goto(hub.url + DATA)
            page.wait_for_selector("#data-jobs")
            assert page.locator("#data-jobs-empty").is_visible()  # ann's jobs are not listed
            r = page.goto(hub.url + DATA + f"jobs/{running}/logs")
            assert r.status == 404
            assert f"no job {running}" in page.locator("#data-error-message").inner_text()
            assert "hello-data-page" not in page.content()
            r = page.request.get(hub.url + DATA + f"jobs/{running}/logs.txt")
            assert r.status == 404 and "hello-data-page" not in r.text()
            # a cancel with the page's own XSRF token: the allocator says no
            page.goto(hub.url + DATA)
            xsrf = page.locator("#gpuhub-data").get_attribute("data-xsrf")
            page.evaluate("""([url, xsrf]) => {
                const f = document.createElement("form");
                f.method = "post"; f.action = url;
                const i = document.createElement("input");
                i.type = "hidden"; i.name = "_xsrf"; i.value = xsrf;
                f.appendChild(i); document.body.appendChild(f); f.submit();
            }""", [hub.url + DATA + f"jobs/{running}/cancel", xsrf])
            page.wait_for_selector("#data-error")
            assert f"Could not cancel job {running}: no job {running}" in page.locator("#data-error").inner_text()
            assert job_of(ann, running)["state"] == "running"
        finally:
            browser.close()

        browser, page = browser_login(p, hub, "dj-ann", viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: d.accept())
        try:
            page.goto(hub.url + DATA)
            page.evaluate("() => localStorage.setItem('jupyterhub-bs-theme', 'light')")
            page.reload()
            row = page.locator(f'#data-jobs [data-job="{running}"]')
            assert row.locator("[data-testid=state]").inner_text() == "running"
            assert "hello-data-page" in row.locator("code").inner_text()
            assert row.locator("[data-testid=cancel]").count() == 1
            done = page.locator(f'#data-jobs [data-job="{failed}"]')
            assert done.locator("[data-testid=state]").inner_text() == "failed"
            assert done.locator("[data-testid=exit-code]").inner_text() == "3"
            assert "the command exited with 3" in done.locator("[data-testid=reason]").inner_text()
            assert done.locator("[data-testid=cancel]").count() == 0
            page.locator("#data-jobs").scroll_into_view_if_needed()
            shot(page, "jobs-light")

            # the table fits the page (no horizontal scroll; the command is cut), also phone-sized
            fits = "() => [...document.querySelectorAll('#data-jobs .table-responsive')].every(e => e.scrollWidth <= e.clientWidth)"
            assert page.evaluate(fits)
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            page.locator("#data-jobs").scroll_into_view_if_needed()
            shot(page, "jobs-narrow")
            page.set_viewport_size({"width": 1280, "height": 900})

            # its log, refreshed while it runs
            row.locator("[data-testid=logs]").click()
            page.wait_for_selector("#data-job")
            assert "hello-data-page" in page.locator("#data-job-log").inner_text()
            page.wait_for_function(
                "() => document.getElementById('data-job-log').textContent.includes('second-line')", timeout=30_000)
            shot(page, "job-log-light")
            page.evaluate("() => localStorage.setItem('jupyterhub-bs-theme', 'dark')")
            page.reload()
            page.wait_for_selector("#data-job")
            shot(page, "job-log-dark")

            # cancel from the Data page
            page.goto(hub.url + DATA)
            shot(page, "jobs-dark")
            page.locator(f'#data-jobs [data-job="{running}"] [data-testid=cancel]').click()
            page.wait_for_selector("#data-flash")
            assert f"Cancelled job {running}" in page.locator("#data-flash").inner_text()
            row = page.locator(f'#data-jobs [data-job="{running}"]')
            assert row.locator("[data-testid=state]").inner_text() == "cancelled"
            assert row.locator("[data-testid=cancel]").count() == 0
            shot(page, "jobs-cancelled-dark")
            wait_for(lambda: job_of(ann, running)["state"] == "cancelled", 30, "the job cancelled")

            # the finished job's page: its output and exit code, no Cancel, no refresh
            page.evaluate("() => localStorage.setItem('jupyterhub-bs-theme', 'light')")
            page.goto(hub.url + DATA + f"jobs/{failed}/logs")
            assert "done-job" in page.locator("#data-job-log").inner_text()
            assert page.locator("#data-job-exit").inner_text() == "3"
            assert page.locator("#data-job-state").inner_text() == "failed"
            assert page.locator("#data-job-cancel").count() == 0
            assert page.locator("#data-job").get_attribute("data-follow") is None
            shot(page, "job-log-failed-light")

            page.goto(hub.url + DATA + f"jobs/{chatty}/logs")
            text = page.locator("#data-job-log").inner_text()
            assert text.rstrip().endswith("tail-marker") and 1 << 20 <= len(text) < (1 << 20) + 100, len(text)
            assert "(the last 1.0 MiB of 1.5 MiB)" in page.locator("#data-job").inner_text()
            shot(page, "job-log-tail-light")
        finally:
            browser.close()
