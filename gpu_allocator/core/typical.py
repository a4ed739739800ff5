"""What the pool's requests usually look like, and how fragmented a host is for them.

Fragmentation (Weng et al., "Beware of Fragmentation", USENIX ATC '23): the
idle GPU capacity of a host that a request of a given shape could *not* use
there. For one shape (cpu, mem, units per device, device count):

- a CPU-only shape can use no GPU: all of the host's idle GPU capacity counts;
- a host that lacks the CPU or memory the shape needs: all of it counts;
- a host that has ``count`` devices with ``units`` free: the free units of the
  devices that hold less than ``units`` count (they cannot take this shape);
- otherwise (too few devices with room): all of it counts.

This is the paper's definition (its simulator, ``NodeGpuShareFragAmountScore``,
checked line by line; it also matches typical shapes by GPU model, which
gpuhub's model-agnostic shapes leave out). A host's fragmentation for the
typical shapes (:meth:`Typical.frag`) is the sum over them weighted by how
common they are. Its *expected* fragmentation (:meth:`Typical.expected`) adds
:data:`LOOKAHEAD` (0.25) times the fragmentation after one more typical
request (one of the :data:`AHEAD_SHAPES`, 8, most common) lands on it, so that
a host whose CPU would run out one request later is told from one that stays
usable. Placement (FGD, one request ahead) puts a request where that
expectation grows the least. On the Alibaba trace (benchmarks/packing.py) the
look-ahead packs more than the paper's one-step score (LOOKAHEAD 0); more
shapes ahead pack a little more still but cost decision speed on a mixed
stream whose typical shapes are about equally common (benchmarks/placement_speed.py),
so 8 keeps the decision-rate target with margin. Weights from 0.15 to 0.5 did
about as well as 0.25, 1.0 less. The measured figures are in
benchmarks/RESULTS.md.

Where the typical shapes come from (the policy input the live allocator has
too): :class:`ShapeStats` is a bounded, exponentially decayed histogram of the
request shapes the pool granted (``PoolState.grant`` feeds it; callers may also
feed refused requests through ``PoolState.observe``). The *typical* shapes are
the most common ones that together cover ``coverage`` (99%) of the decayed
weight (at most ``max_typical``, 60, so that a pool whose requests are all
different still scores fast), renormalised, as the paper's simulator does (it
counts CPU-only pods too). The paper takes 95%; on the Alibaba trace 99% adds
shapes the rarer requests have (whole GPUs with other CPU counts, 4- and 8-GPU
pods, a few small fractions), and with them placement leaves less capacity idle
on hosts whose CPU ran out and grants more (benchmarks/RESULTS.md; 100%
coverage did no better than 95%). A
snapshot (:class:`Typical`) is taken every ``refresh`` observations, so that
placement works on a stable distribution between snapshots; the
benchmark seeds the histogram from the trace's pod list, as the paper does.
Shapes carry no GPU-model constraint: the distribution is model-agnostic.
With no history there are no typical shapes, every fragmentation is 0, and
placement falls back to its tie-breaks (best fit).

The typical shapes are (CPU, units per device, device count) classes, as the
paper's simulator has them: the histogram keeps each request's memory, but a
snapshot merges the shapes that differ only in memory (their weights add up;
the merged shape carries the smallest memory asked), and by default
(``use_mem=False``) fragmentation does not look at memory. With memory in the
typical shapes, one (CPU, GPU) shape is split over many memory sizes, the
coverage takes a different and less representative set, and placement grants
fewer GPUs on the Alibaba trace (benchmarks/packing.py; benchmarks/RESULTS.md).
Memory still limits where a request fits (placement checks it on every
candidate).
"""

from __future__ import annotations

from bisect import bisect_right

#: (cpu milli-cores, memory MB, units per device, device count); units 0: CPU only
Shape = tuple[int, int, int, int]

