"""Decayed GPU usage for fair share (as Slurm's multifactor plugin). Pure.

Usage is GPU-seconds weighted by ``2 ** -(age / half_life)``: a GPU-second used
one half-life ago counts half. A share that ran from ``s`` to ``e`` with ``g``
GPUs contributes, seen at time ``t >= e``::

    g * h / ln 2 * (2 ** -((t - e) / h) - 2 ** -((t - s) / h))

(the integral of the decay over its run), so finished shares are folded into one
number per user and group, and running ones are added on the fly.
"""

from __future__ import annotations

import math

LN2 = math.log(2)


def decay(age: float, half_life: float) -> float:
    return 2.0 ** (-max(0.0, age) / half_life)


def interval(gpus: float, start: float, end: float, at: float, half_life: float) -> float:
    """Decayed GPU-seconds of ``gpus`` used from ``start`` to ``end``, seen at ``at``."""
    end = min(end, at)
    if end <= start:
        return 0.0
    return gpus * half_life / LN2 * (decay(at - end, half_life) - decay(at - start, half_life))


class FairShare:
    """Finished usage by key ("user:NAME", "group:NAME"), decayed."""

    def __init__(self, half_life_s: float = 7 * 24 * 3600.0):
        if half_life_s <= 0:
            raise ValueError("the half-life must be positive")
        self.half_life = half_life_s
        self._v: dict[str, tuple[float, float]] = {}  # key → (value, as of)

    def add(self, key: str, gpus: float, start: float, end: float) -> None:
        """A finished share of ``gpus`` that ran from ``start`` to ``end``."""
        at = max(end, self._v.get(key, (0.0, end))[1])
        self._v[key] = (self.value(key, at) + interval(gpus, start, end, at, self.half_life), at)

    def value(self, key: str, now: float) -> float:
        v, at = self._v.get(key, (0.0, now))
        return v * decay(now - at, self.half_life) if now >= at else v

    def usage(self, key: str, now: float, running=()) -> float:
        """Finished usage plus ``running``: (gpus, start) pairs still running, or
        (gpus, start, end) where the time still granted (end − now) counts too,
        undecayed (it is committed)."""
        total = self.value(key, now)
        for gpus, start, *end in running:
            total += interval(gpus, start, now, now, self.half_life)
            if end and end[0] > now:
                total += gpus * (end[0] - now)
        return total

    def keys(self):
        return self._v.keys()
