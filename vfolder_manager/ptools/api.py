"""Blocking Python API for other gpuhub code (the storage proxy's usage scans
and copies).  Each call runs one parallel native walk; wrap it in an executor
from async code.  Errors on individual paths never abort a walk: they are
passed to ``on_error`` (default: ignored) so that a scan of a huge tree with
one unreadable corner still returns the rest.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator, NamedTuple

from . import engine
from .engine import OUT_NONE, OUT_RECORDS, PathError, Record, Walk
from .modes import compile_mode

OnError = Callable[[PathError], None] | None
Path = str | bytes | os.PathLike


class DiskUsage(NamedTuple):
    bytes: int     # apparent size (sum of st_size), hard links once
    blocks: int    # allocated 512-byte blocks (sparse files count what they use)
    files: int     # entries below the root (files, dirs, links), hard links once


def _b(p: Path) -> bytes:
    return os.fsencode(p)


def walk(top: Path, *, maxdepth: int | None = None, stat: bool = True, threads: int | None = None,
         max_inflight: int | None = None, on_error: OnError = None) -> Iterator[Record]:
    """Every entry below and including ``top`` (symlinks not followed), in parallel order."""
    spec = Walk([_b(top)], engine.FIND, OUT_RECORDS,
                {"need_stat": int(stat), "maxdepth": -1 if maxdepth is None else maxdepth},
                threads=threads, max_inflight=max_inflight)
    for batch in engine.run(spec, on_error):
        yield from batch


def du(path: Path, *, threads: int | None = None, max_inflight: int | None = None,
       on_error: OnError = None) -> DiskUsage:
    spec = Walk([_b(path)], engine.DU, OUT_RECORDS, threads=threads, max_inflight=max_inflight)
    result = DiskUsage(0, 0, 0)
    for batch in engine.run(spec, on_error):
        for r in batch:
            if r.depth == 0:
                result = DiskUsage(r.v1, r.v2, r.v3)
    return result


def _collect(spec: Walk, on_error: OnError) -> list[PathError]:
    errors: list[PathError] = []

    def note(e: PathError) -> None:
        errors.append(e)
        if on_error is not None:
            on_error(e)
    engine.drain(spec, note)
    return errors


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def chmod_tree(path: Path, mode: str, *, threads: int | None = None, on_error: OnError = None) -> list[PathError]:
    """``chmod -R mode path``; returns the per-path errors."""
    spec = Walk([_b(path)], engine.CHMOD, OUT_NONE,
                {"changes": [tuple(c) for c in compile_mode(mode)], "umask": _umask(), "follow_roots": 1},
                threads=threads)
    return _collect(spec, on_error)


def chown_tree(path: Path, uid: int = -1, gid: int = -1, *, threads: int | None = None,
               on_error: OnError = None) -> list[PathError]:
    """``chown -R uid:gid path`` (symlinks themselves are changed, never followed)."""
    spec = Walk([_b(path)], engine.CHOWN, OUT_NONE, {"c_uid": uid, "c_gid": gid}, threads=threads)
    return _collect(spec, on_error)


def rmtree(path: Path, *, threads: int | None = None, on_error: OnError = None) -> list[PathError]:
    """``rm -rf path``: directories are emptied in parallel, each by one thread."""
    spec = Walk([_b(path)], engine.RM, OUT_NONE, threads=threads)
    return _collect(spec, on_error)


def copytree(src: Path, dst: Path, *, preserve: bool = False, threads: int | None = None,
             on_error: OnError = None) -> list[PathError]:
    """``cp -r [-p] src dst`` where dst is the new tree's path (not its parent)."""
    spec = Walk([_b(src)], engine.CP, OUT_NONE, {"preserve": int(preserve), "umask": _umask()},
                dests=[_b(dst)], threads=threads)
    return _collect(spec, on_error)
