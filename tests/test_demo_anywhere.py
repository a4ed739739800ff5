"""`make demo` as root from a checkout that other accounts cannot enter (issue #9).

A clone in a fresh `mktemp -d` directory (mode 0700, like /root) with its hub's
Python inside it: the users' accounts the demo creates cannot execute that
interpreter, so their servers must run the servers' environment that the
Makefile's `server-env` step (part of `make install`) puts outside the checkout.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import pytest

from spawner import serverenv
from spawner.serverenv import DEFAULT_ROOT, blocker
from tests.support import ENV_CODE, REPO, Hub, wait_for

as_root = pytest.mark.skipif(
    os.getuid() != 0,
    reason="only a hub running as root starts servers as other accounts (and only root can create them)",
)


# --- the servers' environment, without building one ---------------------------------------

def test_blocker_names_the_directory_or_file_in_the_way():
    top = Path(tempfile.mkdtemp(prefix="gpuhub-private-"))  # mode 0700
    try:
        python = top / "venv" / "bin" / "python3"
        python.parent.mkdir(parents=True)
        python.write_text("#!/bin/sh\n")
        python.chmod(0o755)
        others = blocker(python)  # any other account
        assert others is not None and others[0] == top
        assert "(mode 0700, owner " in serverenv.describe_blocker(*others)
        owner = os.getuid() or 12345  # an owner that is not root (root passes everywhere)
        if os.getuid() == 0:
            os.chown(top, owner, -1)
        assert blocker(python, uid=owner, gids=set()) is None  # the owner gets in
        python.chmod(0o644)
        assert blocker(python, uid=None)[0] == top
        top.chmod(0o755)
        assert blocker(python)[0] == python  # not executable
        assert blocker(python, execute=False) is None  # but readable
    finally:
        shutil.rmtree(top)


@as_root
def test_pins_are_the_installed_closure_and_name_a_version_that_does_not_fit(tmp_path):
    """One function pins both the servers' environment and the Docker image
    (build.sh runs ``serverenv.py pins --wheel ...``)."""
    from importlib import metadata

    hub = metadata.version("jupyterhub")
    pinned = serverenv.pins(["jupyterhub"])
    assert f"jupyterhub=={hub}" in pinned and any(p.lower().startswith("tornado==") for p in pinned)
    with pytest.raises(serverenv.ServerEnvError, match=f"jupyterhub=={hub}, which does not satisfy jupyterhub==0.0.1"):
        serverenv.pins(["jupyterhub==0.0.1"])
    # a wheel's Requires-Dist lines, through the command line as build.sh calls it
    import zipfile

    wheel = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("x-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
                   "Requires-Dist: tornado\nRequires-Dist: pytest; extra == 'test'\n")
    out = subprocess.run([sys.executable, str(REPO / "spawner/serverenv.py"), "pins", "--wheel", str(wheel)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert any(p.lower().startswith("tornado==") for p in out)
    assert not any(p.lower().startswith("pytest==") for p in out)  # an extra's requirement is not pinned


def test_install_is_a_no_op_when_present_and_one_build_for_concurrent_installs(monkeypatch):
    top = Path(tempfile.mkdtemp(prefix="gpuhub-envs-"))
    top.chmod(0o755)  # like /opt
    root = top / "server-envs"
    builds, locking = [], []
    flock = serverenv.fcntl.flock

    def counted_flock(f, how):
        locking.append(how)
        return flock(f, how)

    def fake_build(target, base, pinned, log):
        builds.append(target)
        wait_for(lambda: len(locking) == 2, 60, "the other install to wait on the lock")
        target.mkdir(parents=True)
        (target / serverenv.MARKER).write_text("{}")

    monkeypatch.setattr(serverenv.fcntl, "flock", counted_flock)
    monkeypatch.setattr(serverenv, "_build", fake_build)
    try:
        assert serverenv.find(root) is None
        # two checkouts installing at once: one build, both get it
        results = []
        threads = [threading.Thread(target=lambda: results.append(serverenv.install(log=print, root=root)))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(builds) == 1 and results == [builds[0], builds[0]]
        assert serverenv.find(root) == builds[0] == serverenv.env_dir(root=root)
        assert builds[0].parent == root
        assert serverenv.install(root=root) == builds[0] and len(builds) == 1  # present: nothing to do
        assert blocker(builds[0]) is None  # every account can get to it
    finally:
        shutil.rmtree(top)


@as_root
def test_the_servers_environment_must_be_where_every_account_can_reach_it():
    top = Path(tempfile.mkdtemp(prefix="gpuhub-private-"))  # mode 0700
    try:
        with pytest.raises(serverenv.ServerEnvError, match=f"is behind {top} \\(mode 0700"):
            serverenv.install(root=top / "server-envs")
    finally:
        shutil.rmtree(top)


@as_root
def test_a_hub_that_cannot_have_a_servers_environment_refuses_in_one_sentence(monkeypatch):
    monkeypatch.setattr(serverenv, "find", lambda root: None)
    monkeypatch.setattr(serverenv, "reachable_by_others", lambda python: False)

    def install(log, root):
        raise serverenv.ServerEnvError("the servers' Python must be executable by every account")

    monkeypatch.setattr(serverenv, "install", install)
    with pytest.raises(SystemExit) as e:
        serverenv.server_python(log=lambda m: None)
    assert str(e.value) == "gpuhub: cannot start: the servers' Python must be executable by every account"


# --- `make demo` from a private checkout, end to end ----------------------------------------


def make_private_checkout(top: Path) -> tuple[Path, Path]:
    """git clone of the checkout under test into top (mode 0700), with the working
    tree's uncommitted and untracked files on top (what is tested is what is here),
    and a thin .venv: the test interpreter's packages through a .pth file, the
    clone's code first — a real `make install` venv would take minutes."""
    repo = top / "gpuhub"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(repo)], check=True)
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout
    pack = subprocess.run(
        ["tar", "-C", str(REPO), "--null", "-T", "-", "--ignore-failed-read", "-cf", "-"],
        input=files, check=True, capture_output=True,
    ).stdout
    subprocess.run(["tar", "-C", str(repo), "-xf", "-"], input=pack, check=True)
    # the built native parts (the p-commands' core; `make install` builds them)
    for built in (REPO / "vfolder_manager" / "ptools").glob("_core*.so"):
        shutil.copy2(built, repo / "vfolder_manager" / "ptools" / built.name)
    venv = repo / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "gpuhub-tests.pth").write_text(
        f"{repo}\nimport site; site.addsitedir({sysconfig.get_path('purelib')!r})\n"
    )
    (venv / ".installed").touch()  # the Makefile's stamp: this venv counts as installed
    return repo, venv / "bin" / "python"


