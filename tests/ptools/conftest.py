"""Awkward trees and helpers to run a GNU tool and its p-command twin side by side."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ENV = dict(os.environ, LC_ALL="C", TZ="UTC")
DAY = 86400


def run(*argv: str | bytes, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run a command (a p-command by bare name resolves to the venv's script)."""
    args = [os.fsencode(a) for a in argv]
    name = args[0].decode()
    if name in ("pls", "pfind", "pdu", "pchmod", "pchown", "prm", "pcp"):
        args[0] = os.fsencode(BIN / name)
    cp = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, timeout=120)
    if check:
        assert cp.returncode == 0, cp.stderr
    return cp


def build_tree(root: Path, big_entries: int = 3000) -> Path:
    """Hard links, sparse files, every kind of symlink, odd names, deep nesting, a big directory."""
    root.mkdir(parents=True)
    b = os.fsencode(root)
    (root / "plain.txt").write_text("hello\n")
    (root / "Upper.TXT").write_text("x" * 3000)
    (root / ".hidden").write_text("h")
    (root / "empty").write_bytes(b"")
    (root / "dir1" / "sub").mkdir(parents=True)
    (root / "dir1" / "sub" / "data.bin").write_bytes(os.urandom(70000))
    (root / "emptydir").mkdir()
    (root / ".hiddendir").mkdir()
    (root / ".hiddendir" / "inside").write_text("i")
    # hard links (same directory: du attributes them identically whatever the order)
    (root / "dir1" / "hl_a").write_bytes(b"y" * 9000)
    os.link(root / "dir1" / "hl_a", root / "dir1" / "hl_b")
    os.link(root / "dir1" / "hl_a", root / "dir1" / "hl_c")
    # sparse file: 20 MiB apparent, a few KiB allocated
    with open(root / "sparse.img", "wb") as f:
        f.seek(10 * 1024 * 1024)
        f.write(b"data" * 1024)
        f.truncate(20 * 1024 * 1024)
    # symlinks of every kind
    os.symlink("plain.txt", root / "ln_file")
    os.symlink("dir1", root / "ln_dir")
    os.symlink("nowhere", root / "ln_dangling")
    os.symlink("/etc", root / "ln_abs_outside")
    os.symlink("../../..", root / "dir1" / "sub" / "ln_rel_outside")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("self", root / "self")
    os.symlink("..", root / "dir1" / "ln_parent")
    os.symlink(".", root / "ln_dot")
    # odd names
    odd = root / "odd"
    odd.mkdir()
    for name in [b"new\nline", b"sp ace", b"\xff\xfe-not-utf8", b"-dash", b"star*", b"qu'ote", b"tab\there",
                 "ünïcødé".encode(), b"back\\slash", b"dq\"x"]:
        with open(os.path.join(os.fsencode(odd), name), "wb") as f:
            f.write(name)
    os.mkdir(os.path.join(os.fsencode(odd), b"dir\nwith\xffbad"))
    with open(os.path.join(os.fsencode(odd), b"dir\nwith\xffbad", b"f"), "wb") as f:
        f.write(b"z")
    os.mkfifo(root / "fifo")
    # 40-deep nesting
    deep = root / "deep"
    p = deep
    for i in range(40):
        p = p / f"level{i:02d}"
    p.mkdir(parents=True)
    (p / "bottom.txt").write_text("bottom")
    # a directory with thousands of entries
    big = root / "big"
    big.mkdir()
    for i in range(big_entries):
        with open(os.path.join(os.fsencode(big), b"f%04d" % i), "wb") as f:
            if i % 7 == 0:
                f.write(b"k" * (i * 3))
    # timestamps for -mtime / -newer
    now = time.time()
    os.utime(root / "plain.txt", (now - 10 * DAY, now - 10 * DAY))
    os.utime(root / "Upper.TXT", (now - 3 * DAY - 3600, now - 3 * DAY - 3600))
    os.utime(root / "dir1" / "sub" / "data.bin", (now - 400 * DAY, now - 400 * DAY))
    # one entry owned by nobody
    os.lchown(root / "empty", 65534, 65534)
    del b
    return root


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("ptools") / "tree")


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory) -> Path:
    """The same awkward content with a smaller big directory: mutation tests copy it twice each."""
    return build_tree(tmp_path_factory.mktemp("ptools_small") / "tree", big_entries=400)


@pytest.fixture
def twin(small_tree, tmp_path):
    """Two identical copies of the tree: one for GNU, one for the p-command."""
    a, b = tmp_path / "gnu", tmp_path / "p"
    for dst in (a, b):
        subprocess.run(["cp", "-a", str(small_tree), str(dst)], check=True)
    yield a, b
    for dst in (a, b):
        shutil.rmtree(dst, ignore_errors=True)


def snapshot(root: Path, *, times: bool = False, content: bool = True) -> dict[bytes, tuple]:
    """Relative path -> comparable attributes of every entry (symlinks not followed)."""
    out: dict[bytes, tuple] = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in [b""] if dirpath == broot else []:
            pass
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, broot)
            row: tuple = (st.st_mode, st.st_uid, st.st_gid)
            if os.path.islink(full):
                row += (os.readlink(full),)
            elif os.path.isfile(full) and content:
                with open(full, "rb") as f:
                    row += (st.st_size, hash(f.read()))
            if times and not os.path.isdir(full):
                row += (st.st_mtime_ns,)
            out[rel] = row
    st = os.lstat(broot)
    out[b"."] = (st.st_mode, st.st_uid, st.st_gid)
    return out


def gnu_msg(stderr: bytes, gnu: str, mine: str) -> bytes:
    """GNU stderr rewritten as the p-command would say it."""
    return stderr.replace(gnu.encode() + b":", mine.encode() + b":")
