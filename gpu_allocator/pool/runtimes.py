"""Run times of live shares: an extension (once, if no waiting request starts
later for it and no reservation of another user's needs its GPUs), and the time
limits (notices before the end, then the share is ended "expired")."""

from __future__ import annotations

import time
from dataclasses import replace

from ..core.model import Allocation, AllocationState
from ..core.reservations import conflicts, hhmm
from ..store.ledger import Extend
from .commit import GroupCommit
from .errors import ExtendRefused
from .estimates import Estimator
from .grants import Grants
from .queue import Scheduler
from .reservations import Reservations
from .state import LiveState, when

#: minutes before the end of a share's run time that its session is warned
WARN_MINUTES = (15, 5)


class RunTimes:
    """Extends shares' run times and ends those past it."""

    def __init__(self, live: LiveState, commit: GroupCommit, grants: Grants, scheduler: Scheduler,
                 estimator: Estimator, bookings: Reservations):
        self.live = live
        self.commit = commit
        self.grants = grants
        self.scheduler = scheduler
        self.estimator = estimator
        self.bookings = bookings

    async def extend(self, allocation_id: str, hours: float, limit: float,
                     now: float | None = None) -> Allocation:
        """Extend a live share's run time by ``hours``, once, if no waiting request
        would start later for it. Raises KeyError, ExtendRefused."""
        now = time.time() if now is None else now
        live = self.live
        a = live.state.allocations.get(allocation_id)
        if a is None:
            raise KeyError(allocation_id)
        if allocation_id in live.extended:
            raise ExtendRefused("this session was extended once already")
        total = a.max_hours + hours
        if hours <= 0 or total > limit:
            raise ExtendRefused(f"the run time may be extended to at most {limit:g} h in all "
                                f"(it is {a.max_hours:g} h)")
        delayed = self.estimator.delays_queue(a, a.created + total * 3600.0, now)
        if delayed:
            raise ExtendRefused(f"extending would delay {len(delayed)} queued request(s)")
        booked = [r for r in conflicts(self.bookings.reserved.values(), [s.device_uuid for s in a.shares],
                                       live.ends_at(a), a.created + total * 3600.0) if r.user != a.user]
        if booked:
            raise ExtendRefused(f"its GPUs are reserved from {hhmm(min(r.start for r in booked), now)}")
        self.scheduler.invalidate()  # its end moves: the simulated starts may too
        await self.commit.commit([Extend(allocation_id, total)])
        new = replace(a, max_hours=total)
        if live.state.allocations.get(allocation_id) is a:
            live.state.allocations[allocation_id] = new
            live.state.by_host[a.host][allocation_id] = new
        live.extended.add(allocation_id)
        live.notices.pop(allocation_id, None)
        return new

    async def expire_due(self, now: float | None = None, warn_minutes=WARN_MINUTES) -> tuple[list, list]:
        """Time limits: note the warnings due (``notices``) and end (state
        "expired") the shares past their run time. Returns (warned, expired):
        [(allocation, minutes left)] and [allocation]."""
        now = time.time() if now is None else now
        live = self.live
        warned, expired = [], []
        for a in list(live.state.allocations.values()):
            left = live.ends_at(a) - now
            if left <= 0:
                done = await self.grants.finish(a.id, AllocationState.EXPIRED, now)
                if done is not None:
                    expired.append(done)
                continue
            for m in sorted(warn_minutes):
                if left <= m * 60.0:
                    sent = live.notices.setdefault(a.id, {"sent": []})
                    if m not in sent["sent"]:
                        sent["sent"].append(m)
                        sent["message"] = (
                            f"This session ends at {when(live.ends_at(a))} (its run time of "
                            f"{a.max_hours:g} h): save your work; it is stopped then."
                        )
                        sent["at"] = now
                        warned.append((a, m))
                    break
        return warned, expired
