"""The p-commands' yardstick (benchmarks/limitwalk.c, the "limit" column of
benchmarks/ptools_bench.py): a yardstick that skipped work would make every
p-command look slow, so each of its operations is checked here for doing all of
the work, on a local tree (no latency: what it does, not how fast)."""

from __future__ import annotations

import importlib.util
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "ptools_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "ptools_bench.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def limitwalk():
    return bench.build_limitwalk()


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    assert bench.make_tree(root, 1200) == 1200  # 12 leaves in 2 top folders
    (root / "d0000" / "empty").mkdir()
    return root


def walk(limitwalk, *args: str) -> None:
    r = subprocess.run([limitwalk, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, r.stderr


def entries(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


@pytest.mark.parametrize("op", ["walk", "stat"])
def test_reading_ops_change_nothing(limitwalk, tree, op):
    before = {p: p.lstat() for p in entries(tree)}
    walk(limitwalk, op, str(tree), "7")
    assert {p: p.lstat() for p in entries(tree)} == before


def test_chmod_gives_every_entry_and_the_root_group_write(limitwalk, tree):
    for p in entries(tree):
        if not p.is_symlink():
            p.chmod(p.lstat().st_mode & ~stat.S_IWGRP)
    walk(limitwalk, "chmod", str(tree))
    assert all(p.lstat().st_mode & stat.S_IWGRP for p in entries(tree) if not p.is_symlink())


def test_cp_copies_every_file_and_folder(limitwalk, tree, tmp_path):
    copy = tmp_path / "copy"
    walk(limitwalk, "cp", str(tree), str(copy), "16")
    assert sorted(p.relative_to(tree) for p in tree.rglob("*")) == sorted(p.relative_to(copy) for p in copy.rglob("*"))
    assert all((copy / p.relative_to(tree)).read_bytes() == p.read_bytes() for p in tree.rglob("f*"))


def test_rm_removes_the_whole_tree(limitwalk, tree):
    walk(limitwalk, "rm", str(tree), "32")
    assert not tree.exists()
