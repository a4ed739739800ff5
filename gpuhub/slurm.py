"""What Slurm's command-line tools print, read into plain data (pure: no
subprocess here). The Slurm runtime of the spawner (spawner/slurm.py) and the
allocator's reconciliation against ``squeue`` (gpu_allocator.loops) both read
Slurm through these, so that they agree on what a job holds.

Checked against Slurm 22.05 (Debian 12):

- ``scontrol show job -d JOBID`` prints ``Key=Value`` pairs, and per node a line
  ``Nodes=node-a CPU_IDs=0-1 Mem=4096 GRES=gpu:a100:2(IDX:0-1)``
  (``GRES=shard:5(IDX:2)`` for shards, ``GRES=mps:50(IDX:0)`` for mps: the
  index is the GPU's; ``JOB_GRES=mps:50``, untyped even where the node's mps
  GRES carry the GPU's type);
- ``squeue -h -o '%i|%T|%r|%S|%N'`` one job per line (JOBID|STATE|REASON|START|NODES);
  START is ``N/A`` when the backfill scheduler has no estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

#: job states in which a job holds its node's resources (its GPUs are not free)
HOLDING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                     "STAGE_OUT", "RESIZING"})
#: job states before it runs
WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})

#: the squeue format the readers below expect
SQUEUE_FORMAT = "%i|%T|%r|%S|%N|%j"

_PAIR = re.compile(r"(\w[\w:/]*)=(\S*)")
_NODE_GRES = re.compile(r"^\s*Nodes=(\S+)\s.*?GRES=(\S+)", re.M)
_GRES_ITEM = re.compile(r"(?P<name>[a-z]+)(?::(?P<type>[^:(]+))?:(?P<count>\d+)\(IDX:(?P<idx>[^)]*)\)")


class SlurmOutputError(ValueError):
    """Output that does not read as what was asked for."""


def parse_index_list(text: str) -> list[int]:
    """``0-1,3`` → [0, 1, 3]: a GRES index list (``N/A``, empty: none)."""
    out: list[int] = []
    text = text.strip()
    if text in ("", "N/A"):
        return out
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise SlurmOutputError(f"not a GRES index list: {text!r}") from None
        if b < a or b - a > 4096:
            raise SlurmOutputError(f"not a GRES index list: {text!r}")
        out.extend(range(a, b + 1))
    return out


@dataclass(frozen=True)
class GresUse:
    """One generic resource a job holds on a node: ``gpu`` of ``type`` (may be
    empty), ``count`` of them, on the devices ``indexes``."""

    name: str
    type: str
    count: int
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class JobInfo:
    """What ``scontrol show job -d`` says about one job."""

    job_id: str
    state: str
    reason: str = ""
    name: str = ""
    user: str = ""
    node: str = ""
    #: GRES held per node ({node: [GresUse]}), once it runs
    gres: dict = field(default_factory=dict)
    #: expected or actual start (epoch seconds), None when Slurm has none
    start: float | None = None
    end: float | None = None
    time_limit: str = ""
    exit_code: str = ""

    @property
    def holding(self) -> bool:
        return self.state in HOLDING

    @property
    def waiting(self) -> bool:
        return self.state in WAITING


def slurm_time(text: str) -> float | None:
    """``2026-12-07T17:13:50`` (the local time Slurm prints) → epoch seconds;
    None for ``N/A``, ``Unknown``, ``None`` or an empty field."""
    if not text or text in ("N/A", "Unknown", "None", "(null)"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def parse_gres(text: str) -> list[GresUse]:
    """``gpu:a100:2(IDX:0-1),shard:5(IDX:2)`` → GresUse items (those with IDX)."""
    return [GresUse(m["name"], m["type"] or "", int(m["count"]), tuple(parse_index_list(m["idx"])))
            for m in _GRES_ITEM.finditer(text)]


def parse_job(text: str) -> JobInfo:
    """The output of ``scontrol show job -d JOBID`` (one job)."""
    pairs: dict[str, str] = {}
    for m in _PAIR.finditer(text):
        pairs.setdefault(m.group(1), m.group(2))
    if "JobId" not in pairs or "JobState" not in pairs:
        raise SlurmOutputError(f"not the output of scontrol show job: {text[:200]!r}")
    gres = {node: parse_gres(g) for node, g in _NODE_GRES.findall(text)}
    user = pairs.get("UserId", "").split("(")[0]
    node = pairs.get("NodeList", "")
    return JobInfo(
        job_id=pairs["JobId"], state=pairs["JobState"], reason=pairs.get("Reason", "None"),
        name=pairs.get("JobName", ""), user=user, node="" if node in ("(null)", "") else node,
        gres=gres, start=slurm_time(pairs.get("StartTime", "")), end=slurm_time(pairs.get("EndTime", "")),
        time_limit=pairs.get("TimeLimit", ""), exit_code=pairs.get("ExitCode", ""),
    )


@dataclass(frozen=True)
class QueueLine:
    """One line of ``squeue -h -o SQUEUE_FORMAT``."""

    job_id: str
    state: str
    reason: str
    start: float | None
    nodes: str
    name: str


def parse_squeue(text: str) -> list[QueueLine]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 6:
            raise SlurmOutputError(f"not a line of squeue -o {SQUEUE_FORMAT!r}: {line!r}")
        job, state, reason, start, nodes = (p.strip() for p in parts[:5])
        out.append(QueueLine(job, state, reason, slurm_time(start), nodes, "|".join(parts[5:]).strip()))
    return out


#: what Slurm's pending reasons mean to someone waiting for a session
REASONS = {
    "Resources": "the GPUs it needs are in use",
    "Priority": "jobs with a higher priority wait before it",
    "ReqNodeNotAvail": "the nodes it may use are not available",
    "PartitionNodeLimit": "it asks for more than the partition's nodes hold",
    "QOSMaxGRESPerUser": "your QOS limit on GPUs is reached",
    "AssocGrpGRES": "your account's GPU limit is reached",
    "BeginTime": "its start time has not come",
    "Dependency": "it waits for another job",
    "None": "it is about to be scheduled",
}


def pending_message(job: JobInfo | QueueLine, now: float) -> str:
    """'waiting in Slurm's queue (Resources: the GPUs it needs are in use);
    Slurm expects it to start at 14:20 (in 12 min)' for the progress page."""
    reason = job.reason or "None"
    meaning = REASONS.get(reason)
    text = f"waiting in Slurm's queue ({reason}{': ' + meaning if meaning else ''})"
    if job.start is not None and job.start > now:
        minutes = max(1, round((job.start - now) / 60))
        at = datetime.fromtimestamp(job.start).strftime("%H:%M")
        text += f"; Slurm expects it to start at {at} (in {minutes} min)"
    else:
        text += "; Slurm gives no start estimate yet"
    return text
