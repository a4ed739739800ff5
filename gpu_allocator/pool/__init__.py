"""The live pool: the allocator's authoritative, in-memory PoolState, kept in
step with the ledger.

Every decision is made on the event loop against memory; what it changes is
written to the ledger as one short transaction, and several callers' writes
share a transaction when they arrive together (group commit, one writer thread).
A caller is answered only after its commit. The order of memory and commit is
chosen so that memory never promises more than the database holds:

- what *takes* capacity (a grant, a host lost or drained) is applied to memory
  first — later decisions already see it — and undone if the commit fails;
- what *gives* capacity back (a release, a host registered or undrained) is
  applied after the commit.

So a crash at any point loses no granted share (it was committed before the 201)
and never counts one twice (a fresh load is the committed state).

The parts, one job each, share one LiveState (see live.LivePool, which builds
them and is what callers hold).
"""

from __future__ import annotations

from ..core.state import StateError
from .errors import ExtendRefused, HostConflict, KeyConflict, QuotaExceeded
from .hosts import HostInfo, with_details
from .live import LivePool
from .metrics import PoolMetrics

__all__ = ["ExtendRefused", "HostConflict", "KeyConflict", "LivePool", "HostInfo", "PoolMetrics",
           "QuotaExceeded", "StateError", "with_details"]
