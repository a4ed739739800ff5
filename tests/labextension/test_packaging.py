"""Packaging (#23 item 2): `make dist` (``python -m build``: the sdist, then the
wheel from it) carries the prebuilt panel, its server-extension config and the
compiled p-command core, and an environment with only that wheel (no node on
PATH) lists the panel and the server extension as enabled; `pip wheel` of a
checkout without a built panel builds it where node is, and fails with one
sentence that says what to do where node is not."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "gpuhub-labextension"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """What `make dist` makes, from a copy of the checkout's tracked files plus the
    built panel (a checkout's stray build outputs stay out)."""
    if not (REPO / "labextension" / "build" / NAME / "package.json").exists():
        pytest.fail("the extension is not built: run make labextension")
    src = checkout_copy(tmp_path_factory.mktemp("src"), with_panel=True)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (whl,) = dist.glob("gpuhub-*.whl")
    return whl


def checkout_copy(dest: Path, with_panel: bool) -> Path:
    """The git-tracked files of this checkout in ``dest`` (and the built panel)."""
    files = subprocess.check_output(["git", "ls-files", "-z"], cwd=REPO).decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    if with_panel:
        shutil.copytree(REPO / "labextension" / "build" / NAME, dest / "labextension" / "build" / NAME)
    return dest


def test_the_sdist_carries_the_panels_sources_and_prebuilt_form(dist):
    (sdist,) = dist.glob("gpuhub-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    for f in ("labextension/gpuhub_build.py", "labextension/package.json", "labextension/yarn.lock",
              "labextension/src/index.ts", f"labextension/build/{NAME}/package.json",
              "vfolder_manager/ptools/_core.c", "setup.py", "pyproject.toml"):
        assert f"gpuhub-0.1.0/{f}" in names, f
    assert not any("node_modules" in n or "__pycache__" in n for n in names)


def test_the_wheel_carries_the_compiled_core(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"vfolder_manager/ptools/_core\.cpython-.*\.so", n) for n in names), names


def test_without_node_and_without_a_built_panel_the_build_says_what_to_do(tmp_path):
    src = checkout_copy(tmp_path / "src", with_panel=False)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + ":/usr/bin/nonexistent"}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "w"), str(src)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode != 0
    assert "node is not on the PATH: install Node.js 20 or later" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not list((tmp_path / "w").glob("*.whl")) if (tmp_path / "w").exists() else True


def test_with_node_a_checkout_without_the_panel_builds_it(tmp_path):
    """As the extension template's build hook does (node_modules is linked from this
    checkout's, which `make labextension` filled, so that nothing is downloaded)."""
    src = checkout_copy(tmp_path / "src", with_panel=False)
    (src / "labextension" / "node_modules").symlink_to(REPO / "labextension" / "node_modules")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "w"), str(src)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    (whl,) = (tmp_path / "w").glob("gpuhub-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert any("/labextensions/gpuhub-labextension/static/remoteEntry." in n for n in names)


def test_the_wheel_holds_the_prebuilt_extension_and_server_config(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    data = "gpuhub-0.1.0.data/data/"
    assert data + f"share/jupyter/labextensions/{NAME}/package.json" in names
    assert data + f"share/jupyter/labextensions/{NAME}/install.json" in names
    assert any(n.startswith(data + f"share/jupyter/labextensions/{NAME}/static/remoteEntry.") for n in names)
    assert data + "etc/jupyter/jupyter_server_config.d/gpuhub.json" in names
    assert "gpuhub/lab/handlers.py" in names
    # the build's inputs and caches stay out
    assert not any("node_modules" in n or "/src/" in n and n.endswith(".ts") for n in names)


def test_installed_without_node_it_is_listed_as_enabled(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    # the wheel's own dependencies (jupyterlab, …) from this environment's site-packages,
    # so the test installs nothing from the network; the wheel itself goes into env_dir
    purelib = subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                      text=True).strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --prefix with --ignore-installed: into env_dir only, never touching this environment
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "--no-warn-script-location",
                        "--prefix", str(env_dir), "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHONPATH"))}
    clean["PATH"] = "/usr/bin/nonexistent"  # no node, no jlpm
    clean["HOME"] = str(tmp_path)
    lab = subprocess.run([str(py), "-m", "jupyterlab.labextensions", "list"], capture_output=True, text=True,
                         env=clean, timeout=120, cwd=tmp_path)
    out = re.sub(r"\x1b\[[0-9;]*m", "", lab.stdout + lab.stderr)
    assert f"{NAME} v0.1.0 enabled" in out and "OK" in out and "(python, gpuhub)" in out, out
    assert str(env_dir) in out, out
    srv = subprocess.run([str(py), "-m", "jupyter_server.extension.serverextension", "list"],
                         capture_output=True, text=True, env=clean, timeout=120, cwd=tmp_path)
    out = re.sub(r"\x1b\[[0-9;]*m", "", srv.stdout + srv.stderr)
    assert "gpuhub.lab enabled" in out and "OK" in out, out
    where = subprocess.check_output([str(py), "-c", "import gpuhub.lab; print(gpuhub.lab.__file__)"], env=clean, text=True, cwd=tmp_path)
    assert where.startswith(str(env_dir)), where
