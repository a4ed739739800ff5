"""Admins' actions on the pool and their audit log.

Each action is written with its audit entry in one transaction (the entry is a
ledger operation beside the change), so the log never misses an action that
took effect nor lists one that did not. The REST API and the panel's pages call
the same functions.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core.model import Allocation, AllocationState
from ..core.reservations import iso
from ..store.ledger import Audit
from ..store.schema import AuditRow

MAX_REASON = 500


def clean_reason(reason) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise ValueError("reason must be a string")
    return reason.strip()[:MAX_REASON]


async def set_drained(app, actor: str, host: str, drained: bool, reason: str = "") -> bool:
    """Drain or undrain ``host``, recorded as ``drain``/``undrain`` of ``host:NAME``.
    False: no such host (nothing recorded)."""
    action = "drain" if drained else "undrain"
    entry = Audit(time.time(), actor, action, f"host:{host}", {"reason": reason} if reason else None)
    if host not in app.pool.state.hosts:
        return False
    done = await app.pool.set_drained(host, drained, extra=(entry,))
    if done:
        app.log.info("host %s %sed by %s%s", host, action, actor, f" ({reason})" if reason else "")
    return done


async def revoke(app, actor: str, allocation_id: str, reason: str = "") -> Allocation | None:
    """End a live allocation as ``revoked``: its shares are free at once, and the
    hub stops its session on the spawner's next poll, telling the user why.
    None: not live (nothing recorded)."""
    a = app.pool.state.allocations.get(allocation_id)
    if a is None:
        return None
    detail = {"user": a.user, "server": a.server, "host": a.host,
              "gpus": f"{a.units / app.pool.units_per_gpu:g}"}
    if reason:
        detail["reason"] = reason
    entry = Audit(time.time(), actor, "revoke", f"allocation:{allocation_id}", detail)
    done = await app.pool.finish(allocation_id, AllocationState.REVOKED, extra=(entry,))
    if done is not None:
        app.log.warning("allocation %s of %s on %s revoked by %s%s", a.id, a.user, a.host, actor,
                        f": {reason}" if reason else "")
    return done


async def reserve(app, actor: str, *, user: str, host: str, model: str, gpus: int, start: float,
                  end: float, note: str = "", audit: bool = True):
    """Book an advance reservation (LivePool.reserve), recorded as ``reserve`` of
    ``reservation:ID`` when ``audit`` (an admin acts). Raises reservations.Conflict,
    ValueError."""
    rid = secrets.token_hex(8)
    detail = {"user": user, "host": host, "model": model, "gpus": gpus, "start": iso(start), "end": iso(end)}
    if note:
        detail["note"] = note
    extra = (Audit(time.time(), actor, "reserve", f"reservation:{rid}", detail),) if audit else ()
    return await app.pool.reserve(user, host, model, gpus, start, end, created_by=actor, note=note,
                                  rid=rid, extra=extra)


async def cancel_reservation(app, actor: str, reservation_id: str, reason: str = "", audit: bool = True):
    """Cancel an active reservation, recorded as ``unreserve`` of ``reservation:ID``
    when ``audit``. None: not active (nothing recorded)."""
    r = app.pool.reserved.get(reservation_id)
    if r is None:
        return None
    detail = {"user": r.user, "host": r.host, "gpus": r.gpus, "start": iso(r.start), "end": iso(r.end)}
    if reason:
        detail["reason"] = reason
    extra = (Audit(time.time(), actor, "unreserve", f"reservation:{reservation_id}", detail),) if audit else ()
    done = await app.pool.cancel_reservation(reservation_id, extra=extra)
    if done is not None:
        app.log.info("reservation %s of %s cancelled by %s%s", r.id, r.user, actor, f": {reason}" if reason else "")
    return done


def entry_json(row: AuditRow) -> dict:
    return {"id": row.id, "at": row.at, "actor": row.actor, "action": row.action,
            "target": row.target, "detail": row.detail or {}}


def read_audit(ledger, limit: int = 100, offset: int = 0, action: str | None = None,
               target: str | None = None, actor: str | None = None) -> tuple[list[dict], int]:
    """Audit entries, newest first, and how many match in all."""
    with Session(ledger.engine) as s, s.begin():
        q = select(AuditRow)
        if action:
            q = q.where(AuditRow.action == action)
        if target:
            q = q.where(AuditRow.target == target)
        if actor:
            q = q.where(AuditRow.actor == actor)
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        rows = s.scalars(q.order_by(AuditRow.at.desc(), AuditRow.id.desc()).offset(offset).limit(limit))
        return [entry_json(r) for r in rows], total or 0


def revoke_reason(ledger, allocation_id: str) -> dict | None:
    """Who revoked an allocation, when and why (its audit entry), or None."""
    entries, _ = read_audit(ledger, limit=1, action="revoke", target=f"allocation:{allocation_id}")
    return entries[0] if entries else None
