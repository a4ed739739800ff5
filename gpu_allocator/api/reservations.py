"""REST handlers of advance reservations (core.reservations), under
``{service_prefix}api/v1/``:

- ``POST reservations`` ``{"host", "gpus", "model"?, "start", "end", "user"?,
  "note"?}`` (times: ISO 8601 or epoch seconds): 201 with the reservation and its
  device uuids; 409 naming what is in the way; 400 for bad input; 403 without
  the scope ``custom:gpu-allocator:reserve`` (admins may also book for others);
- ``GET reservations`` (admins: ``?user=``): the current ones — a user's own,
  an admin's all;
- ``GET``/``DELETE reservations/{id}``: the owner or an admin (others: 404).

Admins' bookings and cancellations are audited (admin.actions).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

from tornado import web

from ..admin import actions
from ..core.reservations import Conflict, Reservation, iso
from ..core.validation import RequestError, parse_text, parse_user
from .allocations import APIHandler

RESERVE_SCOPE = "custom:gpu-allocator:reserve"
FIELDS = ("host", "gpus", "model", "start", "end", "user", "note")


def reservation_json(r: Reservation, state=None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    out = {
        "id": r.id, "user": r.user, "host": r.host, "model": r.model, "gpus": r.gpus,
        "devices": list(r.devices), "start": iso(r.start), "end": iso(r.end),
        "state": r.state.value, "active_now": r.active_at(now), "created": iso(r.created),
        "created_by": r.created_by, "note": r.note, "cancelled": iso(r.ended),
    }
    if state is not None:
        out["indexes"] = [state.devices[u].index for u in r.devices if u in state.devices]
    return out


def parse_time(value, name: str) -> float:
    """Epoch seconds (a number) or ISO 8601 (no zone: UTC)."""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        if not 0 <= value < 10**11:
            raise RequestError(f"{name} is out of range")
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
            return t.timestamp()
    raise RequestError(f"{name} must be a time: ISO 8601 (e.g. 2026-12-01T09:00:00Z) or epoch seconds")


def parse_booking(data: dict, state, now: float) -> dict:
    """The body of ``POST reservations``, checked against the pool: host, model
    (implied when the host has one), gpus, start, end. Raises RequestError."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    host = data.get("host")
    if not isinstance(host, str) or host not in state.hosts:
        raise RequestError(f"host must be one of the pool's hosts, got {host!r}"[:200])
    models = sorted({d.model for d in state.hosts[host].devices})
    model = data.get("model")
    if model is None:
        if len(models) != 1:
            raise RequestError(f"{host} has several GPU models ({', '.join(models)}): name one in model")
        model = models[0]
    if not isinstance(model, str) or model not in models:
        raise RequestError(f"{host} has no GPU model {model!r}; it has {', '.join(models) or 'none'}"[:300])
    gpus = data.get("gpus")
    count = sum(1 for d in state.hosts[host].devices if d.model == model)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 1 <= gpus <= count:
        raise RequestError(f"gpus must be a whole number from 1 to {count} ({host} has {count} × {model})")
    if "start" not in data or "end" not in data:
        raise RequestError("start and end are required")
    start, end = parse_time(data["start"], "start"), parse_time(data["end"], "end")
    if end <= start:
        raise RequestError("end must be after start")
    if end <= now:
        raise RequestError("end is in the past")
    note = parse_text(data.get("note", ""), "note", 1000)
    return {"host": host, "model": model, "gpus": gpus, "start": start, "end": end, "note": note}


class ReservationsHandler(APIHandler):
    @property
    def may_reserve(self) -> bool:
        return self.is_admin or RESERVE_SCOPE in self.scopes

    def get(self):
        user = self.get_argument("user", None)
        if not self.is_admin:
            if user not in (None, self.user_name):
                raise web.HTTPError(403, "you can only list your own reservations")
            user = self.user_name
        now = time.time()
        state = self.pool.state
        self.send({"reservations": [reservation_json(r, state, now) for r in self.pool.reservations(user, now)]})

    async def post(self):
        if not self.may_reserve:
            raise web.HTTPError(403, f"booking GPUs ahead needs the scope {RESERVE_SCOPE} (ask an admin)")
        data = self.body()
        now = time.time()
        try:
            booking = parse_booking(data, self.pool.state, now)
            user = parse_user(data.get("user", self.user_name))
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        if user != self.user_name and not self.is_admin:
            raise web.HTTPError(403, "only admins book GPUs for other users")
        try:
            r = await actions.reserve(self.allocator, self.user_name, user=user, audit=self.is_admin, **booking)
        except Conflict as e:
            raise web.HTTPError(409, str(e) if self.is_admin else e.public) from None
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        self.send(reservation_json(r, self.pool.state, now), status=201)


class ReservationHandler(APIHandler):
    async def own(self, reservation_id: str) -> Reservation:
        """Other users' reservation ids are not even confirmed to exist."""
        r = await self.pool.get_reservation(reservation_id)
        if r is None or (r.user != self.user_name and not self.is_admin):
            raise web.HTTPError(404, f"no reservation {reservation_id}")
        return r

    async def get(self, reservation_id):
        self.send(reservation_json(await self.own(reservation_id), self.pool.state))

    async def delete(self, reservation_id):
        """Cancel (idempotent: one that is not active any more is answered as it is)."""
        r = await self.own(reservation_id)
        done = await actions.cancel_reservation(self.allocator, self.user_name, reservation_id,
                                                audit=self.is_admin)
        self.send(reservation_json(done or r, self.pool.state))
