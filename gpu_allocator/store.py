"""Persistent state of the pool (SQLAlchemy): hosts, devices, allocations, shares.

Every change is one transaction. Granting reads the pool, places and writes in
the same transaction while holding the pool's write lock (``BEGIN IMMEDIATE`` on
SQLite, ``SELECT … FOR UPDATE`` on the hosts on PostgreSQL), so two grants can
never both take the last free share, even from two processes.

The methods are blocking; the service calls them through one worker thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .model import Allocation, Device, Host, Pool, Request, Share
from .placement import place


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
    #: agent hosts: when the agent last registered or sent a heartbeat (epoch s)
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the host's Docker engine as its agent registered it ({"url", "ip", …})
    docker: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: the latest per-device samples of the agent
    usage: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    #: allocation ids the agent runs that the allocator does not hold there
    unknown: Mapped[list | None] = mapped_column(JSON, nullable=True)
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


class StoreError(RuntimeError):
    pass


class HostConflict(StoreError):
    """A registration clashes with what another host holds (e.g. a device UUID)."""


#: host columns that may be missing in a database made by an older version
_ADDED_HOST_COLUMNS = ("drained", "last_heartbeat", "docker", "usage", "unknown", "details")


def _sqlite_locking(engine) -> None:
    """Let SQLAlchemy emit BEGIN IMMEDIATE itself (the documented pysqlite recipe),
    so a transaction holds the write lock from its first statement."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _to_allocation(row: AllocationRow) -> Allocation:
    return Allocation(
        id=row.id,
        user=row.user,
        host=row.host,
        units=row.units,
        cpu=row.cpu,
        mem_mb=row.mem_mb,
        max_hours=row.max_hours,
        shares=tuple(Share(s.device_uuid, s.units) for s in row.shares),
        state=row.state,
        server=row.server,
        created=row.created_at,
    )


def _set_devices(row: HostRow, devices: Iterable[Device]) -> None:
    existing = {d.uuid: d for d in row.devices}
    keep = []
    for d in devices:
        drow = existing.get(d.uuid) or DeviceRow(uuid=d.uuid)
        drow.index, drow.model, drow.memory_mb, drow.island = d.index, d.model, d.memory_mb, d.island
        keep.append(drow)
    row.devices = keep


def host_status(row: HostRow) -> dict:
    """What the pool shows about a host besides its capacity."""
    details = row.details or {}
    return {
        "source": row.source,
        "drained": bool(row.drained),
        "last_heartbeat": row.last_heartbeat,
        "usage": row.usage,
        "unknown_allocations": list(row.unknown or []),
        "docker": row.docker,
        "topology": details.get("topology"),
        "numa": details.get("numa"),
    }


def _to_host(row: HostRow) -> Host:
    return Host(
        name=row.name,
        cpus=row.cpus,
        memory_mb=row.memory_mb,
        state=row.state,
        devices=tuple(
            Device(d.host, d.index, d.uuid, d.model, d.memory_mb, d.island) for d in row.devices
        ),
    )


