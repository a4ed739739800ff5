"""The servers' environment: the Python that single-user servers execute when a
hub running as root starts them as the users' own accounts.

The hub's ``.venv`` lives in the checkout. A checkout under a private directory
(``/root``, anything made by ``mktemp -d``: mode 0700) cannot be entered by those
accounts, so they cannot execute ``.venv/bin/python``. ``make install`` therefore
also installs, as root, a second environment for the servers alone — the hub
venv's exact versions of JupyterHub, JupyterLab and their dependencies — in a
world-readable place outside any checkout::

    /opt/gpuhub/server-envs/KEY/      (ROOT/KEY: --root, or the demo's GPUHUB_SERVER_ENVS)

KEY is a hash of the base interpreter and those pinned versions: checkouts with
the same dependencies share one environment, different ones never overwrite each
other, and an unchanged one costs nothing to "install" again. Builds hold a lock
and are marked complete only at the end, so two checkouts installing at once, or
an interrupted build, are safe. Any environment there may be deleted; the next
``make install`` (or hub start) makes it again.

The demo config asks ``server_python()`` which interpreter to run. Run as a
script (what the Makefile does, without importing the spawners)::

    python spawner/serverenv.py [--root ROOT] install [--with-code-server]
        # make sure it exists (and code-server beside it: spawner/codeserver.py); print its path
    python spawner/serverenv.py [--root ROOT] path     # print its path (whether or not it exists)
    python spawner/serverenv.py pins [--wheel W] [REQUIREMENT ...]
        # the closure as name==version lines (default: the servers' ROOTS; the
        # Docker image's build.sh asks for its wheel's requirements and its own)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

#: what the servers need; everything else comes from these packages' dependencies
#: (jupyter-server-proxy and tensorboard: the apps in the session, gpuhub/lab/apps.py)
ROOTS = ("jupyterhub", "jupyterlab", "jupyter-resource-usage", "jupyter-server-proxy", "tensorboard", "pip")
#: bump when the layout of an environment changes, so that old ones are not reused
#: (2: the apps' entry points and bin/code-server)
FORMAT = 2
MARKER = "gpuhub-server-env.json"


class ServerEnvError(Exception):
    """The servers' environment cannot be made; the message says what to do."""


#: where the servers' environments live unless the caller names another root (the
#: Makefile's and the demo config's GPUHUB_SERVER_ENVS)
DEFAULT_ROOT = Path("/opt/gpuhub/server-envs")


# --- who can reach what ---------------------------------------------------------------

def _allows(st: os.stat_result, uid: int | None, gids: set[int], bit: int) -> bool:
    """Whether the account (uid None: any other account) has permission ``bit``
    (1 x, 4 r) by the mode bits (ACLs are not read)."""
    if uid == 0:
        return not stat.S_ISREG(st.st_mode) or bit != 1 or bool(st.st_mode & 0o111)
    if uid is not None and st.st_uid == uid:
        return bool(st.st_mode >> 6 & bit)
    if uid is not None and st.st_gid in gids:
        return bool(st.st_mode >> 3 & bit)
    return bool(st.st_mode & bit)


def blocker(path: str | os.PathLike, uid: int | None = None, gids: set[int] = frozenset(),
            execute: bool = True) -> tuple[Path, os.stat_result] | None:
    """The first component of ``path`` that the account cannot pass — a directory
    it cannot search, or the file itself when it cannot execute it (``execute``)
    or read it —, with its stat; None if nothing is in the way (or the path does
    not exist). Symbolic links are followed: their targets' directories count too."""
    path = Path(os.path.abspath(path))
    seen = [path]
    real = Path(os.path.realpath(path))
    if real != path:
        seen.append(real)
    for p in seen:
        parts = p.parts
        for i in range(1, len(parts) + 1):
            comp = Path(*parts[:i])
            try:
                st = comp.stat()
            except OSError:
                return None
            last = i == len(parts)
            if not last or stat.S_ISDIR(st.st_mode):
                if not _allows(st, uid, gids, 1):
                    return comp, st
            elif not _allows(st, uid, gids, 1 if execute else 4):
                return comp, st
    return None


def describe_blocker(comp: Path, st: os.stat_result) -> str:
    """'/root (mode 0700, owner root)'"""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"{comp} (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner})"


def reachable_by_others(python: str | os.PathLike) -> bool:
    """Whether any account can execute this interpreter and read its packages."""
    if blocker(python) is not None:
        return False
    return all(blocker(sysconfig.get_path(k), execute=False) is None for k in ("purelib", "platlib"))


# --- what to install ------------------------------------------------------------------

