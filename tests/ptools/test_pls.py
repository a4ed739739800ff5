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


def test_native_ls_long_matches_python_formatter():
    """pls prints rows with _core.ls_long; formatting.ls_long_lines is the reference."""
    import os
    import time as _time

    from vfolder_manager.ptools import _core
    from vfolder_manager.ptools.engine import Stat
    from vfolder_manager.ptools.formatting import ls_long_lines
    now = _time.time()
    ns = 1_000_000_000
    entries = [
        (b"plain", Stat(0o100644, 1, 0, 0, 12, 8, int(now - 60) * ns, 1, 1, 0), None),
        (b"setuid-noexec", Stat(0o104644, 3, 0, 0, 5, 8, int(now - 400 * 86400) * ns, 2, 1, 0), None),
        (b"sticky", Stat(0o41777, 12, 65534, 65534, 4096, 8, (int(now) + 86400) * ns, 3, 1, 0), None),
        (b"dev", Stat(0o20660, 1, 4242, 4343, 0, 0, int(now - 10) * ns, 4, 1, os.makedev(136, 7)), None),
        (b"link", Stat(0o120777, 1, 0, 0, 6, 0, -5 * ns - 3, 5, 1, 0), b"target \xff"),
        (b"odd\nname\xfe", Stat(0o106755, 1234567, 1, 1, 10 ** 12, 8, 0, 6, 1, 0), None),
    ]
    extra = [Stat(0o40755, 1, 123456789, 0, 99999999999999, 8, 0, 7, 1, 0)]
    for ex in ((), extra):
        want = b"".join(line + b"\n" for line in ls_long_lines(entries, now, ex))
        assert _core.ls_long(entries, now, ex) == want
