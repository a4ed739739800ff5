"""A person's path through the demo, in a real browser (Debian's Chromium driven
by Playwright): log in, pick a GPU share on the spawn page, press Start, and get
JupyterLab. Also times click-to-running-server."""

from __future__ import annotations

import os
import time

import pytest
from playwright.sync_api import sync_playwright

from tests.support import CHROMIUM, CHROMIUM_ARGS, LOCALE

pytestmark = [pytest.mark.e2e, pytest.mark.browser]



def test_login_pick_half_gpu_start_and_land_in_jupyterlab(hub, tmp_path):
    assert os.path.exists(CHROMIUM), "Debian's chromium is installed by make (.ci/apt-packages)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(locale=LOCALE)
        page.goto(hub.url + "/hub/login")
        page.fill("#username_input", "gpuhub-browser")
        page.fill("#password_input", "anything")
        page.click("#login_submit")
        page.wait_for_selector("#gpuhub-gpus")
        assert "Free right now" in page.content()
        options = page.eval_on_selector_all("#gpuhub-gpus option", "els => els.map(e => e.value)")
        assert options == ["0", "0.25", "0.5", "1", "2", "4", "custom"]
        page.select_option("#gpuhub-gpus", "0.5")
        page.fill("#gpuhub-mem", "2G")
        page.screenshot(path=str(tmp_path / "spawn-form.png"), full_page=True)
        clicked = time.monotonic()
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url("**/user/gpuhub-browser/lab**", timeout=120_000)
        page.wait_for_selector(".jp-LabShell", timeout=120_000)
        seconds = time.monotonic() - clicked
        page.screenshot(path=str(tmp_path / "jupyterlab.png"))
        browser.close()
    user = hub.login("gpuhub-browser")
    (allocation,) = user.allocations()
    assert allocation["gpus"] == "0.5" and allocation["mem"] == "2048M"
    user.stop()
    assert user.allocations() == []
    print(f"click on Start to JupyterLab shown: {seconds:.1f}s (screenshots in {tmp_path})")
