"""Profiles per hub group (issue #20 item 3), without a hub: the config's checks
(spawner/profiles.py, hypothesis over valid and broken profiles), who sees
which, the resolution of a request (a forbidden override is refused, naming
what may change), the form's cards and what comes back from them, and the
spawner's traits (gpu_choices, the image a Docker session of a profile gets)."""

from __future__ import annotations

import asyncio
import json
import re
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from traitlets import TraitError

from gpu_allocator.core.validation import RequestError
from spawner import DockerGPUSpawner, LocalGPUSpawner
from spawner.options import DEFAULT_GPU_CHOICES, candidates, offered, options_from_form, render_form
from spawner.profiles import (
    CUSTOM, FIELDS, ProfileError, default_profile, parse_profiles, resolve, visible,
)

POOL = {
    "units_per_gpu": 20, "quantum": "0.05", "max_hours": 168, "models": ["A100", "L4"],
    "hosts": [{"name": "node-a", "state": "up", "cpus": "32", "fractions": True,
               "devices": [{"model": "A100", "free_units": 20}] * 4}],
}
DEFAULTS = {"gpus": "0.5", "cpu": 2.0, "mem": "4G", "max_hours": 8.0}
PROFILES = [
    {"slug": "pytorch-small", "display_name": "PyTorch, small", "description": "Half an A100 for notebooks",
     "choices": ["0.25", "0.5"], "gpu_model": "A100", "cpu": 4, "mem": "16G", "max_hours": 8,
     "vfolders": ["datasets"], "environment": {"OMP_NUM_THREADS": "4"}, "groups": ["ml"],
     "overrides": ["max_hours"], "default": True},
    {"slug": "vision-big", "display_name": "Vision, 2 GPUs", "gpus": "2", "groups": ["vision"]},
    {"slug": "cpu-only", "display_name": "CPU only", "gpus": "0", "cpu": 1, "mem": "2G"},
]


# --- the config's checks ----------------------------------------------------------------

def test_a_valid_config_is_read_as_declared():
    small, big, cpu = parse_profiles(PROFILES)
    assert small.choices == ("0.25", "0.5") and small.settings["gpus"] == "0.25"  # the first choice
    assert small.may_change("gpus") and small.may_change("max_hours") and not small.may_change("cpu")
    assert small.changeable() == ["gpus (one of 0.25, 0.5)", "max_hours"]
    assert big.groups == ("vision",) and big.settings == {"gpus": "2"} and big.overrides == ()
    assert cpu.groups == () and cpu.display_name == "CPU only"


@pytest.mark.parametrize("profiles, words", [
    ("not a list", "profiles must be a list"),
    ([{"display_name": "x"}], "profiles[0]: slug must be"),
    ([{"slug": "Big GPU"}], "slug must be lower-case"),
    ([{"slug": CUSTOM}], "allow it with GPUSpawner.allow_custom"),
    ([{"slug": "a"}, {"slug": "a"}], "profiles[1]: the slug 'a' is used twice"),
    ([{"slug": "a", "gpu": 1}], "profiles[0] ('a'): unknown key(s) 'gpu'; allowed: choices, cpu"),
    ([{"slug": "a", "gpus": "1.5"}], "gpus must be a GPU amount"),
    ([{"slug": "a", "gpus": "abc"}], "gpus must be a GPU amount"),
    ([{"slug": "a", "choices": []}], "choices must be a non-empty list"),
    ([{"slug": "a", "choices": ["0.5", "0.50"]}], "choices[1]: 0.50 is listed twice"),
    ([{"slug": "a", "choices": ["0.5"], "gpus": "1"}], "gpus 1 is not one of its choices (0.5)"),
    ([{"slug": "a", "choices": ["0.5", "1"], "overrides": ["gpus"]}], "keep one of the two"),
    ([{"slug": "a", "cpu": 0}], "cpu must be a positive number"),
    ([{"slug": "a", "mem": "lots"}], "mem must look like '512M' or '8G'"),
    ([{"slug": "a", "max_hours": -1}], "max_hours must be more than 0"),
    ([{"slug": "a", "groups": "ml"}], "groups must be a list of hub group names"),
    ([{"slug": "a", "overrides": ["cpu", "shell"]}], "overrides names 'shell'; a user may be let to change: gpus"),
    ([{"slug": "a", "default": "yes"}], "default must be true or false"),
    ([{"slug": "a", "vfolders": "data"}], "vfolders must be a list of vfolder names"),
    ([{"slug": "a", "environment": {"CUDA_VISIBLE_DEVICES": "0"}}], "is set by the hub for the share"),
    ([{"slug": "a", "environment": {"A": 1}}], "environment: A must be text"),
    ([{"slug": "a", "image": "x"}], "image is for the Docker runtime"),
])
def test_config_mistakes_are_named(profiles, words):
    with pytest.raises(ProfileError) as e:
        parse_profiles(profiles, images=False)
    assert words in str(e.value), str(e.value)


