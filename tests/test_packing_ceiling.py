"""The packing benchmark's ceiling (benchmarks/packing.py): what rounding and the
gaps next to large fractions cost whatever the policy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "packing_bench", Path(__file__).resolve().parent.parent / "benchmarks" / "packing.py")
packing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(packing)


def pods(milli: list[int], per: int) -> list[tuple]:
    """(cpu, mem, units, asked, models) of one-GPU pods asking for ``milli``."""
    return [(1000, 1024, -(-m // (1000 // per)), m, frozenset()) for m in milli]


def test_sliver_loss_counts_rounding_and_the_gaps_no_smaller_pod_fills():
    asked = [810, 810, 110, 160]
    # 0.05 GPU: each 0.81 takes 0.85 (17 units) and leaves 3 units; the 0.11 (3 units)
    # fills one gap, the 0.16 (4 units) neither; rounding 4 × 40 milli
    assert packing.sliver_loss(pods(asked, 20), 20) == pytest.approx(4 * 40 + 3 * 50)
    # milli-GPU: no rounding; gaps of 190 take the 110 and the 160
    assert packing.sliver_loss(pods(asked, 1000), 1000) == pytest.approx(2 * 190 - 110 - 160)
    # two halves fill a device exactly: nothing is lost
    assert packing.sliver_loss(pods([500, 500], 20), 20) == 0


def test_mix_ceiling_is_where_requested_plus_its_loss_fills_capacity():
    p = pods([810, 810, 110, 160], 20)
    asked = sum(x[3] for x in p)
    ceiling = packing.mix_ceiling(p, 20)
    assert ceiling * (1 + packing.sliver_loss(p, 20) / asked) == pytest.approx(1)
    assert packing.mix_ceiling(pods([810, 810, 110, 160], 1000), 1000) > ceiling  # finer quanta lose less
