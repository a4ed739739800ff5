"""The vfolder service's state: schema (:mod:`.schema`), Alembic migrations
(``migrations/``, version table ``vfolders_version``), opening a database and
:class:`Store`, the one way the event loop reaches it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from sqlalchemy.orm import sessionmaker

from gpuhub.db import make_engine, upgrade

from .schema import Base, Mount, Quota, Share, Upload, VFolder, VFolderState  # noqa: F401

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "vfolders_version"

T = TypeVar("T")


def open_db(url: str) -> sessionmaker:
    """An engine at ``url`` with the schema brought up to date; a session factory."""
    engine = make_engine(url)
    upgrade(engine, MIGRATIONS, VERSION_TABLE)
    return sessionmaker(engine, expire_on_commit=False)


class Store:
    """Transactions off the event loop.

    ``await store.run(fn, *args)`` calls ``fn(db, *args)`` inside one transaction
    (committed when ``fn`` returns, rolled back when it raises) on the store's own
    thread, and the event loop serves other requests meanwhile. ``fn`` returns
    plain data (or rows whose columns it loaded): nothing lazy-loads afterwards.

    One thread for every transaction, as the allocator's ledger has one writer:
    SQLite gets one writer (``BEGIN IMMEDIATE`` never waits on a sibling thread),
    and transactions run in the order they were submitted, so a write that a
    request hands over before it finishes (a tus upload's offset) is committed
    before any later request reads it. Code that runs on a thread of its own
    (a test, a command) calls :meth:`transaction` directly."""

    def __init__(self, sessions: sessionmaker):
        self.sessions = sessions
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="vfolders-db")

    def transaction(self, fn: Callable[..., T], *args) -> T:
        with self.sessions.begin() as db:
            return fn(db, *args)

    def run(self, fn: Callable[..., T], *args) -> asyncio.Future[T]:
        """Submitted at once (before the caller awaits it): a callback that
        cannot await (``on_connection_close``) still orders its write."""
        return asyncio.get_running_loop().run_in_executor(self._thread, self.transaction, fn, *args)

    def call(self, fn: Callable[..., T], *args) -> asyncio.Future[T]:
        """``fn(*args)`` on the store's thread with no transaction of this
        store's: for code that opens its own sessions (a metrics scrape)."""
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
