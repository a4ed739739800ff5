"""The allocator's tables (SQLAlchemy), as of the newest migration.

What the database keeps is what must survive a crash: hosts with their devices
and capacity, every allocation (granted ones hold shares; released and lost ones
are the history GPU-hours are computed from) and its shares. Heartbeats and usage
samples are not written: they live in the allocator's memory.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class HostRow(Base):
    __tablename__ = "hosts"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    cpus: Mapped[float] = mapped_column(Float)
    memory_mb: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="up")
    source: Mapped[str] = mapped_column(String(16), default="inventory")
    #: an admin's drain: survives the host being lost and coming back
    drained: Mapped[bool] = mapped_column(Boolean, default=False, nullable=True)
    #: when the agent last registered (epoch s)
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the host's Docker engine as its agent registered it ({"url", "ip", …})
    docker: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: pairwise topology and NUMA affinity the agent discovered
    details: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    devices: Mapped[list[DeviceRow]] = relationship(
        back_populates="host_row", cascade="all, delete-orphan", order_by="DeviceRow.index"
    )


class DeviceRow(Base):
    __tablename__ = "devices"
    uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(ForeignKey("hosts.name", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(255))
    memory_mb: Mapped[int] = mapped_column(Integer)
    island: Mapped[str] = mapped_column(String(64), default="")
    host_row: Mapped[HostRow] = relationship(back_populates="devices")


class AllocationRow(Base):
    __tablename__ = "allocations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    server: Mapped[str] = mapped_column(String(255), default="")
    host: Mapped[str] = mapped_column(String(255))
    units: Mapped[int] = mapped_column(Integer)
    cpu: Mapped[float] = mapped_column(Float)
    mem_mb: Mapped[int] = mapped_column(Integer)
    max_hours: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the client's idempotency key (a retried request gets the same allocation)
    idem_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    #: the JupyterHub server (of ``user``) this share is for; None: not a hub
    #: server's (then it is never reconciled against the hub)
    hub_server: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: what the share was granted for: the GPU models the request accepted
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: the user extended its run time once (max_hours is the extended one)
    extended: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: an external allocation's scheduler ("slurm"; NULL: the allocator's own share)
    source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: its job id in that scheduler
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    shares: Mapped[list[ShareRow]] = relationship(
        back_populates="allocation", cascade="all, delete-orphan", order_by="ShareRow.id"
    )


class ShareRow(Base):
    __tablename__ = "shares"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    allocation_id: Mapped[str] = mapped_column(
        ForeignKey("allocations.id", ondelete="CASCADE"), index=True
    )
    device_uuid: Mapped[str] = mapped_column(String(128), index=True)
    units: Mapped[int] = mapped_column(Integer)
    allocation: Mapped[AllocationRow] = relationship(back_populates="shares")


class AuditRow(Base):
    """An admin's action (drain, undrain, revoke, …): who, what, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), index=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class RequestRow(Base):
    """A request that waited in the queue: ``queued`` while it waits; then
    ``granted`` (the allocation has the same id), ``cancelled``, ``expired``
    (waited longer than its group may) or ``refused`` (a hard limit)."""

    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    groups: Mapped[list | None] = mapped_column(JSON, nullable=True)
    server: Mapped[str] = mapped_column(String(255), default="")
    hub_server: Mapped[str | None] = mapped_column(String(255), nullable=True)
    idem_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    units: Mapped[int] = mapped_column(Integer)
    cpu: Mapped[float] = mapped_column(Float)
    mem_mb: Mapped[int] = mapped_column(Integer)
    max_hours: Mapped[float] = mapped_column(Float)
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: the host pool it named (NULL: any open to its user; core.pools)
    pool: Mapped[str | None] = mapped_column(String(63), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    submitted_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    first_eta: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_latest: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: set by an admin on this one request (NULL: the user's and groups' priority)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QuotaRow(Base):
    """Limits and queue policy of one user (kind "user") or group ("group"),
    over every pool (``pool`` ""), or limits in one host pool (``pool``: its
    name; kind "default" too, name "*": every user's there); NULL: not set (see
    core.quota)."""

    __tablename__ = "quotas"
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    pool: Mapped[str] = mapped_column(String(63), primary_key=True, default="", server_default="")
    gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)  # units
    sessions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gpu_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    share: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_wait_hours: Mapped[float | None] = mapped_column(Float, nullable=True)


class ReservationRow(Base):
    """An advance reservation: ``gpus`` whole devices (``devices``, uuids) of one
    host kept for ``user`` from ``start_at`` to ``end_at``. ``state``: ``active``
    or ``cancelled``; one past its end is history (GPU-hours are not charged for a
    reservation, only for the sessions in it)."""

    __tablename__ = "reservations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    model: Mapped[str | None] = mapped_column(String(255), nullable=True)
    gpus: Mapped[int] = mapped_column(Integer)
    devices: Mapped[list] = mapped_column(JSON)
    start_at: Mapped[float] = mapped_column(Float, index=True)
    end_at: Mapped[float] = mapped_column(Float, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class JobRow(Base):
    """A batch job (core.jobs): its command and share, and how it went."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    command: Mapped[list] = mapped_column(JSON)
    options: Mapped[dict] = mapped_column(JSON)
    workdir: Mapped[str] = mapped_column(String(1024), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    submitted_at: Mapped[float] = mapped_column(Float, index=True)
    spawned_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(1000), default="")
    host: Mapped[str] = mapped_column(String(255), default="")
    home_vfolder: Mapped[str] = mapped_column(String(64), default="")
    #: its hub server was removed after it ended
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