#: weight of the fragmentation expected one typical request later (see
#: :meth:`Typical.expected`): 0 is the paper's FGD
LOOKAHEAD = 0.25
#: the most common typical shapes that :meth:`Typical.expected` lets land next
#: (the others count as leaving the host as it is): bounds its cost when the
#: typical shapes are many (the Alibaba trace has 53; see the module docstring)
AHEAD_SHAPES = 8


class Typical:
    """An immutable snapshot of the typical shapes with their probabilities, and a
    memo of host fragmentation values keyed by what they depend on."""

    __slots__ = ("shapes", "cpu_cuts", "mem_cuts", "version", "_memo", "_groups", "_cpu_only",
                 "_unit_values", "cpu_cuts2", "mem_cuts2", "_ahead", "_land", "_next_cpu_only",
                 "_next_groups", "_p_all", "gap_cuts")

    def __init__(self, shapes: list[tuple[Shape, float]], version: int = 0, use_mem: bool = True):
        self.shapes = tuple(shapes)
        self.version = version
        self.cpu_cuts = tuple(sorted({s[0] for s, _ in shapes}))
        self.mem_cuts = tuple(sorted({s[1] for s, _ in shapes})) if use_mem else ()
        # what expected() compares CPU / memory left with: a cut, or a cut
        # plus the request of a shape that landed first
        self.cpu_cuts2 = tuple(sorted({a + b for a in (0, *self.cpu_cuts) for b in self.cpu_cuts}))
        self.mem_cuts2 = tuple(sorted({a + b for a in (0, *self.mem_cuts) for b in self.mem_cuts}))
        # shapes by (units, count): [(cpu cut index, mem cut index, probability)]
        groups: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
        self._cpu_only = 0.0
        for s, p in shapes:
            if s[2] == 0:
                self._cpu_only += p  # a CPU-only shape can use no GPU at all
                continue
            ci = self.cpu_cuts.index(s[0])
            mi = self.mem_cuts.index(s[1]) if use_mem else -1
            groups.setdefault((s[2], s[3]), []).append((ci, mi, p))
        # (units, count, terms, the terms' total probability, and by CPU and
        # memory rank (at cr * (memory cuts + 1) + mr) the probabilities of its
        # terms that the host lacks / has the CPU and memory for: frag is then
        # a sum over the groups, not over every shape)
        nc, nm = len(self.cpu_cuts), len(self.mem_cuts)
        self._groups = tuple(
            (u, k, tuple(ts), sum(t[2] for t in ts),
             tuple((sum(p for ci, mi, p in ts if ci >= cr or mi >= mr),
                    sum(p for ci, mi, p in ts if ci < cr and mi < mr))
                   for cr in range(nc + 1) for mr in range(nm + 1)))
            for (u, k), ts in sorted(groups.items())
        )
        self._unit_values = tuple(sorted({u for u, _ in groups}))
        #: the typical shapes' units per device: a device with f free units
        #: (0 < f < a whole GPU) is in gap class gap_class(f)
        self.gap_cuts = self._unit_values
        # the shapes expected() lets land next: (cpu cut index, mem cut index,
        # probability) of the CPU-only ones, and by (units, count) of the others
        top = sorted(range(len(self.shapes)), key=lambda i: (-self.shapes[i][1], i))[:AHEAD_SHAPES]
        nxt_groups: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
        self._next_cpu_only: list[tuple[int, int, float]] = []
        for i in sorted(top):
            s, p = self.shapes[i]
            term = (self.cpu_cuts.index(s[0]), self.mem_cuts.index(s[1]) if use_mem else -1, p)
            if s[2] == 0:
                self._next_cpu_only.append(term)
            else:
                nxt_groups.setdefault((s[2], s[3]), []).append(term)
        self._next_groups = tuple((u, k, tuple(ts)) for (u, k), ts in sorted(nxt_groups.items()))
        self._p_all = sum(p for _, p in self.shapes)
        self._memo: dict = {}
        self._ahead: dict = {}
        self._land: dict = {}

    def gap_class(self, free: int) -> int:
        """How many of the typical units per device fit in ``free`` units: two
        partly used devices in one class can take the same typical requests
        (core.placement balances the classes' sizes)."""
        return bisect_right(self.gap_cuts, free)

    def cpu_rank(self, cpu_left: int) -> int:
        """How many CPU thresholds fit in ``cpu_left`` (all that fragmentation needs)."""
        return bisect_right(self.cpu_cuts, cpu_left)

    def mem_rank(self, mem_left: int) -> int:
        return bisect_right(self.mem_cuts, mem_left)

    def frag(self, fs: tuple[int, ...], cr: int, mr: int) -> float:
        """Expected fragmented units of a host whose devices have ``fs`` free units
        (sorted, largest first), with CPU and memory ranks ``cr``, ``mr``."""
        key = (fs, cr, mr)
        v = self._memo.get(key)
        if v is not None:
            return v
        total = sum(fs)
        v = 0.0
        if total:
            n = len(fs)
            # the free units of the devices with less than u free, for each u
            parts = {}
            acc, i = 0, n - 1
            for u in self._unit_values:
                while i >= 0 and fs[i] < u:
                    acc += fs[i]
                    i -= 1
                parts[u] = acc
            v = self._cpu_only * total
            at = cr * (len(self.mem_cuts) + 1) + mr
            for units, count, _, psum, by_rank in self._groups:
                if count > n or fs[count - 1] < units:
                    v += total * psum
                    continue
                short, room = by_rank[at]
                v += total * short + parts[units] * room
        if len(self._memo) > 200_000:
            self._memo.clear()
        self._memo[key] = v
        return v

    def ahead_ranks(self, cpu_left: int, mem_left: int) -> tuple[int, int]:
        """Where CPU and memory left fall among :attr:`cpu_cuts2` and
        :attr:`mem_cuts2`: all that :meth:`expected` depends on besides ``fs``."""
        return bisect_right(self.cpu_cuts2, cpu_left), bisect_right(self.mem_cuts2, mem_left)

    def land(self, fs: tuple[int, ...], units: int, count: int) -> tuple[int, ...] | None:
        """``fs`` after a request of ``count`` devices with ``units`` each took the
        tightest devices with room (None: it does not fit)."""
        key = (fs, units, count)
        r = self._land.get(key)
        if r is None:
            if count > len(fs) or fs[count - 1] < units:
                r = ()
            else:
                r = fs
                for _ in range(count):
                    i = len(r) - 1
                    while r[i] < units:  # largest first: the last with room is the tightest
                        i -= 1
                    v = r[i] - units
                    j = i + 1  # what follows has less than units: put v in its place there
                    while j < len(r) and r[j] > v:
                        j += 1
                    r = r[:i] + r[i + 1:j] + (v,) + r[j:]
            if len(self._land) > 200_000:
                self._land.clear()
            self._land[key] = r
        return r or None

    def expected(self, fs: tuple[int, ...], cpu_left: int, mem_left: int) -> float:
        """The host's fragmentation now plus :data:`LOOKAHEAD` times the
        fragmentation expected after the next typical request lands on it (on
        its tightest devices; one that does not fit leaves it as it is).

        Why: :meth:`frag` only asks whether each typical shape fits once. A
        host that keeps room for one more request but strands its GPUs after
        it (mostly: its CPU runs out first) looks as good as one that stays
        usable; the second step tells them apart (see the module docstring
        for what it gained)."""
        rc, rm = self.ahead_ranks(cpu_left, mem_left)
        key = (fs, rc, rm)
        v = self._ahead.get(key)
        if v is not None:
            return v
        v = 0.0
        if sum(fs):
            cuts, mcuts = self.cpu_cuts, self.mem_cuts
            cr, mr = bisect_right(cuts, cpu_left), bisect_right(mcuts, mem_left)
            frag = self.frag
            now = frag(fs, cr, mr)
            # ranks left once a shape of each CPU (memory) cut has landed
            rc_after = [bisect_right(cuts, cpu_left - c) for c in cuts[:cr]]
            rm_after = [bisect_right(mcuts, mem_left - m) for m in mcuts[:mr]] + [0]  # [-1]: no memory
            # probability of each state the next request leaves (summed, so
            # that each state is looked up once); what does not fit (or is
            # not among the AHEAD_SHAPES) leaves the host as it is
            moved = 0.0
            states: dict = {}
            for ci, mi, p in self._next_cpu_only:
                if ci < cr and mi < mr:
                    k = (fs, rc_after[ci], rm_after[mi])
                    states[k] = states.get(k, 0.0) + p
                    moved += p
            n = len(fs)
            lands = self._land
            for units, count, terms in self._next_groups:
                if count > n or fs[count - 1] < units:
                    continue
                after = lands.get((fs, units, count)) or self.land(fs, units, count)
                for ci, mi, p in terms:
                    if ci < cr and mi < mr:
                        k = (after, rc_after[ci], rm_after[mi])
                        states[k] = states.get(k, 0.0) + p
                        moved += p
            memo = self._memo
            nxt = (self._p_all - moved) * now
            for k, p in states.items():
                f = memo.get(k)
                nxt += p * (f if f is not None else frag(*k))
            v = now + LOOKAHEAD * nxt
        if len(self._ahead) > 200_000:
            self._ahead.clear()
        self._ahead[key] = v
        return v


