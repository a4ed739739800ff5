"""Text the tools print: GNU-style quoting, du sizes, mode strings, JSON rows
(ls -l lines are formatted in the core: _core.ls_long and LsTree.block)."""
from __future__ import annotations

import os
import stat
from .engine import Record


def _utf8_locale() -> bool:
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        v = os.environ.get(var)
        if v:
            return "utf-8" in v.lower() or "utf8" in v.lower()
    return False


def _shown(c: str, utf8: bool) -> bool:
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:
        return False
    return c.isprintable() and (utf8 or o < 0x80)


def quote(path: bytes | str, always: bool = True) -> str:
    """Quote a name for a message like GNU's shell-escape style: 'a b', "it's", 'a'$'\\n''b'.

    Like GNU in the C locale, bytes outside ASCII are shown as octal escapes.
    With ``always=False`` plain names stay bare (GNU's quotef).
    """
    raw = os.fsencode(path)
    text = raw.decode("utf-8", "surrogateescape")
    utf8 = _utf8_locale()
    if all(_shown(c, utf8) for c in text):
        if not always and text and all(c.isalnum() or c in "/._-+,:@%^=" for c in text):
            return text
        if "'" not in text:
            return f"'{text}'"
        if not any(c in text for c in '"$`\\'):
            return f'"{text}"'
    out: list[str] = ["'"]
    in_plain = True
    esc: list[str] = []
    for c in text:
        o = ord(c)
        if _shown(c, utf8):
            if esc:
                out.append("$'" + "".join(esc) + "'")
                esc.clear()
            if not in_plain:
                out.append("'")
                in_plain = True
            out.append("'\\''" if c == "'" else c)
            continue
        if in_plain:
            out.append("'")
            in_plain = False
        if c == "\n":
            esc.append("\\n")
        elif c == "\t":
            esc.append("\\t")
        else:
            data = bytes([o - 0xDC00]) if 0xDC80 <= o <= 0xDCFF else c.encode()
            esc.extend(f"\\{b:03o}" for b in data)
    if esc:
        out.append("$'" + "".join(esc) + "'")
    if in_plain:
        out.append("'")
    return "".join(out)


def human(n: int) -> str:
    """du -h / ls -h: powers of 1024, rounded up, one decimal below 10."""
    if n < 1024:
        return str(n)
    units = "KMGTPEZY"
    e = 1
    while n >= 1024 ** (e + 1) and e < len(units):
        e += 1
    scale = 1024 ** e
    tenths = -(-n * 10 // scale)
    if tenths < 100:
        return f"{tenths // 10}.{tenths % 10}{units[e - 1]}"
    whole = -(-n // scale)
    if whole >= 1024 and e < len(units):
        return f"1.0{units[e]}"
    return f"{whole}{units[e - 1]}"


def du_size(nbytes: int, block_size: int, human_readable: bool) -> str:
    if human_readable:
        return human(nbytes)
    return str(-(-nbytes // block_size))


_FTYPE = {stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p", stat.S_IFSOCK: "s", stat.S_IFREG: "-"}


def mode_string(mode: int) -> str:
    """drwxr-xr-x, with s/S t/T like ls."""
    s = [_FTYPE.get(stat.S_IFMT(mode), "?")]
    for who, sbit, sch in ((6, stat.S_ISUID, "s"), (3, stat.S_ISGID, "s"), (0, stat.S_ISVTX, "t")):
        bits = (mode >> who) & 7
        s.append("r" if bits & 4 else "-")
        s.append("w" if bits & 2 else "-")
        x = bool(bits & 1)
        if mode & sbit:
            s.append(sch if x else sch.upper())
        else:
            s.append("x" if x else "-")
    return "".join(s)


def json_row(rec: Record) -> str:
    """The --json/--jsonlines object: path, type, size, mode, uid, gid, mtime.

    Paths are decoded with surrogateescape (``os.fsdecode``) so that names that
    are not UTF-8 survive a round trip through ``os.fsencode``.
    """
    import json
    st = rec.stat
    row: dict[str, object] = {"path": os.fsdecode(rec.path), "type": rec.type}
    if st is not None:
        row.update(size=st.size, mode=stat.S_IMODE(st.mode), uid=st.uid, gid=st.gid,
                   mtime=st.mtime_ns / 1e9)
    return json.dumps(row)