@pytest.fixture(scope="module")
def private_demo():
    top = Path(tempfile.mkdtemp(prefix="gpuhub-private-"))
    assert stat.S_IMODE(top.stat().st_mode) == 0o700
    started = time.monotonic()
    hub = None
    try:
        repo, python = make_private_checkout(top)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAKEFLAGS", "MAKELEVEL")}
        # the step of `make install` that installs the servers' environment
        r = subprocess.run(["make", "-C", str(repo), "--no-print-directory", "server-env"],
                           env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        installed = time.monotonic()
        hub = Hub(repo, repo=repo, python=str(python), PYTHONPATH=None)
        hub.start(timeout=90)
        hub.timings = {"clone + server-env": installed - started, "hub start": time.monotonic() - installed}
        hub.top, hub.repo = top, repo
        yield hub
    finally:
        if hub is not None:
            hub.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.e2e
@as_root
def test_demo_from_a_private_checkout_spawns_as_the_users_account(private_demo):
    hub = private_demo
    # the situation of issue #9: the hub's own interpreter is out of the accounts' reach
    assert blocker(hub.python)[0] == hub.top
    log = (hub.workdir / "jupyterhub.log").read_text()
    assert "single-user servers run " in log and str(DEFAULT_ROOT) in log, log[-2000:]

    started = time.monotonic()
    user = hub.login("gpuhub-anywhere")
    r = user.spawn({"gpus": 0.5})
    assert r.status_code in (201, 202), (r.text, hub.log_tail())
    user.wait_ready()
    env = json.loads(user.run_code(ENV_CODE))
    spawned = time.monotonic() - started

    assert env["GPUHUB_GPUS"] == "0.5"
    assert env["USER"] == "gpuhub-anywhere"
    assert env["uid"] == pwd.getpwnam("gpuhub-anywhere").pw_uid != 0
    # the kernel runs the servers' environment, outside the checkout
    assert Path(env["python"]).is_relative_to(DEFAULT_ROOT), env["python"]
    (allocation,) = user.allocations()
    assert allocation["gpus"] == "0.5"

    user.stop()
    assert user.allocations() == []
    print(f"timings: {hub.timings | {'login → kernel answered': spawned}}")
