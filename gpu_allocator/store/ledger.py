"""The ledger: the allocator's durable record, written in short transactions.

The allocator loads the pool once at start (:meth:`Ledger.load`) and from then on
holds it in memory; every change it makes is a list of small operations written
here in one transaction (:meth:`Ledger.write`) — an allocation and its shares
inserted, a state updated — never a re-read of the pool. Several callers' changes
may share one transaction (group commit); each is acknowledged only after the
commit, so anything answered 201 is in the database.

The methods block; the allocator calls them from its writer thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from gpuhub.db import current_revision, make_engine, stamp, upgrade

from ..core.jobs import Job, JobState
from ..core.model import Allocation, AllocationState, Device, Host, HostState, Request, Share
from ..core.queue import Queued
from ..core.reservations import Reservation, ReservationState
from ..core.quota import FIELDS as QUOTA_FIELDS
from ..core.quota import Limits, Quotas
from .schema import (
    AllocationRow, AuditRow, DeviceRow, HostRow, JobRow, MetaRow, QuotaRow, RequestRow, ReservationRow, ShareRow,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "gpu_allocator_version"
#: host columns that versions before 0.1's last release may lack
_LEGACY_HOST_COLUMNS = ("drained", "last_heartbeat", "docker", "usage", "unknown", "details")


class StoreError(RuntimeError):
    pass


# --- operations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    """A granted allocation and its shares."""

    allocation: Allocation
    hub_server: str | None = None


@dataclass(frozen=True)
class Finish:
    """A live allocation ends: released, or lost with its host."""

    allocation_id: str
    state: AllocationState
    at: float


@dataclass(frozen=True)
class PutHost:
    """A host (re)described: capacity, devices, state and where it comes from."""

    host: Host
    source: str
    drained: bool = False
    last_heartbeat: float | None = None
    docker: dict | None = None
    details: dict | None = None


@dataclass(frozen=True)
class SetHost:
    """A host's state and drain flag."""

    name: str
    state: HostState
    drained: bool


@dataclass(frozen=True)
class DeleteHost:
    name: str


@dataclass(frozen=True)
class Audit:
    """An entry of the audit log: an admin's action, written with its effect."""

    at: float
    actor: str
    action: str
    target: str
    detail: dict | None = None


@dataclass(frozen=True)
class Enqueue:
    """A request enters the queue."""

    request: Queued


@dataclass(frozen=True)
class EndRequest:
    """A queued request leaves the queue: granted (its allocation, same id, is
    inserted in the same transaction), cancelled, expired or refused."""

    request_id: str
    state: str
    at: float
    reason: str | None = None


@dataclass(frozen=True)
class SetPriority:
    """A waiting request's own queue priority (None: its user's and groups')."""

    request_id: str
    priority: int | None


@dataclass(frozen=True)
class PutQuota:
    """Set (limits) or remove (None) the quota row of a user or group."""

    kind: str  # "user" | "group" | "default" (only with a pool)
    name: str
    limits: Limits | None
    #: the host pool the row limits ("": every pool together, core.quota)
    pool: str = ""


@dataclass(frozen=True)
class Extend:
    """A live allocation's run time, extended (once)."""

    allocation_id: str
    max_hours: float


@dataclass(frozen=True)
class Reserve:
    """An advance reservation is booked."""

    reservation: Reservation


@dataclass(frozen=True)
class CancelReservation:
    """An active reservation is cancelled (its devices are free for everyone)."""

    reservation_id: str
    at: float


@dataclass(frozen=True)
class PutJob:
    """A batch job is recorded as it is now (inserted or updated)."""

    job: Job


@dataclass(frozen=True)
class DeleteJob:
    """A submission the hub refused: as if it never was."""

    job_id: str


def _job_values(j: Job) -> dict:
    return {"id": j.id, "user": j.user, "command": list(j.command), "options": dict(j.options),
            "workdir": j.workdir, "state": j.state.value, "submitted_at": j.submitted,
            "spawned_at": j.spawned, "started_at": j.started, "ended_at": j.ended,
            "exit_code": j.exit_code, "reason": j.reason[:1000], "host": j.host,
            "home_vfolder": j.home_vfolder, "removed": j.removed}


