"""The `gpuhub` command against the demo hub, with baselines in the same run:

    python benchmarks/jobs_cli.py [--mb 512] [--jobs 10] [--json]

transfer: ``gpuhub vfolder upload`` (tus, through the hub's proxy to the vfolder
          service) and ``gpuhub vfolder download`` of one --mb file, MiB/s; the
          baseline is the raw disk under the same data directory: writing the
          file with ``dd`` through the page cache, as the service writes (and with
          ``conv=fsync``, for reference) and reading it back with ``dd`` (warm
          page cache, as the download's read is). Ratios: CLI MiB/s / raw MiB/s.
jobs:     with the pool free, --jobs times: a job submitted through the jobs API
          (POST jobs, then GET every 20 ms until it runs): submit to running; and
          ``gpuhub run --gpus 0.5 --wait -- true``'s whole round trip (submit,
          start, the command, its end seen); the baseline is a JupyterLab
          session of the same share on the same hub (POST the server, wait until
          it is ready), spawn to ready. Median and max.

The hub is tests/support.py's (real JupyterHub, configurable-http-proxy, the
allocator and vfolder service as managed services, local processes, the mock
inventory). Not a test: it asserts only that transfers arrive intact and jobs
succeed. Dated figures go to benchmarks/RESULTS.md (benchmarks/results.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import hub_in  # noqa: E402


def mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / (1 << 20) / max(seconds, 1e-9)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, **kw)
    return time.perf_counter() - t, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=512, help="size of the transferred file in MiB")
    ap.add_argument("--jobs", type=int, default=10, help="jobs (and sessions) to time")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpuhub-jobs-bench-"))
    hub = hub_in(work, {}).start()
    out: dict = {"mb": a.mb, "jobs": a.jobs}
    try:
        user = hub.login("bench")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUHUB_", "JUPYTERHUB_"))}
        env.update(HOME=str(work / "clihome"), XDG_CONFIG_HOME=str(work / "cfg"), XDG_CACHE_HOME=str(work / "cache"),
                   PYTHONPATH=str(REPO), GPUHUB_URL=hub.url, GPUHUB_TOKEN=user.token)
        cli = [sys.executable, "-m", "gpuhub.cli"]

        def run(*args):
            p = subprocess.run([*cli, *args], env=env, capture_output=True, text=True)
            assert p.returncode == 0, (args, p.stderr)
            return p

        # --- transfer ------------------------------------------------------------------
        src = hub.data_dir / "bench-src.bin"
        nbytes = a.mb << 20
        raw_w, p = timed(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", f"count={a.mb}", "conv=fsync"])
        assert p.returncode == 0, p.stderr
        # the service writes through the page cache (no fsync), as dd does here; with
        # fsync, for reference
        raw_w, p = timed(["dd", f"if={src}", f"of={hub.data_dir / 'bench-copy.bin'}", "bs=1M"])
        raw_sync, p = timed(["dd", f"if={src}", f"of={hub.data_dir / 'bench-copy2.bin'}", "bs=1M", "conv=fsync"])
        raw_r, p = timed(["dd", f"if={src}", "of=/dev/null", "bs=1M"])
        run("vfolder", "create", "bench")
        up, p = timed([*cli, "vfolder", "upload", "-q", "bench", str(src), "data.bin"], env=env)
        assert p.returncode == 0, p.stderr
        dest = work / "down.bin"
        down, p = timed([*cli, "vfolder", "download", "-q", "bench", "data.bin", str(dest)], env=env)
        assert p.returncode == 0, p.stderr
        assert sha256(dest) == sha256(src)
        out["transfer"] = [
            {"what": "upload (gpuhub vfolder upload)", "MiB/s": round(mib_s(nbytes, up), 1),
             "raw disk MiB/s": round(mib_s(nbytes, raw_w), 1), "CLI / raw": round(raw_w / up, 2),
             "baseline": f"dd write through the page cache (with fsync: {mib_s(nbytes, raw_sync):.0f} MiB/s)"},
            {"what": "download (gpuhub vfolder download)", "MiB/s": round(mib_s(nbytes, down), 1),
             "raw disk MiB/s": round(mib_s(nbytes, raw_r), 1), "CLI / raw": round(raw_r / down, 2),
             "baseline": "dd read, warm cache"},
        ]
        for f in (src, hub.data_dir / "bench-copy.bin", hub.data_dir / "bench-copy2.bin"):
            f.unlink()

        # --- jobs --------------------------------------------------------------------------
        starts, trips = [], []
        api = "/services/gpu-allocator/api/v1/jobs"
        for _ in range(a.jobs):
            # submit → running, as a client sees it (the API's times are whole seconds)
            t = time.perf_counter()
            r = user.call("POST", api, json={"command": ["sleep", "1"], "gpus": "0.5"})
            assert r.status_code == 201, r.text
            job = r.json()
            while job["state"] == "queued":
                time.sleep(0.02)
                job = user.call("GET", f"{api}/{job['id']}").json()
            starts.append(time.perf_counter() - t)
            while job["state"] == "running":
                time.sleep(0.1)
                job = user.call("GET", f"{api}/{job['id']}").json()
            assert job["state"] == "succeeded", job
            t, p = timed([*cli, "run", "--gpus", "0.5", "--wait", "--json", "--", "true"], env=env, text=True)
            assert p.returncode == 0 and json.loads(p.stdout)["state"] == "succeeded", p.stderr
            trips.append(t)
        spawns = []
        for _ in range(a.jobs):
            t = time.perf_counter()
            r = user.spawn({"gpus": "0.5"})
            assert r.status_code in (201, 202), r.text
            user.wait_ready(timeout=120)
            spawns.append(time.perf_counter() - t)
            user.stop()
            user.wait_stopped()
        med = statistics.median
        out["jobs_latency"] = [
            {"what": "job submit → running (POST jobs, then GET until running)", "median s": round(med(starts), 3),
             "max s": round(max(starts), 3)},
            {"what": "gpuhub run --wait -- true, whole round trip", "median s": round(med(trips), 3),
             "max s": round(max(trips), 3)},
            {"what": "baseline: JupyterLab session spawn → ready", "median s": round(med(spawns), 3),
             "max s": round(max(spawns), 3)},
        ]
        out["job_start_vs_session"] = round(med(starts) / med(spawns), 3)
    finally:
        hub.stop()
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"## transfer ({a.mb} MiB)\n\n| what | MiB/s | raw disk MiB/s | CLI / raw | baseline |\n|---|---|---|---|---|")
    for r in out["transfer"]:
        print(f"| {r['what']} | {r['MiB/s']} | {r['raw disk MiB/s']} | {r['CLI / raw']} | {r['baseline']} |")
    print(f"\n## job start ({a.jobs} each, the pool free)\n\n| what | median s | max s |\n|---|---|---|")
    for r in out["jobs_latency"]:
        print(f"| {r['what']} | {r['median s']} | {r['max s']} |")
    print(f"\njob start / session start: {out['job_start_vs_session']}")


if __name__ == "__main__":
    main()
