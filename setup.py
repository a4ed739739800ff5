import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup

# Metadata lives in pyproject.toml; this file exists so that native extensions
# (the parallel file toolkit core) can be declared in Python, and so that the
# prebuilt JupyterLab extension (labextension/, built by `make labextension`)
# and its jupyter_server config go into the wheel as data files:
# share/jupyter/labextensions/gpuhub-labextension/… and
# etc/jupyter/jupyter_server_config.d/gpuhub.json.
HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("gpuhub_labext_install", HERE / "labextension" / "install.py")
_labext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_labext)


def build_panel() -> None:
    """A wheel without a prebuilt panel: build it (labextension/gpuhub_build.py put
    jupyter-builder, with jlpm, into this build environment), or say what to do."""
    jlpm = shutil.which("jlpm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not shutil.which("node") or not jlpm:
        sys.exit("gpuhub: this wheel needs the JupyterLab panel, which is not built (labextension/build) "
                 "and cannot be built here because node is not on the PATH: install Node.js 20 or later "
                 "and build again, or run `make labextension` where node is and build from that checkout.")
    print("gpuhub: building the JupyterLab panel (labextension/, ~1-2 min the first time)", file=sys.stderr)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(jlpm).parent), os.environ.get("PATH", "")])}
    for cmd in ([jlpm, "install", "--immutable"], [jlpm, "build"]):
        subprocess.run(cmd, cwd=HERE / "labextension", env=env, check=True, stdout=sys.stderr)


data_files = _labext.data_files()
if not data_files and os.environ.get("GPUHUB_BUILD_PANEL") == "1":
    build_panel()
    data_files = _labext.data_files()
if not data_files:
    print("gpuhub: labextension/build is empty: this install has no JupyterLab panel "
          "(`make labextension` builds it and puts it into the environment)", file=sys.stderr)

setup(
    ext_modules=[
        Extension(
            "vfolder_manager.ptools._core",
            sources=["vfolder_manager/ptools/_core.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
            extra_link_args=["-pthread"],
        )
    ],
    data_files=data_files,
)
