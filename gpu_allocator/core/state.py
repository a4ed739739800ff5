"""The pool in memory: hosts, devices, free units, host usage and live
allocations, with the indexes that make a decision cost depend on the
candidates rather than on the whole pool.

The allocator process holds the one authoritative PoolState; the database is its
durable record (see gpu_allocator.store). Placement reads a PoolState and never
changes it; the allocator applies a decision with :meth:`PoolState.grant` after
the database committed it. Indexes kept here:

- ``free[uuid]``: free units of each device;
- ``buckets[model][free_units]``: devices of up hosts by model and free units
  (a fraction looks only at buckets that can hold it, tightest first);
- ``idle[host][model]``: idle devices of each up host;
- ``hosts_by_idle[model][n]``: up hosts with exactly n idle devices of a model
  (a request for n whole GPUs looks only at hosts with at least n);
- ``classes[key]``: up hosts grouped by what placement scores them on — the
  free units of their devices (with models), their CPU and memory left as
  ranks against the typical request shapes, and their topology kind (which
  includes their host pools); hosts of
  one class score the same, so placement scores one representative per class
  (the first by name that has room) instead of every host;
- ``shapes``: the decayed histogram of granted request shapes that gives
  placement its typical-shape distribution (see core.typical);
- ``gaps[model][k]``: partly used devices of up hosts by gap class ``k``
  (:meth:`Typical.gap_class` of their free units: how many of the typical
  fraction sizes would fit), which placement balances (core.placement,
  :data:`~gpu_allocator.core.placement.BALANCE`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import defaultdict
from dataclasses import replace

from .model import (
    DEFAULT_UNITS_PER_GPU,
    Allocation,
    AllocationState,
    Device,
    Host,
    HostState,
    milli,
)
from .topology import host_matrix, is_uniform
from .typical import EMPTY, Shape, ShapeStats


class HostClass:
    """Up hosts that look the same to placement (see the module docstring)."""

    __slots__ = ("key", "cid", "fs", "total", "cr", "mr", "kind", "levels", "idle", "members")

    def __init__(self, key, fs, cr, mr, kind, levels, idle, cid=0):
        self.key = key
        #: names what placement's fragmentation values depend on (free units,
        #: CPU and memory ranks): classes that differ only in GPU models or
        #: topology share it, and it outlives the class (PoolState.content_id)
        self.cid = cid
        self.fs = fs  # free units of all devices, largest first
        self.total = sum(fs)  # free units in all
        self.cr, self.mr = cr, mr  # CPU / memory rank (core.typical)
        self.kind = kind  # topology kind (an int interned by PoolState)
        self.levels = levels  # {model: distinct free amounts, largest first}
        self.idle = idle  # {model: idle devices}
        #: (-CPU left, -memory left, name) of the member hosts, sorted: the
        #: roomiest first (the representative placement scores)
        self.members: list[tuple[int, int, str]] = []


class StateError(RuntimeError):
    """A change that would break the pool's invariants (a programming error or a
    corrupt record): nothing was changed."""


class PoolState:
    def __init__(self, units_per_gpu: int = DEFAULT_UNITS_PER_GPU):
        self.units_per_gpu = units_per_gpu
        self.hosts: dict[str, Host] = {}
        self.devices: dict[str, Device] = {}
        self.free: dict[str, int] = {}
        self.cpu_used: dict[str, int] = {}  # milli-cores by host
        self.cpu_cap: dict[str, int] = {}  # milli-cores by host
        self.mem_used: dict[str, int] = {}  # MB by host
        self.allocations: dict[str, Allocation] = {}  # live (granted) only
        self.by_host: dict[str, dict[str, Allocation]] = defaultdict(dict)
        self.by_key: dict[str, str] = {}
        #: live allocation ids by user, so that what a user holds (quotas) costs
        #: O(their allocations), not O(pool); kept by grant and release
        self.by_user: dict[str, dict[str, None]] = defaultdict(dict)
        self.buckets: dict[str, dict[int, dict[str, None]]] = defaultdict(lambda: defaultdict(dict))
        #: partly used devices of up hosts by model and gap class (see
        #: Typical.gap_class; recounted by reclass_all when the classes move)
        self.gaps: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._gaps_for = EMPTY  # the typical snapshot whose classes gaps counts
        self.idle: dict[str, dict[str, dict[str, None]]] = {}
        self.hosts_by_idle: dict[str, dict[int, dict[str, None]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        #: placement's cache of (host, model) → sorted indexes of its idle devices
        #: (dropped whenever one of them changes)
        self.idle_indexes: dict[tuple[str, str], tuple[int, ...]] = {}
        #: bumped on every change (callers may cache derived views by it)
        self.version = 0
        #: bumped when a host is added, changed or removed (not by grants): what the
        #: pool could ever hold (core.validation.check_capacity) is cached by it
        self.hosts_version = 0
        self.capacity_cache: dict = {}
        #: request shapes seen (placement's typical-shape distribution)
        self.shapes = ShapeStats()
        self.classes: dict[tuple, HostClass] = {}
        self.host_class: dict[str, tuple] = {}
        self._member_entry: dict[str, tuple[int, int, str]] = {}
        #: per host, its devices' (model, free units), sorted: kept up to date by
        #: _change_free so that a grant does not re-sort every device of the host
        self._sig: dict[str, list[tuple[str, int]]] = {}
        self._cids = 0
        self._content_ids: dict[tuple, int] = {}
        #: placement's memo of fragmentation growth by (class id, choice, ranks after)
        self.delta_memo: dict = {}
        self.host_kind: dict[str, int] = {}
        #: classes by what they can give: a device of a model with f free units
        #: (f > 0), n idle devices of a model (n > 0), t free units in all
        #: ({class key: class})
        self.class_levels: dict[str, dict[int, dict[tuple, HostClass]]] = defaultdict(lambda: defaultdict(dict))
        self.class_idle: dict[str, dict[int, dict[tuple, HostClass]]] = defaultdict(lambda: defaultdict(dict))
        self.class_total: dict[int, dict[tuple, HostClass]] = defaultdict(dict)
        self._kinds: dict[tuple, int] = {}
        #: per topology kind: (pair score matrix by device index, all pairs equal?,
        #: the score of a pair when they are)
        self.kind_matrix: dict[int, tuple] = {}
        #: whether hosts of a kind enforce fractional shares (CUDA MPS)
        self.kind_fractions: dict[int, bool] = {}
        #: the host pools of the hosts of a kind (the kind includes them, so
        #: every class is in one set of pools: placement filters classes by it)
        self.kind_pools: dict[int, frozenset[str]] = {}
        self._up_names: list[str] | None = None  # sorted names of up hosts (cache)
        #: per host, bumped whenever anything placement looks at changes
        self.host_version: dict[str, int] = defaultdict(int)
        #: placement's cache of NoFit's line per (host, GPU models asked), with
        #: the host's version it was written at
        self.shortage_lines: dict[tuple, tuple[int, str]] = {}

    # --- building --------------------------------------------------------------------

    @classmethod
    def build(cls, hosts, allocations=(), units_per_gpu: int = DEFAULT_UNITS_PER_GPU) -> PoolState:
        state = cls(units_per_gpu)
        for h in hosts:
            state.put_host(h)
        for a in allocations:
            if a.state == AllocationState.GRANTED:
                state.grant(a)
        return state

    # --- index maintenance -----------------------------------------------------------

    def _index_device(self, d: Device, add: bool) -> None:
        """(Un)index one device of an up host by its free units and idleness."""
        free = self.free[d.uuid]
        bucket = self.buckets[d.model][free]
        if add:
            bucket[d.uuid] = None
        else:
            bucket.pop(d.uuid, None)
            if not bucket:
                del self.buckets[d.model][free]
        if 0 < free < self.units_per_gpu:
            self.gaps[d.model][bisect_right(self._gaps_for.gap_cuts, free)] += 1 if add else -1
        if free == self.units_per_gpu:
            self.idle_indexes.pop((d.host, d.model), None)
            idle = self.idle[d.host].setdefault(d.model, {})
            before = len(idle)
            if add:
                idle[d.uuid] = None
            else:
                idle.pop(d.uuid, None)
            self._move_idle_count(d.host, d.model, before, len(idle))

    def _move_idle_count(self, host: str, model: str, before: int, after: int) -> None:
        if before == after:
            return
        by_n = self.hosts_by_idle[model]
        if before:
            by_n[before].pop(host, None)
            if not by_n[before]:
                del by_n[before]
        if after:
            by_n[after][host] = None

    def _index_host(self, h: Host, add: bool) -> None:
        if h.state != HostState.UP:
            return
        if add:
            self.idle.setdefault(h.name, {})
        for d in h.devices:
            self._index_device(d, add)
        if not add:
            self.idle.pop(h.name, None)

    # --- hosts -------------------------------------------------------------------------

    def put_host(self, host: Host) -> None:
        """Add a host or replace its description (devices, capacity, state). Devices
        that carry live shares must stay."""
        self.hosts_version += 1
        old = self.hosts.get(host.name)
        new_uuids = {d.uuid for d in host.devices}
        for d in host.devices:
            other = self.devices.get(d.uuid)
            if other is not None and other.host != host.name:
                raise StateError(f"device {d.uuid} belongs to host {other.host!r}")
        if old is not None:
            held = {s.device_uuid for a in self.by_host.get(host.name, {}).values() for s in a.shares}
            if held - new_uuids:
                raise StateError(
                    f"host {host.name}: devices {sorted(held - new_uuids)} carry live shares"
                )
            self._index_host(old, add=False)
            for d in old.devices:
                if d.uuid not in new_uuids:
                    del self.devices[d.uuid], self.free[d.uuid]
        for d in host.devices:
            self.devices[d.uuid] = d
            self.free.setdefault(d.uuid, self.units_per_gpu)
        self.cpu_cap[host.name] = milli(host.cpus)
        self.cpu_used.setdefault(host.name, 0)
        self.mem_used.setdefault(host.name, 0)
        self.hosts[host.name] = host
        kind = (tuple(d.island for d in host.devices), tuple(d.index for d in host.devices), host.topology,
                host.fractions, host.pools)
        kid = self._kinds.setdefault(kind, len(self._kinds))
        if kid not in self.kind_matrix:
            m = host_matrix(*kind[:3])
            self.kind_fractions[kid] = host.fractions
            self.kind_pools[kid] = frozenset(host.pools)
            self.kind_matrix[kid] = (m, is_uniform(m), m[0][1] if len(m) > 1 else 0)
        self.host_kind[host.name] = kid
        self._up_names = None
        self._sig[host.name] = sorted((d.model, self.free[d.uuid]) for d in host.devices)
        self._index_host(host, add=True)
        self._reclass(host.name)
        self.version += 1

    def set_host_state(self, name: str, state: HostState) -> Host:
        self.hosts_version += 1
        host = self.hosts[name]
        if host.state != state:
            self._index_host(host, add=False)
            host = replace(host, state=state)
            self.hosts[name] = host
            self._index_host(host, add=True)
            self._reclass(name)
            self._up_names = None
            self.version += 1
        return host

    def remove_host(self, name: str) -> None:
        self.hosts_version += 1
        host = self.hosts.get(name)
        if host is None:
            return
        if self.by_host.get(name):
            raise StateError(f"host {name} carries live allocations")
        self._index_host(host, add=False)
        self._unclass(name)
        for d in host.devices:
            del self.devices[d.uuid], self.free[d.uuid]
        del self.hosts[name], self.cpu_used[name], self.mem_used[name], self.cpu_cap[name]
        self.by_host.pop(name, None)
        self.host_kind.pop(name, None)
        self._sig.pop(name, None)
        self._up_names = None
        self.version += 1

    # --- allocations ---------------------------------------------------------------------

    def _change_free(self, uuid: str, delta: int) -> None:
        d = self.devices[uuid]
        up = self.hosts[d.host].state == HostState.UP
        if up:
            self._index_device(d, add=False)
        old = self.free[uuid]
        self.free[uuid] = old + delta
        sig = self._sig[d.host]
        del sig[bisect_left(sig, (d.model, old))]
        insort(sig, (d.model, old + delta))
        if up:
            self._index_device(d, add=True)

    def check_grant(self, a: Allocation) -> None:
        """Raise StateError unless ``a`` fits as it is (its shares free, its host known)."""
        if a.id in self.allocations:
            raise StateError(f"allocation {a.id} is already live")
        if a.host not in self.hosts:
            raise StateError(f"allocation {a.id}: no host {a.host}")
        for s in a.shares:
            d = self.devices.get(s.device_uuid)
            if d is None or d.host != a.host:
                raise StateError(f"allocation {a.id}: device {s.device_uuid} is not on {a.host}")
            if not 0 < s.units <= self.free[s.device_uuid]:
                raise StateError(f"allocation {a.id}: {s.units} units do not fit {s.device_uuid}")
        if len({s.device_uuid for s in a.shares}) != len(a.shares):
            raise StateError(f"allocation {a.id}: a device is listed twice")

    def grant(self, a: Allocation) -> None:
        """Apply a granted allocation (already decided and recorded)."""
        self.check_grant(a)
        for s in a.shares:
            self._change_free(s.device_uuid, -s.units)
        self.cpu_used[a.host] += milli(a.cpu)
        self.mem_used[a.host] += a.mem_mb
        self.allocations[a.id] = a
        self.by_host[a.host][a.id] = a
        self.by_user[a.user][a.id] = None
        if a.key:
            self.by_key[a.key] = a.id
        self._reclass(a.host)
        self.version += 1
        self.observe_shape(self.shape_of(a.units, milli(a.cpu), a.mem_mb))

    def release(self, allocation_id: str) -> Allocation | None:
        """Give a live allocation's shares back; None when it is not live."""
        a = self.allocations.pop(allocation_id, None)
        if a is None:
            return None
        for s in a.shares:
            self._change_free(s.device_uuid, s.units)
        self.cpu_used[a.host] -= milli(a.cpu)
        self.mem_used[a.host] -= a.mem_mb
        self.by_host[a.host].pop(a.id, None)
        mine = self.by_user.get(a.user)
        if mine is not None:
            mine.pop(a.id, None)
            if not mine:
                del self.by_user[a.user]
        if a.key and self.by_key.get(a.key) == a.id:
            del self.by_key[a.key]
        self._reclass(a.host)
        self.version += 1
        return a

    # --- classes and typical shapes ---------------------------------------------------

    def shape_of(self, units: int, cpu_milli: int, mem_mb: int) -> Shape:
        per = self.units_per_gpu
        if units <= 0:
            return (cpu_milli, mem_mb, 0, 0)
        if units < per:
            return (cpu_milli, mem_mb, units, 1)
        return (cpu_milli, mem_mb, per, units // per)

    def observe_shape(self, shape: Shape) -> None:
        """Count a request shape (granted, or refused: demand all the same)."""
        if self.shapes.observe(shape):
            self.reclass_all()

    def observe(self, req) -> None:
        """Count a request (e.g. one that did not fit) in the shape histogram."""
        self.observe_shape(self.shape_of(req.units, milli(req.cpu), req.mem_mb))

    def content_id(self, fs: tuple[int, ...], cr: int, mr: int) -> int:
        """A number for (free units, CPU rank, memory rank), the same while the
        typical shapes stay (placement memoises fragmentation growth by it, so
        a class that comes back finds its values); never reused."""
        ids = self._content_ids
        cid = ids.get((fs, cr, mr))
        if cid is None:
            if len(ids) > 200_000:
                ids.clear()  # the numbers already given stay valid: never reused
            cid = ids[(fs, cr, mr)] = self._cids
            self._cids += 1
        return cid

    def reclass_all(self) -> None:
        """Recompute every host's class (after the typical shapes changed).

        Only the CPU and memory ranks of a class key depend on the typical
        shapes, so the classes are regrouped from their members' CPU and memory
        left (no host's devices are looked at again)."""
        self._recount_gaps()
        old = list(self.classes.values())
        self.classes.clear()
        self.host_class.clear()
        self.delta_memo = {}
        self._content_ids = {}  # ranks mean other things now
        self.class_levels.clear()
        self.class_idle.clear()
        self.class_total.clear()
        typ = self.shapes.typical
        cpu_rank, mem_rank = typ.cpu_rank, typ.mem_rank
        groups: dict[tuple, tuple[HostClass, list]] = {}
        for c in old:
            sig, _, _, kind = c.key
            for entry in c.members:
                key = (sig, cpu_rank(-entry[0]), mem_rank(-entry[1]), kind)
                g = groups.get(key)
                if g is None:
                    groups[key] = g = (c, [])
                g[1].append(entry)
        host_class, host_version = self.host_class, self.host_version
        for key, (proto, members) in groups.items():
            members.sort()
            c = HostClass(key, proto.fs, key[1], key[2], proto.kind, proto.levels, proto.idle,
                          self.content_id(proto.fs, key[1], key[2]))
            c.members = members
            self.classes[key] = c
            self._index_class(c, add=True)
            for _, _, name in members:
                host_class[name] = key
                host_version[name] += 1

    def gap_counts(self, model: str) -> dict[int, int]:
        """Partly used devices of ``model`` on up hosts by gap class, under the
        current typical shapes."""
        if self._gaps_for is not self.shapes.typical:
            self._recount_gaps()
        return self.gaps[model]

    def _recount_gaps(self) -> None:
        """Count the partly used devices by gap class again (the typical
        fraction sizes, and so the classes, changed)."""
        self._gaps_for = self.shapes.typical
        self.gaps.clear()
        for model, counts in self._count_gaps(self._gaps_for.gap_cuts).items():
            self.gaps[model].update(counts)

    def _count_gaps(self, cuts: tuple[int, ...]) -> dict[str, dict[int, int]]:
        """Partly used devices by model and gap class, counted from ``buckets``."""
        per = self.units_per_gpu
        out: dict[str, dict[int, int]] = {}
        for model, by_free in self.buckets.items():
            for free, devs in by_free.items():
                if 0 < free < per and devs:
                    k = bisect_right(cuts, free)
                    counts = out.setdefault(model, {})
                    counts[k] = counts.get(k, 0) + len(devs)
        return out

    def class_key(self, name: str) -> tuple | None:
        h = self.hosts[name]
        if h.state != HostState.UP:
            return None
        typ = self.shapes.typical
        cpu, mem = self.host_room(name)
        sig = tuple(sorted((d.model, self.free[d.uuid]) for d in h.devices))
        return (sig, typ.cpu_rank(cpu), typ.mem_rank(mem), self.host_kind[name])

    def _index_class(self, c: HostClass, add: bool) -> None:
        spots = [self.class_total[c.total]]
        spots += [self.class_levels[m][f] for m, lv in c.levels.items() for f in lv if f > 0]
        spots += [self.class_idle[m][n] for m, n in c.idle.items()]
        for spot in spots:
            if add:
                spot[c.key] = c
            else:
                spot.pop(c.key, None)

    def _unclass(self, name: str) -> None:
        old = self.host_class.pop(name, None)
        if old is not None:
            c = self.classes[old]
            del c.members[bisect_left(c.members, self._member_entry.pop(name))]
            if not c.members:
                del self.classes[old]
                self._index_class(c, add=False)

    def _reclass(self, name: str) -> None:
        self.host_version[name] += 1
        self._unclass(name)
        h = self.hosts[name]
        if h.state != HostState.UP:
            return
        # class_key, with the signature kept by _change_free
        typ = self.shapes.typical
        cpu = self.cpu_cap[name] - self.cpu_used[name]
        mem = h.memory_mb - self.mem_used[name]
        key = (tuple(self._sig[name]), typ.cpu_rank(cpu), typ.mem_rank(mem), self.host_kind[name])
        c = self.classes.get(key)
        if c is None:
            sig, cr, mr, kind = key
            levels: dict[str, list[int]] = {}
            idle: dict[str, int] = {}
            for model, f in sig:
                lv = levels.setdefault(model, [])
                if f not in lv:
                    lv.append(f)
                if f == self.units_per_gpu:
                    idle[model] = idle.get(model, 0) + 1
            c = HostClass(
                key, tuple(sorted((f for _, f in sig), reverse=True)), cr, mr, kind,
                {m: tuple(sorted(v, reverse=True)) for m, v in levels.items()}, idle,
            )
            c.cid = self.content_id(c.fs, cr, mr)
            self.classes[key] = c
            self._index_class(c, add=True)
        entry = (-cpu, -mem, name)
        insort(c.members, entry)
        self._member_entry[name] = entry
        self.host_class[name] = key

    # --- reading ---------------------------------------------------------------------------

    def host_room(self, name: str) -> tuple[int, int]:
        """Free milli-cores and MB of memory on a host."""
        h = self.hosts[name]
        return milli(h.cpus) - self.cpu_used[name], h.memory_mb - self.mem_used[name]

    def fits_host(self, name: str, cpu_milli: int, mem_mb: int) -> bool:
        cpu, mem = self.host_room(name)
        return cpu_milli <= cpu and mem_mb <= mem

    def up_names(self) -> list[str]:
        """Names of the up hosts, sorted (cached until a host changes)."""
        if self._up_names is None:
            self._up_names = sorted(n for n, h in self.hosts.items() if h.state == HostState.UP)
        return self._up_names

    def models(self) -> list[str]:
        return sorted({d.model for d in self.devices.values()})

    def snapshot(self) -> dict:
        """Plain, comparable data (tests compare the live state with a fresh load)."""
        return {
            "units_per_gpu": self.units_per_gpu,
            "hosts": {n: h for n, h in sorted(self.hosts.items())},
            "free": dict(sorted(self.free.items())),
            "cpu_used": dict(sorted(self.cpu_used.items())),
            "mem_used": dict(sorted(self.mem_used.items())),
            "allocations": dict(sorted(self.allocations.items())),
        }

    def check_indexes(self) -> None:
        """Recompute every index from scratch and compare (tests)."""
        fresh = PoolState.build(self.hosts.values(), self.allocations.values(), self.units_per_gpu)
        assert fresh.free == self.free, "free units drifted"
        assert fresh.cpu_used == self.cpu_used and fresh.mem_used == self.mem_used
        assert {u: set(ids) for u, ids in fresh.by_user.items() if ids} == {
            u: set(ids) for u, ids in self.by_user.items() if ids}, "user index drifted"
        for (h, m), ix in self.idle_indexes.items():
            assert ix == tuple(sorted(self.devices[u].index for u in self.idle[h].get(m, ()))), "idle cache drifted"
        norm = lambda b: {m: {f: set(u) for f, u in v.items() if u} for m, v in b.items() if v}  # noqa: E731
        assert norm(fresh.buckets) == norm(self.buckets), "bucket index drifted"
        assert {h: {m: set(u) for m, u in v.items() if u} for h, v in fresh.idle.items()} == {
            h: {m: set(u) for m, u in v.items() if u} for h, v in self.idle.items()
        }, "idle index drifted"
        assert norm(fresh.hosts_by_idle) == norm(self.hosts_by_idle), "host index drifted"
        # (kept under the classes of the snapshot they were counted for)
        counted = {m: {k: n for k, n in v.items() if n} for m, v in self.gaps.items()}
        assert {m: v for m, v in counted.items() if v} == self._count_gaps(self._gaps_for.gap_cuts), \
            "gap counts drifted"
        assert self._sig == {
            n: sorted((d.model, self.free[d.uuid]) for d in h.devices) for n, h in self.hosts.items()
        }, "device signatures drifted"
        expect = {n: self.class_key(n) for n in self.hosts}
        assert {n: k for n, k in expect.items() if k is not None} == self.host_class, "classes drifted"
        members = defaultdict(list)
        for n in self.host_class:
            cpu, mem = self.host_room(n)
            members[self.host_class[n]].append((-cpu, -mem, n))
        members = {k: sorted(v) for k, v in members.items()}
        assert {k: c.members for k, c in self.classes.items()} == dict(members), "class members drifted"
        levels, idle, total = set(), set(), set()
        for c in self.classes.values():
            levels |= {(m, f, c.key) for m, lv in c.levels.items() for f in lv if f > 0}
            idle |= {(m, n, c.key) for m, n in c.idle.items()}
            total.add((sum(c.fs), c.key))
            assert c.total == sum(c.fs) and c.key[0] == tuple(self._sig[c.members[0][2]]), "class drifted"
        flat = lambda ix: {(m, f, k) for m, v in ix.items() for f, ks in v.items() for k in ks}  # noqa: E731
        assert flat(self.class_levels) == levels and flat(self.class_idle) == idle, "class index drifted"
        assert {(t, k) for t, ks in self.class_total.items() for k in ks} == total, "class index drifted"