class Store:
    """The allocator's database."""

    def __init__(self, url: str, units_per_gpu: int):
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            _sqlite_locking(self.engine)
        self.units_per_gpu = units_per_gpu
        Base.metadata.create_all(self.engine)
        self._add_missing_columns()
        self._check_quantum()

    def _add_missing_columns(self) -> None:
        """create_all makes missing tables, never missing columns: add the (nullable)
        host columns that newer versions introduced to an existing database."""
        present = {c["name"] for c in inspect(self.engine).get_columns("hosts")}
        table = HostRow.__table__
        with self.engine.begin() as conn:
            for name in _ADDED_HOST_COLUMNS:
                if name not in present:
                    kind = table.c[name].type.compile(dialect=self.engine.dialect)
                    conn.execute(text(f"ALTER TABLE hosts ADD COLUMN {name} {kind}"))

    def _check_quantum(self) -> None:
        """Shares are stored in units; a changed quantum would silently rescale them."""
        with Session(self.engine) as s, s.begin():
            row = s.get(MetaRow, "units_per_gpu")
            if row is None:
                s.add(MetaRow(key="units_per_gpu", value=str(self.units_per_gpu)))
            elif int(row.value) != self.units_per_gpu:
                live = s.scalars(
                    select(AllocationRow.id).where(AllocationRow.state == "granted").limit(1)
                ).first()
                if live:
                    raise StoreError(
                        f"the database holds shares in 1/{row.value} GPU units; "
                        f"release them before changing the quantum to 1/{self.units_per_gpu}"
                    )
                row.value = str(self.units_per_gpu)

    def sync_hosts(self, hosts: Iterable[Host], source: str) -> None:
        """Make the hosts of ``source`` match ``hosts``. Hosts that disappeared are
        removed unless they still carry live shares (then they are kept as "lost")."""
        hosts = list(hosts)
        with Session(self.engine) as s, s.begin():
            wanted = {h.name for h in hosts}
            for row in s.scalars(select(HostRow).where(HostRow.source == source)):
                if row.name in wanted:
                    continue
                busy = s.scalars(
                    select(AllocationRow.id).where(
                        AllocationRow.host == row.name, AllocationRow.state == "granted"
                    )
                ).first()
                if busy:
                    row.state = "lost"
                else:
                    s.delete(row)
            for h in hosts:
                row = s.get(HostRow, h.name)
                if row is not None and row.source == "agent" and source != "agent":
                    continue  # a host whose agent registered it is the agent's
                if row is None:
                    row = HostRow(name=h.name, source=source)
                    s.add(row)
                row.cpus, row.memory_mb, row.source = h.cpus, h.memory_mb, source
                row.state = "drained" if row.drained else "up"
                _set_devices(row, h.devices)

    def _pool(self, s: Session) -> Pool:
        hosts = tuple(_to_host(h) for h in s.scalars(select(HostRow).order_by(HostRow.name)))
        live = tuple(
            _to_allocation(a)
            for a in s.scalars(
                select(AllocationRow).where(AllocationRow.state == "granted").order_by(
                    AllocationRow.created_at
                )
            )
        )
        return Pool(hosts=hosts, allocations=live, units_per_gpu=self.units_per_gpu)

    def pool(self) -> Pool:
        with Session(self.engine) as s, s.begin():
            return self._pool(s)

    def pool_status(self) -> tuple[Pool, dict[str, dict]]:
        """The pool and, by host name, what its agent last reported (one snapshot)."""
        with Session(self.engine) as s, s.begin():
            status = {h.name: host_status(h) for h in s.scalars(select(HostRow))}
            return self._pool(s), status

    # --- agents ------------------------------------------------------------------

    def _agent_view(self, s: Session, row: HostRow, running: list[str]) -> dict:
        """Record what the agent runs; answer what the allocator holds there."""
        held = [
            a
            for a in s.scalars(
                select(AllocationRow)
                .where(AllocationRow.host == row.name, AllocationRow.state == "granted")
                .order_by(AllocationRow.created_at)
            )
        ]
        held_ids = {a.id for a in held}
        unknown = list(dict.fromkeys(i for i in running if i not in held_ids))
        row.unknown = unknown
        s.flush()
        return {
            "state": row.state,
            "shares": [_to_allocation(a) for a in held],
            "unknown": unknown,
            "pool": self._pool(s),
        }

    def register_host(
        self,
        host: Host,
        *,
        running: list[str],
        docker: dict | None = None,
        details: dict | None = None,
        now: float | None = None,
    ) -> dict:
        """An agent (re)registers its host: upsert it with source "agent", "up"
        again unless an admin drained it. Returns {"state", "shares", "unknown",
        "pool"}: the granted allocations on the host, and the ids in ``running``
        the allocator does not hold there. Raises HostConflict."""
        now = time.time() if now is None else now
        with Session(self.engine) as s, s.begin():
            s.execute(select(HostRow.name).with_for_update()).all()
            uuids = [d.uuid for d in host.devices]
            if uuids:
                clash = s.execute(
                    select(DeviceRow.uuid, DeviceRow.host).where(
                        DeviceRow.uuid.in_(uuids), DeviceRow.host != host.name
                    )
                ).first()
                if clash:
                    raise HostConflict(
                        f"device {clash[0]} is already registered by host {clash[1]!r}"
                    )
            row = s.get(HostRow, host.name)
            if row is None:
                row = HostRow(name=host.name, drained=False)
                s.add(row)
            row.source = "agent"
            row.cpus, row.memory_mb = host.cpus, host.memory_mb
            row.state = "drained" if row.drained else "up"
            row.last_heartbeat = now
            row.docker = docker
            row.details = details
            row.usage = None
            _set_devices(row, host.devices)
            s.flush()
            return self._agent_view(s, row, running)

    def heartbeat(
        self, name: str, *, running: list[str], usage: dict | None, now: float | None = None
    ) -> dict | None:
        """A heartbeat of an agent host; None when the host is unknown, not an
        agent's, or lost (the agent must register again)."""
        now = time.time() if now is None else now
        with Session(self.engine) as s, s.begin():
            row = s.get(HostRow, name)
            if row is None or row.source != "agent" or row.state == "lost":
                return None
            row.last_heartbeat = now
            row.usage = usage
            return self._agent_view(s, row, running)

    def set_drained(self, name: str, drained: bool) -> bool:
        """Drain (no new placements; running allocations untouched) or undrain a
        host. A lost host stays lost, and comes back drained. False: no such host."""
        with Session(self.engine) as s, s.begin():
            row = s.get(HostRow, name)
            if row is None:
                return False
            row.drained = drained
            if row.state != "lost":
                row.state = "drained" if drained else "up"
            return True

    def mark_lost(
        self, cutoff: float, now: float | None = None
    ) -> tuple[list[tuple[str, list[str]]], float | None]:
        """Agent hosts whose last heartbeat is older than ``cutoff`` are lost, in
        one transaction: the host's state becomes "lost" and each of its granted
        allocations "lost" (released_at set: its shares are free). Returns the
        (host, [allocation ids]) marked lost, and the oldest heartbeat among the
        agent hosts still alive (None when there are none)."""
        now = time.time() if now is None else now
        lost: list[tuple[str, list[str]]] = []
        oldest: float | None = None
        with Session(self.engine) as s, s.begin():
            rows = s.scalars(
                select(HostRow)
                .where(HostRow.source == "agent", HostRow.state != "lost")
                .with_for_update()
            ).all()
            for row in rows:
                beat = row.last_heartbeat or 0.0
                if beat >= cutoff:
                    oldest = beat if oldest is None else min(oldest, beat)
                    continue
                row.state = "lost"
                ids = []
                for a in s.scalars(
                    select(AllocationRow).where(
                        AllocationRow.host == row.name, AllocationRow.state == "granted"
                    )
                ):
                    a.state, a.released_at = "lost", now
                    ids.append(a.id)
                lost.append((row.name, ids))
        return lost, oldest

    def grant(self, req: Request, server: str = "") -> Allocation:
        """Place ``req`` and record it, atomically. Raises placement.NoFit."""
        with Session(self.engine) as s, s.begin():
            # the pool's write lock on PostgreSQL and friends (SQLite: BEGIN IMMEDIATE)
            s.execute(select(HostRow.name).with_for_update()).all()
            found = place(self._pool(s), req)
            row = AllocationRow(
                id=secrets.token_hex(8),
                user=req.user,
                server=server,
                host=found.host,
                units=req.units,
                cpu=req.cpu,
                mem_mb=req.mem_mb,
                max_hours=req.max_hours,
                state="granted",
                created_at=time.time(),
                shares=[ShareRow(device_uuid=sh.device_uuid, units=sh.units) for sh in found.shares],
            )
            s.add(row)
            s.flush()
            return _to_allocation(row)

    def get(self, allocation_id: str) -> Allocation | None:
        with Session(self.engine) as s, s.begin():
            row = s.get(AllocationRow, allocation_id)
            return _to_allocation(row) if row else None

    def list(self, user: str | None = None, live_only: bool = True) -> list[Allocation]:
        with Session(self.engine) as s, s.begin():
            q = select(AllocationRow).order_by(AllocationRow.created_at)
            if user is not None:
                q = q.where(AllocationRow.user == user)
            if live_only:
                q = q.where(AllocationRow.state == "granted")
            return [_to_allocation(a) for a in s.scalars(q)]

    def release(self, allocation_id: str) -> Allocation | None:
        """Return an allocation's shares to the pool. Idempotent."""
        with Session(self.engine) as s, s.begin():
            row = s.get(AllocationRow, allocation_id, with_for_update=True)
            if row is None:
                return None
            if row.state == "granted":
                row.state = "released"
                row.released_at = time.time()
            return _to_allocation(row)
