"""`pip install .` carries the prebuilt panel: the wheel holds the federated
extension, install.json and the server-extension config, and an environment
with only that wheel (no node on PATH) lists both as enabled."""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "gpuhub-labextension"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPO / "labextension" / "build" / NAME / "package.json").exists():
        pytest.fail("the extension is not built: run make labextension")
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("gpuhub-*.whl")
    return whl


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
