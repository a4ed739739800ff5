"""Console entry points: pls pfind pdu pchmod pchown prm pcp.

Each parses GNU-compatible arguments, runs one native walk (engine.run) and
prints results and GNU-worded errors.  Exit status: 0 on success, 1 when any
path failed (2 for pls when a command-line argument is missing, as ls does).
"""
from __future__ import annotations

import os
import stat
import sys
TYPE_CHECKING = False   # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Callable, Iterable, Sequence

from . import _core, engine
from .engine import CHMOD, CHOWN, CP, DU, FIND, OUT_NONE, OUT_PATHS, OUT_RECORDS, Op, PathError, Record, Walk
from .findexpr import FindUsageError
from .findexpr import parse as parse_find
from .formatting import du_size, json_row, mode_string, quote
from .modes import InvalidMode, compile_mode
from .owners import InvalidOwner, parse_owner
from .progress import Progress


class Reporter:
    """Prints ``prog: message`` on stderr and remembers that something failed."""

    def __init__(self, prog: str, wording: dict[int, str] | None = None, quiet: bool = False) -> None:
        self.prog = prog
        self.wording = wording or {}
        self.quiet = quiet
        self.status = 0

    def error(self, msg: str, status: int = 1) -> None:
        if not self.quiet:
            sys.stderr.write(f"{self.prog}: {msg}\n")
        self.status = max(self.status, status)

    def path_error(self, e: PathError) -> None:
        if e.op == Op.SURPRISE:
            new, naive = mode_string(e.errno)[1:], mode_string(e.extra)[1:]
            self.error(f"{quote(e.path, always=False)}: new permissions are {new}, not {naive}")
            return
        what = self.wording.get(e.op, "")
        prefix = f"{what} {quote(e.path)}" if what else quote(e.path)
        self.error(f"{prefix}: {os.strerror(e.errno)}")


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def _positive(text: str) -> int:
    import argparse
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("parallelism")
    g.add_argument("--threads", type=_positive, metavar="N",
                   help="worker threads (default: 64 on NFS/FUSE/Lustre, core count on local disks)")
    g.add_argument("--max-inflight", type=_positive, metavar="N",
                   help="at most N filesystem calls in flight, to spare a shared NAS")
    g.add_argument("--progress", action="store_true", help="live entry count on a terminal")


def _run(walk: Walk, rep: Reporter, progress: Progress) -> Iterable:
    return engine.run(walk, rep.path_error, progress.update)


class UsageError(ValueError):
    """A bad command line: printed like GNU's (``prog: msg`` and a ``Try
    'prog --help'`` line), exit status 1."""


class _HelpRequested(Exception):
    pass


