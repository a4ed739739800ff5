"""Fencing: what to do about sessions a host runs that the allocator does not
hold there.

A host that was cut off (a network partition, a hung agent) is marked lost and
its allocations are freed; when it comes back its old sessions may still run on
its devices. Until they are stopped the host must take no placements — the next
grant on those devices would be a real overcommit. The agent owns the host's
engine, so it stops them; the allocator decides, from what it holds and what the
agent reports, whether the host is placeable and what must be stopped.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import HostState


def fence(held: Iterable[str], running: Iterable[str], *, drained: bool = False
          ) -> tuple[HostState, list[str]]:
    """Given the allocation ids the allocator holds on a (registered, not lost)
    host and the ids its agent reports running → (the host's state, ids to stop).

    Anything running that is not held must be stopped, and the host is
    ``fencing`` (no placements) until a report shows ``running`` ⊆ ``held``;
    then it is ``up`` again — or ``drained`` if an admin drained it (fencing
    still stops the strays of a drained host).
    """
    held_ids = set(held)
    to_stop = list(dict.fromkeys(i for i in running if i not in held_ids))
    if to_stop:
        return HostState.FENCING, to_stop
    return (HostState.DRAINED if drained else HostState.UP), []
