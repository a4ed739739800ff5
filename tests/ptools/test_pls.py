"""pls against GNU ls (LC_ALL=C, not a terminal): byte-identical output."""
import os

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


@pytest.mark.parametrize("flags", [[], ["-R"], ["-lR"]], ids=lambda f: " ".join(f) or "default")
def test_overlapping_operands(tree, flags):
    """An operand named twice, or one inside another under -R, is listed in
    full each time, and its entries only once per listing."""
    args = [f"{tree}/", tree / "dir1", tree, tree / "dir1" / "sub", tree / "dir1"]
    gnu = run("ls", *flags, *args)
    mine = run("pls", *flags, *args)
    assert mine.returncode == gnu.returncode == 0
    assert mine.stdout == gnu.stdout
    jl = run("pls", "--jsonlines", *flags, tree / "dir1", tree / "dir1").stdout.splitlines()
    assert len(jl) == 2 * len(set(jl)) and set(jl)


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


def test_json_rows_match_ls_entries(tree):
    """--json/--jsonlines stream the entries ls would list (dot-files and
    everything below a dot-directory only with -a/-A), sorted with --sort."""
    import json
    for flags in ([], ["-a"], ["-A"]):
        shown = set()
        for top, subdirs, names in os.walk(os.fsencode(tree)):
            if not flags:
                subdirs[:] = [d for d in subdirs if not d.startswith(b".")]
                names = [n for n in names if not n.startswith(b".")]
            shown.update(os.path.join(top, n) for n in subdirs + names)
        rows = [json.loads(x) for x in run("pls", "-R", "--jsonlines", *flags, tree).stdout.splitlines()]
        got = [os.fsencode(r["path"]) for r in rows]
        assert len(got) == len(set(got))
        assert set(got) == shown
        arr = json.loads(run("pls", "-R", "--json", "--sort", *flags, tree).stdout)
        assert [os.fsencode(r["path"]) for r in arr] == sorted(got)


def test_long_columns_like_ls(tmp_path):
    """-l column widths and fields against GNU ls: device numbers (major and
    minor aligned in columns of their own), set-id and sticky bits, old and
    future times, big sizes, numeric owners, odd names and link targets."""
    import os
    import time as _time
    d = tmp_path / "cols"
    d.mkdir()
    devices = 0
    for name, kind, dev in (("tty7", "c", (136, 7)), ("null", "c", (1, 3)), ("nvme", "b", (259, 12)),
                            ("wide", "c", (4095, 1048575))):
        try:
            os.mknod(d / name, 0o620 | (0o020000 if kind == "c" else 0o060000), os.makedev(*dev))
            devices += 1
        except PermissionError:
            pass
    (d / "setuid-noexec").write_text("x")
    os.chmod(d / "setuid-noexec", 0o4644)
    (d / "sticky").mkdir()
    os.chmod(d / "sticky", 0o1777)
    future = _time.time() + 86400
    os.utime(d / "sticky", (future, future))
    with open(d / "huge-sparse", "wb") as f:
        f.truncate(10 ** 12)
    old = _time.time() - 400 * 86400
    os.utime(d / "huge-sparse", (old, old))
    (d / b"odd\nname\xfe".decode("utf-8", "surrogateescape")).write_text("")
    os.symlink(b"target \xff", os.path.join(os.fsencode(d), b"link"))
    if os.geteuid() == 0:
        os.chown(d / "setuid-noexec", 123456789, 4242, follow_symlinks=False)
    for args in (["-l", d], ["-la", d], ["-l", d / "tty7", d / "huge-sparse", d / "sticky"]):
        if devices == 0 and d / "tty7" in args:
            continue
        gnu = run("ls", *args)
        mine = run("pls", *args)
        assert (mine.returncode, mine.stderr) == (gnu.returncode, gnu.stderr)
        assert mine.stdout == gnu.stdout
