"""Batch jobs: a command run with a GPU share through the same queue as sessions.

A job is a JupyterHub named server ``job-ID`` of its user whose process runs the
command (``gpuhub.jobrun``) instead of JupyterLab, so it waits in the same queue,
with the same quotas, fair share, promises and reservations, and runs in the same
runtimes with the same enforcement and home vfolder. The allocator keeps the
job's record (this module's :class:`Job`) and asks the hub to start and remove
its server; the spawner and the runner do the rest.

Pure decisions over plain data: what a submitted job is (:func:`parse_job`),
what the hub's view of its server means for it (:func:`on_hub`), and how it
ended (:func:`ended`). No I/O here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

from .validation import RequestError

#: the prefix of a job's server name; users cannot name a server of their own so
JOB_PREFIX = "job-"
#: the share fields a job takes, as a session's (checked at spawn by the allocator's
#: one validation, through the spawner), plus the vfolders to mount, the profile
#: and the working directory (relative to the home)
OPTION_KEYS = frozenset({"gpus", "cpu", "mem", "gpu_model", "max_hours", "pool", "profile", "vfolders"})
JOB_KEYS = OPTION_KEYS | {"command", "workdir"}
#: a job's command: at most this many arguments of at most ARG_MAX characters
MAX_ARGS = 1000
ARG_MAX = 32768
_JOB_ID = re.compile(r"^[0-9a-f]{12}$")
#: how long a job may have no server at the hub after it was asked to start one
#: (the hub's answer can take a moment) before it counts as ended
SPAWN_GRACE = 30.0


class JobState(str, enum.Enum):
    """queued (waiting for its share, or starting) → running → one of the ends."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: its run time (max_hours) was over
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class Job:
    id: str
    user: str
    command: tuple[str, ...]
    #: the share and mounts asked for (OPTION_KEYS), as given
    options: dict = field(default_factory=dict)
    workdir: str = ""
    state: JobState = JobState.QUEUED
    submitted: float = 0.0
    #: when the hub was asked to start its server (None: not yet)
    spawned: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    reason: str = ""
    #: where it runs, and the home vfolder that holds its folder jobs/ID/ (set by
    #: the spawner when the server starts)
    host: str = ""
    home_vfolder: str = ""
    #: its server was removed from the hub after it ended
    removed: bool = False

    @property
    def server(self) -> str:
        return server_name(self.id)

    @property
    def folder(self) -> str:
        """Its folder in the home vfolder: output.log, exit.json."""
        return f"jobs/{self.id}"


def server_name(job_id: str) -> str:
    return JOB_PREFIX + job_id


def is_job_server(name: str) -> bool:
    return bool(name) and name.startswith(JOB_PREFIX)


def check_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id or ""):
        raise RequestError(f"{job_id!r} is not a job id (12 hex digits, as `gpuhub jobs` lists them)")
    return job_id


def parse_command(value: object) -> tuple[str, ...]:
    """The command as a list of arguments (no shell unless it names one)."""
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise RequestError('command must be a non-empty list of arguments, e.g. ["python", "train.py"] '
                           '(for a shell line: ["sh", "-c", "…"])')
    if len(value) > MAX_ARGS:
        raise RequestError(f"command has {len(value)} arguments; at most {MAX_ARGS}")
    for arg in value:
        if not isinstance(arg, str) or "\0" in arg or len(arg) > ARG_MAX:
            raise RequestError(f"each argument of command must be text without NUL, at most {ARG_MAX} "
                               f"characters; got {str(arg)[:40]!r}")
    if not value[0]:
        raise RequestError("command's first argument (the program) is empty")
    return tuple(value)


