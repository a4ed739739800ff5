"""pls against GNU ls (LC_ALL=C, not a terminal): byte-identical output."""
import pytest

from .conftest import run


@pytest.mark.parametrize("flags", [[], ["-a"], ["-A"], ["-l"], ["-la"], ["-R"], ["-lR"], ["-d"], ["-ld"]],
                         ids=lambda f: " ".join(f) or "default")
def test_same_output_as_ls(tree, flags):
    gnu = run("ls", *flags, tree)
    mine = run("pls", *flags, tree)
    assert (mine.returncode, mine.stderr) == (gnu.returncode, gnu.stderr)
    assert mine.stdout == gnu.stdout


def test_several_args_files_and_dirs(tree):
    args = [tree / "dir1", tree / "plain.txt", tree / "ln_dir", tree / "emptydir", tree / "ln_file"]
    for flags in ([], ["-l"]):
        gnu = run("ls", *flags, *args)
        mine = run("pls", *flags, *args)
        assert mine.stdout == gnu.stdout


def test_missing_argument_exit_2(tree):
    gnu = run("ls", tree / "nope", tree / "dir1")
    mine = run("pls", tree / "nope", tree / "dir1")
    assert mine.returncode == gnu.returncode == 2
    assert mine.stdout == gnu.stdout
    assert mine.stderr == gnu.stderr.replace(b"ls:", b"pls:")


def test_jsonlines(tree):
    import json
    rows = [json.loads(x) for x in run("pls", "--jsonlines", tree / "dir1").stdout.splitlines()]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == ["hl_a", "hl_b", "hl_c", "ln_parent", "sub"]
    assert all({"path", "type", "size", "mode", "uid", "gid", "mtime"} <= r.keys() for r in rows)
