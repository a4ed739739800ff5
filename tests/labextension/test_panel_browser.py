"""The panel in a real browser (Debian's Chromium, Playwright) through the real
hub (demo config, proxy, allocator, vfolder service, local-process sessions):
log in, spawn 0.5 GPU, open the gpuhub panel, see the share, the host and the
time left; upload a 50 MB file into a vfolder, reload the page midway, choose
the file again and see it resume and finish; see the storage numbers move; hide
sections through the panel's settings.
Another user's token is refused by the session's panel API.

Run as job (#21 item 4): a notebook from the file browser's context menu and the
panel's button runs as a batch job, listed in the panel's Jobs, its executed copy
in ~/jobs/ID/.

Screenshots (light and dark) are left in build/test-artifacts/labextension/
(GPUHUB_TEST_ARTIFACTS to change it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from tests.support import CHROMIUM, CHROMIUM_ARGS, LOCALE, wait_for

REPO = Path(__file__).resolve().parents[2]
LABEXT = REPO / "labextension"
#: where installed_extension puts the extension for the hub's servers: outside the
#: checkout, which the servers' accounts may not enter (a clone under /root), one
#: per checkout
PREFIX = Path(tempfile.gettempdir()) / f"gpuhub-test-prefix-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}"

pytestmark = [
    pytest.mark.e2e, pytest.mark.browser,
    pytest.mark.skipif(os.getuid() != 0, reason="vfolder mounts in local sessions need a hub that runs as root"),
    pytest.mark.hub(JUPYTER_PATH=str(PREFIX / "share" / "jupyter"),
                    JUPYTER_CONFIG_PATH=str(PREFIX / "etc" / "jupyter"),
                    # this checkout's panel in a servers' environment of its own
                    GPUHUB_SERVER_ENVS=lambda work: str(private_server_envs())),
]
V = "/services/vfolders/api/v1"
A = "/services/gpu-allocator/api/v1"
ARTIFACTS = Path(os.environ.get("GPUHUB_TEST_ARTIFACTS", REPO / "build" / "test-artifacts" / "labextension"))
USER = "gpuhub-panel"


@pytest.fixture(scope="module", autouse=True)
def installed_extension():
    """The freshly built extension and its server config in a prefix the servers
    (other accounts) can read, whatever the venv holds; before the hub starts."""
    if not (LABEXT / "build" / "gpuhub-labextension" / "package.json").exists():
        pytest.fail("the extension is not built: run make labextension")
    PREFIX.mkdir(mode=0o755, exist_ok=True)
    subprocess.run([sys.executable, str(LABEXT / "install.py"), "--prefix", str(PREFIX)], check=True)
    yield
    # (after the hub, which the autouse fixture outlives)
    for root in PRIVATE_ENVS:
        shutil.rmtree(root, ignore_errors=True)


#: the private servers' environments this module made (removed after its hub)
PRIVATE_ENVS: list[Path] = []


def private_server_envs() -> Path:
    """A servers' environment for this checkout's panel alone: the shared one
    (spawner/serverenv.py, which `make install` built) hard-linked into a
    directory every account can reach, without its gpuhub parts. The hub
    (GPUHUB_SERVER_ENVS) then installs this checkout's gpuhub.lab and built
    extension into the copy (serverenv.install_lab writes new files, never through
    a link), so the test runs the code under test and leaves the environment
    that other checkouts' hubs share as it was."""
    shared = Path(subprocess.run([sys.executable, str(REPO / "spawner" / "serverenv.py"), "path"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    if not (shared / "gpuhub-server-env.json").is_file():
        pytest.fail(f"the servers' environment {shared} is not installed: run make install")
    root = Path(tempfile.mkdtemp(prefix="gpuhub-panel-server-envs-"))
    root.chmod(0o755)
    PRIVATE_ENVS.append(root)
    copy = root / shared.name
    if subprocess.run(["cp", "-al", str(shared), str(copy)], capture_output=True).returncode != 0:
        shutil.rmtree(copy, ignore_errors=True)  # another filesystem: a real copy
        shutil.copytree(shared, copy, symlinks=True)
    site = next(copy.glob("lib/python3*/site-packages"))
    for p in (site / "gpuhub", copy / "share" / "jupyter" / "labextensions" / "gpuhub-labextension"):
        shutil.rmtree(p, ignore_errors=True)
    for p in (copy / "gpuhub-lab.stamp", copy / "etc" / "jupyter" / "jupyter_server_config.d" / "gpuhub.json"):
        p.unlink(missing_ok=True)
    return root


def open_panel(page):
    page.wait_for_selector(".jp-LabShell", timeout=120_000)
    tab = page.locator('.jp-SideBar [data-id="gpuhub-panel"]')
    tab.wait_for(timeout=60_000)
    if not page.locator("#gpuhub-panel").is_visible():
        tab.click()
    page.wait_for_selector("#gpuhub-panel [data-testid=share]", timeout=60_000)


def lab_with_half_a_gpu(p, hub, user: str):
    """Chromium signed in as ``user``, with JupyterLab of a 0.5 GPU server from
    the spawn form and the panel open: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1900}, locale=LOCALE)
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", "anything")
    page.click("#login_submit")
    page.wait_for_selector("#gpuhub-gpus")
    page.select_option("#gpuhub-gpus", "0.5")
    page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
    page.wait_for_url(f"**/user/{user}/lab**", timeout=120_000)
    open_panel(page)
    return browser, page


def shot(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    box = page.locator("#gpuhub-panel").bounding_box()
    height = page.evaluate(
        "() => { const p = document.getElementById('gpuhub-panel');"
        " return Math.max(...[...p.children].map(c => c.getBoundingClientRect().bottom))"
        " - p.getBoundingClientRect().top + 12; }"
    )
    page.screenshot(path=str(ARTIFACTS / f"{name}-panel.png"),
                    clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": min(height, box["height"])})
    page.screenshot(path=str(ARTIFACTS / f"{name}-lab.png"))


def set_panel_width(page, width: int) -> None:
    """Drag the handle between the left sidebar and the main area until the
    sidebar (and so the panel) is ``width`` pixels wide."""
    stack = page.locator("#jp-left-stack").bounding_box()
    handles = [h.bounding_box() for h in page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").all()]
    handle = min((h for h in handles if h and h["height"] > 100),
                 key=lambda h: abs(h["x"] - (stack["x"] + stack["width"])))
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(stack["x"] + width, y, steps=5)
    page.mouse.up()
    wait_for(lambda: abs(page.locator("#gpuhub-panel").bounding_box()["width"] - width) <= 4, 10,
             f"the panel to be {width} px wide")


#: the share section's rows whose value does not keep to its own line beside its
#: label (wraps, or lies under the label): [(label, value, why)]
WRAPPED_ROWS = """() => [...document.querySelectorAll('#gpuhub-panel [data-section=share] .gpuhub-row')].map(r => {
  const label = r.querySelector('.gpuhub-label'), value = r.querySelector('.gpuhub-value');
  const l = label.getBoundingClientRect(), v = value.getBoundingClientRect();
  const line = parseFloat(getComputedStyle(label).lineHeight) || l.height;
  const why = v.height > 1.5 * line ? 'wraps' : v.top >= l.bottom - 1 ? 'under its label'
    : v.left < l.right ? 'overlaps its label' : '';
  return [label.textContent, value.textContent, why];
}).filter(r => r[2])"""


def check_widths(page, theme: str) -> None:
    """At the panel's narrowest (250 px) and a wide (400 px) width: every fact of the
    share on one line beside its label, nothing wider than the panel; screenshots."""
    for width in (250, 400):
        set_panel_width(page, width)
        page.wait_for_timeout(300)
        assert page.evaluate(WRAPPED_ROWS) == [], (width, theme)
        overflow = page.evaluate("() => { const p = document.getElementById('gpuhub-panel');"
                                 " return p.scrollWidth - p.clientWidth; }")
        assert overflow <= 0, f"the panel scrolls sideways at {width} px ({theme}): {overflow} px"
        shot(page, f"{theme}-{width}px")


def set_theme(api, page, theme: str):
    """JupyterLab's own theme setting, then a reload to apply it."""
    r = api.call("PUT", f"/user/{api.name}/lab/api/settings/@jupyterlab/apputils-extension:themes",
                 json={"raw": '{"theme": "%s"}' % theme})
    assert r.status_code in (200, 204), r.text
    page.reload()
    open_panel(page)
    light = "true" if "Light" in theme else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'", timeout=30_000)


def progress(page) -> float:
    return page.evaluate(
        "() => { const p = document.querySelector('#gpuhub-panel [data-upload=\"big.bin\"] progress');"
        " return p ? p.value / p.max : -1; }"
    )


def test_panel_share_time_left_resumable_upload_storage(hub, tmp_path):
    assert os.path.exists(CHROMIUM), "Debian's chromium is installed by make (.ci/apt-packages)"
    api = hub.login(USER)
    r = api.call("POST", V + "/vfolders", json={"name": "data", "auto_mount": True})
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(50 * 1024 * 1024))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()

    with sync_playwright() as p:
        browser, page = lab_with_half_a_gpu(p, hub, USER)
        set_theme(api, page, "JupyterLab Light")  # the account (and its settings) may outlive a hub

        (allocation,) = api.allocations()
        panel = page.locator("#gpuhub-panel")
        assert panel.locator("[data-testid=share]").inner_text().startswith("0.5 ×")
        assert panel.locator("[data-testid=host]").inner_text() == allocation["host"]
        left = panel.locator("[data-testid=time-left]").inner_text()
        assert left.startswith("7h 5") or left.startswith("8h 00m"), left
        assert "simulated" in panel.locator("[data-testid=live-source]").inner_text()
        page.wait_for_selector("#gpuhub-panel [data-vfolder=data]")
        assert "~/vfolders/data (rw)" in panel.locator("[data-vfolder=data]").inner_text()
        # quotas from the allocator's GET quota: nothing set, this share counted
        assert panel.locator("[data-testid=quota-gpus]").inner_text() == "0.5 (no limit)"
        assert panel.locator("[data-testid=quota-sessions]").inner_text() == "1 (no limit)"
        assert "GPU-hours (last 7 days)" in panel.locator("[data-section=quotas]").inner_text()
        assert "no other requests waiting" in panel.locator("[data-section=queue]").inner_text()
        # extend: offered (a fresh share), or the reason it is not
        assert panel.locator("[data-testid=extend], [data-testid=extend-reason]").count() == 1
        # exact bytes (the text is rounded: 50 MB may not change "86.9 GiB")
        written_before = panel.locator("[data-testid=storage-written]").get_attribute("data-bytes")
        shot(page, "light")
        check_widths(page, "light")

        # --- a vfolder made in the panel is mounted in this running session (#19 item 2)
        panel.locator("input[aria-label='new vfolder name']").fill("fresh")
        panel.locator(".gpuhub-create button[type=submit]").click()
        page.wait_for_selector("#gpuhub-panel [data-vfolder=fresh]")
        wait_for(lambda: "~/vfolders/fresh (rw)" in panel.locator("[data-vfolder=fresh]").inner_text(),
                 60, "the panel to show fresh mounted here", interval=0.5)
        shot(page, "light-fresh-mounted")
        with ThreadPoolExecutor(1) as other_thread:  # run_code has its own event loop; playwright's runs here
            out = other_thread.submit(
                api.run_code, "import os\np = os.path.expanduser('~/vfolders/fresh/note.txt')\n"
                "open(p, 'w').write('made in the panel')\nprint(open(p).read())").result()
        assert out.strip() == "made in the panel", out

        # --- a resumable upload, interrupted by a reload -----------------------
        page.evaluate("() => localStorage.setItem('gpuhub:upload-chunk-bytes', String(1024 * 1024))")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 5, "downloadThroughput": -1,
            "uploadThroughput": 6 * 1024 * 1024,
        })
        page.select_option("[data-testid=upload-vfolder]", vid)
        page.set_input_files("[data-testid=upload-file]", str(big))
        wait_for(lambda: progress(page) > 0.25, 90, "the upload to pass 25%", interval=0.1)
        at_reload = progress(page)
        assert at_reload < 0.9, f"too fast to interrupt: {at_reload}"
        page.reload()
        open_panel(page)
        rec = page.locator('#gpuhub-panel [data-upload="big.bin"]')
        rec.wait_for()
        assert rec.get_attribute("data-state") == "interrupted"
        assert "choose big.bin again to resume" in rec.inner_text()
        shot(page, "interrupted")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        page.select_option("[data-testid=upload-vfolder]", vid)
        page.set_input_files("[data-testid=upload-file]", str(big))
        page.wait_for_selector('#gpuhub-panel [data-upload="big.bin"][data-state=done]', timeout=120_000)
        resumed = page.locator("#gpuhub-panel [data-testid=upload-resumed]").inner_text()
        assert resumed.startswith("resumed at") and "resumed at 0 B" not in resumed, resumed

        # the file arrived whole
        r = api.call("GET", V + f"/vfolders/{vid}/files/big.bin")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest

        # the storage numbers moved (the service samples every few seconds)
        def moved():
            now = panel.locator("[data-testid=storage-written]").get_attribute("data-bytes")
            return bool(now) and now != written_before
        wait_for(moved, 60, "the storage host's written bytes to move", interval=1)
        page.wait_for_timeout(6000)  # a few more points on the sparklines
        shot(page, "light-after-upload")

        # dark theme (JupyterLab's own setting), same panel
        set_theme(api, page, "JupyterLab Dark")
        page.wait_for_timeout(1500)
        shot(page, "dark")
        check_widths(page, "dark")

        # the panel's settings (schema/plugin.json): which sections show
        settings = f"/user/{USER}/lab/api/settings/gpuhub-labextension:plugin"
        r = api.call("PUT", settings, json={"raw": '{"sections": {"queue": false, "storage": false}}'})
        assert r.status_code in (200, 204), r.text
        try:
            page.reload()
            open_panel(page)
            page.wait_for_selector("#gpuhub-panel [data-section=queue]", state="hidden", timeout=30_000)
            assert not panel.locator("[data-section=storage]").is_visible()
            assert panel.locator("[data-section=quotas]").is_visible()
        finally:
            api.call("PUT", settings, json={"raw": "{}"})  # the account may outlive this hub
        browser.close()

    # the session's panel API answers its user, and refuses another user's token
    assert api.call("GET", f"/user/{USER}/gpuhub/status").json()["share"]["allocation"]["id"] == allocation["id"]
    # the panel's API answers errors in the services' shape (this checkout's gpuhub.lab runs)
    r = api.call("POST", f"/user/{USER}/gpuhub/vfolders", data="[1]")
    assert r.status_code == 400 and r.json() == {"error": "send a JSON object"}, r.text
    other = hub.login("gpuhub-panel-other")
    r = other.call("GET", f"/user/{USER}/gpuhub/status", allow_redirects=False)
    assert r.status_code in (403, 404), (r.status_code, r.text[:200])
    api.stop()
    print(f"screenshots in {ARTIFACTS}")