def _job(r) -> Job:
    return Job(r.id, r.user, tuple(r.command), dict(r.options or {}), r.workdir or "", JobState(r.state),
               r.submitted_at, r.spawned_at, r.started_at, r.ended_at, r.exit_code, r.reason or "",
               r.host or "", r.home_vfolder or "", bool(r.removed))


def _reservation(r) -> Reservation:
    return Reservation(r.id, r.user, r.host, r.model or "", r.gpus, tuple(r.devices or ()), r.start_at,
                       r.end_at, ReservationState(r.state), r.created_at, r.created_by, r.note or "",
                       r.ended_at)


@dataclass
class Finished:
    """A share that ended (accounting, fair share, quotas' rolling window)."""

    id: str
    user: str
    units: int
    cpu: float
    created: float
    released: float
    max_hours: float
    state: str
    #: the host it ran on (its pools: per-pool GPU-hours quotas)
    host: str = ""
    #: the hub server it was for (``job-…``: a batch job's)
    server: str = ""


@dataclass
class QueueLoaded:
    queued: list[Queued] = field(default_factory=list)
    quotas: Quotas = field(default_factory=Quotas.empty)
    finished: list[Finished] = field(default_factory=list)


@dataclass
class HostRecord:
    """What the ledger keeps about a host besides its capacity."""

    source: str = "inventory"
    drained: bool = False
    last_heartbeat: float | None = None
    docker: dict | None = None
    details: dict | None = None


@dataclass
class Loaded:
    hosts: list[tuple[Host, HostRecord]] = field(default_factory=list)
    allocations: list[tuple[Allocation, str | None]] = field(default_factory=list)


def _allocation(row, shares: tuple[Share, ...]) -> Allocation:
    return Allocation(
        id=row.id,
        user=row.user,
        host=row.host,
        units=row.units,
        cpu=row.cpu,
        mem_mb=row.mem_mb,
        max_hours=row.max_hours,
        shares=shares,
        state=AllocationState(row.state),
        server=row.server,
        created=row.created_at,
        key=row.idem_key,
        released=row.released_at,
        source=row.source or "",
        job=row.external_id or "",
    )


def _queued(r) -> Queued:
    req = Request(r.user, r.units, r.cpu, r.mem_mb, r.max_hours, frozenset(r.models or ()), pool=r.pool)
    return Queued(r.id, req, r.submitted_at, tuple(r.groups or ()), r.server, r.hub_server,
                  r.idem_key, r.first_eta, r.first_latest, r.priority)


