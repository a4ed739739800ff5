"""The panel's TypeScript unit tests (jest, src/__tests__/: formatting, what each
section view shows for a given model state, the settings, the error shape, the
model's polling) and its build, run from pytest so that `make test` runs them
(and fails when a jest test fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LABEXT = Path(__file__).resolve().parents[2] / "labextension"
JLPM = Path(sys.executable).parent / "jlpm"


def need_node_modules():
    if not (LABEXT / "node_modules" / ".bin" / "jest").exists():
        pytest.skip("labextension/node_modules is not installed (make labextension does it)")
    if not shutil.which("node"):
        pytest.skip("node is not installed")


def test_jest_unit_tests_of_the_views_logic_settings_and_model():
    need_node_modules()
    r = subprocess.run([str(JLPM), "test"], cwd=LABEXT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "CI": "1"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Tests:" in out and "failed" not in out.split("Tests:")[1].splitlines()[0], out[-1500:]


def test_the_prebuilt_extension_is_there():
    """make labextension built it (jupyter-builder): a federated extension with its remoteEntry."""
    built = LABEXT / "build" / "gpuhub-labextension"
    if not (built / "package.json").exists():
        need_node_modules()
        pytest.fail("labextension/build is missing: run make labextension")
    assert list((built / "static").glob("remoteEntry.*.js"))