def _guard(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Shared exit handling: usage errors and --help of the getopt-style
    commands, and broken pipes (| head) and ^C, which end quietly like GNU tools."""
    prog = main.__name__.removesuffix("_main")

    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(sys.argv[1:] if argv is None else argv)
        except UsageError as e:
            sys.stderr.write(f"{prog}: {e}\nTry '{prog} --help' for more information.\n")
            return 1
        except _HelpRequested:
            print("usage: " + (main.__doc__ or ""))
            return 0
        except BrokenPipeError:
            try:
                sys.stdout = None  # type: ignore[assignment]
            finally:
                os._exit(141)
        except KeyboardInterrupt:
            return 130

    wrapper.__name__ = main.__name__
    wrapper.__doc__ = main.__doc__
    return wrapper


# ---------------------------------------------------------------- pfind

def _emit_records(out, batches: Iterable[list[Record]], as_json: bool, sort: bool) -> None:
    first = True
    if as_json:
        out.write(b"[")

    def put(rows: list[Record]) -> None:
        nonlocal first
        for r in rows:
            line = json_row(r).encode()
            if as_json:
                out.write((b"\n" if first else b",\n") + line)
            else:
                out.write(line + b"\n")
            first = False

    if sort:
        put(sorted((r for b in batches for r in b), key=lambda r: r.path))
    else:
        for b in batches:
            put(b)
            out.flush()
    if as_json:
        out.write(b"\n]\n")


@_guard
def pfind_main(argv: list[str]) -> int:
    """pfind PATH... [-type c] [-name P] [-iname P] [-size N] [-mtime N] [-newer F] [-user U]
    [-maxdepth N] [-mindepth N] [-print|-print0] [--json|--jsonlines] [--sort]
    [--threads N] [--max-inflight N] [--progress]"""
    if argv and argv[0] in ("--help", "-help"):
        print("usage: " + (pfind_main.__doc__ or ""))
        return 0
    rep = Reporter("pfind")
    try:
        spec = parse_find(argv)
    except FindUsageError as e:
        rep.error(str(e))
        return 1
    out = sys.stdout.buffer
    progress = Progress("pfind", spec.progress)
    if spec.needs_records:
        spec.opts["need_stat"] = 1
    walk = Walk(spec.paths, FIND, OUT_RECORDS if spec.needs_records else OUT_PATHS, spec.opts,
                threads=spec.threads, max_inflight=spec.max_inflight)
    batches = _run(walk, rep, progress)
    if spec.needs_records:
        _emit_records(out, batches, spec.json, spec.sort)
    elif spec.sort:
        items = b"".join(batches).split(spec.sep)[:-1]
        items.sort()
        if items:
            out.write(spec.sep.join(items) + spec.sep)
    else:
        for data in batches:
            out.write(data)
    out.flush()
    progress.done()
    return rep.status


# ---------------------------------------------------------------- pdu

DU_WORDING = {Op.STAT: "cannot access", Op.OPENDIR: "cannot read directory", Op.READDIR: "cannot read directory"}


def _unique_roots(paths: Sequence[bytes]) -> list[bytes]:
    """du counts an argument named twice (or via another path) once."""
    seen: set[tuple[int, int]] = set()
    out = []
    for p in paths:
        try:
            st = os.lstat(p)
        except OSError:
            out.append(p)
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out


@_guard
def pdu_main(argv: list[str]) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="pdu", add_help=False, description="Parallel du.")
    p.add_argument("--help", action="help")
    p.add_argument("-s", "--summarize", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-b", "--bytes", action="store_true", help="--apparent-size --block-size=1")
    p.add_argument("-h", "--human-readable", action="store_true")
    p.add_argument("--apparent-size", action="store_true")
    p.add_argument("-0", "--null", action="store_true")
    p.add_argument("-c", "--total", action="store_true")
    p.add_argument("-k", action="store_true", help="1024-byte blocks (the default)")
    p.add_argument("-d", "--max-depth", type=int, metavar="N")
    _common(p)
    p.add_argument("paths", nargs="*", default=["."])
    a = p.parse_args(argv)
    if a.summarize and a.all:
        p.error("cannot both summarize and show all entries")
    rep = Reporter("pdu", DU_WORDING)
    progress = Progress("pdu", a.progress)
    roots = _unique_roots([os.fsencode(x) for x in a.paths])
    apparent = a.bytes or a.apparent_size
    bs = 1 if a.bytes else 1024
    maxd = 0 if a.summarize else a.max_depth
    end = b"\0" if a.null else b"\n"
    out = sys.stdout.buffer
    # the core only reports the directories that are printed (-s: the operands alone)
    opts = {"du_all": int(a.all), "du_maxdepth": -1 if maxd is None or maxd < 0 else maxd}
    walk = Walk(roots, DU, OUT_RECORDS, opts, threads=a.threads, max_inflight=a.max_inflight)

    def line(r: Record) -> bytes:
        n = r.v1 if apparent else r.v2 * 512
        return du_size(n, bs, a.human_readable).encode() + b"\t" + r.path + end

    total = 0
    pending: dict[int, list[bytes]] = {}
    for batch in _run(walk, rep, progress):
        lines = []
        for r in batch:
            if r.depth == 0:
                total += r.v1 if apparent else r.v2 * 512
            if r.depth and (maxd is not None and r.depth > maxd):
                continue
            if len(roots) == 1:
                lines.append(line(r))
            else:
                pending.setdefault(r.root, []).append(line(r))
        if lines:
            out.write(b"".join(lines))
            out.flush()
    for i in sorted(pending):       # several arguments: keep argument order
        out.write(b"".join(pending[i]))
    if a.total:
        out.write(du_size(total, bs, a.human_readable).encode() + b"\ttotal" + end)
    out.flush()
    progress.done()
    return rep.status


# ---------------------------------------------------------------- pls

LS_WORDING = {Op.STAT: "cannot access", Op.OPENDIR: "cannot open directory", Op.READDIR: "reading directory"}


def _readlink(path: bytes) -> bytes:
    try:
        return os.readlink(path)
    except OSError:
        return b""


def _disjoint_groups(dirs: list[bytes], recursive: bool) -> tuple[list[list[bytes]], list[int]]:
    """Split ls operands into walks that cannot report the same path: equal
    operands, and with -R an operand below another one, go to different groups
    (one group, i.e. one walk, in the usual case).  Returns the groups and,
    for each operand, the index of its group."""
    def key(d: bytes) -> bytes:
        return d.rstrip(b"/") or b"/"

    def clash(x: bytes, y: bytes) -> bool:
        if x == y:
            return True
        if not recursive:
            return False
        for top, low in ((x, y), (y, x)):
            if low.startswith(top if top.endswith(b"/") else top + b"/"):
                return True
        return False

    groups: list[list[bytes]] = []
    keys: list[list[bytes]] = []
    owner: list[int] = []
    for d in dirs:
        k = key(d)
        for i, ks in enumerate(keys):
            if not any(clash(k, other) for other in ks):
                break
        else:
            i = len(groups)
            groups.append([])
            keys.append([])
        groups[i].append(d)
        keys[i].append(k)
        owner.append(i)
    return groups, owner


@_guard
def pls_main(argv: list[str]) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="pls", add_help=False, description="Parallel ls (sorted in byte order, like LC_ALL=C ls).")
    p.add_argument("--help", action="help")
    p.add_argument("-l", action="store_true", dest="long")
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-A", "--almost-all", action="store_true")
    p.add_argument("-d", "--directory", action="store_true")
    p.add_argument("-1", action="store_true", dest="one", help="one per line (always, output is not columnated)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--jsonlines", action="store_true")
    p.add_argument("--sort", action="store_true", help="--json/--jsonlines rows by path (text output is always sorted)")
    _common(p)
    p.add_argument("paths", nargs="*", default=["."])
    a = p.parse_args(argv)
    rep = Reporter("pls", LS_WORDING)
    progress = Progress("pls", a.progress)
    import io
    out = io.BufferedWriter(sys.stdout.buffer.raw if hasattr(sys.stdout.buffer, "raw") else sys.stdout.buffer,
                            1 << 16)  # many small lines: never one syscall each
    as_json = a.json or a.jsonlines
    need_stat = a.long or as_json
    import time
    now = time.time()

    def to_stat(st: os.stat_result) -> engine.Stat:
        return engine.Stat(st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_blocks,
                           st.st_mtime_ns, st.st_ino, st.st_dev, st.st_rdev)

    def type_of(mode: int) -> str:
        return {stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFREG: "f", stat.S_IFIFO: "p",
                stat.S_IFSOCK: "s", stat.S_IFCHR: "c", stat.S_IFBLK: "b"}.get(stat.S_IFMT(mode), "?")

    files: list[tuple[bytes, os.stat_result | None]] = []
    dirs: list[bytes] = []
    operand_stats: list[engine.Stat] = []     # ls sizes its columns over all operands
    for name in (os.fsencode(x) for x in a.paths):
        try:
            st = os.lstat(name)
            if stat.S_ISLNK(st.st_mode) and not a.long and not a.directory:
                try:
                    target_st = os.stat(name)
                    if stat.S_ISDIR(target_st.st_mode):
                        dirs.append(name)
                        operand_stats.append(to_stat(target_st))
                        continue
                except OSError:
                    pass
        except OSError as e:
            rep.error(f"cannot access {quote(name)}: {os.strerror(e.errno or 0)}", 2)
            continue
        if stat.S_ISDIR(st.st_mode) and not a.directory:
            dirs.append(name)
            operand_stats.append(to_stat(st))
        else:
            files.append((name, st))
    files.sort()
    dirs.sort()
    opts = {"mindepth": 1, "maxdepth": -1 if a.recursive else 1, "need_stat": int(need_stat), "follow_roots": 1}
    # entries are grouped by their parent's path, so operands whose walks would
    # report the same paths (x and x, or x/ and x/a with -R) go to separate walks
    groups, owner = _disjoint_groups(dirs, a.recursive)

    if as_json:
        # rows stream in walk order like pfind's (--sort: by path); the file
        # operands first; no rows for "." and ".."
        def batches() -> Iterable[list[Record]]:
            if files:
                yield [Record(n, 0, 0, type_of(st.st_mode), to_stat(st)) for n, st in files]
            for group in groups:
                walk = Walk(group, FIND, OUT_RECORDS, opts, threads=a.threads, max_inflight=a.max_inflight)
                for batch in _run(walk, rep, progress):
                    if not (a.all or a.almost_all):     # dot-files, and with -R all below a dot-directory
                        batch = [r for r in batch if b"/." not in b"/" + r.path[len(group[r.root]):].lstrip(b"/")]
                    if batch:
                        yield batch
        _emit_records(out, batches(), a.json, a.sort)
        out.flush()
        progress.done()
        return rep.status

    def listing(rows: list[tuple[bytes, bytes, engine.Stat | None, str]], with_total: bool,
                extra: Sequence[engine.Stat] = ()) -> None:
        """rows: (display name, full path, stat, type)."""
        if not a.long:
            for disp, *_ in rows:
                out.write(disp + b"\n")
            return
        if with_total:
            blocks = sum(st[5] for _, _, st, _ in rows if st)   # st_blocks
            out.write(f"total {-(-blocks // 2)}\n".encode())
        entries = [(disp, st, None if typ != "l" else _readlink(full)) for disp, full, st, typ in rows]
        out.write(_core.ls_long(entries, now, extra))

    printed = False
    if files:
        listing([(n, n, to_stat(st) if st else None, type_of(st.st_mode)) for n, st in files], False, operand_stats)
        printed = True

    if dirs:
        # the records stay in the core (_core.LsTree): grouped by directory,
        # sorted in byte order and formatted there, one block of bytes per directory
        trees: list = []
        for group in groups:
            tree = _core.LsTree(group)
            engine.collect_ls(Walk(group, FIND, OUT_RECORDS, opts, threads=a.threads, max_inflight=a.max_inflight),
                              tree, rep.path_error, progress.update)
            trees.append(tree)
        headers = a.recursive or len(a.paths) > 1
        show_all = a.all or a.almost_all
        for operand, g in zip(dirs, owner):
            tree = trees[g]
            todo = [operand]            # depth first, in listing order (no recursion limit)
            while todo:
                d = todo.pop()
                if headers:
                    out.write((b"\n" if printed else b"") + d + b":\n")
                printed = True
                data, subdirs = tree.block(d, a.long, a.all, show_all, a.recursive, now)
                out.write(data)
                todo.extend(reversed(subdirs))
    out.flush()
    progress.done()
    return rep.status


# ---------------------------------------------------------------- pchmod / pchown

def _split_args(argv: list[str], flags: str, longs: dict[str, str], valued: set[str],
                operand_ok: Callable[[str], bool] = lambda s: False) -> tuple[dict[str, object], list[str]]:
    """getopt-like scan that lets an operand look like an option (chmod -w FILE)."""
    opts: dict[str, object] = {}
    operands: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            operands.extend(argv[i + 1:])
            break
        if a.startswith("--"):
            key, eq, val = a.partition("=")
            if key in valued:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"option '{key}' requires an argument")
                    val = argv[i]
                opts[key] = val
            elif key in longs:
                opts[longs[key]] = True
            else:
                raise UsageError(f"unrecognized option '{a}'")
        elif a.startswith("-") and len(a) > 1:
            if all(c in flags for c in a[1:]):
                for c in a[1:]:
                    opts[c] = True
            elif operand_ok(a):
                operands.append(a)
            else:
                bad = next(c for c in a[1:] if c not in flags)
                raise UsageError(f"invalid option -- '{bad}'")
        else:
            operands.append(a)
        i += 1
    return opts, operands


def _getopt(argv: list[str], flags: str, longs: dict[str, str],
            operand_ok: Callable[[str], bool] = lambda s: False
            ) -> tuple[dict[str, object], list[str], int | None, int | None, bool]:
    """The command line of pchmod, pchown, prm and pcp: --help, their flags, and
    the knobs all p-commands take.  Returns (opts, operands, threads,
    max_inflight, progress); raises UsageError."""
    if "--help" in argv:
        raise _HelpRequested
    opts, operands = _split_args(argv, flags, dict(longs, **{"--progress": "--progress"}),
                                 {"--threads", "--max-inflight"}, operand_ok)

    def num(k: str) -> int | None:
        v = opts.get(k)
        if v is None:
            return None
        try:
            n = int(str(v))
        except ValueError as e:
            raise UsageError(str(e)) from None
        if n < 1:
            raise UsageError(f"invalid argument '{v}' for '{k}'")
        return n
    return opts, operands, num("--threads"), num("--max-inflight"), bool(opts.get("--progress"))


CHMOD_WORDING = {Op.STAT: "cannot access", Op.OPENDIR: "cannot read directory", Op.READDIR: "cannot read directory",
                 Op.CHMOD: "changing permissions of"}
CHOWN_WORDING = {Op.STAT: "cannot access", Op.OPENDIR: "cannot read directory", Op.READDIR: "cannot read directory",
                 Op.CHOWN: "changing ownership of"}


@_guard
def pchmod_main(argv: list[str]) -> int:
    """pchmod [-R] [-f] MODE FILE... (MODE: octal or GNU symbolic like u+rwX,go-w)"""
    opts, operands, threads, inflight, prog = _getopt(
        argv, "Rfv", {"--recursive": "R", "--silent": "f", "--quiet": "f", "--verbose": "v"},
        lambda s: all(c in "rwxXstugoa=+-,01234567" for c in s[1:]))
    if len(operands) < 2:
        raise UsageError("missing operand" if not operands else f"missing operand after '{operands[0]}'")
    try:
        changes = compile_mode(operands[0])
    except InvalidMode:
        raise UsageError(f"invalid mode: '{operands[0]}'") from None
    rep = Reporter("pchmod", CHMOD_WORDING, quiet=bool(opts.get("f")))
    progress = Progress("pchmod", prog)
    walk = Walk([os.fsencode(f) for f in operands[1:]], CHMOD, OUT_NONE,
                {"changes": [tuple(c) for c in changes], "umask": _umask(), "follow_roots": 1,
                 "diagnose": int(operands[0].startswith("-")),   # like chmod: only "chmod -w" warns
                 "maxdepth": -1 if opts.get("R") else 0}, threads=threads, max_inflight=inflight)
    engine.drain(walk, rep.path_error, progress.update)
    progress.done()
    return rep.status


@_guard
def pchown_main(argv: list[str]) -> int:
    """pchown [-R] [-h] [-f] OWNER[:GROUP] FILE..."""
    opts, operands, threads, inflight, prog = _getopt(
        argv, "Rhfv", {"--recursive": "R", "--no-dereference": "h", "--silent": "f", "--quiet": "f", "--verbose": "v"})
    if len(operands) < 2:
        raise UsageError("missing operand" if not operands else f"missing operand after '{operands[0]}'")
    try:
        uid, gid = parse_owner(operands[0])
    except InvalidOwner as e:
        sys.stderr.write(f"pchown: {e}\n")
        return 1
    recursive = bool(opts.get("R"))
    rep = Reporter("pchown", CHOWN_WORDING, quiet=bool(opts.get("f")))
    progress = Progress("pchown", prog)
    # like chown: -R never dereferences (-P); without -R the argument is followed unless -h
    walk = Walk([os.fsencode(f) for f in operands[1:]], CHOWN, OUT_NONE,
                {"c_uid": uid, "c_gid": gid, "follow_roots": int(not recursive and not opts.get("h")),
                 "maxdepth": -1 if recursive else 0}, threads=threads, max_inflight=inflight)
    engine.drain(walk, rep.path_error, progress.update)
    progress.done()
    return rep.status


# ---------------------------------------------------------------- prm

RM_WORDING = {Op.STAT: "cannot remove", Op.OPENDIR: "cannot remove", Op.READDIR: "cannot remove",
              Op.UNLINK: "cannot remove", Op.RMDIR: "cannot remove"}


@_guard
def prm_main(argv: list[str]) -> int:
    """prm [-r] [-f] [-v] FILE...  (directories are emptied in parallel, one thread per directory)"""
    opts, operands, threads, inflight, prog = _getopt(
        argv, "rRfvd", {"--recursive": "r", "--force": "f", "--verbose": "v", "--dir": "d",
                        "--no-preserve-root": "--no-preserve-root"})
    recursive = bool(opts.get("r") or opts.get("R"))
    force, verbose = bool(opts.get("f")), bool(opts.get("v"))
    if not operands:
        if force:
            return 0
        raise UsageError("missing operand")
    rep = Reporter("prm", RM_WORDING)
    roots: list[bytes] = []
    for name in (os.fsencode(x) for x in operands):
        base = os.path.basename(name.rstrip(b"/"))
        if base in (b".", b".."):
            rep.error(f"refusing to remove '.' or '..' directory: skipping {quote(name)}")
            continue
        try:
            st = os.lstat(name)
        except OSError as e:
            if not (force and e.errno == 2):
                rep.error(f"cannot remove {quote(name)}: {os.strerror(e.errno or 0)}")
            continue
        if stat.S_ISDIR(st.st_mode):
            if recursive and os.path.realpath(name) == b"/" and not opts.get("--no-preserve-root"):
                rep.error("it is dangerous to operate recursively on '/'")
                rep.error("use --no-preserve-root to override this failsafe")
                continue
            if not recursive:
                if opts.get("d"):
                    try:
                        os.rmdir(name)
                        if verbose:
                            sys.stdout.write(f"removed directory {quote(name)}\n")
                    except OSError as e:
                        rep.error(f"cannot remove {quote(name)}: {os.strerror(e.errno or 0)}")
                else:
                    rep.error(f"cannot remove {quote(name)}: Is a directory")
                continue
        roots.append(name)
    progress = Progress("prm", prog)
    walk = Walk(roots, engine.RM, OUT_RECORDS if verbose else OUT_NONE, {"verbose": int(verbose)},
                threads=threads, max_inflight=inflight)
    for batch in _run(walk, rep, progress):
        for r in batch:
            kind = "removed directory" if r.type == "d" else "removed"
            sys.stdout.write(f"{kind} {quote(r.path)}\n")
    sys.stdout.flush()
    progress.done()
    return rep.status


# ---------------------------------------------------------------- pcp

CP_WORDING = {Op.STAT: "cannot stat", Op.OPENDIR: "cannot access", Op.READDIR: "cannot access",
              Op.OPEN: "cannot open", Op.CREATE: "cannot create regular file", Op.MKDIR: "cannot create directory",
              Op.COPY: "error copying", Op.SYMLINK: "cannot create symbolic link",
              Op.MKNOD: "cannot create special file", Op.CHMOD: "preserving permissions for",
              Op.CHOWN: "failed to preserve ownership for", Op.UTIME: "preserving times for"}


@_guard
def pcp_main(argv: list[str]) -> int:
    """pcp [-r] [-p] SOURCE... DEST  (-a is accepted as -rp; hard links are not preserved)"""
    opts, operands, threads, inflight, prog = _getopt(argv, "rRpa", {"--recursive": "r", "--archive": "a"})
    recursive = bool(opts.get("r") or opts.get("R") or opts.get("a"))
    preserve = bool(opts.get("p") or opts.get("a"))
    if not operands:
        raise UsageError("missing file operand")
    if len(operands) == 1:
        raise UsageError(f"missing destination file operand after {quote(operands[0])}")
    rep = Reporter("pcp", CP_WORDING)
    srcs = [os.fsencode(x) for x in operands[:-1]]
    dest = os.fsencode(operands[-1])
    dest_is_dir = os.path.isdir(dest)
    if len(srcs) > 1 and not dest_is_dir:
        reason = "Not a directory" if os.path.lexists(dest) else os.strerror(2)
        rep.error(f"target {quote(dest)}: {reason}")
        return 1
    roots, targets = [], []
    for src in srcs:
        try:
            st = os.lstat(src) if recursive else os.stat(src)
        except OSError as e:
            rep.error(f"cannot stat {quote(src)}: {os.strerror(e.errno or 0)}")
            continue
        target = os.path.join(dest, os.path.basename(src.rstrip(b"/")) or src) if dest_is_dir else dest
        if stat.S_ISDIR(st.st_mode):
            if not recursive:
                rep.error(f"-r not specified; omitting directory {quote(src)}")
                continue
            real_src = os.path.realpath(src)
            real_parent = os.path.realpath(os.path.dirname(target) or b".")
            real_target = os.path.join(real_parent, os.path.basename(target))
            if (real_target + b"/").startswith(real_src + b"/"):
                rep.error(f"cannot copy a directory, {quote(src)}, into itself, {quote(target)}")
                continue
            if os.path.lexists(target) and not os.path.isdir(target):
                rep.error(f"cannot overwrite non-directory {quote(target)} with directory {quote(src)}")
                continue
        elif os.path.lexists(target):
            try:
                if os.path.samefile(src, target):
                    rep.error(f"{quote(src)} and {quote(target)} are the same file")
                    continue
            except OSError:
                pass
        roots.append(src)
        targets.append(target)
    progress = Progress("pcp", prog)
    walk = Walk(roots, CP, OUT_NONE, {"preserve": int(preserve), "umask": _umask(),
                                      "follow_roots": int(not recursive)},
                dests=targets, threads=threads, max_inflight=inflight)
    engine.drain(walk, rep.path_error, progress.update)
    progress.done()
    return rep.status
