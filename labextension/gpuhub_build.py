"""gpuhub's PEP 517 build backend: setuptools' own, plus the JupyterLab panel.

A wheel (``pip install .``, ``pip wheel``, ``make dist``) must carry the prebuilt
panel (labextension/build, which `make labextension` makes; setup.py puts it into
the wheel's data files). As the JupyterLab extension template's build hook does,
a wheel built from a checkout without it builds it first when node is on the
PATH: then this backend asks for ``jupyter-builder`` (the panel's build tool,
which ships ``jlpm``) in the build environment, and setup.py runs the build.
Without node, and without a prebuilt panel, the build fails with one sentence
that says what to do. Editable installs (``make install``) never build the
panel: `make labextension` does, and puts it into the environment.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the hooks this module does not change)

BUILT = Path(__file__).resolve().parent / "build" / "gpuhub-labextension" / "package.json"
BUILDER = "jupyter-builder>=1.3"


def panel_missing() -> bool:
    return not BUILT.exists()


def get_requires_for_build_wheel(config_settings=None):
    extra = [BUILDER] if panel_missing() and shutil.which("node") else []
    return _setuptools.get_requires_for_build_wheel(config_settings) + extra


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    os.environ["GPUHUB_BUILD_PANEL"] = "1"  # read by setup.py in this process
    try:
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        os.environ.pop("GPUHUB_BUILD_PANEL", None)
