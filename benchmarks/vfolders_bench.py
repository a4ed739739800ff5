"""vfolder service benchmarks; prints markdown tables (README "vfolders").

    python benchmarks/vfolders_bench.py upload [--mb 1024] [--kill-at 0.5]
    python benchmarks/vfolders_bench.py scan   [--files 100000] [--delay-ms 1] [--repeat 3]

upload: the demo hub (tests/support.py: real JupyterHub, configurable-http-proxy,
        the vfolder service as a managed service) on loopback. A client process
        uploads one file with tus 1.0 (POST, then one streamed PATCH) through the
        hub's proxy: MiB/s. Then the same file again, the client SIGKILLed when it
        has read --kill-at of the file, and a new client that HEADs the upload and
        sends the rest: total time (kill and restart included) and the bytes sent
        twice (what the first client had read minus the offset the server kept).
        Every upload is checked against the source's SHA-256 on the storage host.
scan:   the service's usage scan (``ptools.du(path, threads=VFolderService.scan_threads)``,
        in-process, exactly as the scanner calls it), the ``pdu -s`` command
        (default threads) and GNU ``du -s`` on a tree of --files files, on the
        simulated NAS (FUSE latencyfs, --delay-ms per request, caches off, cold
        mount per run, as benchmarks/ptools_bench.py) and on the local disk (warm
        page cache, best of --repeat).

Not a test: nothing is asserted except that uploads arrive intact.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ptools_bench import timed  # noqa: E402  (one timer for the p-command and GNU runs)
BIN = Path(sys.executable).parent
V = "/services/vfolders/api/v1"
MB = 1024 * 1024

# --- upload ------------------------------------------------------------------------

#: the client, a separate process so that it can be killed like a real one:
#: argv = url token file [location]; prints "read N" as it reads, "offset N" when it
#: resumes, "done" at the end
CLIENT = r'''
import base64, os, sys, requests
url, token, path = sys.argv[1:4]
location = sys.argv[4] if len(sys.argv) > 4 else None
size = os.path.getsize(path)
tus = {"Authorization": f"token {token}", "Tus-Resumable": "1.0.0"}
if location is None:
    meta = "filename " + base64.b64encode(os.path.basename(path).encode()).decode()
    r = requests.post(url, headers={**tus, "Upload-Length": str(size), "Upload-Metadata": meta})
    r.raise_for_status()
    location = url.split("/services/")[0] + r.headers["Location"]
    print("location", location, flush=True)
    offset = 0
else:
    offset = int(requests.head(location, headers=tus).headers["Upload-Offset"])
    print("offset", offset, flush=True)

class Reader:
    def __init__(self, f, n):
        self.f, self.n, self.read_ = f, n, 0
    def __len__(self):
        return self.n
    def read(self, k=-1):  # 1 MiB at a time, whatever http.client asks for
        data = self.f.read(min(1 << 20, self.n - self.read_))
        self.read_ += len(data)
        print("read", offset + self.read_, flush=True)
        return data

with open(path, "rb") as f:
    f.seek(offset)
    r = requests.patch(location, data=Reader(f, size - offset), headers={
        **tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size - offset)})
    r.raise_for_status()
print("done", r.headers["Upload-Offset"], flush=True)
'''


def bench_upload(a: argparse.Namespace) -> None:
    from tests.support import Hub, wait_for

    work = Path(tempfile.mkdtemp(prefix="vfolders-bench-", dir=a.dir))
    hub = Hub(work / "hub", config={"VFolderService": {
        "storage_hosts": {"local": {"path": str(work / "nas"), "default": True}}}})
    src = work / "big.bin"
    with open(src, "wb") as f:  # incompressible
        block = os.urandom(MB)
        h = hashlib.sha256()
        for i in range(a.mb):
            piece = hashlib.sha256(block + i.to_bytes(8, "little")).digest() * (MB // 32)
            f.write(piece)
            h.update(piece)
    digest = h.hexdigest()
    size = src.stat().st_size
    client_py = work / "client.py"
    client_py.write_text(CLIENT)
    try:
        hub.start()
        wait_for(lambda: hub.admin_allocator().call("GET", V + "/health").status_code == 200, 60, "vfolders")
        user = hub.login("bench")
        vf = user.call("POST", V + "/vfolders", json={"name": "bench"}).json()
        uploads = hub.url + V + f"/vfolders/{vf['id']}/uploads/"

        def client(*extra: str, kill_at: int | None = None) -> tuple[subprocess.Popen, dict]:
            p = subprocess.Popen([sys.executable, str(client_py), uploads, user.token, str(src), *extra],
                                 stdout=subprocess.PIPE, text=True)
            seen = {"read": 0}
            for line in p.stdout:
                word, _, value = line.strip().partition(" ")
                if word == "read":
                    seen["read"] = int(value)
                    if kill_at is not None and seen["read"] >= kill_at:
                        p.send_signal(signal.SIGKILL)
                        break
                else:
                    seen[word] = value
            p.wait()
            return p, seen

        def check(name: str) -> None:
            with hub.admin_allocator().call("GET", V + f"/vfolders/{vf['id']}/files/{name}", stream=True) as r:
                r.raise_for_status()
                got = hashlib.sha256()
                for piece in r.iter_content(4 * MB):
                    got.update(piece)
            assert got.hexdigest() == digest, "the uploaded file differs from the source"

        print(f"file: {size / MB:.0f} MiB, through the hub's proxy at {hub.url} (loopback); "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n")
        print("| run | time s | MiB/s | bytes sent twice |")
        print("|---|---:|---:|---:|")
        for rep in range(a.repeat):
            t = time.perf_counter()
            p, seen = client()
            dt = time.perf_counter() - t
            assert p.returncode == 0 and int(seen["done"]) == size, seen
            check("big.bin")
            print(f"| uninterrupted #{rep + 1} | {dt:.2f} | {size / MB / dt:.0f} | 0 |", flush=True)

        kill_at = int(size * a.kill_at)
        t = time.perf_counter()
        p, first = client(kill_at=kill_at)
        t_kill = time.perf_counter() - t
        location = first["location"]
        p2, second = client(location)
        dt = time.perf_counter() - t
        assert p2.returncode == 0 and int(second["done"]) == size, second
        check("big.bin")
        offset = int(second["offset"])
        resent = first["read"] - offset
        print(f"| killed at {first['read'] / MB:.0f} MiB read ({t_kill:.2f} s), resumed by a new client "
              f"from offset {offset / MB:.1f} MiB | {dt:.2f} | {size / MB / dt:.0f} | "
              f"{resent:,} ({resent / MB:.1f} MiB) |", flush=True)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


# --- scan -----------------------------------------------------------------------------


def service_scan(path: str, threads: int) -> float:
    """The scanner's own call (VFolderService.scan: ``ptools.du(path, threads=scan_threads
    or None)``), timed inside a fresh interpreter: the walk alone, no start-up."""
    code = ("import sys, time; from vfolder_manager.ptools import api; t = time.perf_counter(); "
            "api.du(sys.argv[1], threads=int(sys.argv[2]) or None); print(time.perf_counter() - t)")
    cp = subprocess.run([sys.executable, "-c", code, path, str(threads)], capture_output=True, text=True, check=True)
    return float(cp.stdout)


def bench_scan(a: argparse.Namespace) -> None:
    from ptools_bench import make_tree

    from vfolder_manager.ptools.testing.mount import Mount
    from vfolder_manager.service import VFolderService

    threads = VFolderService.scan_threads.default_value
    work = Path(tempfile.mkdtemp(prefix="vfolders-scan-", dir=a.dir))
    src, mnt = work / "src", work / "mnt"
    n = make_tree(src / "tree", a.files)
    dirs = sum(1 for _ in (src / "tree").rglob("*")) - n
    # (label, command or the scanner's thread count); the last row is GNU du
    rows = [("scanner, threads=8 (the old default)", 8),
            (f"scanner, scan_threads={threads} (default: {'by filesystem' if not threads else threads})", threads),
            ("pdu -s", [str(BIN / "pdu"), "-s"]),
            ("GNU du -s", ["du", "-s"])]

    def one(what, path: str) -> float:
        return service_scan(path, what) if isinstance(what, int) else timed(what + [path])

    print(f"tree: {n} files in {dirs} directories; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("scanner rows: the walk timed inside the process; command rows: the whole command "
          "(pdu's Python start-up included)\n")
    print(f"| where | {' | '.join(label for label, _ in rows)} | du / scanner (default) | du / pdu |")
    print("|---|" + "---:|" * (len(rows) + 2))
    try:
        # the simulated NAS: cold mount per run, one run each (du takes minutes)
        times = []
        for label, what in rows:
            with Mount(str(src), str(mnt), a.delay_ms, str(work / "stats.json")) as m:
                t = one(what, str(mnt / "tree"))
            times.append((t, m.stats()["ops"]))
            print(f"  {label}: {t:.2f} s, {times[-1][1]} FUSE requests", file=sys.stderr, flush=True)
        cells = " | ".join(f"{t:.2f} s ({ops // 1000}k req)" for t, ops in times)
        print(f"| NAS (latencyfs, {a.delay_ms:g} ms/request, cold) | {cells} | "
              f"{times[3][0] / times[1][0]:.1f}x | {times[3][0] / times[2][0]:.1f}x |", flush=True)
        # local disk, warm
        best = []
        for label, what in rows:
            runs = []
            for _ in range(a.repeat):
                subprocess.run(["find", str(src / "tree")], stdout=subprocess.DEVNULL)
                runs.append(one(what, str(src / "tree")))
            best.append(min(runs))
        cells = " | ".join(f"{t:.3f} s" for t in best)
        print(f"| local disk (warm, best of {a.repeat}) | {cells} | {best[3] / best[1]:.2f}x | "
              f"{best[3] / best[2]:.2f}x |", flush=True)
        print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["upload", "scan"])
    ap.add_argument("--mb", type=int, default=1024, help="upload: file size in MiB")
    ap.add_argument("--kill-at", type=float, default=0.5, help="upload: kill the client at this fraction")
    ap.add_argument("--files", type=int, default=100_000, help="scan: files in the tree")
    ap.add_argument("--delay-ms", type=float, default=1.0, help="scan: latency per FUSE request")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="where the work directory goes (default: $TMPDIR)")
    a = ap.parse_args()
    (bench_upload if a.what == "upload" else bench_scan)(a)


if __name__ == "__main__":
    main()
