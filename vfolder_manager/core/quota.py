"""Quota decisions: pure functions of measured usage and configured limits."""

from __future__ import annotations

from dataclasses import dataclass

from gpuhub.numbers import human_bytes


@dataclass(frozen=True)
class Usage:
    bytes: int = 0
    files: int = 0


@dataclass(frozen=True)
class Limit:
    """A quota; None means unlimited."""

    bytes: int | None = None
    files: int | None = None
    scope: str = "vfolder"  # what the limit belongs to, for messages




def over_quota(usage: Usage, limits: list[Limit]) -> str | None:
    """Why the vfolder is over (or at) one of its limits, or None."""
    for lim in limits:
        if lim.bytes is not None and usage.bytes >= lim.bytes:
            return f"{lim.scope} quota reached: {human_bytes(usage.bytes)} used of {human_bytes(lim.bytes)}"
        if lim.files is not None and usage.files >= lim.files:
            return f"{lim.scope} quota reached: {usage.files} files of {lim.files}"
    return None


def bytes_left(usages: list[Usage], limits: list[Limit]) -> tuple[int | None, int | None]:
    """(bytes left, the limit that leaves the least) under ``limits``, each measured
    against the usage at the same position (a vfolder's own, its owner's); (None,
    None): no byte limit (the spawn form shows "no quota")."""
    best = (None, None)
    for usage, lim in zip(usages, limits):
        if lim.bytes is None:
            continue
        left = max(lim.bytes - usage.bytes, 0)
        if best[0] is None or left < best[0]:
            best = (left, lim.bytes)
    return best


def refuse_upload(usage: Usage, limits: list[Limit], add_bytes: int, add_files: int = 1) -> str | None:
    """Why an upload of ``add_bytes`` (``add_files`` new entries) would exceed a
    limit, or None when it fits."""
    for lim in limits:
        if lim.bytes is not None and usage.bytes + add_bytes > lim.bytes:
            free = max(lim.bytes - usage.bytes, 0)
            return (f"upload refused: {human_bytes(add_bytes)} would exceed the {lim.scope} quota "
                    f"({human_bytes(usage.bytes)} used of {human_bytes(lim.bytes)}, {human_bytes(free)} free); "
                    "delete files or ask an admin for a larger quota")
        if lim.files is not None and usage.files + add_files > lim.files:
            return (f"upload refused: the {lim.scope} quota allows {lim.files} files and "
                    f"{usage.files} exist; delete files or ask an admin for a larger quota")
    return None


def parse_limit(value: object, what: str) -> int | None:
    """A quota value from JSON: a non-negative integer or null (unlimited)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value.bit_length() > 62:
        raise ValueError(f"{what} must be a non-negative integer or null (unlimited), got {value!r}")
    return value
