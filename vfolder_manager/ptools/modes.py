"""chmod MODE strings compiled into change lists, the way gnulib does it.

Compiling is pure Python; applying (``mode_adjust``) happens per file in the
native core, so numeric and symbolic modes match GNU chmod bit for bit,
including the directory set-id preservation and the umask for ``+x``.
"""
from __future__ import annotations

import stat
from collections import namedtuple

from . import _core

ALL_BITS = 0o7777
S_IRWXUGO = 0o777
READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class Change(namedtuple("Change", "op flag affected value mentioned")):
    """op: ord('='), ord('+') or ord('-'); flag: _core.MC_*; affected, value, mentioned: mode bits."""
    __slots__ = ()


class InvalidMode(ValueError):
    pass


def compile_mode(text: str) -> list[Change]:
    if not text:
        raise InvalidMode(text)
    if text[0] in "01234567":
        if any(c not in "01234567" for c in text):
            raise InvalidMode(text)
        mode = int(text, 8)
        if mode > ALL_BITS:
            raise InvalidMode(text)
        mentioned = ((mode & (stat.S_ISUID | stat.S_ISGID)) | stat.S_ISVTX | S_IRWXUGO
                     if len(text) < 5 else ALL_BITS)
        return [Change(ord("="), _core.MC_ORDINARY, ALL_BITS, mode, mentioned)]

    changes: list[Change] = []
    i, n = 0, len(text)
    while True:
        affected = 0
        while i < n and text[i] in "ugoa":
            affected |= {"u": stat.S_ISUID | stat.S_IRWXU, "g": stat.S_ISGID | stat.S_IRWXG,
                         "o": stat.S_ISVTX | stat.S_IRWXO, "a": ALL_BITS}[text[i]]
            i += 1
        if i >= n or text[i] not in "=+-":
            raise InvalidMode(text)
        while i < n and text[i] in "=+-":
            op = text[i]
            i += 1
            flag, value = _core.MC_ORDINARY, 0
            if i < n and text[i] in "ugo":
                flag = _core.MC_COPY
                value = {"u": stat.S_IRWXU, "g": stat.S_IRWXG, "o": stat.S_IRWXO}[text[i]]
                i += 1
            else:
                while i < n and text[i] in "rwxXst":
                    c = text[i]
                    if c == "X":
                        flag = _core.MC_X_IF_ANY_X
                    else:
                        value |= {"r": READ, "w": WRITE, "x": EXEC,
                                  "s": stat.S_ISUID | stat.S_ISGID, "t": stat.S_ISVTX}[c]
                    i += 1
            mentioned = (affected & value) if affected else value
            changes.append(Change(ord(op), flag, affected, value, mentioned))
        if i == n:
            return changes
        if text[i] != ",":
            raise InvalidMode(text)
        i += 1
