"""The pool's memory that its parts share: the PoolState (hosts, devices, live
allocations and their indexes) and what the ledger keeps beside each live
allocation. Each part (commit, grants, queue, reservations, hosts) holds this
one object and reads ``state`` through it, so a fresh load replaces the state
for all of them at once."""

from __future__ import annotations

import asyncio
import time

from ..core.model import Allocation
from ..core.state import PoolState


class LiveState:
    """The authoritative in-memory pool (see the package's docstring for how it
    stays in step with the ledger)."""

    def __init__(self, units_per_gpu: int):
        self.state = PoolState(units_per_gpu)
        #: allocation id → the hub server it is for (None: not a hub server's)
        self.hub_server: dict[str, str | None] = {}
        #: allocations extended once
        self.extended: set[str] = set()
        #: time-limit and idle notices per live allocation ({id: {"sent": [minutes…], …}})
        self.notices: dict[str, dict] = {}
        #: idempotency keys whose answer is being committed → done once it is
        self.pending_keys: dict[str, asyncio.Future] = {}

    @property
    def units_per_gpu(self) -> int:
        return self.state.units_per_gpu

    def by_key(self, key: str) -> Allocation | None:
        aid = self.state.by_key.get(key)
        return self.state.allocations.get(aid) if aid else None

    async def key_settled(self, key: str) -> None:
        """Wait until an answer being committed for ``key`` is (a retry gets it)."""
        pending = self.pending_keys.get(key)
        if pending is not None:
            await asyncio.shield(pending)

    def live(self, user: str | None = None) -> list[Allocation]:
        allocations = self.state.allocations.values()
        if user is not None:
            allocations = (a for a in allocations if a.user == user)
        return sorted(allocations, key=lambda a: (a.created, a.id))

    @staticmethod
    def ends_at(a: Allocation) -> float:
        """When a live share's run time (max_hours, extended or not) is over."""
        return a.created + a.max_hours * 3600.0

    def running(self) -> list[tuple[Allocation, float]]:
        return [(a, self.ends_at(a)) for a in self.state.allocations.values()]


def when(t: float | None) -> str:
    """Epoch seconds as local time for the logs and notices."""
    if t is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))
