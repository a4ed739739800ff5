"""Profiles per hub group through the real hub (issue #20 item 3): the demo config
with three profiles — one for the group ``ml`` (a GPU share with choices, a
vfolder, an environment variable, the run time as its only override), one for
everyone (no GPU), one for ``staff`` — free choices off, and back on for
``staff`` through JupyterHub's own ``Spawner.group_overrides``.

A group member sees the group's profiles and not others' (the form's HTML and
the REST API); an override the profile does not allow is a 400 naming what is
allowed; a profile's vfolders and environment are what the local session gets.
In Chromium, the form with profiles (a screenshot in tests/artifacts/profiles/)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support import CHROMIUM, browser_login

V = "/services/vfolders/api/v1"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "profiles"
PROFILES = [
    {"slug": "ml-small", "display_name": "ML, small", "description": "A quarter or half of a GPU, with the datasets",
     "choices": ["0.25", "0.5"], "cpu": 0.5, "mem": "512M", "max_hours": 4, "vfolders": ["datasets"],
     "environment": {"PROFILE_GREETING": "hello ml"}, "groups": ["ml"], "overrides": ["max_hours"],
     "default": True},
    {"slug": "cpu-only", "display_name": "CPU only", "description": "No GPU, for editing", "gpus": "0",
     "cpu": 0.5, "mem": "512M"},
    {"slug": "staff-big", "display_name": "Staff, 2 GPUs", "gpus": "2", "groups": ["staff"]},
]
pytestmark = [pytest.mark.e2e, pytest.mark.hub(config={
    "GPUSpawner": {"profiles": PROFILES, "allow_custom": False},
    "Spawner": {"group_overrides": {"1-staff": {"groups": ["staff"], "spawner_override": {"allow_custom": True}}}},
    "JupyterHub": {"load_groups": {"ml": {"users": ["gpuhub-pr-ann"]}, "staff": {"users": ["gpuhub-pr-sam"]}}},
})]


def form_profiles(user) -> list[str]:
    """The profiles the spawn form offers the user (its radio cards' values)."""
    r = user.session.get(user.hub.url + "/hub/spawn", timeout=30)
    r.raise_for_status()
    return re.findall(r'type="radio" name="profile" id="[^"]+" value="([^"]+)"', r.text)


def test_each_group_sees_its_own_profiles_in_the_form_and_the_api(hub):
    ann, bob, sam = hub.login("gpuhub-pr-ann"), hub.login("gpuhub-pr-bob"), hub.login("gpuhub-pr-sam")
    assert form_profiles(ann) == ["ml-small", "cpu-only"]
    assert form_profiles(bob) == ["cpu-only"]
    assert form_profiles(sam) == ["cpu-only", "staff-big", "custom"]  # group_overrides: free choices too

    # a profile of another group is refused as if unknown, naming those offered
    r = bob.spawn({"profile": "ml-small"})
    assert r.status_code == 400, r.text
    assert "profile 'ml-small' is not offered to gpuhub-pr-bob; profiles offered to gpuhub-pr-bob: cpu-only" \
        in r.json()["message"]
    r = bob.spawn({"profile": "custom", "gpus": 1})
    assert r.status_code == 400 and "free choices (profile 'custom') are not offered" in r.json()["message"]
    # an override the profile does not allow
    r = ann.spawn({"profile": "ml-small", "cpu": 4, "mem": "8G"})
    assert r.status_code == 400, r.text
    assert ("profile 'ml-small' does not let you change cpu, mem; it lets you change: gpus (one of 0.25, "
            "0.5), max_hours") in r.json()["message"]
    r = ann.spawn({"profile": "ml-small", "gpus": 1})
    assert r.status_code == 400 and "offers gpus 0.25 or 0.5, not 1" in r.json()["message"], r.text
    # no profile named, no free choices: the default profile, whose GPU is not bob's to change
    r = bob.spawn({"gpus": 1})
    assert r.status_code == 400 and "profile 'cpu-only' (your default" in r.json()["message"], r.text
    # nothing was held by any of these
    assert not hub.admin_allocator().allocations()
    for u in (ann, bob, sam):
        assert u.server() is None


@pytest.mark.skipif(os.getuid() != 0, reason="mounting vfolders into local sessions needs a hub that runs as root")
def test_a_profiles_vfolders_environment_and_share_are_the_sessions(hub):
    ann = hub.login("gpuhub-pr-ann")
    for name, auto in (("datasets", False), ("scratch", True)):
        r = ann.call("POST", V + "/vfolders", json={"name": name, "auto_mount": auto})
        assert r.status_code == 201, r.text
    r = ann.spawn({"profile": "ml-small", "gpus": "0.5", "max_hours": 2})
    assert r.status_code in (201, 202), r.text
    try:
        ann.wait_ready()
        (allocation,) = ann.allocations()
        assert allocation["gpus"] == "0.5" and float(allocation["cpu"]) == 0.5 and allocation["mem"] == "512M"
        assert float(allocation["max_hours"]) == 2
        out = json.loads(ann.run_code(
            "import os, json\n"
            "print(json.dumps({'vfolders': sorted(os.listdir(os.path.expanduser('~/vfolders'))),\n"
            "  'greeting': os.environ.get('PROFILE_GREETING'), 'gpus': os.environ.get('GPUHUB_GPUS')}))"))
        # the profile's vfolders, not the user's auto-mount ones
        assert out == {"vfolders": ["datasets"], "greeting": "hello ml", "gpus": "0.5"}, out
        options = ann.server()["user_options"]
        assert options["profile"] == "ml-small" and options["vfolders"] == ["datasets"], options
        assert options["summary"].startswith("0.5 GPU"), options
    finally:
        ann.stop()


@pytest.mark.browser
def test_the_form_with_profiles_in_chromium(hub):
    """Picking a card shows its fields (and hides the free choice's); the page as
    a screenshot, looked at by whoever changes the form."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "gpuhub-pr-sam", viewport={"width": 1100, "height": 900})
        page.goto(hub.url + "/hub/spawn")
        page.wait_for_selector("#gpuhub-profiles")
        assert page.is_checked("#gpuhub-profile-cpu-only")
        assert not page.is_visible("#gpuhub-custom")
        page.click("label[for=gpuhub-profile-custom]")
        assert page.is_visible("#gpuhub-custom") and page.is_enabled("#gpuhub-gpus")
        page.click("label[for=gpuhub-profile-cpu-only]")
        assert not page.is_visible("#gpuhub-custom")
        page.screenshot(path=str(ARTIFACTS / "spawn-form-staff.png"), full_page=True)
        browser.close()
        browser, page = browser_login(p, hub, "gpuhub-pr-ann", viewport={"width": 1100, "height": 900})
        page.goto(hub.url + "/hub/spawn")
        page.wait_for_selector("#gpuhub-profiles")
        assert page.is_checked("#gpuhub-profile-ml-small") and page.is_enabled("#gpuhub-ml-small--max_hours")
        page.screenshot(path=str(ARTIFACTS / "spawn-form-profiles.png"), full_page=True)
        browser.close()
