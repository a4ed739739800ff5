"""The spawn form's cost at site scale: GET pool's body, POST estimates for every
GPU choice × model × run time the form offers (LivePool.start_estimate,
pool.estimates.Estimator), and the HTML, in process — on a pool of ``gpus / 8``
hosts, full (every request waits: each estimate is simulated) or with room.

    python benchmarks/form_estimates.py [--gpus 10000] [--queued 32] [--fill 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from allocator_scale import filled_state, write_state  # noqa: E402

from gpu_allocator.api.estimates import estimates_answer  # noqa: E402
from gpu_allocator.shapes import pool_json  # noqa: E402
from gpu_allocator.app import GPUAllocator  # noqa: E402
from gpu_allocator.core.model import Request  # noqa: E402
from gpu_allocator.pool import LivePool  # noqa: E402
from gpu_allocator.store import Ledger  # noqa: E402
from spawner.options import candidates, form_runtimes, render_form  # noqa: E402


async def main(gpus: int, queued: int, fill: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite"
        write_state(url, filled_state(gpus, 4 * gpus, fill=fill))
        pool = LivePool(Ledger(url, 20), 20)
        await pool.load()
        for i in range(queued):
            await pool.submit(Request(f"q{i}", (i % 4 + 1) * 20, 1.0, 1024, 8.0))
        await pool.schedule()
        app = GPUAllocator()
        app.pool, app.estimate_cache = pool, {}
        defaults = {"gpus": "0.5", "cpu": 2.0, "mem": "4G", "max_hours": 8.0}
        for _ in range(4):  # forms loaded one after another: recent estimates are reused
            t0 = time.perf_counter()
            body = pool_json(pool.state, pool.info, viewer="ann")
            body["max_hours"] = 168.0
            t1 = time.perf_counter()
            runtimes = form_runtimes(8.0, 168.0)
            reqs = candidates(body, defaults, runtimes)
            answer = estimates_answer(app, "ann", (), reqs)
            t2 = time.perf_counter()
            html = render_form(body, defaults, [], {"runtimes": runtimes, "requests": reqs, "answer": answer})
            t3 = time.perf_counter()
            now_ = sum(e["starts_now"] for e in answer["estimates"])
            missing = sum(not e["estimated"] for e in answer["estimates"])
            print(f"{len(pool.state.hosts)} hosts, {len(pool.state.allocations)} live, {len(pool.queue)} queued: "
                  f"GET pool {1000 * (t1 - t0):.0f} ms, {len(reqs)} estimates {1000 * (t2 - t1):.0f} ms "
                  f"({now_} start now, {missing} not estimated), HTML {1000 * (t3 - t2):.0f} ms ({len(html)} bytes)")
        pool.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=10000)
    ap.add_argument("--queued", type=int, default=32)
    ap.add_argument("--fill", type=float, default=1.0)
    a = ap.parse_args()
    asyncio.run(main(a.gpus, a.queued, a.fill))
