"""GPU topology inside a host: link scores between devices, and the choice of the
best-connected set of idle devices for a multi-GPU share.

Scores follow NVIDIA's go-gpuallocator "besteffort" policy: an NVLink weighs
most (100 per link), then the PCIe path between the two devices: same board 60,
one PCIe switch (PIX) 50, several switches (PXB) 40, one host bridge (PHB) 30,
same NUMA node (NODE) 20, across sockets (SYS) 10. A pair's score is the sum of
its NVLink score and its PCIe score.

Input: what the agent sends in ``host.topology`` (gpu_allocator.inventory
nvml_topology): ``{"pairs": [{"a": i, "b": j, "common_ancestor": "PIX",
"nvlink": true}, ...], "nvlinks_active": [links of device 0, ...]}``. NVML
says whether a pair talks over NVLink, not over how many links: a linked pair is
counted as ``min(active links of a / linked peers of a, same for b)`` links
(at least 1), which is exact for NVSwitch systems and for the usual hybrid
cube-mesh. Without topology (the mock inventory) the matrix is derived from the
devices' NVLink ``island`` labels: same island = NVLink + SYS, else SYS.

The chooser takes ``n`` idle devices that maximise, in order: the weakest pair
inside the set (an all-NVLink set beats one with a PCIe hop), the total pair
score inside the set, and the total pair score among the idle devices left over
(so that what stays free stays well connected). Exhaustive for up to
:data:`EXHAUSTIVE` combinations, greedy beyond.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import comb

NVLINK = 100
PCIE = {"internal": 60, "PIX": 50, "PXB": 40, "PHB": 30, "NODE": 20, "SYS": 10}
#: the score of a pair the agent said nothing about
UNKNOWN = PCIE["SYS"]
EXHAUSTIVE = 3000

Matrix = tuple[tuple[int, ...], ...]


def score_matrix(topology: dict | None, device_count: int) -> Matrix | None:
    """The agent's topology dict → a symmetric matrix of pair scores indexed by
    device index (the diagonal is 0); None when there is nothing to go on."""
    if not topology or not isinstance(topology, dict):
        return None
    pairs = topology.get("pairs") or []
    n = device_count
    if n <= 0:
        return None
    m = [[UNKNOWN if i != j else 0 for j in range(n)] for i in range(n)]
    links = list(topology.get("nvlinks_active") or [])
    peers = [0] * n
    good = []
    for p in pairs:
        try:
            a, b = int(p["a"]), int(p["b"])
        except (KeyError, TypeError, ValueError):
            continue
        if not (0 <= a < n and 0 <= b < n) or a == b:
            continue
        good.append((a, b, p))
        if p.get("nvlink"):
            peers[a] += 1
            peers[b] += 1
    for a, b, p in good:
        s = PCIE.get(str(p.get("common_ancestor")), UNKNOWN)
        if p.get("nvlink"):
            per = []
            for x in (a, b):
                active = links[x] if x < len(links) and isinstance(links[x], int) else 0
                per.append(active // peers[x] if peers[x] else 0)
            s += NVLINK * max(1, min(per))
        m[a][b] = m[b][a] = s
    return tuple(tuple(r) for r in m)


def islands_matrix(islands: tuple[str, ...]) -> Matrix:
    """Pair scores from NVLink island labels only (device index = position)."""
    n = len(islands)
    return tuple(
        tuple(
            0 if i == j else (NVLINK + UNKNOWN if islands[i] and islands[i] == islands[j] else UNKNOWN)
            for j in range(n)
        )
        for i in range(n)
    )


@lru_cache(maxsize=4096)
def host_matrix(islands: tuple[str, ...], indexes: tuple[int, ...], topology: Matrix | None) -> Matrix:
    """The matrix placement uses for a host: its own, else one from its islands
    (indexed by device index)."""
    size = max(indexes, default=-1) + 1
    if topology is not None and len(topology) >= size:
        return topology
    by_index = [""] * size
    for i, isl in zip(indexes, islands):
        by_index[i] = isl
    return islands_matrix(tuple(by_index))


@lru_cache(maxsize=4096)
def is_uniform(m: Matrix) -> bool:
    """True when every pair scores the same (topology cannot tell choices apart)."""
    vals = {m[i][j] for i in range(len(m)) for j in range(len(m)) if i != j}
    return len(vals) <= 1


def _pair_stats(m: Matrix, devs) -> tuple[int, int]:
    lo, total = None, 0
    for x, y in combinations(devs, 2):
        s = m[x][y]
        total += s
        if lo is None or s < lo:
            lo = s
    return (lo or 0), total


@lru_cache(maxsize=65536)
def choose(m: Matrix, idle: tuple[int, ...], n: int) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """Pick ``n`` of the ``idle`` device indexes; returns (chosen indexes sorted,
    (weakest pair, total pair score, leftover pair score)) — higher is better."""
    if n > len(idle):
        raise ValueError("not enough idle devices")
    if n == len(idle):
        lo, tot = _pair_stats(m, idle)
        return idle, (lo, tot, 0)
    best = None
    if comb(len(idle), n) <= EXHAUSTIVE:
        for cand in combinations(idle, n):
            lo, tot = _pair_stats(m, cand)
            rest = tuple(i for i in idle if i not in cand)
            _, left = _pair_stats(m, rest)
            q = (lo, tot, left)
            if best is None or q > best[1]:  # first wins ties: lowest indexes
                best = (cand, q)
        return best
    # greedy: grow from each seed the set with the best added score
    for seed in idle:
        chosen = [seed]
        while len(chosen) < n:
            nxt = max(
                (i for i in idle if i not in chosen),
                key=lambda i: (sum(m[i][c] for c in chosen), -i),
            )
            chosen.append(nxt)
        cand = tuple(sorted(chosen))
        lo, tot = _pair_stats(m, cand)
        _, left = _pair_stats(m, tuple(i for i in idle if i not in cand))
        q = (lo, tot, left)
        if best is None or q > best[1]:
            best = (cand, q)
    return best
