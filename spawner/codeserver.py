"""code-server — VS Code in the browser — for the sessions (gpuhub/apps.py starts it
behind the single-user server's proxy at /user/NAME/vscode/).

code-server comes from the npm registry (the ``code-server`` package: VS Code's
server build, whose postinstall compiles a few native modules with node-gyp). It is
installed once, as root, into a world-readable directory beside the servers'
environments, shared by every checkout and environment::

    /opt/gpuhub/server-envs/code-server-VERSION-nodeN/
        bin/code-server        a launcher: runs the node below on code-server's entry point
        bin/node               a copy of the node it was built with (the native modules are
                               built for its ABI; the Docker image takes the whole directory)
        node_modules/code-server/
        gpuhub-code-server.json  the marker, written last (version, size, seconds)

About 0.4 GB (95 MB of it node), 1-4 minutes on 2 cores (npm's download of ~110 MB and
node-gyp; 58 s here with npm's cache warm), once; then a no-op.
Needs node (the major version ``VERSION`` accepts: code-server 4.100 is the last
for Node 20; 4.101+ want Node 22/24), npm, a C++ compiler, make, and the
Kerberos headers (libkrb5-dev, .ci/apt-packages) for the ``kerberos`` module.

code-server's install would download ripgrep (VS Code's search) from GitHub, which
is out of reach here: the ripgrep binary the npm registry ships
(``@vscode/ripgrep-linux-x64``) is put into the downloader's cache first.

    python spawner/codeserver.py [--root ROOT] install   # make sure it exists; print its launcher
    python spawner/codeserver.py [--root ROOT] path      # print its launcher (whether or not it exists)
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

#: the newest code-server whose postinstall accepts Node 20 (4.101 and later want 22/24)
VERSION = "4.100.3"
#: ripgrep for VS Code's search, as the npm registry ships it (a static binary)
RIPGREP_BINARY = "@vscode/ripgrep-linux-x64@1.18.0"
MARKER = "gpuhub-code-server.json"
DEFAULT_ROOT = Path("/opt/gpuhub/server-envs")


class CodeServerError(Exception):
    """code-server cannot be installed; the message says why."""


def node() -> Path | None:
    found = shutil.which("node")
    return Path(os.path.realpath(found)) if found else None


def node_major(binary: Path) -> int:
    out = subprocess.run([str(binary), "--version"], check=True, capture_output=True, text=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def install_dir(root: Path = DEFAULT_ROOT, major: int | None = None) -> Path:
    if major is None:
        n = node()
        major = node_major(n) if n else 20
    return Path(root) / f"code-server-{VERSION}-node{major}"


def launcher(root: Path = DEFAULT_ROOT) -> Path:
    return install_dir(root) / "bin" / "code-server"


def find(root: Path = DEFAULT_ROOT) -> Path | None:
    """The launcher of the installed code-server, if it is installed."""
    try:
        target = install_dir(root)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return target / "bin" / "code-server" if (target / MARKER).is_file() else None


def _npm(args: list[str], cwd: Path, env: dict, what: str) -> str:
    proc = subprocess.run(["npm", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise CodeServerError(f"{what} failed (npm {' '.join(args)}): {proc.stdout.strip()[-3000:]}")
    return proc.stdout


def _pack(spec: str, into: Path, env: dict) -> Path:
    out = _npm(["pack", "-q", "--pack-destination", str(into), spec], into, env, f"fetching {spec}")
    return into / out.strip().splitlines()[-1]


def _member(tgz: Path, name: str) -> bytes:
    with tarfile.open(tgz) as t:
        return t.extractfile(name).read()


def _ripgrep_cache(code_tgz: Path, tmp: Path, work: Path, env: dict) -> None:
    """Puts the registry's ripgrep where @vscode/ripgrep's postinstall looks for its
    download ($TMPDIR/vscode-ripgrep-cache-VERSION/ripgrep-TAG-TARGET.tar.gz)."""
    shrink = json.loads(_member(code_tgz, "package/lib/vscode/npm-shrinkwrap.json"))
    versions = {v["version"] for k, v in shrink.get("packages", {}).items()
                if k.endswith("node_modules/@vscode/ripgrep") and "version" in v}
    rg_tgz = _pack(RIPGREP_BINARY, work, env)
    rg = _member(rg_tgz, "package/bin/rg")
    for version in versions:
        post = _member(_pack(f"@vscode/ripgrep@{version}", work, env), "package/lib/postinstall.js").decode()
        tag = re.search(r"""const VERSION = ['"]([^'"]+)['"]""", post)
        if not tag:
            continue  # a version without the download step
        cache = tmp / f"vscode-ripgrep-cache-{version}"
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(cache / f"ripgrep-{tag.group(1)}-x86_64-unknown-linux-musl.tar.gz", "w:gz") as t:
            info = tarfile.TarInfo("rg")
            info.size, info.mode = len(rg), 0o755
            t.addfile(info, io.BytesIO(rg))


def install(log=print, root: Path = DEFAULT_ROOT) -> Path:
    """Make sure code-server is installed under ``root`` (root only); return its launcher.
    Idempotent: a few milliseconds when it is there."""
    n = node()
    if n is None or shutil.which("npm") is None:
        raise CodeServerError("code-server needs node and npm (Debian: apt-get install nodejs npm)")
    major = node_major(n)
    root = Path(root)
    target = install_dir(root, major)
    if (target / MARKER).is_file():
        return target / "bin" / "code-server"
    if os.getuid() != 0:
        raise CodeServerError(f"only root can install code-server in {target}")
    old_umask = os.umask(0o022)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock-code-server", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / MARKER).is_file():
                _build(target, n, major, log)
    finally:
        os.umask(old_umask)
    return target / "bin" / "code-server"


def _build(target: Path, node_bin: Path, major: int, log) -> None:
    started = time.monotonic()
    log(f"gpuhub: installing code-server {VERSION} (VS Code in the sessions) from npm in {target} "
        "(once; ~0.4 GB, 1-4 minutes)")
    stage = target.with_name(target.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    (stage / "bin").mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="gpuhub-code-server-"))
    try:
        tmp = work / "tmp"
        tmp.mkdir()
        env = {
            **os.environ,
            "TMPDIR": str(tmp),
            # code-server's postinstall refuses to run as root without it
            "npm_config_unsafe_perm": "true",
            # node-gyp builds against the local node's headers instead of downloading them
            "npm_config_nodedir": str(node_bin.parent.parent),
            # node-pty's post-install runs `npx node-gyp`, which would otherwise ask first
            "npm_config_yes": "true",
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "PATH": f"{node_bin.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        code_tgz = _pack(f"code-server@{VERSION}", work, env)
        _ripgrep_cache(code_tgz, tmp, work, env)
        _npm(["install", "--prefix", str(stage), "--loglevel=error", str(code_tgz)], work, env,
             f"installing code-server {VERSION}")
        shutil.copy2(node_bin, stage / "bin" / "node")
        entry = target / "node_modules" / "code-server" / "out" / "node" / "entry.js"
        (stage / "bin" / "code-server").write_text(
            "#!/bin/sh\n# code-server on the node it was built with (gpuhub: spawner/codeserver.py)\n"
            f'exec "{target}/bin/node" "{entry}" "$@"\n'
        )
        (stage / "bin" / "code-server").chmod(0o755)
        for dirpath, dirnames, filenames in os.walk(stage):  # readable by every account
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                if not os.path.islink(p):
                    os.chmod(p, st.st_mode | (0o005 if os.path.isdir(p) or st.st_mode & 0o100 else 0o004))
        size = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file() and not f.is_symlink())
        os.rename(stage, target)
        seconds = round(time.monotonic() - started)
        (target / MARKER).write_text(json.dumps(
            {"version": VERSION, "node": str(node_bin), "node_major": major, "bytes": size, "seconds": seconds},
            indent=1) + "\n")
        log(f"gpuhub: code-server ready in {seconds} s ({size / 2**20:.0f} MiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)


def main(argv: list[str]) -> int:
    root = DEFAULT_ROOT
    if len(argv) > 2 and argv[1] == "--root":
        root, argv = Path(argv[2]), [argv[0], *argv[3:]]
    cmd = argv[1] if len(argv) > 1 else "install"
    try:
        if cmd == "path":
            print(launcher(root))
        elif cmd == "install":
            print(install(log=lambda m: print(m, file=sys.stderr, flush=True), root=root))
        else:
            print(f"usage: {argv[0]} [--root ROOT] install|path", file=sys.stderr)
            return 2
    except CodeServerError as e:
        print(f"gpuhub: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
