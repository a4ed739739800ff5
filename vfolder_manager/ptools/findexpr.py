"""pfind's command line: GNU find syntax (paths, then an AND of tests).

Only conjunctions of the tests people use are supported (no -o, !, parens);
they are compiled into the flat filter the native core evaluates per entry.
"""
from __future__ import annotations

import os
import time
TYPE_CHECKING = False   # typing is not imported at run time: it costs the CLIs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Any

from .owners import InvalidOwner, uid_of

SIZE_UNITS = {"c": 1, "w": 2, "b": 512, "k": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
TYPES = "fdlpscb"


class FindUsageError(Exception):
    pass


class FindSpec:
    def __init__(self) -> None:
        self.paths: list[bytes] = []
        self.opts: dict[str, Any] = {}
        self.sep = b"\n"
        self.json = False
        self.jsonlines = False
        self.sort = False
        self.threads: int | None = None
        self.max_inflight: int | None = None
        self.progress = False

    @property
    def needs_records(self) -> bool:
        return self.json or self.jsonlines


def _num(opt: str, text: str) -> tuple[str, int]:
    op = "="
    if text[:1] in "+-":
        op, text = text[0], text[1:]
    if not text.isdigit():
        raise FindUsageError(f"invalid argument '{text}' to '{opt}'")
    return op, int(text)


def parse(argv: list[str]) -> FindSpec:
    spec = FindSpec()
    o = spec.opts
    i = 0
    while i < len(argv) and not (argv[i].startswith("-") and len(argv[i]) > 1) and argv[i] not in ("(", "!"):
        spec.paths.append(os.fsencode(argv[i]))
        i += 1
    if not spec.paths:
        spec.paths.append(b".")

    def arg() -> str:
        nonlocal i
        if i + 1 >= len(argv):
            raise FindUsageError(f"missing argument to `{argv[i]}'")
        i += 1
        return argv[i]

    while i < len(argv):
        a = argv[i]
        if a == "-type":
            v = arg()
            mask = 0
            for t in v.split(","):
                if len(t) != 1 or t not in TYPES:
                    raise FindUsageError(f"Unknown argument to -type: {t}")
                mask |= 1 << TYPES.index(t)
            if "typemask" in o:             # -type f -type d: nothing matches
                mask = (o["typemask"] & mask) or 1 << len(TYPES)
            o["typemask"] = mask
        elif a in ("-name", "-iname"):
            pat = arg()
            o["name_pat"] = os.fsencode(pat)
            o["name_flags"] = 16 if a == "-iname" else 0     # FNM_CASEFOLD
        elif a == "-size":
            v = arg()
            unit = 512
            if v and v[-1] in SIZE_UNITS:
                unit, v = SIZE_UNITS[v[-1]], v[:-1]
            op, n = _num(a, v)
            o.update(size_op=ord(op), size_n=n, size_unit=unit, need_stat=1)
        elif a == "-mtime":
            op, n = _num(a, arg())
            o.update(mtime_op=ord(op), mtime_n=n, need_stat=1)
        elif a == "-newer":
            ref = arg()
            try:
                st = os.lstat(ref)
            except OSError as e:
                raise FindUsageError(f"'{ref}': {os.strerror(e.errno or 0)}") from None
            o.update(newer=1, newer_ns=st.st_mtime_ns, need_stat=1)
        elif a == "-user":
            u = arg()
            try:
                o.update(user=1, uid=uid_of(u), need_stat=1)
            except InvalidOwner:
                raise FindUsageError(f"'{u}' is not the name of a known user") from None
        elif a in ("-maxdepth", "-mindepth"):
            v = arg()
            if not v.isdigit():
                raise FindUsageError(f"Expected a positive decimal integer argument to {a}, but got '{v}'")
            o[a[1:]] = int(v)
        elif a == "-print0":
            spec.sep = b"\0"
        elif a == "-print":
            pass
        elif a == "--json":
            spec.json = True
        elif a == "--jsonlines":
            spec.jsonlines = True
        elif a == "--sort":
            spec.sort = True
        elif a == "--progress":
            spec.progress = True
        elif a in ("--threads", "--max-inflight"):
            v = arg()
            if not v.isdigit() or int(v) < 1:
                raise FindUsageError(f"invalid argument '{v}' to '{a}'")
            if a == "--threads":
                spec.threads = int(v)
            else:
                spec.max_inflight = int(v)
        elif a.startswith("-") or a in ("(", "!", ")"):
            raise FindUsageError(f"unknown predicate `{a}'")
        else:
            raise FindUsageError(f"paths must precede expression: '{a}'")
        i += 1
    o["now"] = time.time()
    o["sep"] = spec.sep[0]
    return spec
