"""The vfolder service's state: schema (:mod:`.schema`), Alembic migrations
(``migrations/``, version table ``vfolders_version``) and opening a database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import sessionmaker

from gpuhub.db import make_engine, upgrade

from .schema import Base, Mount, Quota, Share, Upload, VFolder, VFolderState  # noqa: F401

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "vfolders_version"


def open_db(url: str) -> sessionmaker:
    """An engine at ``url`` with the schema brought up to date; a session factory."""
    engine = make_engine(url)
    upgrade(engine, MIGRATIONS, VERSION_TABLE)
    return sessionmaker(engine, expire_on_commit=False)