def parse_workdir(value: object) -> str:
    """A directory relative to the home (``""``: the home itself)."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > 1024 or "\0" in value:
        raise RequestError("workdir must be a path relative to your home, e.g. projects/mnist")
    parts = [p for p in value.strip("/").split("/") if p not in ("", ".")]
    if value.startswith("/") or ".." in parts:
        raise RequestError(f"workdir {value!r} must be relative to your home and stay inside it "
                           "(no leading / and no ..)")
    return "/".join(parts)


def parse_job(data: object) -> tuple[tuple[str, ...], dict, str]:
    """A job's body → (command, options, workdir). Unknown keys are refused
    (the share's values are checked when its server spawns, by the allocator's
    one validation, before the hub answers the submission)."""
    if not isinstance(data, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(data) - JOB_KEYS)
    if unknown:
        raise RequestError(f"unknown fields {unknown}; a job takes {sorted(JOB_KEYS)}")
    command = parse_command(data.get("command"))
    options = {k: data[k] for k in OPTION_KEYS if data.get(k) not in (None, "")}
    vf = options.get("vfolders")
    if vf is not None and (not isinstance(vf, list) or not all(isinstance(v, str) and v for v in vf)):
        raise RequestError('vfolders must be a list of your vfolders\' names, e.g. ["datasets"]')
    if "profile" in options and not isinstance(options["profile"], str):
        raise RequestError("profile must be a profile's name, e.g. pytorch-small")
    return command, options, parse_workdir(data.get("workdir"))


def over_limit(active: int, limit: int) -> str | None:
    """Why a user with ``active`` jobs queued or running may not submit another
    (``limit``: GPUAllocator.max_jobs_per_user; 0: no limit); None if they may."""
    if limit and active >= limit:
        return (f"you have {active} jobs queued or running, the most allowed at once ({limit}); "
                "wait for one to end, or cancel one (gpuhub jobs, gpuhub cancel ID)")
    return None


# --- what the hub's view means -----------------------------------------------------------


class Next(str, enum.Enum):
    """What the allocator does about a job after looking at the hub."""

    NOTHING = "nothing"
    #: ask the hub to start its server (not asked yet)
    SPAWN = "spawn"
    #: its server runs: record the start
    STARTED = "started"
    #: its server is gone: read how it ended (exit.json) and record the end
    ENDED = "ended"
    #: it ended (or was cancelled): remove its server from the hub
    REMOVE = "remove"


def on_hub(job: Job, server: dict | None, now: float) -> Next:
    """What ``server`` (the hub's model of the job's server; None: not active)
    means for ``job``."""
    if job.state.final:
        return Next.NOTHING if job.removed else Next.REMOVE
    if job.spawned is None:
        return Next.SPAWN
    if server is None:
        # asked to start, not there: it ended, or the hub has not taken it yet
        if job.state is JobState.RUNNING or now - job.spawned > SPAWN_GRACE:
            return Next.ENDED
        return Next.NOTHING
    if server.get("ready") and job.state is JobState.QUEUED:
        return Next.STARTED
    return Next.NOTHING


def ended(job: Job, exit_record: dict | None, allocation: dict | None, now: float) -> Job:
    """The job, ended: by its exit record (the runner's exit.json), else by what
    became of its share (``allocation``: its last allocation as the ledger has
    it, if any), else failed with the reason that nothing said how it ended."""
    if exit_record is not None and isinstance(exit_record.get("exit_code"), int):
        code = exit_record["exit_code"]
        sig = exit_record.get("signal")
        if code == 0:
            return replace(job, state=JobState.SUCCEEDED, ended=exit_record.get("ended_at") or now,
                           exit_code=0, reason="")
        why = f"the command exited with {code}"
        if isinstance(sig, int) and sig > 0:
            why = f"the command was killed by signal {sig}"
            if exit_record.get("stopped"):
                why += " when its server was stopped"
        state = JobState.FAILED
        if allocation and allocation.get("state") == "expired":
            state, why = JobState.EXPIRED, f"its run time (max_hours {allocation.get('max_hours')} h) was over"
        return replace(job, state=state, ended=exit_record.get("ended_at") or now, exit_code=code,
                       reason=why)
    state = (allocation or {}).get("state")
    if state == "expired":
        return replace(job, state=JobState.EXPIRED, ended=now,
                       reason=f"its run time (max_hours {allocation.get('max_hours')} h) was over")
    if state == "lost":
        why = f"its GPU host {allocation.get('host') or ''} was lost".replace("  ", " ")
    elif state == "revoked":
        why = "an administrator revoked its GPU share"
    elif job.state is JobState.QUEUED and job.started is None:
        why = "its server did not start (see the hub's log for the spawn's error)"
    else:
        why = "its process ended without recording an exit status (killed, or its host stopped)"
    return replace(job, state=JobState.FAILED, ended=now, reason=why)


def cancelled(job: Job, by: str, now: float) -> Job:
    return replace(job, state=JobState.CANCELLED, ended=now,
                   reason="cancelled by " + ("its owner" if by == job.user else f"an administrator ({by})"))