# --- Run as job (#21 item 4) -------------------------------------------------------------

JOBS_USER = "gpuhub-panel-jobs"


def notebook(*sources: str) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": s} for i, s in enumerate(sources)]}


def put(api, path: str, model: dict) -> None:
    r = api.call("PUT", f"/user/{api.name}/api/contents/{quote(path)}", json=model)
    assert r.status_code in (200, 201), r.text


def job_row(page, state: str | None = None):
    sel = "#gpuhub-panel [data-section=jobs] .gpuhub-job" + (f"[data-state={state}]" if state else "")
    return page.locator(sel)


def run_as_job_dialog(page, theme: str):
    """The dialog is open: check its defaults, screenshot it."""
    dialog = page.locator(".jp-Dialog-content")
    dialog.wait_for(timeout=30_000)
    assert page.locator("[data-testid=job-gpus]").input_value() == "0.5"  # the session's own share
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=str(ARTIFACTS / f"jobs-dialog-{theme}.png"))
    return dialog


def open_files(page, folder: str):
    """The file browser (it shares the left sidebar with the panel) in ``folder``."""
    page.goto(page.url.split("/lab")[0] + f"/lab/tree/{quote(folder)}")
    page.wait_for_selector(".jp-LabShell", timeout=120_000)
    tab = page.locator('.jp-SideBar [data-id="filebrowser"]')
    tab.wait_for(timeout=60_000)
    if not page.locator("#filebrowser").is_visible():
        tab.click()


