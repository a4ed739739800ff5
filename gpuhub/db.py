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

    with engine.begin() as conn:
        command.upgrade(_alembic_config(script_location, version_table, conn), revision)


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
