import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup

# Metadata lives in pyproject.toml; this file exists so that native extensions
# (the parallel file toolkit core) can be declared in Python, and so that the
# prebuilt JupyterLab extension (labextension/, built by `make labextension`)
# and its jupyter_server config go into the wheel as data files:
# share/jupyter/labextensions/gpuhub-labextension/… and
# etc/jupyter/jupyter_server_config.d/gpuhub.json.
_spec = importlib.util.spec_from_file_location(
    "gpuhub_labext_install", Path(__file__).resolve().parent / "labextension" / "install.py"
)
_labext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_labext)
data_files = _labext.data_files()
if not data_files:
    print("gpuhub: labextension/build is empty: this install has no JupyterLab panel "
          "(run `make labextension` first; it needs node)", file=sys.stderr)

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
