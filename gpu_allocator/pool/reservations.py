"""Advance reservations (core.reservations): GPUs of a host booked for a user
over a time window, kept in memory while active and in the ledger for good."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from ..core.model import Request
from ..core.queue import NO_RULES, Rules
from ..core.reservations import NONE, Reservation, ReservationState, Restriction, book, restriction
from ..store.ledger import CancelReservation, Reserve
from .commit import GroupCommit
from .state import LiveState, when


class Reservations:
    """The active reservations and the rule they impose on placements."""

    def __init__(self, live: LiveState, commit: GroupCommit, log: logging.Logger,
                 changed: Callable[[], None]):
        self.live = live
        self.commit = commit
        self.log = log
        #: called when a booking changes what may start (the queue's kick)
        self.changed = changed
        #: active advance reservations by id, those not ended
        self.reserved: dict[str, Reservation] = {}

    async def load(self, now: float) -> None:
        self.reserved = {r.id: r for r in await self.commit.read(self.commit.ledger.load_reservations, now)}

    def restriction(self, req: Request, now: float) -> Restriction:
        """The reservations' rule for ``req`` starting at ``now``."""
        if not self.reserved:
            return NONE
        return restriction(self.reserved.values(), req.user, now, now + req.max_hours * 3600.0)

    def rules(self, now: float) -> Rules:
        """The reservations' rule for the simulations outside a pass (estimates,
        extensions), the same as a pass applies."""
        return Rules(self.restriction, now) if self.reserved else NO_RULES

    def active(self, user: str | None = None, now: float | None = None) -> list[Reservation]:
        """Active reservations not yet ended (``user``: theirs), by start."""
        now = time.time() if now is None else now
        for rid in [rid for rid, r in self.reserved.items() if r.end <= now]:
            del self.reserved[rid]  # over: history (the ledger keeps it)
        out = [r for r in self.reserved.values() if user is None or r.user == user]
        return sorted(out, key=lambda r: (r.start, r.id))

    async def get(self, reservation_id: str) -> Reservation | None:
        r = self.reserved.get(reservation_id)
        if r is not None:
            return r
        return await self.commit.read(self.commit.ledger.get_reservation, reservation_id)

    async def reserve(self, user: str, host: str, model: str, gpus: int, start: float, end: float, *,
                      created_by: str, note: str = "", now: float | None = None, rid: str | None = None,
                      extra: tuple = ()) -> Reservation:
        """Book ``gpus`` GPUs of ``model`` on ``host`` for ``user`` from ``start`` to
        ``end`` (a start in the past: from now). Raises reservations.Conflict,
        ValueError. Takes capacity: in memory before the commit."""
        now = time.time() if now is None else now
        start = max(start, now)
        if end <= start:
            raise ValueError("the reservation must end after it starts and after now")
        devices = book(self.live.state, host, model, gpus, start, end, self.active(now=now), self.live.running())
        r = Reservation(rid or secrets.token_hex(8), user, host, model, gpus, devices, start, end,
                        created=now, created_by=created_by, note=note)
        self.reserved[r.id] = r
        try:
            await self.commit.commit([Reserve(r), *extra])
        except BaseException:
            self.reserved.pop(r.id, None)
            raise
        self.log.info("reservation %s: %d × %s on %s for %s from %s to %s (by %s)", r.id, gpus, model, host,
                      user, when(start), when(end), created_by)
        self.changed()  # the estimates of what waits change
        return r

    async def cancel(self, reservation_id: str, now: float | None = None,
                     extra: tuple = ()) -> Reservation | None:
        """Cancel an active reservation (None: none such). Gives capacity back: after the commit."""
        r = self.reserved.get(reservation_id)
        if r is None:
            return None
        now = time.time() if now is None else now
        await self.commit.commit([CancelReservation(reservation_id, now), *extra])
        if self.reserved.pop(reservation_id, None) is None:
            return None  # a concurrent cancel got there first
        self.changed()
        return replace(r, state=ReservationState.CANCELLED, ended=now)
