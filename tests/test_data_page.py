"""The hub's Data page (vfolder_manager.data) in a real browser (Debian's
Chromium, Playwright) through the real hub (the shared ``hub`` fixture): the
Services menu says "Data"; a user creates a vfolder, uploads a 40 MB file,
reloads the page midway (the upload shows as interrupted), chooses the file
again and it resumes at the service's offset and finishes; downloads it
byte-identical; shares it with another user, who sees the invitation on their
Data page, accepts it and sees the file. A form without the XSRF token changes
nothing. Screenshots (light, dark, a phone-sized window) are left in
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
