"""What the pool's operations refuse with (besides placement.NoFit,
reservations.Conflict and the ledger's errors)."""

from __future__ import annotations


class HostConflict(RuntimeError):
    """A registration clashes with what another host holds (e.g. a device UUID)."""


class KeyConflict(RuntimeError):
    """An idempotency key that another user's allocation carries."""


class QuotaExceeded(RuntimeError):
    """A request over a hard limit (it alone is more than the user may ever hold)."""


class ExtendRefused(RuntimeError):
    """An extension that is not possible (again, too long, or it would delay the queue)."""
