"""Databases of gpuhub's services: one way to open an engine and one way to bring
a schema up to date (Alembic), for SQLite (the embedded default) and PostgreSQL.

Used by the GPU allocator's store and the vfolder service's store. Each service
keeps its own Alembic version table, so both may share one PostgreSQL database.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:///PATH URL (None for in-memory databases)."""
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):])


def _sqlite_locking(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN IMMEDIATE itself (the documented pysqlite recipe),
    so a transaction holds the write lock from its first statement; WAL so that
    readers never wait for the writer."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a crash of the process (kill -9); only a
        # power loss can lose the last commits (the documented WAL trade-off)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for ``url``; SQLite files get their directory, WAL and
    BEGIN IMMEDIATE transactions."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        _sqlite_locking(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _alembic_config(script_location: str | os.PathLike, version_table: str, connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


def upgrade(engine: Engine, script_location: str | os.PathLike, version_table: str,
            revision: str = "head") -> None:
    """Bring the schema to ``revision`` (in one transaction where the database
    allows it)."""
    from alembic import command

    with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # batch migrations copy and drop tables: with foreign keys on, dropping
            # a parent table would cascade to its children (SQLite allows this
            # pragma only outside a transaction)
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                command.upgrade(_alembic_config(script_location, version_table, conn), revision)
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def stamp(engine: Engine, script_location: str | os.PathLike, version_table: str,
          revision: str) -> None:
    """Record that the schema already is at ``revision`` (a database made before
    migrations existed)."""
    from alembic import command

    with engine.begin() as conn:
        command.stamp(_alembic_config(script_location, version_table, conn), revision)


def current_revision(engine: Engine, version_table: str) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
        return ctx.get_current_revision()


def run_migrations_env(context, metadata) -> None:
    """The body of a service's Alembic ``env.py``: run on the connection that
    :func:`upgrade` passes (batch mode, so SQLite can alter tables)."""
    conn = context.config.attributes["connection"]
    context.configure(
        connection=conn,
        target_metadata=metadata,
        version_table=context.config.attributes["version_table"],
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


class WriterLock:
    """One writer per database: an advisory lock held for the owner's lifetime
    and released by the operating system or the database server when the owner
    dies (``kill -9`` included), so a restarted or standby writer takes over at
    once.

    - SQLite: ``flock`` on ``<database file>.lock`` beside the database;
    - PostgreSQL: ``pg_try_advisory_lock`` on a connection kept open (released
      when that session ends).
    """

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name
        self._file = None
        self._conn = None

    def __repr__(self) -> str:
        return f"WriterLock({self.name!r} on {self.describe()})"

    def describe(self) -> str:
        path = sqlite_path(self.url)
        return str(path) if path else self.url.split("@")[-1]

    def try_acquire(self) -> bool:
        if is_sqlite(self.url):
            import fcntl

            path = sqlite_path(self.url)
            if path is None:  # in-memory: private to this process anyway
                return True
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(str(path) + ".lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                return False
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            self._file = f
            return True
        import zlib

        from sqlalchemy import text

        engine = create_engine(self.url, poolclass=NullPool)
        conn = engine.connect()
        key = zlib.crc32(f"gpuhub:{self.name}".encode())
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder(self) -> str:
        """Who holds it, as far as we can tell (for the standby's log line)."""
        path = sqlite_path(self.url)
        if path is not None:
            try:
                return "process " + Path(str(path) + ".lock").read_text().strip()
            except OSError:
                return "another process"
        return "another database session"

    def alive(self) -> bool:
        """Whether we still hold it (a PostgreSQL session can be cut)."""
        if self._conn is not None:
            from sqlalchemy import text

            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except Exception:
                return False
        return self._file is not None or self._conn is not None or sqlite_path(self.url) is None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
