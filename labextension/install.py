"""Install the prebuilt gpuhub JupyterLab extension and its server-extension
config into a Python environment, the way `pip install` of the gpuhub wheel
does (setup.py data_files) — for environments with an editable install, where
data files are not copied:

    python labextension/install.py [--prefix PREFIX]   (default: sys.prefix)

Puts labextension/build/gpuhub-labextension (built by `make labextension`) at
PREFIX/share/jupyter/labextensions/gpuhub-labextension (with install.json) and
jupyter-config/server-config/gpuhub.json at
PREFIX/etc/jupyter/jupyter_server_config.d/gpuhub.json. Idempotent.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "gpuhub-labextension"
BUILT = HERE / "build" / NAME


def data_files() -> list[tuple[str, list[str]]]:
    """(target dir, [source files]) pairs: setup.py's data_files, relative to the repo."""
    repo = HERE.parent
    out: dict[str, list[str]] = {}
    for f in sorted(BUILT.rglob("*")):
        if f.is_file():
            target = f"share/jupyter/labextensions/{NAME}/{f.parent.relative_to(BUILT)}".rstrip("/.")
            out.setdefault(target, []).append(str(f.relative_to(repo)))
    if not out:
        return []
    out.setdefault(f"share/jupyter/labextensions/{NAME}", []).append(
        str((HERE / "install.json").relative_to(repo)))
    out["etc/jupyter/jupyter_server_config.d"] = [
        str((HERE / "jupyter-config" / "server-config" / "gpuhub.json").relative_to(repo))]
    return sorted(out.items())


def install(prefix: Path) -> None:
    if not (BUILT / "package.json").exists():
        sys.exit(f"{BUILT} is not built: run `make labextension` (needs node) first")
    dest = prefix / "share" / "jupyter" / "labextensions" / NAME
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(BUILT, dest)
    shutil.copy2(HERE / "install.json", dest / "install.json")
    conf = prefix / "etc" / "jupyter" / "jupyter_server_config.d"
    conf.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "jupyter-config" / "server-config" / "gpuhub.json", conf / "gpuhub.json")
    # world-readable: servers run as the users' own accounts
    for p in [dest, *dest.rglob("*"), conf / "gpuhub.json"]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    print(f"gpuhub: installed the JupyterLab extension into {prefix}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default=sys.prefix, type=Path)
    install(ap.parse_args().prefix.resolve())
