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

from tornado import web

from ..admin import actions
from ..core.reservations import Conflict, Reservation
from ..core.validation import RequestError, parse_booking, parse_user
from ..scopes import RESERVE_SCOPE
from ..shapes import reservation_json
from .base import APIHandler


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


default_handlers = [
    (r"/reservations", ReservationsHandler),
    (r"/reservations/([^/]+)", ReservationHandler),
]
