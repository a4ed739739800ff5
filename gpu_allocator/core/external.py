"""External allocations: shares that another scheduler granted on hosts it owns
(Slurm: hosts whose inventory entry says ``owner: slurm``, state ``external``).

The rule: whoever owns the nodes decides. Slurm picks the node and the GPUs; the
allocator mirrors what it granted, so that the pool map, GPU-hours, quotas and
the lab panel see it, and never places a share of its own there (placement and
the queue look at ``up`` hosts only). Pure: the decisions the REST resource
(api.external) and the reconciliation loop (loops.reconcile_slurm) apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Allocation, HostState, Share
from .state import PoolState
from .validation import RequestError

#: the schedulers whose jobs the allocator mirrors (an inventory's ``owner:``)
EXTERNAL_OWNERS = ("slurm",)


@dataclass(frozen=True)
class Grant:
    """What the external scheduler granted a job on one host: the GPUs by
    device index, and the units held on each (a whole GPU: units_per_gpu;
    ``shard:5`` of 10 per GPU: half of it)."""

    source: str
    job: str
    host: str
    indexes: tuple[int, ...]
    units_each: int


def shares_of(state: PoolState, g: Grant) -> tuple[Share, ...]:
    """The shares a grant holds, checked: the host is one the source owns, the
    indexes are its devices, each listed once, and the units fit a GPU.
    Raises RequestError (the API's 400) when not."""
    if g.source not in EXTERNAL_OWNERS:
        raise RequestError(f"source must be one of {', '.join(EXTERNAL_OWNERS)}")
    if not g.job or len(g.job) > 64:
        raise RequestError("job must be the scheduler's job id (1 to 64 characters)")
    host = state.hosts.get(g.host)
    if host is None:
        raise RequestError(f"host: no host {g.host!r} in the pool")
    if host.state != HostState.EXTERNAL:
        raise RequestError(f"host {g.host} is not owned by {g.source} (its state is {host.state}); "
                           "gpuhub decides there")
    if not g.indexes:
        raise RequestError("devices: a GPU job holds at least one device")
    if len(set(g.indexes)) != len(g.indexes):
        raise RequestError("devices: an index is listed twice")
    if not 0 < g.units_each <= state.units_per_gpu:
        raise RequestError(f"units_each must be 1 to {state.units_per_gpu}")
    by_index = {d.index: d for d in host.devices}
    missing = [i for i in g.indexes if i not in by_index]
    if missing:
        raise RequestError(f"devices: {g.host} has no GPU with index {', '.join(map(str, missing))}")
    return tuple(Share(by_index[i].uuid, g.units_each) for i in sorted(g.indexes))


def mirrored(state: PoolState, source: str, job: str) -> Allocation | None:
    """The live mirror of a job, if any (a retried or restarted spawner's record
    of a job gets it back, never a second one)."""
    for a in state.allocations.values():
        if a.source == source and a.job == job:
            return a
    return None


def stale(allocations, source: str, holding: set[str], taken_at: float, grace: float) -> list[Allocation]:
    """The mirrors of ``source`` whose job no longer holds its resources: not in
    ``holding`` (the job ids the scheduler listed at ``taken_at`` as running,
    completing, suspended …). A mirror recorded less than ``grace`` seconds
    before the listing is left alone (its job may have started after the listing
    was taken)."""
    return [a for a in allocations
            if a.source == source and a.job not in holding and a.created < taken_at - grace]
