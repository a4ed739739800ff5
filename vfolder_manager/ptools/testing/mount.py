"""Mount a simulated NAS (a latency filesystem) in a subprocess.

Two servers implement the same thing: every FUSE request is delayed, attribute,
entry and negative caching are off, the server counts requests and the most it
had in flight, and writes them as JSON when unmounted.

* ``native`` (``latencyfs.c``): libfuse3, up to ``max_threads`` requests served
  at once on kernel threads; compiled here with gcc on first use (needs
  ``pkg-config fuse3``: Debian ``libfuse3-dev``).  Its ceiling is what the
  kernel FUSE path and the CPUs allow, like a real NAS.
* ``python`` (``latencyfs.py``): pyfuse3 + trio.  Single-threaded: it saturates
  one CPU at ~11k requests/s, well before a real NAS would.

``impl="auto"`` takes the native one when it can be built.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE_C = Path(__file__).with_name("latencyfs.c")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / "gpuhub-latencyfs"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError:
        d = Path(tempfile.gettempdir()) / f"gpuhub-latencyfs-{os.getuid()}"
        d.mkdir(parents=True, exist_ok=True)
        return d


def build_native() -> str | None:
    """Path of the compiled native server (built once per source version), or None if it cannot be built."""
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        return None
    src = SOURCE_C.read_bytes()
    exe = _cache_dir() / f"latencyfs-{hashlib.sha256(src).hexdigest()[:16]}"
    if exe.exists():
        return str(exe)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True)
    if flags.returncode != 0:
        return None
    tmp = f"{exe}.{os.getpid()}.tmp"
    cc = subprocess.run(["gcc", "-O2", "-Wall", "-o", tmp, str(SOURCE_C), *flags.stdout.split()],
                        capture_output=True, text=True)
    if cc.returncode != 0:
        sys.stderr.write(cc.stderr)
        return None
    os.replace(tmp, exe)
    return str(exe)


class Mount:
    """Context manager running a latency filesystem in a subprocess (for tests and benchmarks)."""

    def __init__(self, source: str, mountpoint: str, delay_ms: float, stats_path: str,
                 max_tasks: int = 1024, impl: str = "auto", max_threads: int = 256):
        exe = build_native() if impl in ("auto", "native") else None
        if impl == "native" and exe is None:
            raise RuntimeError("cannot build the native latencyfs (gcc, pkg-config, libfuse3-dev)")
        if exe is not None:
            self.impl = "native"
            self.args = [exe, source, mountpoint, str(int(round(delay_ms * 1000))), stats_path, str(max_threads)]
        else:
            self.impl = "python"
            self.args = [sys.executable, "-m", "vfolder_manager.ptools.testing.latencyfs", source, mountpoint,
                         "--delay-ms", str(delay_ms), "--stats", stats_path, "--max-tasks", str(max_tasks)]
        self.mountpoint = mountpoint
        self.stats_path = stats_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Mount":
        os.makedirs(self.mountpoint, exist_ok=True)
        try:
            os.unlink(self.stats_path)
        except FileNotFoundError:
            pass
        self.proc = subprocess.Popen(self.args)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("latencyfs did not mount")
            time.sleep(0.02)
        return self

    def stats(self) -> dict[str, float]:
        import json
        with open(self.stats_path) as f:
            return json.load(f)

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=60)  # it writes its stats on the way out; a loaded machine is slow
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
