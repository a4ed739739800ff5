"""Drives one native walk and turns its batches into Python values.

The native core (``_core``) does the traversal in pthreads; this module is the
only place that talks to it, so option names and record layouts live here.
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False   # typing is not imported at run time: it costs the CLIs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Sequence

from . import _core
from .concurrency import Plan, plan_for

FIND, DU, CHMOD, CHOWN, RM, CP = _core.M_FIND, _core.M_DU, _core.M_CHMOD, _core.M_CHOWN, _core.M_RM, _core.M_CP
OUT_NONE, OUT_PATHS, OUT_RECORDS = _core.OUT_NONE, _core.OUT_PATHS, _core.OUT_RECORDS
ONE_TASK_PER_DIR = 1 << 30      # chunk size: a directory's entries are never split


class PathError(namedtuple("PathError", "path errno op extra", defaults=(0,))):
    """A failure on one path; the walk carried on.  ``op`` is an ``Op`` code.
    Fields: path (bytes), errno, op, extra."""
    __slots__ = ()


class Op:
    STAT, OPENDIR, READDIR, CHMOD, CHOWN = _core.OP_STAT, _core.OP_OPENDIR, _core.OP_READDIR, _core.OP_CHMOD, _core.OP_CHOWN
    UNLINK, RMDIR, MKDIR, OPEN, COPY = _core.OP_UNLINK, _core.OP_RMDIR, _core.OP_MKDIR, _core.OP_OPEN, _core.OP_COPY
    SYMLINK, UTIME, MKNOD, CREATE = _core.OP_SYMLINK, _core.OP_UTIME, _core.OP_MKNOD, _core.OP_CREATE
    SURPRISE = _core.OP_SURPRISE    # chmod: umask kept bits (errno = new mode, extra = expected)


class Stat(namedtuple("Stat", "mode nlink uid gid size blocks mtime_ns ino dev rdev")):
    """lstat fields as integers (mtime in ns)."""
    __slots__ = ()


class Record(namedtuple("Record", "path depth root type stat v1 v2 v3", defaults=(0, 0, 0))):
    """One entry as reported by the core: path (bytes), depth, root (operand
    index), type ('f', 'd', 'l', ...), stat (Stat, or None when not needed),
    v1/v2/v3 (du: bytes, 512-byte blocks, entries below)."""
    __slots__ = ()


class Walk:
    """Parameters of one native walk; ``opts`` are passed through verbatim."""

    def __init__(self, roots: Sequence[bytes], mode: int, out: int = OUT_NONE, opts: dict[str, Any] | None = None,
                 dests: Sequence[bytes] | None = None, threads: int | None = None,
                 max_inflight: int | None = None) -> None:
        self.roots = roots
        self.mode = mode
        self.out = out
        self.opts = opts or {}
        self.dests = dests
        self.threads = threads
        self.max_inflight = max_inflight

    def plan(self) -> Plan:
        return plan_for(list(self.roots) + list(self.dests or ()), self.threads, self.max_inflight)


def run(spec: Walk, on_error: Callable[[PathError], None] | None = None,
        on_progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Yield batches: ``bytes`` for OUT_PATHS, lists of Record for OUT_RECORDS."""
    w = _start(spec)
    records = spec.out == OUT_RECORDS
    try:
        while True:
            got = w.next(0.2)
            if got is None:
                return
            data, errors = got
            if on_error is not None:
                for e in errors:
                    on_error(PathError(*e))
            if on_progress is not None:
                on_progress(w.visited)
            if records:
                if data:
                    yield [Record(p, d, r, t, None if s is None else Stat(*s), a, b, c)
                           for p, d, r, t, s, a, b, c in data]
            elif data:
                yield data
    finally:
        w.close()


def collect_ls(spec: Walk, tree: Any, on_error: Callable[[PathError], None] | None = None,
               on_progress: Callable[[int], None] | None = None) -> None:
    """Run an OUT_RECORDS walk whose records go straight into ``tree`` (a
    ``_core.LsTree``): no Python object per entry; pls formats from the tree."""
    w = _start(spec)
    try:
        while True:
            errors = w.collect(tree, 0.2)
            if errors is None:
                return
            if on_error is not None:
                for e in errors:
                    on_error(PathError(*e))
            if on_progress is not None:
                on_progress(w.visited)
    finally:
        w.close()


def _start(spec: Walk) -> Any:
    plan = spec.plan()
    # Unlinks in one directory serialize on its inode lock (in the kernel, and
    # on a NAS in the server), so splitting a directory between threads only
    # parks them on that lock -- with a LIFO of tasks, all on the same
    # directory.  prm reads a whole directory, then empties it on one thread;
    # the parallelism comes from many directories at once.
    chunk = ONE_TASK_PER_DIR if spec.mode == RM else plan.chunk
    if spec.mode == FIND and not spec.opts.get("need_stat"):
        # names and d_type decide: an entry costs no request, so handing chunks
        # of a listing to other threads buys nothing and costs a wake-up each
        # (on a NAS, 6 chunk tasks per 100-entry directory, popped before the
        # directories waiting to be listed, halved the requests in flight)
        chunk = 0
    opts = dict(spec.opts, mode=spec.mode, out=spec.out, threads=plan.threads,
                max_inflight=plan.max_inflight, chunk=chunk)
    return _core.start(list(spec.roots), None if spec.dests is None else list(spec.dests), opts)


def drain(spec: Walk, on_error: Callable[[PathError], None] | None = None,
          on_progress: Callable[[int], None] | None = None) -> None:
    """Run a walk whose output is not needed (mutations)."""
    for _ in run(spec, on_error, on_progress):
        pass