def jobs_shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    section = page.locator("#gpuhub-panel [data-section=jobs]")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(ARTIFACTS / f"jobs-{name}.png"))


def test_run_as_job_executes_the_notebook_and_the_panel_lists_it(hub):
    """Right-click a notebook (in a folder with a space) → Run as job… → the dialog
    (GPUs default to the session's share) → the job succeeds in the panel, the
    executed copy with its output is ~/jobs/ID/NAME.ipynb and opens from the
    panel; a second one, from the panel's button for the open notebook, is
    cancelled while it runs."""
    api = hub.login(JOBS_USER)
    with sync_playwright() as p:
        browser, page = lab_with_half_a_gpu(p, hub, JOBS_USER)
        set_theme(api, page, "JupyterLab Light")
        put(api, "my work", {"type": "directory"})
        put(api, "my work/nb one.ipynb", {"type": "notebook", "format": "json", "content": notebook(
            "print(6*7)", "import os\nprint(os.path.basename(os.getcwd()))")})
        put(api, "my work/slow.ipynb", {"type": "notebook", "format": "json", "content": notebook(
            "import time\ntime.sleep(600)")})

        # --- from the file browser's context menu
        open_files(page, "my work")
        item = page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text="nb one.ipynb")
        item.wait_for(timeout=30_000)
        item.click(button="right")
        page.locator('.lm-Menu-item[data-command="gpuhub:run-as-job"]').click()
        dialog = run_as_job_dialog(page, "light")
        assert "nb one.ipynb" in dialog.inner_text() and "~/jobs/ID/" in dialog.inner_text()
        page.locator("[data-testid=job-hours]").fill("1")
        page.locator(".jp-Dialog-footer .jp-mod-accept").click()
        job_row(page).first.wait_for(timeout=30_000)
        job_id = job_row(page).first.get_attribute("data-job")
        job_row(page, "succeeded").first.wait_for(timeout=180_000)
        row = page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{job_id}']")
        assert row.get_attribute("data-state") == "succeeded", row.inner_text()
        assert "nb one.ipynb" in row.inner_text() and "exit 0" in row.inner_text()
        page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{job_id}'] [data-testid=job-open]").wait_for(timeout=30_000)

        # the executed copy next to its log, with the output; it ran in the notebook's folder
        r = api.call("GET", f"/user/{JOBS_USER}/api/contents/{quote(f'jobs/{job_id}/nb one.ipynb')}")
        assert r.status_code == 200, r.text
        cells = r.json()["content"]["cells"]
        assert cells[0]["outputs"][0]["text"] == "42\n" and cells[1]["outputs"][0]["text"] == "my work\n"
        r = api.call("GET", f"/user/{JOBS_USER}/api/contents/{quote(f'jobs/{job_id}/output.log')}")
        assert r.status_code == 200 and "nb one.ipynb" in r.json()["content"], r.text
        (j,) = [j for j in api.call("GET", A + "/jobs").json()["jobs"] if j["id"] == job_id]
        assert j["workdir"] == "my work" and j["options"]["gpus"] == "0.5" and j["options"]["max_hours"] == 1

        # Open result: the executed notebook in the lab
        row.locator("[data-testid=job-open]").click()
        page.locator(".jp-NotebookPanel .jp-OutputArea-output", has_text="42").first.wait_for(timeout=60_000)

        # --- from the panel: the notebook open in the main area, cancelled while it runs
        page.locator('.jp-SideBar [data-id="filebrowser"]').click()
        page.locator(".jp-DirListing-item", has_text="slow.ipynb").dblclick()
        page.locator(".lm-DockPanel-tabBar .lm-mod-current", has_text="slow.ipynb").wait_for(timeout=60_000)
        open_panel(page)
        page.locator("#gpuhub-panel [data-testid=run-current]").click()
        dialog = run_as_job_dialog(page, "light-current")
        assert "slow.ipynb" in dialog.inner_text()
        page.locator(".jp-Dialog-footer .jp-mod-accept").click()
        wait_for(lambda: job_row(page).first.get_attribute("data-job") != job_id, 30, "the second job listed")
        slow = job_row(page).first.get_attribute("data-job")
        page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{slow}'][data-state=running]").wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        jobs_shot(page, "light")
        shot(page, "jobs-light")
        set_panel_width(page, 250)
        page.wait_for_timeout(300)
        overflow = page.evaluate("() => { const p = document.getElementById('gpuhub-panel');"
                                 " return p.scrollWidth - p.clientWidth; }")
        assert overflow <= 0, f"the panel scrolls sideways at 250 px with jobs: {overflow} px"
        jobs_shot(page, "light-250px")
        page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{slow}'] [data-testid=job-cancel]").click()
        page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{slow}'][data-state=cancelled]").wait_for(timeout=60_000)
        assert not page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{slow}'] [data-testid=job-cancel]").count()

        # --- dark
        set_theme(api, page, "JupyterLab Dark")
        page.locator(f"#gpuhub-panel .gpuhub-job[data-job='{job_id}']").wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        jobs_shot(page, "dark")
        shot(page, "jobs-dark")
        open_files(page, "my work")
        item.wait_for(timeout=30_000)
        item.click(button="right")
        page.locator('.lm-Menu-item[data-command="gpuhub:run-as-job"]').click()
        run_as_job_dialog(page, "dark")
        page.locator(".jp-Dialog-footer button:not(.jp-mod-accept)").first.click()
        set_theme(api, page, "JupyterLab Light")  # the account may outlive this hub
        browser.close()
    api.stop()
