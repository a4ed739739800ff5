"""In-process decision speed of gpu_allocator.core.placement.place on a live-size pool.

A pool of ``gpus / 8`` hosts with 8 GPUs each (4 NVLink islands of 2, 128 cores,
1 TiB) is filled with ``live_allocations`` allocations, then a mixed stream is
replayed for ``seconds``: 60% fractions (0.05–0.95 GPU), 30% one GPU, 10% 2–8
GPUs, 1–8 cores and 4–32 GiB each. Every granted allocation lives for a random
number of further decisions (uniform, mean = the live count), so the live count
stays steady. Only ``place()`` is timed (a refusal counts as a decision); grants
and releases go through PoolState as in the allocator.

Each decision is timed twice: wall clock (``rate``, ``p50_ms``, ``p99_ms``) and
the thread's CPU time (``cpu_rate``, ``cpu_p50_ms``, ``cpu_p99_ms``). On a
loaded machine the wall-clock tail is mostly the scheduler taking the core away
mid-decision (a time slice is a few ms); the CPU-time figures show what the
code itself costs.

    python benchmarks/placement_speed.py [--gpus 1000,10000,50000] [--seconds 5] [--json]

``decisions_per_second(gpus, live_allocations, seconds)`` is importable (e.g. by
benchmarks/allocator_scale.py) and returns {"rate", "p50_ms", "p99_ms", ...}.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_allocator.core.model import Allocation, Device, Host, Request  # noqa: E402
from gpu_allocator.core.placement import NoFit, place  # noqa: E402
from gpu_allocator.core.state import PoolState  # noqa: E402


def make_pool(gpus: int, per_host: int = 8) -> PoolState:
    state = PoolState()
    for h in range(max(1, gpus // per_host)):
        name = f"host{h:05d}"
        devs = tuple(
            Device(name, i, f"{name}/{i}", "H100" if h % 4 else "A100", 81920, f"nv{i // 2}")
            for i in range(per_host)
        )
        state.put_host(Host(name, devs, 128.0, 1024 * 1024))
    return state


def request(rng: random.Random, per: int) -> Request:
    x = rng.random()
    if x < 0.6:
        units = rng.randint(1, per - 1)
    elif x < 0.9:
        units = per
    else:
        units = rng.randint(2, 8) * per
    models = frozenset({"A100"}) if rng.random() < 0.05 else frozenset()
    return Request("u", units, float(rng.randint(1, 8)), rng.randint(4, 32) * 1024, 8.0, models)


def decisions_per_second(gpus: int, live_allocations: int, seconds: float = 5.0, seed: int = 1) -> dict:
    rng = random.Random(seed)
    state = make_pool(gpus)
    per = state.units_per_gpu
    expiry: list[tuple[int, str]] = []  # (decision number, allocation id)
    step = 0

    def decide(timed: list | None) -> None:
        nonlocal step
        step += 1
        r = request(rng, per)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        try:
            p = place(state, r)
        except NoFit:
            p = None
        if timed is not None:
            t1 = time.perf_counter()
            timed.append(t1 - t0)
            cpu_timed.append(time.thread_time() - c0)
        if p is not None:
            aid = f"a{step}"
            state.grant(Allocation(aid, r.user, p.host, r.units, r.cpu, r.mem_mb, 8.0, p.shares))
            heapq.heappush(expiry, (step + rng.randint(1, 2 * live_allocations), aid))
        while expiry and (expiry[0][0] <= step or len(state.allocations) > live_allocations):
            state.release(heapq.heappop(expiry)[1])

    while len(state.allocations) < live_allocations and step < 4 * live_allocations:
        decide(None)
    times: list[float] = []
    cpu_timed: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        decide(times)
    times.sort()
    cpu_timed.sort()
    total = sum(times)
    cpu_total = sum(cpu_timed)
    q = lambda xs, f: round(1000 * xs[min(len(xs) - 1, int(len(xs) * f))], 3)  # noqa: E731
    return {
        "gpus": gpus,
        "hosts": len(state.hosts),
        "live_allocations": len(state.allocations),
        "decisions": len(times),
        "rate": round(len(times) / total, 1) if total else 0.0,
        "p50_ms": q(times, 0.5),
        "p99_ms": q(times, 0.99),
        "cpu_rate": round(len(cpu_timed) / cpu_total, 1) if cpu_total else 0.0,
        "cpu_p50_ms": q(cpu_timed, 0.5),
        "cpu_p99_ms": q(cpu_timed, 0.99),
        "classes": len(state.classes),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus", default="1000,10000,50000")
    ap.add_argument("--live-per-gpu", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    out = []
    for g in (int(x) for x in a.gpus.split(",")):
        r = decisions_per_second(g, int(g * a.live_per_gpu), a.seconds)
        out.append(r)
        if not a.json:
            print(f"{g:>6} GPUs, {r['live_allocations']:>6} live: {r['rate']:>8.0f} decisions/s, "
                  f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms; CPU time: {r['cpu_rate']:>8.0f}/s, "
                  f"p50 {r['cpu_p50_ms']:.3f} ms, p99 {r['cpu_p99_ms']:.3f} ms ({r['classes']} host classes)",
                  flush=True)
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
