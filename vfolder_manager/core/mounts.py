"""What a session mounts: names under ~/vfolders and read-only decisions (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .permissions import Role


@dataclass(frozen=True)
class MountSpec:
    """One vfolder in a session: ``source`` on the host, ``name`` under
    ~/vfolders, read-only with the ``reason`` when it is."""

    id: str
    name: str
    source: str
    read_only: bool
    reason: str | None = None
    gid: int | None = None  # the vfolder's group (storage/ownership.py); None: mode 0777

    def json(self) -> dict:
        return {"id": self.id, "name": self.name, "path": self.source,
                "mode": "ro" if self.read_only else "rw", "reason": self.reason, "gid": self.gid}


def mount_names(entries: list[tuple[str, str, str, str]], user: str) -> dict[str, str]:
    """``entries``: (id, name, owner_kind, owner) the user can reach → id → the
    directory name under ~/vfolders. The user's own vfolders keep their name;
    another's keeps it unless it clashes, then it is ``name@owner``."""
    own = {name for _, name, kind, owner in entries if kind == "user" and owner == user}
    counts = Counter(name for _, name, _, _ in entries)
    out = {}
    for vid, name, kind, owner in entries:
        if kind == "user" and owner == user:
            out[vid] = name
        elif name in own or counts[name] > 1:
            out[vid] = f"{name}@{owner}"
        else:
            out[vid] = name
    return out


def mount_mode(role: Role, over_quota: str | None) -> tuple[bool, str | None]:
    """(read_only, reason) for a vfolder the caller reaches with ``role``."""
    if role < Role.RW:
        return True, "shared read-only"
    if over_quota:
        return True, f"{over_quota}; mounted read-only until files are deleted"
    return False, None


def select_mounts(requested: list[str] | None, available: dict[str, str], auto: set[str]) -> list[str]:
    """Mount names to mount: the requested ones (each must be available) or,
    when none were requested, the auto-mount ones. Raises ValueError naming the
    unknown ones and what exists."""
    if requested is None:
        return sorted(n for n in available.values() if n in auto)
    if not isinstance(requested, list) or not all(isinstance(n, str) for n in requested):
        raise ValueError("vfolders must be a list of vfolder names, e.g. [\"datasets\"]")
    known = set(available.values())
    unknown = [n for n in requested if n not in known]
    if unknown:
        raise ValueError(f"unknown vfolders {unknown}; yours and those shared with you: {sorted(known)}")
    return list(dict.fromkeys(requested))