AMOUNTS = st.sampled_from(["0", "0.25", "0.5", "1", "2", "4", 1, 0.5])
NAMES = st.text("abcdefgh-", min_size=1, max_size=8).filter(lambda s: s[0] != "-" and s[-1] != "-")
PROFILE = st.fixed_dictionaries(
    {"slug": NAMES},
    optional={
        "display_name": st.text(max_size=20).filter(lambda s: s.isprintable()),
        "groups": st.lists(st.sampled_from(["ml", "vision", "staff"]), unique=True, max_size=2),
        "gpus": AMOUNTS, "cpu": st.sampled_from([1, 2.5, "4"]), "mem": st.sampled_from(["512M", "16G"]),
        "max_hours": st.sampled_from([1, 8, "24"]), "gpu_model": st.sampled_from(["A100", ["A100", "L4"]]),
        "vfolders": st.lists(st.sampled_from(["data", "refs"]), unique=True, max_size=2),
        "environment": st.dictionaries(st.sampled_from(["A", "OMP_NUM_THREADS"]), st.text(max_size=5)),
        "overrides": st.lists(st.sampled_from([f for f in FIELDS if f != "image"]), unique=True, max_size=3),
        "default": st.booleans(),
    },
)
CONFIG = st.lists(PROFILE, max_size=5, unique_by=lambda p: p["slug"]).filter(
    lambda ps: all(p["slug"] != CUSTOM for p in ps))


@settings(max_examples=150, deadline=None)
@given(CONFIG)
def test_valid_configs_are_accepted_as_they_are(raw):
    profiles = parse_profiles(raw, images=False)
    assert [p.slug for p in profiles] == [r["slug"] for r in raw]
    for p, r in zip(profiles, raw):
        assert p.groups == tuple(r.get("groups") or ())
        assert p.environment == r.get("environment", {})
        assert {k for k in p.settings} == {k for k in r if k in FIELDS}


@settings(max_examples=150, deadline=None)
@given(CONFIG.filter(bool), st.data())
def test_a_broken_config_is_a_profile_error_never_a_crash(raw, data):
    i = data.draw(st.integers(0, len(raw) - 1))
    key = data.draw(st.sampled_from(["slug", "gpus", "cpu", "mem", "max_hours", "groups", "overrides",
                                     "environment", "vfolders", "default", "bogus"]))
    bad = data.draw(st.sampled_from([None, -1, "", "1e9999", [1], {"x": None}, "NaN", True]))
    broken = [dict(p) for p in raw]
    broken[i][key] = bad
    try:
        parse_profiles(broken, images=False)
    except ProfileError as e:
        assert f"profiles[{i}]" in str(e)


# --- who sees which ---------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(CONFIG, st.lists(st.sampled_from(["ml", "vision", "staff", "other"]), unique=True, max_size=3))
def test_a_user_sees_exactly_the_profiles_of_their_groups_and_everyones(raw, groups):
    profiles = parse_profiles(raw, images=False)
    shown = visible(profiles, groups)
    for p in profiles:
        assert (p in shown) == (not p.groups or bool(set(p.groups) & set(groups)))
    for p in profiles:  # naming one not shown is refused as if it did not exist, naming the shown ones
        if p not in shown:
            with pytest.raises(RequestError) as e:
                resolve({"profile": p.slug}, profiles, groups, user="u", allow_custom=True)
            assert "is not offered to u; profiles offered to u: " in str(e.value)
            assert str(e.value).endswith(", ".join([s.slug for s in shown] + [CUSTOM]))


@settings(max_examples=300, deadline=None)
@given(CONFIG.filter(bool), st.data())
def test_no_override_the_profile_does_not_allow_gets_through(raw, data):
    profiles = parse_profiles(raw, images=False)
    p = data.draw(st.sampled_from(profiles))
    request = {"profile": p.slug, **data.draw(st.dictionaries(
        st.sampled_from([f for f in FIELDS if f != "image"]), AMOUNTS, max_size=3))}
    try:
        got = resolve(request, profiles, list(p.groups), user="u", allow_custom=False)
    except RequestError as e:
        assert any(not p.may_change(k) for k in request if k != "profile") or p.choices, request
        assert "lets you change" in str(e) or "offers gpus" in str(e)
        return
    for name in FIELDS:  # what the user could not change is the profile's
        if not p.may_change(name):
            assert got.options.get(name) == p.settings.get(name)
    assert got.environment == p.environment and got.slug == p.slug