def pins(roots=ROOTS) -> list[str]:
    """``name==version`` of ``roots`` (requirements: a name, or a name with a
    version range) and their dependency closure, as installed in the environment
    this interpreter runs in (the hub's venv): the servers get exactly the hub's
    versions, and nothing needs to be resolved or downloaded anew. The one place
    that reads the closure: the Docker image (spawner/image/build.sh) pins its
    packages with it too (``serverenv.py pins``)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(r), ("",)) for r in roots]
    missing, wrong = [], []
    while todo:
        req, extras = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        key = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            wrong.append(f"{dist.metadata['Name']}=={dist.version}, which does not satisfy {req}")
        found[key] = f"{dist.metadata['Name']}=={dist.version}"
        for extra in ("",) + tuple(sorted(req.extras)):
            if (key, extra) in seen:
                continue
            seen.add((key, extra))
            todo += [(Requirement(r), ("", extra) if extra else ("",)) for r in dist.requires or []]
    if missing or wrong:
        what = [f"lacks {', '.join(sorted(missing))}"] if missing else []
        what += [f"has {w}" for w in sorted(wrong)]
        raise ServerEnvError(f"the hub's environment ({sys.prefix}) {'; '.join(what)}: run 'make install'")
    return sorted(found.values(), key=str.lower)


def wheel_requirements(wheel: str | os.PathLike) -> list[str]:
    """The ``Requires-Dist`` lines of a built wheel (what it needs installed)."""
    import email
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(z.read(name))
    return list(meta.get_all("Requires-Dist") or [])


def base_python() -> Path:
    """The interpreter the hub's venv was made from (a venv's bin/python links to it)."""
    return Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))


def env_key(pinned: list[str], base: Path) -> str:
    text = f"format {FORMAT}\n{base}\n{sys.version}\n" + "\n".join(pinned)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def env_dir(pinned: list[str] | None = None, root: Path = DEFAULT_ROOT) -> Path:
    return Path(root) / env_key(pins() if pinned is None else pinned, base_python())


def find(root: Path = DEFAULT_ROOT) -> Path | None:
    """The servers' environment for the hub's current versions, if it is installed."""
    target = env_dir(root=root)
    return target if (target / MARKER).is_file() else None


# --- installing -----------------------------------------------------------------------

def install(log=print, root: Path = DEFAULT_ROOT) -> Path:
    """Make sure the servers' environment exists (root only); return its path.
    Idempotent; a few hundred milliseconds when it is there already."""
    pinned = pins()
    base = base_python()
    root = Path(root)
    target = root / env_key(pinned, base)
    if (target / MARKER).is_file():
        return target
    if os.getuid() != 0:
        raise ServerEnvError(f"only root can install the servers' environment in {target}")
    if (b := blocker(base)) is not None:
        raise ServerEnvError(
            f"the servers' Python must be executable by every account, but {base} is behind "
            f"{describe_blocker(*b)}: remake .venv from a system Python "
            "(rm -rf .venv; make install PYTHON=/usr/bin/python3)"
        )
    old_umask = os.umask(0o022)
    try:
        root.mkdir(parents=True, exist_ok=True)  # mode 0755
        if (b := blocker(root)) is not None:
            raise ServerEnvError(
                f"every account must reach the servers' environment, but {root} is behind "
                f"{describe_blocker(*b)}: choose a directory they can reach (GPUHUB_SERVER_ENVS for "
                "make install and the demo)"
            )
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time, across checkouts
            if (target / MARKER).is_file():  # another checkout built it meanwhile
                return target
            _build(target, base, pinned, log)
        return target
    finally:
        os.umask(old_umask)


def _build(target: Path, base: Path, pinned: list[str], log) -> None:
    started = time.monotonic()
    log(f"gpuhub: installing the single-user servers' environment in {target} "
        f"({len(pinned)} packages at the hub's versions; once per set of versions)")
    shutil.rmtree(target, ignore_errors=True)  # an interrupted build
    # built in place (console scripts record their interpreter's path); the marker,
    # written last, says that it is complete
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(target)], check=True)
    reqs = target / "gpuhub-pins.txt"
    reqs.write_text("\n".join(pinned) + "\n")
    pip = [
        sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "-q",
        "--disable-pip-version-check", "--root-user-action=ignore", "--no-warn-script-location",
        "-r", str(reqs),
    ]
    proc = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise ServerEnvError(
            f"installing the servers' environment in {target} failed: {proc.stdout.strip()[-2000:]}"
        )
    for dirpath, dirnames, filenames in os.walk(target):  # readable by every account
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            want = st.st_mode | (0o005 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o100 else 0o004)
            if want != st.st_mode:
                os.chmod(p, stat.S_IMODE(want))
    (target / MARKER).write_text(json.dumps(
        {"base": str(base), "pins": pinned, "built_by": sys.prefix, "format": FORMAT}, indent=1
    ) + "\n")
    log(f"gpuhub: servers' environment ready in {time.monotonic() - started:.0f} s")


# --- gpuhub's own parts in the servers' environment ------------------------------------

REPO = Path(__file__).resolve().parent.parent


def _tree_hash(*roots: Path) -> str:
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


#: the ``gpuhub`` package's entry points that the servers' environment needs (it has
#: the package as a plain copy, without pip's metadata): the apps in the session
APPS_DIST = "gpuhub_apps-0.dist-info"


def _entry_points_text() -> str:
    group = "jupyter_serverproxy_servers"
    try:
        import tomllib
    except ImportError:  # Python 3.10: what pyproject.toml says
        return f"[{group}]\nvscode = gpuhub.lab.apps:vscode\ntensorboard = gpuhub.lab.apps:tensorboard\n"
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    return f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps[group].items())


def install_apps(target: Path, log=print, root: Path | None = None) -> None:
    """VS Code in the servers' environment: ``bin/code-server`` links to the
    code-server that spawner/codeserver.py installed under the environments' root
    (``root``, default: the environment's parent), if it did. Idempotent."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import codeserver
    finally:
        sys.path.pop(0)
    launcher = codeserver.find(Path(root) if root else target.parent)
    link = target / "bin" / "code-server"
    if launcher is None or (link.is_symlink() and os.readlink(link) == str(launcher)):
        return
    link.unlink(missing_ok=True)
    link.symlink_to(launcher)
    log(f"gpuhub: VS Code (code-server {codeserver.VERSION}) linked into the servers' environment {target}")


def install_lab(target: Path, log=print) -> None:
    """The lab panel in the servers' environment: the ``gpuhub`` package (its
    jupyter_server extension ``gpuhub.lab``, the apps in the session and the code
    they share; pure Python) with the apps' entry points, and the prebuilt
    JupyterLab extension (``make labextension``) when it is built. Refreshed when
    they changed (the last checkout to install wins); world-readable."""
    built = REPO / "labextension" / "build"
    has_panel = (built / "gpuhub-labextension" / "package.json").exists()
    stamp = target / "gpuhub-lab.stamp"
    digest = _tree_hash(REPO / "gpuhub", *([built] if has_panel else [])) + _entry_points_text()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    site = Path(subprocess.run(
        [str(target / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip())
    old_umask = os.umask(0o022)
    try:
        shutil.rmtree(site / "gpuhub", ignore_errors=True)
        shutil.copytree(REPO / "gpuhub", site / "gpuhub", ignore=shutil.ignore_patterns("__pycache__"))
        dist = site / APPS_DIST  # how jupyter-server-proxy finds gpuhub.lab.apps
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gpuhub-apps\nVersion: 0\n")
        (dist / "entry_points.txt").write_text(_entry_points_text())
        if has_panel:
            subprocess.run([sys.executable, str(REPO / "labextension" / "install.py"), "--prefix", str(target)],
                           check=True, stdout=subprocess.DEVNULL)
        for p in [site / "gpuhub", *(site / "gpuhub").rglob("*"), dist, *dist.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        stamp.write_text(digest)
        stamp.chmod(0o644)
    finally:
        os.umask(old_umask)
    log(f"gpuhub: the lab panel{'' if has_panel else ' (not built: server side only)'} and the apps "
        f"installed in the servers' environment {target}")


# --- what the demo config calls ---------------------------------------------------------

def server_python(log=print, root: Path = DEFAULT_ROOT) -> str:
    """The interpreter for ``c.Spawner.cmd``:

    - a hub that does not run as root runs servers as itself: its own interpreter;
    - as root, the servers' environment when it is installed for the hub's versions;
    - else the hub's own interpreter if every account can use it (a world-readable
      checkout), else the servers' environment, installed now.
    """
    if os.getuid() != 0:
        return sys.executable
    try:
        env = find(root)
        if env is None and reachable_by_others(sys.executable):
            log(f"gpuhub: single-user servers run {sys.executable} "
                f"('make install' would install their own environment under {root})")
            return sys.executable
        if env is None:
            env = install(log, root)
        install_lab(env, log)
        install_apps(env, log, root)
    except ServerEnvError as e:
        # one sentence instead of a traceback, before anything starts
        raise SystemExit(f"gpuhub: cannot start: {e}") from None
    python = env / "bin" / "python"
    log(f"gpuhub: single-user servers run {python} (the servers' environment)")
    return str(python)


def main(argv: list[str]) -> int:
    root = DEFAULT_ROOT
    if len(argv) > 2 and argv[1] == "--root":
        root, argv = Path(argv[2]), [argv[0], *argv[3:]]
    cmd = argv[1] if len(argv) > 1 else "install"
    try:
        if cmd == "path":
            print(env_dir(root=root))
        elif cmd == "pins":
            args = argv[2:]
            roots = []
            while args:
                if args[0] == "--wheel" and len(args) > 1:
                    roots += wheel_requirements(args[1])
                    args = args[2:]
                else:
                    roots.append(args.pop(0))
            print("\n".join(pins(roots or ROOTS)))
        elif cmd == "install":
            if os.getuid() != 0:
                return 0  # servers run as the hub's own account: its venv will do
            log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
            target = install(log=log, root=root)
            install_lab(target, log=log)
            if "--with-code-server" in argv[2:]:
                import codeserver  # (beside this file, on sys.path when run as a script)

                try:
                    codeserver.install(log=log, root=root)
                except codeserver.CodeServerError as e:  # the sessions run without VS Code
                    log(f"gpuhub: warning: {e}")
            install_apps(target, log=log, root=root)
            print(target)
        else:
            print(f"usage: {argv[0]} [--root ROOT] install|path|pins [--wheel W] [REQUIREMENT ...]", file=sys.stderr)
            return 2
    except ServerEnvError as e:
        print(f"gpuhub: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
