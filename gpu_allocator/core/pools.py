"""Host pools: named sets of hosts, each open to some JupyterHub groups (as
Backend.AI's scaling groups or Slurm's partitions). Pure.

A host is in one or more pools (``Host.pools``; a host that names none is in
:data:`DEFAULT`). A pool is open to a user when one of its ``groups`` is one
of the user's hub groups, its ``groups`` holds ``"*"`` (everyone), or its
``users`` names the user. A request may land only on a host one of whose pools
is open to its user (``Request.pools``: the pools it may use, resolved once
where the request enters the allocator, :func:`request_pools`); a request that
names a pool (``Request.pool``) may land only in that one, and is refused when
it is not open to its user.

Configuration (``GPUAllocator.pools``), checked by :func:`parse_pools`::

    {"default": {"groups": ["*"]},
     "team-a": {"groups": ["team-a"], "description": "team A's 8 × H100"}}

``default`` is open to everyone unless configured otherwise, so a site without
pools behaves as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: the pool of hosts that name none
DEFAULT = "default"
#: in a pool's ``groups``: every user
EVERYONE = "*"
#: keys of a pool's configuration
POOL_KEYS = ("groups", "users", "description")
#: a pool's name: as a host name (letters, digits, ".", "_", "-"), at most 63
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class PoolError(ValueError):
    """A malformed pool configuration, or a pool a request may not use; the
    message says what is allowed."""


@dataclass(frozen=True)
class Pool:
    """One pool as configured."""

    name: str
    groups: frozenset[str] = frozenset({EVERYONE})
    users: frozenset[str] = frozenset()
    description: str = ""

    def open_to(self, user: str, groups: Iterable[str]) -> bool:
        return EVERYONE in self.groups or user in self.users or not self.groups.isdisjoint(groups)

    def json(self) -> dict:
        return {"name": self.name, "groups": sorted(self.groups), "users": sorted(self.users),
                "description": self.description}


OPEN_DEFAULT = Pool(DEFAULT)


def check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise PoolError(f"{where} must be a pool name (letters, digits, '.', '_', '-'; at most 63), "
                        f"got {value!r}"[:300])
    return value


def _names(value: object, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and 0 < len(v) <= 255 for v in value):
        raise PoolError(f"{where} must be a list of names, e.g. [\"team-a\"], got {value!r}"[:300])
    return frozenset(value)


def parse_pools(config: Mapping) -> dict[str, Pool]:
    """``GPUAllocator.pools`` → {name: Pool}, :data:`DEFAULT` added (open to
    everyone) where the configuration leaves it out. Raises PoolError naming
    the entry."""
    if not isinstance(config, Mapping):
        raise PoolError(f"pools must be a mapping of pool names to {{\"groups\": [...]}}, got {config!r}"[:300])
    out: dict[str, Pool] = {}
    for name, spec in config.items():
        check_name(name, "a pool's name")
        where = f"pools[{name!r}]"
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise PoolError(f"{where} must be a mapping with groups, users, description")
        unknown = sorted(set(spec) - set(POOL_KEYS))
        if unknown:
            raise PoolError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                            f"{', '.join(POOL_KEYS)}")
        description = spec.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            raise PoolError(f"{where}.description must be text of at most 1000 characters")
        groups = _names(spec.get("groups", [EVERYONE] if name == DEFAULT else []), f"{where}.groups")
        out[name] = Pool(name, groups, _names(spec.get("users"), f"{where}.users"), description)
    out.setdefault(DEFAULT, OPEN_DEFAULT)
    return dict(sorted(out.items()))


def parse_host_pools(value: object, where: str) -> tuple[str, ...]:
    """A host's ``pools`` (inventory entry, agent registration) → sorted names;
    none given: (:data:`DEFAULT`,)."""
    if value is None or value == []:
        return (DEFAULT,)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or len(value) > 64:
        raise PoolError(f"{where} must be a list of pool names, e.g. [\"team-a\"]")
    return tuple(sorted({check_name(v, f"{where}[{i}]") for i, v in enumerate(value)}))


def check_hosts(pools: Mapping[str, Pool], host_pools: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Every pool a host names is configured (else PoolError naming host and pool)."""
    for host, names in host_pools:
        unknown = sorted(set(names) - set(pools))
        if unknown:
            raise PoolError(f"host {host}: pool(s) {', '.join(unknown)} not configured; "
                            f"GPUAllocator.pools has {', '.join(pools)}")


def open_pools(pools: Mapping[str, Pool], user: str, groups: Iterable[str]) -> frozenset[str]:
    """The pools open to ``user`` in ``groups``."""
    groups = frozenset(groups)
    return frozenset(n for n, p in pools.items() if p.open_to(user, groups))


def request_pools(pools: Mapping[str, Pool], user: str, groups: Iterable[str], asked: str | None, *,
                  strict: bool = True) -> frozenset[str]:
    """Where a request of ``user`` may land: the pools open to them, or the one
    it ``asked`` for. ``strict``: a pool not open to them (or unknown) raises
    PoolError naming the open ones; else it gives the empty set (a waiting
    request whose pool closed since: it waits, and says why)."""
    mine = open_pools(pools, user, groups)
    if asked is None:
        return mine
    if asked in mine:
        return frozenset({asked})
    if not strict:
        return frozenset()
    what = "no pool" if asked not in pools else "pool"
    raise PoolError(f"{what} {asked!r} is not open to {user}; open to {user}: "
                    f"{', '.join(sorted(mine)) or 'none'}")


def may_use(host_pools: Iterable[str], allowed: frozenset[str] | None,
            closed: frozenset[str] = frozenset()) -> bool:
    """Whether a host in ``host_pools`` may take a request allowed ``allowed``
    (None: any host) and kept out of ``closed`` (pools over its user's quota:
    a host in one of them is closed, as a share counts in each of its pools)."""
    return (allowed is None or not allowed.isdisjoint(host_pools)) and closed.isdisjoint(host_pools)


def closed_text(closed: Iterable[str]) -> str:
    """"pool team-a" / "pools a and b": the closed pools a reason names."""
    names = sorted(set(closed))
    if len(names) == 1:
        return f"pool {names[0]}"
    return "pools " + ", ".join(names[:-1]) + f" and {names[-1]}"