class Ledger:
    """The allocator's database (SQLite by default, PostgreSQL in production)."""

    def __init__(self, url: str, units_per_gpu: int):
        self.url = url
        self.engine = make_engine(url)
        self.units_per_gpu = units_per_gpu
        self.migrate()
        self._check_quantum()

    # --- schema -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema. A database made before migrations existed
        (gpuhub 0.1) is brought to that version's last layout, stamped, upgraded."""
        tables = set(inspect(self.engine).get_table_names())
        if "hosts" in tables and VERSION_TABLE not in tables:
            present = {c["name"] for c in inspect(self.engine).get_columns("hosts")}
            types = {"drained": "BOOLEAN", "last_heartbeat": "FLOAT"}
            with self.engine.begin() as conn:
                for name in _LEGACY_HOST_COLUMNS:
                    if name not in present:
                        kind = types.get(name, "JSON")
                        conn.execute(text(f"ALTER TABLE hosts ADD COLUMN {name} {kind}"))
            stamp(self.engine, MIGRATIONS, VERSION_TABLE, "0001")
        upgrade(self.engine, MIGRATIONS, VERSION_TABLE)

    def revision(self) -> str | None:
        return current_revision(self.engine, VERSION_TABLE)

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

    # --- reading ---------------------------------------------------------------------

    def load(self) -> Loaded:
        """Every host and every live allocation, once (at start)."""
        out = Loaded()
        with Session(self.engine) as s, s.begin():
            devices: dict[str, list[Device]] = {}
            for d in s.execute(select(DeviceRow).order_by(DeviceRow.host, DeviceRow.index)).scalars():
                devices.setdefault(d.host, []).append(
                    Device(d.host, d.index, d.uuid, d.model, d.memory_mb, d.island)
                )
            for h in s.execute(select(HostRow).order_by(HostRow.name)).scalars():
                host = Host(
                    name=h.name,
                    devices=tuple(devices.get(h.name, ())),
                    cpus=h.cpus,
                    memory_mb=h.memory_mb,
                    state=HostState(h.state),
                )
                out.hosts.append(
                    (host, HostRecord(h.source, bool(h.drained), h.last_heartbeat, h.docker, h.details))
                )
            shares: dict[str, list[Share]] = {}
            live = select(AllocationRow.id).where(AllocationRow.state == "granted")
            for sh in s.execute(
                select(ShareRow).where(ShareRow.allocation_id.in_(live)).order_by(ShareRow.id)
            ).scalars():
                shares.setdefault(sh.allocation_id, []).append(Share(sh.device_uuid, sh.units))
            rows = s.execute(
                select(AllocationRow)
                .where(AllocationRow.state == "granted")
                .order_by(AllocationRow.created_at)
            ).scalars()
            for row in rows:
                out.allocations.append((_allocation(row, tuple(shares.get(row.id, ()))), row.hub_server))
        return out

    def get(self, allocation_id: str) -> Allocation | None:
        """Any allocation, live or past (the live ones the allocator has in memory)."""
        with Session(self.engine) as s, s.begin():
            row = s.get(AllocationRow, allocation_id)
            if row is None:
                return None
            shares = tuple(Share(x.device_uuid, x.units) for x in row.shares)
            return _allocation(row, shares)

    def history(self, user: str | None = None, since: float = 0.0, limit: int = 1000) -> list[Allocation]:
        """Allocations that ended after ``since`` (newest first)."""
        with Session(self.engine) as s, s.begin():
            q = select(AllocationRow).where(
                AllocationRow.state != "granted", AllocationRow.released_at >= since
            )
            if user is not None:
                q = q.where(AllocationRow.user == user)
            q = q.order_by(AllocationRow.released_at.desc()).limit(limit)
            return [_allocation(r, ()) for r in s.execute(q).scalars()]

    def load_queue(self, since: float) -> QueueLoaded:
        """The waiting requests (in arrival order), the quotas, and the shares
        that ended after ``since`` (once, at start)."""
        out = QueueLoaded()
        with Session(self.engine) as s, s.begin():
            for r in s.execute(
                select(RequestRow).where(RequestRow.state == "queued").order_by(RequestRow.submitted_at)
            ).scalars():
                out.queued.append(_queued(r))
            for q in s.execute(select(QuotaRow)).scalars():
                limits = Limits(**{f: getattr(q, f) for f in QUOTA_FIELDS})
                rows = out.quotas.in_pool(q.pool) if q.pool else out.quotas
                if q.kind == "default":
                    rows.default = limits
                else:
                    (rows.users if q.kind == "user" else rows.groups)[q.name] = limits
            out.finished = self._finished(s, since, None)
        return out

    def _finished(self, s, since: float, until: float | None, user: str | None = None) -> list[Finished]:
        q = select(AllocationRow).where(
            AllocationRow.state != "granted", AllocationRow.released_at >= since
        )
        if until is not None:
            q = q.where(AllocationRow.created_at < until)
        if user is not None:
            q = q.where(AllocationRow.user == user)
        return [
            Finished(r.id, r.user, r.units, r.cpu, r.created_at, r.released_at, r.max_hours, r.state, r.host,
                     r.server or "")
            for r in s.execute(q.order_by(AllocationRow.released_at)).scalars()
        ]

    def finished(self, since: float, until: float | None = None, user: str | None = None) -> list[Finished]:
        """Shares that ended after ``since`` and began before ``until`` (accounting)."""
        with Session(self.engine) as s, s.begin():
            return self._finished(s, since, until, user)

    def load_reservations(self, now: float) -> list[Reservation]:
        """The active reservations that have not ended at ``now`` (once, at start)."""
        with Session(self.engine) as s, s.begin():
            q = select(ReservationRow).where(ReservationRow.state == ReservationState.ACTIVE.value,
                                             ReservationRow.end_at > now)
            return [_reservation(r) for r in s.scalars(q.order_by(ReservationRow.start_at, ReservationRow.id))]

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        """Any reservation, current or past (the current ones the allocator has in memory)."""
        with Session(self.engine) as s, s.begin():
            r = s.get(ReservationRow, reservation_id)
            return None if r is None else _reservation(r)

    def get_request(self, request_id: str) -> tuple[Queued, str, float | None, str | None] | None:
        """A request that waited: (request, state, ended at, reason)."""
        with Session(self.engine) as s, s.begin():
            r = s.get(RequestRow, request_id)
            return None if r is None else (_queued(r), r.state, r.ended_at, r.reason)

    def load_jobs(self) -> list[Job]:
        """Jobs the allocator still watches: not ended, or whose server is not
        removed yet (once, at start)."""
        with Session(self.engine) as s, s.begin():
            q = select(JobRow).where((JobRow.removed.is_(False)) | (JobRow.state.in_(("queued", "running"))))
            return [_job(r) for r in s.scalars(q.order_by(JobRow.submitted_at))]

    def get_job(self, job_id: str) -> Job | None:
        with Session(self.engine) as s, s.begin():
            r = s.get(JobRow, job_id)
            return None if r is None else _job(r)

    def jobs(self, user: str | None = None, limit: int = 100) -> list[Job]:
        """The newest jobs first (``user``: theirs)."""
        with Session(self.engine) as s, s.begin():
            q = select(JobRow)
            if user is not None:
                q = q.where(JobRow.user == user)
            return [_job(r) for r in s.scalars(q.order_by(JobRow.submitted_at.desc()).limit(limit))]

    def job_allocation(self, user: str, server: str) -> Allocation | None:
        """The newest allocation of ``user``'s server ``server`` (a job's share)."""
        with Session(self.engine) as s, s.begin():
            r = s.scalars(select(AllocationRow).where(AllocationRow.user == user, AllocationRow.server == server)
                          .order_by(AllocationRow.created_at.desc()).limit(1)).first()
            return None if r is None else _allocation(r, ())

    # --- writing ---------------------------------------------------------------------

    def write(self, ops: list) -> None:
        """Apply ``ops`` in order, in one transaction."""
        with self.engine.begin() as conn:
            allocations, shares = [], []

            def flush_inserts():
                if allocations:
                    conn.execute(insert(AllocationRow.__table__), allocations)
                    allocations.clear()
                if shares:
                    conn.execute(insert(ShareRow.__table__), shares)
                    shares.clear()

            for op in ops:
                if isinstance(op, Insert):
                    a = op.allocation
                    allocations.append(
                        {
                            "id": a.id, "user": a.user, "server": a.server, "host": a.host,
                            "units": a.units, "cpu": a.cpu, "mem_mb": a.mem_mb,
                            "max_hours": a.max_hours, "state": a.state.value,
                            "created_at": a.created, "released_at": None,
                            "idem_key": a.key, "hub_server": op.hub_server, "models": None,
                            "source": a.source or None, "external_id": a.job or None,
                        }
                    )
                    shares.extend(
                        {"allocation_id": a.id, "device_uuid": s.device_uuid, "units": s.units}
                        for s in a.shares
                    )
                    continue
                flush_inserts()
                if isinstance(op, Finish):
                    conn.execute(
                        update(AllocationRow.__table__)
                        .where(AllocationRow.id == op.allocation_id, AllocationRow.state == "granted")
                        .values(state=op.state.value, released_at=op.at, idem_key=None)
                    )
                elif isinstance(op, PutHost):
                    self._put_host(conn, op)
                elif isinstance(op, SetHost):
                    conn.execute(
                        update(HostRow.__table__)
                        .where(HostRow.name == op.name)
                        .values(state=op.state.value, drained=op.drained)
                    )
                elif isinstance(op, Audit):
                    conn.execute(insert(AuditRow.__table__).values(
                        at=op.at, actor=op.actor, action=op.action, target=op.target,
                        detail=op.detail,
                    ))
                elif isinstance(op, Enqueue):
                    q, req = op.request, op.request.req
                    conn.execute(insert(RequestRow.__table__).values(
                        id=q.id, user=req.user, groups=list(q.groups), server=q.server,
                        hub_server=q.hub_server, idem_key=q.key, units=req.units, cpu=req.cpu,
                        mem_mb=req.mem_mb, max_hours=req.max_hours, models=sorted(req.models),
                        pool=req.pool, state="queued", submitted_at=q.submitted, ended_at=None, reason=None,
                        first_eta=q.first_eta, first_latest=q.first_latest, priority=q.priority,
                    ))
                elif isinstance(op, EndRequest):
                    conn.execute(
                        update(RequestRow.__table__)
                        .where(RequestRow.id == op.request_id, RequestRow.state == "queued")
                        .values(state=op.state, ended_at=op.at, reason=op.reason, idem_key=None)
                    )
                elif isinstance(op, SetPriority):
                    conn.execute(
                        update(RequestRow.__table__)
                        .where(RequestRow.id == op.request_id, RequestRow.state == "queued")
                        .values(priority=op.priority)
                    )
                elif isinstance(op, PutQuota):
                    conn.execute(delete(QuotaRow.__table__).where(
                        QuotaRow.kind == op.kind, QuotaRow.name == op.name, QuotaRow.pool == op.pool))
                    if op.limits is not None:
                        conn.execute(insert(QuotaRow.__table__).values(
                            kind=op.kind, name=op.name, pool=op.pool,
                            **{f: getattr(op.limits, f) for f in QUOTA_FIELDS}))
                elif isinstance(op, Extend):
                    conn.execute(
                        update(AllocationRow.__table__)
                        .where(AllocationRow.id == op.allocation_id, AllocationRow.state == "granted")
                        .values(max_hours=op.max_hours, extended=True)
                    )
                elif isinstance(op, Reserve):
                    r = op.reservation
                    conn.execute(insert(ReservationRow.__table__).values(
                        id=r.id, user=r.user, host=r.host, model=r.model, gpus=r.gpus,
                        devices=list(r.devices), start_at=r.start, end_at=r.end, state=r.state.value,
                        created_at=r.created, created_by=r.created_by, note=r.note or None, ended_at=None,
                    ))
                elif isinstance(op, CancelReservation):
                    conn.execute(
                        update(ReservationRow.__table__)
                        .where(ReservationRow.id == op.reservation_id,
                               ReservationRow.state == ReservationState.ACTIVE.value)
                        .values(state=ReservationState.CANCELLED.value, ended_at=op.at)
                    )
                elif isinstance(op, PutJob):
                    values = _job_values(op.job)
                    done = conn.execute(update(JobRow.__table__).where(JobRow.id == op.job.id).values(**values))
                    if not done.rowcount:
                        conn.execute(insert(JobRow.__table__).values(**values))
                elif isinstance(op, DeleteJob):
                    conn.execute(delete(JobRow.__table__).where(JobRow.id == op.job_id))
                elif isinstance(op, DeleteHost):
                    conn.execute(delete(DeviceRow.__table__).where(DeviceRow.host == op.name))
                    conn.execute(delete(HostRow.__table__).where(HostRow.name == op.name))
                else:
                    raise TypeError(f"not a ledger operation: {op!r}")
            flush_inserts()

    def _put_host(self, conn, op: PutHost) -> None:
        h = op.host
        values = {
            "cpus": h.cpus, "memory_mb": h.memory_mb, "state": h.state.value,
            "source": op.source, "drained": op.drained, "last_heartbeat": op.last_heartbeat,
            "docker": op.docker, "details": op.details,
        }
        exists = conn.execute(select(HostRow.name).where(HostRow.name == h.name)).first()
        if exists:
            conn.execute(update(HostRow.__table__).where(HostRow.name == h.name).values(**values))
        else:
            conn.execute(insert(HostRow.__table__).values(name=h.name, **values))
        conn.execute(delete(DeviceRow.__table__).where(DeviceRow.host == h.name))
        if h.devices:
            conn.execute(
                insert(DeviceRow.__table__),
                [
                    {"uuid": d.uuid, "host": h.name, "index": d.index, "model": d.model,
                     "memory_mb": d.memory_mb, "island": d.island}
                    for d in h.devices
                ],
            )

    def close(self) -> None:
        self.engine.dispose()
