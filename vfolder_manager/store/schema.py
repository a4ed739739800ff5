"""Tables of the vfolder service (SQLAlchemy 2). Changes go through a new Alembic
revision in migrations/versions."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class VFolderState(str, enum.Enum):
    READY = "ready"
    CLONING = "cloning"  # being filled by a clone; not mountable yet
    TRASHED = "trashed"  # deleted by its owner; an admin may restore or purge it
    FAILED = "failed"  # a clone that failed


class VFolderKind(str, enum.Enum):
    VFOLDER = "vfolder"
    HOME = "home"  # a user's home: made on first use, mounted at ~, never shared or deleted


class Base(DeclarativeBase):
    pass


class VFolder(Base):
    __tablename__ = "vfolders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_kind: Mapped[str] = mapped_column(String(8))  # user | group
    owner: Mapped[str] = mapped_column(String(255))
    creator: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(64))
    auto_mount: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=VFolderState.READY.value)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    quota_files: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_files: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cloned_from: Mapped[str | None] = mapped_column(String(32), nullable=True)
    progress: Mapped[str | None] = mapped_column(Text, nullable=True)  # clone progress / error
    kind: Mapped[str] = mapped_column(String(8), default=VFolderKind.VFOLDER.value,
                                      server_default=VFolderKind.VFOLDER.value)
    #: a home: where its first content was copied from (a per-host home), or "nothing"; None: not yet
    migrated_from: Mapped[str | None] = mapped_column(Text, nullable=True)

    shares: Mapped[list[Share]] = relationship(
        back_populates="vfolder", cascade="all, delete-orphan", lazy="selectin"
    )

    __table_args__ = (
        # a name is unique per owner among the vfolders that are not in the trash
        Index(
            "uq_vfolders_live_name", "owner_kind", "owner", "name", unique=True,
            sqlite_where=(state != "trashed"), postgresql_where=(state != "trashed"),
        ),
    )


class Share(Base):
    __tablename__ = "vfolder_shares"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vfolder_id: Mapped[str] = mapped_column(ForeignKey("vfolders.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # user | group
    name: Mapped[str] = mapped_column(String(255))
    permission: Mapped[str] = mapped_column(String(2))  # ro | rw
    state: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    vfolder: Mapped[VFolder] = relationship(back_populates="shares")

    __table_args__ = (UniqueConstraint("vfolder_id", "kind", "name", name="uq_share_target"),)


class Quota(Base):
    """A quota for all the vfolders of a user or a group (per-vfolder quotas are
    columns of the vfolder)."""

    __tablename__ = "vfolder_quotas"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # user | group
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_files: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Upload(Base):
    """A tus upload in progress (its bytes are in the host's .uploads directory)."""

    __tablename__ = "vfolder_uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vfolder_id: Mapped[str] = mapped_column(ForeignKey("vfolders.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    metadata_: Mapped[str] = mapped_column("metadata", Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Mount(Base):
    """A vfolder mounted in a running session (registered by the spawner)."""

    __tablename__ = "vfolder_mounts"
    session: Mapped[str] = mapped_column(String(255), primary_key=True)  # user/server
    vfolder_id: Mapped[str] = mapped_column(ForeignKey("vfolders.id", ondelete="CASCADE"), primary_key=True)
    user: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
