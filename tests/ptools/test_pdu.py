"""pdu against GNU du: identical lines (hard links once, sparse files by blocks)."""
import os

import pytest

from .conftest import run


@pytest.mark.parametrize("flags", [[], ["-a"], ["-s"], ["-b"], ["-h"], ["--apparent-size"], ["-ab"],
                                   ["-sh"], ["-a", "-0"], ["-d", "1"], ["-c", "-s"]],
                         ids=lambda f: " ".join(f) or "default")
def test_same_lines_as_du(tree, flags):
    gnu = run("du", *flags, tree)
    mine = run("pdu", *flags, tree)
    assert mine.returncode == gnu.returncode == 0, mine.stderr
    sep = b"\0" if "-0" in flags else b"\n"
    assert sorted(mine.stdout.split(sep)) == sorted(gnu.stdout.split(sep))


def test_cross_directory_hard_links_total(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 50000)
    for i in range(5):
        os.link(tmp_path / "a" / "f", tmp_path / "b" / f"l{i}")
    for flags in (["-s"], ["-sb"]):
        assert run("pdu", *flags, tmp_path).stdout == run("du", *flags, tmp_path).stdout


def test_multiple_args_in_order(tree):
    args = [tree / "dir1", tree / "odd", tree / "dir1", tree / "plain.txt"]
    gnu = run("du", "-s", *args)
    mine = run("pdu", "-s", *args)
    assert mine.stdout == gnu.stdout


def test_root_is_symlink_or_file(tree):
    for p in ("ln_dir", "sparse.img", "loop_a"):
        assert run("pdu", tree / p).stdout == run("du", tree / p).stdout


def test_api_du_matches(tree):
    from vfolder_manager.ptools import du
    u = du(tree)
    assert u.bytes == int(run("du", "-sb", tree).stdout.split()[0])
    assert u.blocks * 512 // 1024 == int(run("du", "-s", "--block-size=1024", tree).stdout.split()[0]) or \
        -(-u.blocks * 512 // 1024) == int(run("du", "-s", tree).stdout.split()[0])
    n_entries = len(run("find", tree, "-mindepth", "1", "-print0").stdout.split(b"\0")) - 1
    assert u.files == n_entries - 2      # the two extra names of the hard-linked file count once