EMPTY = Typical([])


class ShapeStats:
    """Decayed counts of request shapes; bounded in size."""

    def __init__(self, half_life: float = 2000.0, coverage: float = 0.99, refresh: int = 500,
                 max_shapes: int = 1024, max_typical: int = 60, use_mem: bool = False):
        self.half_life = half_life
        self.coverage = coverage
        self.refresh = refresh
        self.max_shapes = max_shapes
        self.max_typical = max_typical
        self.use_mem = use_mem
        self.counts: dict[Shape, float] = {}
        self._inc = 1.0  # weight of the next observation (grows instead of decaying all)
        self._growth = 2.0 ** (1.0 / half_life) if half_life else 1.0
        self._since = 0
        self.frozen = False
        self.typical: Typical = EMPTY

    def observe(self, shape: Shape, weight: float = 1.0) -> bool:
        """Count one request shape; True when a new snapshot was taken."""
        if self.frozen:
            return False
        self.counts[shape] = self.counts.get(shape, 0.0) + weight * self._inc
        self._inc *= self._growth
        if self._inc > 1e12:  # rescale before floats lose precision
            self.counts = {k: v / self._inc for k, v in self.counts.items()}
            self._inc = 1.0
        if len(self.counts) > self.max_shapes:
            # forget the rarest half
            keep = sorted(self.counts.items(), key=lambda kv: -kv[1])[: self.max_shapes // 2]
            self.counts = dict(keep)
        self._since += 1
        if self._since >= self.refresh or self.typical is EMPTY:
            self.snapshot()
            return True
        return False

    def seed(self, shapes, frozen: bool = True) -> None:
        """Start from a known list of shapes (e.g. a trace's pods) and optionally
        stop learning."""
        self.counts = {}
        self._inc = 1.0
        for s in shapes:
            self.counts[s] = self.counts.get(s, 0.0) + 1.0
        self.snapshot()
        self.frozen = frozen

    def snapshot(self) -> Typical:
        self._since = 0
        # shapes that differ only in memory are one shape (see the module docstring)
        merged: dict[tuple[int, int, int], list] = {}
        for (cpu, mem, units, count), c in self.counts.items():
            m = merged.get((cpu, units, count))
            if m is None:
                merged[(cpu, units, count)] = [mem, c]
            else:
                m[0] = min(m[0], mem)
                m[1] += c
        counts = {(cpu, mem, units, count): c for (cpu, units, count), (mem, c) in merged.items()}
        total = sum(counts.values())
        chosen: list[tuple[Shape, float]] = []
        if total > 0:
            acc = 0.0
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            for shape, c in ordered:
                if acc >= self.coverage * total or len(chosen) >= self.max_typical:
                    break
                chosen.append((shape, c))
                acc += c
            chosen = [(s, c / acc) for s, c in chosen]
        self.typical = Typical(chosen, self.typical.version + 1, self.use_mem)
        return self.typical
