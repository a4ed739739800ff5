"""The allocator's durable record: the schema, its Alembic migrations, the
single-writer lock and the ledger (load once, then write only what changed)."""

from .ledger import Ledger, StoreError

__all__ = ["Ledger", "StoreError"]