def test_resolution_messages_name_what_is_allowed():
    profiles = parse_profiles(PROFILES)
    got = resolve({"profile": "pytorch-small", "gpus": "0.5", "max_hours": 2}, profiles, ["ml"],
                  user="ann", allow_custom=True)
    assert got.options == {"gpus": "0.5", "gpu_model": "A100", "cpu": 4, "mem": "16G", "max_hours": 2,
                           "vfolders": ["datasets"]}
    assert got.environment == {"OMP_NUM_THREADS": "4"}
    with pytest.raises(RequestError, match=re.escape(
            "profile 'pytorch-small' does not let you change cpu, mem; it lets you change: gpus (one of "
            "0.25, 0.5), max_hours (or pick profile 'custom' for free choices)")):
        resolve({"profile": "pytorch-small", "cpu": 8, "mem": "64G"}, profiles, ["ml"], user="ann",
                allow_custom=True)
    with pytest.raises(RequestError, match="offers gpus 0.25 or 0.5, not '1'"):
        resolve({"profile": "pytorch-small", "gpus": "1"}, profiles, ["ml"], user="ann", allow_custom=True)
    with pytest.raises(RequestError, match="profile 'cpu-only' does not let you change gpus; it lets you "
                                           "change nothing$"):
        resolve({"profile": "cpu-only", "gpus": 1}, profiles, [], user="bob", allow_custom=False)
    with pytest.raises(RequestError, match=re.escape(
            "free choices (profile 'custom') are not offered to bob; profiles offered to bob: cpu-only")):
        resolve({"profile": CUSTOM, "gpus": 1}, profiles, [], user="bob", allow_custom=False)
    # no profile named: free choices where allowed, else the user's default
    assert resolve({"gpus": 1}, profiles, [], user="bob", allow_custom=True).profile is None
    assert resolve({}, profiles, ["ml"], user="ann", allow_custom=False).slug == "pytorch-small"
    assert resolve({}, profiles, [], user="bob", allow_custom=False).slug == "cpu-only"
    with pytest.raises(RequestError, match="no profile is offered to eve and free choices are not allowed"):
        resolve({}, [p for p in profiles if p.groups], [], user="eve", allow_custom=False)
    # the spawner's own record, reused by JupyterHub for a spawn without options
    again = resolve({"profile": "cpu-only", "summary": "no GPU · 1 CPU · 2G · 8h"}, profiles, [],
                    user="bob", allow_custom=False)
    assert again.options == {"gpus": "0", "cpu": 1, "mem": "2G"}
    assert default_profile(visible(profiles, ["vision"])).slug == "vision-big"


# --- the form ---------------------------------------------------------------------------

def test_the_form_offers_the_groups_profiles_first_and_custom_where_allowed():
    profiles = parse_profiles(PROFILES)
    ml = render_form(POOL, DEFAULTS, [], None, visible(profiles, ["ml"]), True)
    slugs = re.findall(r'<input class="form-check-input" type="radio" name="profile" id="[^"]+" value="([^"]+)"', ml)
    assert slugs == ["pytorch-small", "cpu-only", CUSTOM]
    assert ml.index('name="profile"') < ml.index('id="gpuhub-gpus"')  # profiles first, then the free choice
    assert re.search(r'value="pytorch-small" checked>\s*<span class="gpuhub-profile-name">PyTorch, small', ml)
    assert "0.25 or 0.5 GPU · A100 · 4 CPU · 16G · 8 h · vfolders: datasets" in ml
    # its fields: the GPU choices and the run time, nothing else
    assert re.findall(r'name="pytorch-small--(\w+)"', ml) == ["gpus", "max_hours"]
    assert '<option value="0.25" selected>0.25 GPU</option><option value="0.5">0.5 GPU</option>' in ml
    vision = render_form(POOL, DEFAULTS, [], None, visible(profiles, ["vision"]), False)
    assert "vision-big" in vision and "pytorch-small" not in vision
    assert 'value="custom"' not in vision and 'id="gpuhub-gpus"' not in vision
    # no profile and no free choice: say so
    nothing = render_form(POOL, DEFAULTS, [], None, [], False)
    assert "No profile is offered to you" in nothing and "<select" not in nothing
    # without profiles: the free form as before
    plain = render_form(POOL, DEFAULTS, [])
    assert 'name="profile"' not in plain and 'id="gpuhub-gpus"' in plain


def test_profile_cards_say_when_they_would_start():
    profiles = visible(parse_profiles(PROFILES), ["ml"])
    html = render_form(POOL, DEFAULTS, [], {"runtimes": [8.0], "requests": [], "answer": {"estimates": []},
                                             "profiles": {"pytorch-small": {"starts_now": True}}},
                       profiles, False)
    assert re.search(r'PyTorch, small.*?<p class="gpuhub-start">starts now</p>', html, re.S)


