"""A class presses Start at the same minute: N users spawn at once through a real hub.

One run, two storms against the same JupyterHub configuration (the demo config, real
configurable-http-proxy, local processes running the servers' environment):

- **plain**: JupyterHub's own ``LocalProcessSpawner`` (the baseline);
- **gpuhub**: ``LocalGPUSpawner``, each user asking for a GPU fraction on the mock
  pool (the allocator places it, the vfolder service mounts the user's folders).

Every user logs in through the login form first (not timed). Then all of them
POST their server at once (a barrier releases the threads together) and follow the
spawn progress stream, as the spawn page does. Click-to-ready is the time from the
POST to the progress stream's ``ready`` event. An error is a spawn that failed, timed
out or ended in anything but ``ready``. CPU is the hub's and the allocator's
process CPU time during the storm, as a share of one core over the storm's wall time.

The pool is generated (``--gpus`` GPUs on hosts of 8), large enough that every
fraction starts at once: the storm measures the spawn path, not the queue.
As root, the users' accounts are made before both storms (useradd), so that neither
pays for making them.

    python benchmarks/spawn_storm.py [--users 50] [--gpus 16] [--fraction 0.25]
        [--order plain,gpuhub] [--timeout 300] [--json]

Target (issue #19): gpuhub's p99 click-to-ready at most 1.15 x plain JupyterHub's, and
no errors. Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO)]

from tests.support import Hub  # noqa: E402

#: what the storm's hub sets after the demo config: a class at once (no spawn
#: limit; long enough time-outs), and for the baseline JupyterHub's own spawner
AFTER_DEMO = """
c.JupyterHub.concurrent_spawn_limit = 0
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
"""
PLAIN = 'c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"\n'


class StormHub(Hub):
    """The tests' demo hub (tests.support.Hub), with AFTER_DEMO (and PLAIN for the
    baseline) appended to its config file."""

    def __init__(self, workdir: Path, plain: bool, **kw):
        super().__init__(workdir, **kw)
        self.plain = plain

    def write_config(self) -> None:
        super().write_config()
        with open(self.config, "a") as f:
            f.write(AFTER_DEMO + (PLAIN if self.plain else ""))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def inventory_yaml(gpus: int) -> str:
    hosts = []
    for h in range((gpus + 7) // 8):
        count = min(8, gpus - 8 * h)
        hosts.append(
            f"  - name: storm-{h}\n    cpus: 256\n    memory: 2T\n    gpus:\n"
            f"      - model: A100-SXM4-80GB\n        memory: 80G\n        count: {count}\n"
        )
    return "hosts:\n" + "".join(hosts)


def ensure_accounts(names: list[str]) -> None:
    """As root, the users' accounts exist before either storm (LocalGPUSpawner would
    make them on the first spawn; LocalProcessSpawner needs them)."""
    if os.getuid() != 0:
        return
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def storm(kind: str, names: list[str], work: Path, inventory: Path, fraction: str,
          timeout: float) -> dict:
    """One storm on a hub of its own; returns the figures."""
    hub = StormHub(work / kind, plain=kind == "plain", config={
        "GPUAllocator": {"inventory_file": str(inventory), "reconcile_interval": 0.0}})
    hub.start(timeout=180)
    try:
        users = [hub.login(n) for n in names]
        options = {"gpus": fraction, "cpu": "1", "mem": "1G"} if kind == "gpuhub" else {}
        barrier = threading.Barrier(len(users) + 1)
        results: dict[str, dict] = {}

        def one(user):
            barrier.wait()
            t0 = time.perf_counter()
            try:
                r = user.spawn(options)
                if r.status_code not in (201, 202):
                    results[user.name] = {"error": f"POST {r.status_code}: {r.text[:200]}"}
                    return
                events = user.progress()
                last = events[-1] if events else {}
                if last.get("ready"):
                    results[user.name] = {"seconds": time.perf_counter() - t0}
                else:
                    results[user.name] = {"error": f"spawn ended: {last.get('message', 'no events')}"}
            except Exception as e:  # noqa: BLE001 — every failure is counted as an error
                results[user.name] = {"error": f"{type(e).__name__}: {e}"}

        threads = [threading.Thread(target=one, args=(u,), daemon=True) for u in users]
        for t in threads:
            t.start()
        pids = [hub.proc.pid]
        allocator = hub.allocator_pids()
        hub_cpu0, alloc_cpu0 = cpu_seconds(pids), cpu_seconds(allocator)
        wall0 = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join(timeout)
        wall = time.perf_counter() - wall0
        hub_cpu, alloc_cpu = cpu_seconds(pids) - hub_cpu0, cpu_seconds(allocator) - alloc_cpu0
        for u in users:
            results.setdefault(u.name, {"error": f"no answer within {timeout} s"})
        ready = [r["seconds"] for r in results.values() if "seconds" in r]
        errors = sorted({r["error"] for r in results.values() if "error" in r})
        out = {
            "spawner": kind,
            "users": len(users),
            "ready": len(ready),
            "errors": len(users) - len(ready),
            "first_errors": errors[:5],
            "p50_s": round(percentile(ready, 0.50), 2),
            "p99_s": round(percentile(ready, 0.99), 2),
            "max_s": round(max(ready), 2) if ready else None,
            "wall_s": round(wall, 2),
            "hub_cpu_pct": round(100 * hub_cpu / wall, 1),
            "allocator_cpu_pct": round(100 * alloc_cpu / wall, 1) if allocator else None,
        }
        for u in users:
            try:
                u.stop()
            except Exception as e:  # noqa: BLE001 — the figures stand; say what did not stop
                print(f"spawn_storm: {u.name}'s server did not stop: {e}", file=sys.stderr)
        return out
    finally:
        hub.stop()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50, help="users spawning at once (default 50)")
    ap.add_argument("--gpus", type=int, default=16, help="GPUs in the generated mock pool")
    ap.add_argument("--fraction", default="0.25", help="each gpuhub user's share of a GPU")
    ap.add_argument("--order", default="plain,gpuhub", help="which storms, in this order")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a spawn may take")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    order = args.order.split(",")
    for kind in order:
        if kind not in ("plain", "gpuhub"):
            ap.error(f"unknown storm {kind!r}: plain or gpuhub")
    names = [f"storm{i:03d}" for i in range(args.users)]
    ensure_accounts(names)
    work = Path(tempfile.mkdtemp(prefix="gpuhub-storm-"))
    os.chmod(work, 0o755)  # the users' servers keep their homes elsewhere; logs stay here
    inventory = work / "inventory.yaml"
    inventory.write_text(inventory_yaml(args.gpus))
    runs = {kind: storm(kind, names, work, inventory, args.fraction, args.timeout) for kind in order}
    result = {"users": args.users, "fraction": args.fraction, "runs": runs}
    if "plain" in runs and "gpuhub" in runs and runs["plain"]["p99_s"]:
        result["p99_ratio"] = round(runs["gpuhub"]["p99_s"] / runs["plain"]["p99_s"], 3)
        result["p50_ratio"] = round(runs["gpuhub"]["p50_s"] / runs["plain"]["p50_s"], 3)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.users} users spawning at once (gpuhub: {args.fraction} GPU each)")
        print(f"{'spawner':8} {'ready':>6} {'errors':>6} {'p50 s':>7} {'p99 s':>7} {'hub CPU':>8} {'alloc CPU':>9}")
        for r in runs.values():
            alloc = "-" if r["allocator_cpu_pct"] is None else f"{r['allocator_cpu_pct']}%"
            print(f"{r['spawner']:8} {r['ready']:>6} {r['errors']:>6} {r['p50_s']:>7} {r['p99_s']:>7} "
                  f"{r['hub_cpu_pct']:>7}% {alloc:>9}")
            for e in r["first_errors"]:
                print(f"  error: {e}")
        if "p99_ratio" in result:
            print(f"gpuhub / plain: p99 {result['p99_ratio']}x, p50 {result['p50_ratio']}x (target p99 <= 1.15x)")
    return result


if __name__ == "__main__":
    main()
