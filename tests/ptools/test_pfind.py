"""pfind against GNU find on the same tree: the same set of paths."""
import os

import pytest

from .conftest import run


def paths(out: bytes) -> list[bytes]:
    return sorted(out.split(b"\0")[:-1])


@pytest.mark.parametrize("expr", [
    [],
    ["-type", "f"],
    ["-type", "d"],
    ["-type", "l"],
    ["-type", "p"],
    ["-type", "f,l"],
    ["-name", "*.txt"],
    ["-name", "f00*"],
    ["-iname", "upper*"],
    ["-name", "*\n*"],
    ["-size", "+1k"],
    ["-size", "-2"],
    ["-size", "0"],
    ["-size", "+19M"],
    ["-size", "9000c"],
    ["-size", "-1M"],
    ["-mtime", "+5"],
    ["-mtime", "-1"],
    ["-mtime", "3"],
    ["-user", "root"],
    ["-user", "nobody"],
    ["-maxdepth", "0"],
    ["-maxdepth", "2"],
    ["-mindepth", "3", "-maxdepth", "5"],
    ["-maxdepth", "3", "-type", "f", "-name", "*a*"],
], ids=lambda e: " ".join(e).replace("\n", "NL") or "all")
def test_same_paths_as_find(tree, expr):
    gnu = run("find", tree, *expr, "-print0")
    mine = run("pfind", tree, *expr, "-print0")
    assert mine.returncode == gnu.returncode == 0, mine.stderr
    assert paths(mine.stdout) == paths(gnu.stdout)
    assert len(paths(mine.stdout)) > 0 or expr == ["-type", "p", "-name", "x"]


def test_newer(tree):
    ref = tree / "Upper.TXT"
    gnu = run("find", tree, "-newer", ref, "-print0")
    mine = run("pfind", tree, "-newer", ref, "-print0")
    assert paths(mine.stdout) == paths(gnu.stdout)


def test_relative_root_and_newline_output(tree):
    gnu = run("find", ".", cwd=tree)
    mine = run("pfind", ".", cwd=tree)
    assert sorted(mine.stdout.split(b"\n")) == sorted(gnu.stdout.split(b"\n"))


def test_sort_is_byte_order(tree):
    out = run("pfind", tree, "-print0", "--sort").stdout.split(b"\0")[:-1]
    assert out == sorted(out)


def test_symlink_root_not_followed(tree):
    for link in ("ln_dir", "loop_a", "ln_dangling"):
        gnu = run("find", tree / link)
        mine = run("pfind", tree / link)
        assert (mine.stdout, mine.returncode) == (gnu.stdout, gnu.returncode)


def test_jsonlines_and_json(tree):
    import json
    lines = run("pfind", tree / "dir1", "--jsonlines").stdout.splitlines()
    rows = [json.loads(x) for x in lines]
    by = {r["path"]: r for r in rows}
    st = os.lstat(tree / "dir1" / "hl_a")
    r = by[str(tree / "dir1" / "hl_a")]
    assert (r["type"], r["size"], r["mode"], r["uid"], r["gid"]) == ("f", 9000, st.st_mode & 0o7777, 0, 0)
    assert abs(r["mtime"] - st.st_mtime) < 1e-3
    assert by[str(tree / "dir1" / "ln_parent")]["type"] == "l"
    arr = json.loads(run("pfind", tree / "odd", "--json", "--sort").stdout)
    got = {os.fsencode(r["path"]) for r in arr}
    assert os.path.join(os.fsencode(tree / "odd"), b"\xff\xfe-not-utf8") in got
    assert len(arr) == len(run("find", tree / "odd", "-print0").stdout.split(b"\0")) - 1
