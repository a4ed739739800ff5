"""Utilisation over time: the allocator samples, per GPU model, the capacity, the
share of it allocated and (where agents report it) the GPUs' measured
utilisation, every ``interval`` seconds into an in-memory ring of 7 days. The
panel draws the last 24 hours and 7 days from it (a restart starts a new ring;
GPU-hours, which must survive restarts, come from the ledger instead)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

WEEK = 7 * 86400.0
WINDOWS = {"24h": 86400.0, "7d": WEEK}


class Samples:
    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self.ring: deque = deque(maxlen=int(WEEK / self.interval) + 1)

    def take(self, state, info: dict, now: float | None = None) -> None:
        """One sample: {model: (GPUs, GPUs allocated, mean measured utilisation % or None)}."""
        now = time.time() if now is None else now
        per = state.units_per_gpu
        models: dict[str, list] = {}
        for d in state.devices.values():
            m = models.setdefault(d.model, [0, 0, 0.0, 0])
            m[0] += 1
            m[1] += per - state.free[d.uuid]
        for name, rec in info.items():
            usage = getattr(rec, "usage", None)
            if not usage:
                continue
            for dev in usage.get("devices") or ():
                d = state.devices.get(dev.get("uuid"))
                util = dev.get("utilization_gpu")
                if d is None or util is None:
                    continue
                m = models.setdefault(d.model, [0, 0, 0.0, 0])
                m[2] += util
                m[3] += 1
        self.ring.append((now, {
            model: (n, used / per, (u / k) if k else None) for model, (n, used, u, k) in models.items()
        }))

    def series(self, window: str, buckets: int, now: float | None = None) -> dict:
        """Per model, ``buckets`` points over the window: mean allocated fraction
        (0–1) and mean measured utilisation (0–1, None without agent samples),
        None where no sample fell in a bucket."""
        now = time.time() if now is None else now
        span = WINDOWS[window]
        start = now - span
        width = span / buckets
        acc: dict[str, list] = {}
        for t, per_model in self.ring:
            if t < start:
                continue
            b = min(int((t - start) / width), buckets - 1)
            for model, (n, used, util) in per_model.items():
                rows = acc.setdefault(model, [[0.0, 0, 0.0, 0] for _ in range(buckets)])
                r = rows[b]
                if n:
                    r[0] += used / n
                    r[1] += 1
                if util is not None:
                    r[2] += util / 100.0
                    r[3] += 1
        out = {}
        for model, rows in sorted(acc.items()):
            out[model] = [
                {"t": start + (i + 0.5) * width,
                 "allocated": (a / na) if na else None,
                 "utilisation": (u / nu) if nu else None}
                for i, (a, na, u, nu) in enumerate(rows)
            ]
        return {"window": window, "start": start, "end": now, "models": out}


async def sample_forever(app) -> None:
    samples = app.samples
    while True:
        try:
            samples.take(app.pool.state, app.pool.info)
        except Exception:
            app.log.exception("sampling the pool's utilisation failed")
        await asyncio.sleep(samples.interval)
