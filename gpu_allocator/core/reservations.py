"""Advance reservations: ``gpus`` whole GPUs of one model on one host kept for one
user from ``start`` to ``end``. Pure functions over plain data (no I/O, no
clock: ``now`` is an argument).

- **Booking** (:func:`book`): the devices are the host's GPUs of the model that
  are idle at ``start`` — no active reservation overlapping [start, end) holds
  them, and no running share on them has a declared end (created + max_hours)
  after ``start`` (capacity already promised) — the best-connected set of them
  (core.topology.choose). Too few: :class:`Conflict`, naming what is in the way.
- **The rule for a request** (:func:`restriction`) at ``now`` that runs until
  ``end = now + max_hours``: the devices of every active reservation of *another*
  user that overlaps [now, end) are excluded (before T1 they take only work that
  ends in time); while one of the user's own reservations is active, the request
  is placed onto its devices (and, if it does not fit there, as anyone else's).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .model import Allocation, Request
from .placement import NoFit, place
from .state import PoolState
from .topology import choose


class ReservationState(str, enum.Enum):
    """``active`` reservations keep their devices until their end; ``cancelled``
    ones are history (a reservation past its end is history too, still ``active``)."""

    ACTIVE = "active"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reservation:
    id: str
    user: str
    host: str
    model: str
    gpus: int
    devices: tuple[str, ...]  # device uuids
    start: float  # epoch s
    end: float
    state: ReservationState = ReservationState.ACTIVE
    created: float = 0.0
    created_by: str = ""
    note: str = ""
    ended: float | None = None  # when it was cancelled

    def holds(self, t0: float, t1: float) -> bool:
        """Whether it keeps its devices at some time in [t0, t1)."""
        return self.state == ReservationState.ACTIVE and self.start < t1 and t0 < self.end

    def active_at(self, now: float) -> bool:
        return self.state == ReservationState.ACTIVE and self.start <= now < self.end


class Conflict(Exception):
    """A booking that cannot be kept: the message names what is in the way (ids
    and users: for admins); ``public`` says the same without other users' names
    or ids; ``reservations`` and ``shares`` are the obstacles."""

    def __init__(self, message: str, reservations=(), shares=(), public: str | None = None):
        super().__init__(message)
        self.reservations = tuple(reservations)
        self.shares = tuple(shares)
        self.public = public or message


def hhmm(t: float, now: float | None = None) -> str:
    """"14:30 UTC", or with the date when it is not today (local time, as the
    allocator's other messages)."""
    now = time.time() if now is None else now
    lt, ln = time.localtime(t), time.localtime(now)
    fmt = "%H:%M %Z" if lt[:3] == ln[:3] else "%Y-%m-%d %H:%M %Z"
    return time.strftime(fmt, lt)


def iso(t: float | None) -> str | None:
    """UTC ISO 8601 to the second (what the API sends and the audit log keeps)."""
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def conflicts(reservations, devices, start: float, end: float) -> list[Reservation]:
    """Active reservations that hold one of ``devices`` at some time in [start, end)."""
    devs = set(devices)
    return [r for r in reservations if r.holds(start, end) and devs.intersection(r.devices)]


def promised(running, devices, start: float) -> list[tuple[Allocation, float]]:
    """Running shares (allocation, declared end) on ``devices`` still running at ``start``."""
    devs = set(devices)
    return [(a, e) for a, e in running if e > start and any(s.device_uuid in devs for s in a.shares)]


def book(state: PoolState, host: str, model: str, gpus: int, start: float, end: float,
         reservations, running) -> tuple[str, ...]:
    """The device uuids a booking of ``gpus`` GPUs of ``model`` on ``host`` from
    ``start`` to ``end`` gets: idle at ``start`` and best connected. Raises
    Conflict (naming the reservations and shares in the way), ValueError (a
    host or model that cannot hold it at all)."""
    h = state.hosts.get(host)
    if h is None:
        raise ValueError(f"no host {host}")
    mine = [d for d in h.devices if d.model == model]
    if not mine:
        raise ValueError(f"{host} has no {model}")
    if not 0 < gpus <= len(mine):
        raise ValueError(f"{host} has {len(mine)} × {model}: a reservation takes 1 to {len(mine)}")
    uuids = [d.uuid for d in mine]
    booked = conflicts(reservations, uuids, start, end)
    taken = {u for r in booked for u in r.devices}
    busy = promised(running, [u for u in uuids if u not in taken], start)
    taken |= {s.device_uuid for a, _ in busy for s in a.shares}
    free = [d for d in mine if d.uuid not in taken]
    if len(free) < gpus:
        head = (f"only {len(free)} of {len(mine)} × {model} on {host} are free from {hhmm(start)} to "
                f"{hhmm(end, start)}; in the way: ")
        when = [f"({', '.join(sorted(set(r.devices) & set(uuids)))}) from {hhmm(r.start, start)} to "
                f"{hhmm(r.end, start)}" for r in booked]
        named = [f"reservation {r.id} of {r.user} {w}" for r, w in zip(booked, when)]
        named += [f"allocation {a.id} of {a.user} running until {hhmm(e, start)}" for a, e in busy]
        public = [f"a reservation {w}" for w in when]
        public += [f"a session running until {hhmm(e, start)}" for _, e in busy]
        raise Conflict(head + "; ".join(named), booked, [a for a, _ in busy], head + "; ".join(public))
    m = state.kind_matrix[state.host_kind[host]][0]
    by_index = {d.index: d.uuid for d in free}
    chosen, _ = choose(m, tuple(sorted(by_index)), gpus)
    return tuple(by_index[i] for i in chosen)


@dataclass(frozen=True)
class Restriction:
    """What the reservations mean for one request: devices it may not use, the
    devices it is placed onto first (its user's active reservation), and the
    reservations that keep the excluded devices."""

    exclude: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    blocking: tuple[Reservation, ...] = field(default_factory=tuple)

    def place(self, state: PoolState, req: Request):
        """Placement under the rule: the user's reserved devices first, then any
        device not reserved by someone else (a CPU-only request: anywhere). Raises NoFit."""
        if self.only and req.units > 0:
            try:
                return place(state, req, only=self.only)
            except NoFit:
                pass
        return place(state, req, exclude=self.exclude) if self.exclude else place(state, req)

    def reason(self, now: float, admin: bool = False) -> str:
        """Why a request waits for these reservations: the user's name only for admins."""
        r = max(self.blocking, key=lambda r: r.end)
        who = f" for {r.user}" if admin else ""
        return f"waiting: {r.gpus} × {r.model} on {r.host} reserved{who} until {hhmm(r.end, now)}"


NONE = Restriction()


def restriction(reservations, user: str, now: float, end: float) -> Restriction:
    """The rule for ``user``'s request running [now, end) (see the module docstring)."""
    exclude, only, blocking = set(), None, []
    for r in reservations:
        if r.user == user:
            if r.active_at(now):
                only = (only or set()) | set(r.devices)
        elif r.holds(now, end):
            exclude.update(r.devices)
            blocking.append(r)
    if not exclude and only is None:
        return NONE
    # a device of the user's own that another's reservation takes before [now, end) is over
    only = None if only is None else frozenset(only - exclude)
    return Restriction(frozenset(exclude), only, tuple(blocking))
