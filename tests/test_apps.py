"""Apps in the session (gpuhub/lab/apps.py): VS Code and TensorBoard behind the
single-user server's proxy (jupyter-server-proxy), through the real hub (demo
config, local-process sessions as the users' own accounts).

- TensorBoard answers 200 at /user/NAME/tensorboard/ and VS Code at
  /user/NAME/vscode/; the code-server process is a child of the user's server,
  with the session's GPUHUB_ALLOCATION and CUDA_VISIBLE_DEVICES in its environment
  (the same as a kernel's).
- In Chromium: the JupyterLab launcher has the VS Code and TensorBoard tiles; VS
  Code at /user/NAME/vscode/ opens a file of the home, the test types a line into
  it and saves it, and JupyterLab's contents API reads the line back.

Screenshots are left in build/test-artifacts/apps/ (GPUHUB_TEST_ARTIFACTS to change it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from spawner import codeserver
from tests.support import ENV_CODE, REPO, browser_login, pids_with_env, wait_for

pytestmark = [
    pytest.mark.skipif(os.getuid() != 0, reason="sessions as the users' own accounts need a hub that runs as root"),
]
ARTIFACTS = Path(os.environ.get("GPUHUB_TEST_ARTIFACTS", REPO / "build" / "test-artifacts")) / "apps"
USER = "gpuhub-apps"


@pytest.fixture(scope="module")
def session(hub):
    """USER logged in with a running session of 0.5 GPU; stopped after the module."""
    if codeserver.find() is None:
        pytest.fail(f"code-server is not installed in {codeserver.install_dir()}: run make install")
    user = hub.login(USER)
    assert user.spawn({"gpus": 0.5}).status_code in (201, 202)
    user.wait_ready(120)
    yield user
    user.stop()


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat)."""
    parent = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [pid]
    while todo:
        kids = [c for c, pp in parent.items() if pp == todo[-1]]
        todo.pop()
        found += kids
        todo += kids
    return found


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw if b"=" in kv)


def test_tensorboard_and_vscode_answer_in_the_session_with_its_gpus(session):
    r = session.call("GET", f"/user/{USER}/tensorboard/")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert "<tf-tensorboard" in r.text or "TensorBoard" in r.text, r.text[:300]
    r = session.call("GET", f"/user/{USER}/vscode/")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert "vscode-workbench-web-configuration" in r.text or "code-server" in r.text, r.text[:300]

    (allocation,) = session.allocations()
    kernel = json.loads(session.run_code(ENV_CODE))
    assert kernel["GPUHUB_ALLOCATION"] == allocation["id"]
    (server,) = pids_with_env("JUPYTERHUB_USER", USER, "jupyterhub.singleuser")
    apps = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children(server)}
    (vscode,) = [pid for pid, cmd in apps.items() if b"code-server" in cmd and b"entry.js" in cmd]
    (board,) = [pid for pid, cmd in apps.items() if b"tensorboard" in cmd and b"--path_prefix" in cmd]
    for pid in (vscode, board):
        env = environ(pid)
        assert env["GPUHUB_ALLOCATION"] == allocation["id"], pid
        assert env["CUDA_VISIBLE_DEVICES"] == kernel["CUDA_VISIBLE_DEVICES"], pid
        assert env["JUPYTERHUB_USER"] == USER
        assert os.stat(f"/proc/{pid}").st_uid == kernel["uid"]  # the user's own account


@pytest.mark.browser
def test_launcher_tiles_and_a_file_edited_in_vscode_reads_back_in_jupyterlab(hub, session):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    contents = f"/user/{USER}/api/contents/from-vscode.txt"
    r = session.call("PUT", contents, json={"type": "file", "format": "text", "content": "first line\n"})
    assert r.status_code in (200, 201), r.text
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, USER, viewport={"width": 1400, "height": 900})
        try:
            page.goto(f"{hub.url}/user/{USER}/lab")
            launcher = page.locator(".jp-Launcher")
            launcher.wait_for(timeout=120_000)
            for title in ("VS Code", "TensorBoard", "Terminal"):  # (JupyterLab's terminal stays)
                launcher.locator(".jp-LauncherCard", has_text=title).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "launcher.png"))

            page.goto(f"{hub.url}/user/{USER}/vscode/")
            page.locator(".monaco-workbench").wait_for(timeout=120_000)
            row = page.locator(".explorer-folders-view .monaco-list-row", has_text="from-vscode.txt")
            row.wait_for(timeout=60_000)
            row.click()
            editor = page.locator(".editor-instance .monaco-editor .view-lines")
            editor.wait_for(timeout=30_000)
            # (the editor renders spaces as no-break spaces)
            wait_for(lambda: "first line" in editor.inner_text().replace("\xa0", " "), 30,
                     "the file in VS Code's editor")
            editor.click()
            page.keyboard.press("Control+End")
            page.keyboard.type("typed in VS Code")
            page.keyboard.press("Control+S")

            def saved():
                r = session.call("GET", contents)
                return r.status_code == 200 and "typed in VS Code" in r.json()["content"] and r.json()["content"]

            text = wait_for(saved, 30, "JupyterLab to read the line VS Code saved")
            page.screenshot(path=str(ARTIFACTS / "vscode.png"))
        finally:
            browser.close()
    assert text == "first line\ntyped in VS Code"