def test_what_the_form_sends_for_a_profile_and_for_custom():
    form = {"profile": ["pytorch-small"], "pytorch-small--gpus": ["0.5"], "pytorch-small--max_hours": ["2"],
            "cpu-only--cpu": ["9"], "gpus": ["4"], "cpu": ["1"], "mem": ["1G"], "max_hours": ["1"]}
    assert options_from_form(form) == {"profile": "pytorch-small", "gpus": "0.5", "max_hours": "2"}
    form["profile"] = [CUSTOM]
    assert options_from_form(form) == {"gpus": "4", "cpu": "1", "mem": "1G", "max_hours": "1", "profile": CUSTOM}


def test_gpu_choices_are_a_setting():
    assert offered(POOL) == list(DEFAULT_GPU_CHOICES)
    assert offered(POOL, ["0", "0.5", "3", "8"]) == ["0", "0.5", "3"]  # a 4-GPU host holds no 8
    assert {r["gpus"] for r in candidates(POOL, DEFAULTS, [8.0], ["0.5", "2"])} == {"0.5", "2"}
    s = LocalGPUSpawner(gpu_choices=["0", "0.5", "1"])
    assert s.gpu_choices == ["0", "0.5", "1"]
    with pytest.raises(TraitError, match=r"GPUSpawner.gpu_choices\[1\] must be a GPU amount"):
        LocalGPUSpawner(gpu_choices=["0", "1.5"])
    html = render_form(POOL, DEFAULTS, [], None, choices=["0", "1"])
    assert re.findall(r'<option value="([^"]+)"', html.split('id="gpuhub-gpus"')[1].split("</select>")[0]) == \
        ["0", "1", "custom"]


def test_a_mistake_in_the_config_stops_the_spawner_with_its_message():
    with pytest.raises(TraitError, match=r"GPUSpawner.profiles\[0\] \('a'\): image is for the Docker runtime"):
        LocalGPUSpawner(profiles=[{"slug": "a", "image": "gpuhub/singleuser:latest"}])
    DockerGPUSpawner(profiles=[{"slug": "a", "image": "gpuhub/singleuser:latest"}])  # Docker runs images


def docker_spawner(profiles, groups=(), **config):
    s = DockerGPUSpawner(profiles=profiles, allowed_images=["gpuhub/singleuser:latest"], **config)
    s.user = types.SimpleNamespace(name="ann", groups=[types.SimpleNamespace(name=g) for g in groups])
    return s


class FakeAllocator:
    """The allocator's dry run, answering yes (amounts are not what these check)."""

    def __init__(self, *args):
        pass

    async def check(self, **request):
        return {"request": {"cpu": "1", "mem": "1024M", "units": 0, "gpus": "0"}, "queue": {}}


def test_a_docker_sessions_image_is_its_profiles_and_goes_back_after(monkeypatch):
    """The image DockerSpawner.start creates the container from (self.image after
    check_allowed of user_options' "image"): the profile's, even where
    allowed_images does not list it; a later spawn of free choices gets the
    configured one again. The whole apply chain runs (Docker's image check, the
    vfolders', the GPU dry run against a stub allocator)."""
    monkeypatch.setattr("spawner.gpuspawner.AllocatorClient", FakeAllocator)
    s = docker_spawner([{"slug": "tf", "image": "gpuhub/tf:2", "gpus": "0", "groups": ["ml"]}], ["ml"])

    async def spawn(options):
        await s.apply_spawn_options(options)
        if s._configured_image is None:  # as DockerGPUSpawner.start does, before DockerSpawner.start
            s._configured_image = s.image
        if s.user_options.get("image"):  # what DockerSpawner.start does with it
            s.image = await s.check_allowed(s.user_options["image"])
        return s.image

    assert asyncio.run(spawn({"profile": "tf"})) == "gpuhub/tf:2"
    assert s.user_options == {"image": "gpuhub/tf:2", "gpus": "0", "profile": "tf"}
    assert asyncio.run(spawn({"profile": CUSTOM})) == "gpuhub/singleuser:latest"
    with pytest.raises(Exception, match="gpuhub/tf:2"):  # not the admin's choice here: allowed_images says no
        asyncio.run(spawn({"profile": CUSTOM, "image": "gpuhub/tf:2"}))


def test_the_profiles_environment_is_the_sessions():
    """(get_env needs a hub: the variables in a real session are checked in
    tests/test_profiles_e2e.py)"""
    s = docker_spawner([{"slug": "omp", "environment": {"OMP_NUM_THREADS": "4", "PATH": "/opt/x/bin"}}])
    assert s.profile_environment == {}
    s.resolved = resolve({"profile": "omp"}, s.all_profiles(), [], user="ann", allow_custom=True)
    assert s.profile_environment == {"OMP_NUM_THREADS": "4", "PATH": "/opt/x/bin"}
