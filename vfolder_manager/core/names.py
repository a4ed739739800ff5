"""Validation of vfolder names, owner names and paths inside a vfolder."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 64
MAX_PATH = 4096
MAX_COMPONENT = 255

_PRINCIPAL = re.compile(r"^[A-Za-z0-9_.@+-][A-Za-z0-9_.@+ -]{0,254}$")


class NameError_(ValueError):
    """A name or path the service refuses; the message says what is allowed."""


InvalidName = NameError_


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def check_vfolder_name(name: object) -> str:
    """A vfolder's name: 1–64 characters, no '/', no '\\', not '.' or '..', no
    leading dot, no control characters, no leading or trailing spaces."""
    if not isinstance(name, str):
        raise InvalidName("name must be a string, e.g. \"datasets\"")
    if not name:
        raise InvalidName("name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidName(f"name is too long ({len(name)} characters; at most {MAX_NAME})")
    if "/" in name or "\\" in name:
        raise InvalidName("name must not contain '/' or '\\'")
    if name.startswith("."):
        raise InvalidName("name must not start with a dot ('.', '..' and hidden names are refused)")
    if _has_control(name):
        raise InvalidName("name must not contain control characters")
    if name != name.strip():
        raise InvalidName("name must not start or end with spaces")
    return name


def check_principal(name: object, what: str = "user") -> str:
    """A JupyterHub user or group name as the service stores it."""
    if not isinstance(name, str) or not _PRINCIPAL.match(name) or name.strip() != name:
        raise InvalidName(f"{what} must be a JupyterHub {what} name, got {name!r}")
    return name


def split_relpath(path: object) -> tuple[str, ...]:
    """A path inside a vfolder as its components, refusing anything that could
    leave it: absolute paths, '..', '.', empty components, NUL and control
    characters, backslashes. An empty path (the vfolder itself) is ()."""
    if not isinstance(path, str):
        raise InvalidName("path must be a string")
    if len(path) > MAX_PATH:
        raise InvalidName(f"path is too long (at most {MAX_PATH} characters)")
    if path.startswith("/"):
        raise InvalidName("path must be relative to the vfolder (no leading '/')")
    if "\\" in path:
        raise InvalidName("path must not contain '\\'")
    if _has_control(path):
        raise InvalidName("path must not contain control characters")
    if path in ("",):
        return ()
    parts = tuple(path.rstrip("/").split("/")) if path.endswith("/") else tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidName(
                f"path {path!r} has an empty, '.' or '..' component; give a plain path "
                "inside the vfolder such as data/train.csv"
            )
        if len(part.encode()) > MAX_COMPONENT:
            raise InvalidName(f"a path component is too long (at most {MAX_COMPONENT} bytes)")
    return parts


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One HTTP byte range (``bytes=S-E``, ``bytes=S-``, ``bytes=-N``) of a
    ``size``-byte file as [start, end); None when it cannot be satisfied.
    Raises ValueError for a header that is not one byte range."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError("Range must be one bytes=START-END range")
    first, sep, last = spec.strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()) or len(first) > 19 or len(last) > 19:
        raise ValueError("Range must be one bytes=START-END range")
    if not first:  # the last N bytes
        n = int(last)
        return (max(size - n, 0), size) if n > 0 and size > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        return None
    return start, end
