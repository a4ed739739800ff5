"""Who may do what with a vfolder: pure functions of the vfolder, its shares and
the caller (name, groups, admin)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.IntEnum):
    """What a caller is to one vfolder, weakest first."""

    NONE = 0  # a stranger: the vfolder does not exist for them
    RO = 1  # may list, read and download
    RW = 2  # may also upload and change files
    OWNER = 3  # may also rename, delete and share
    ADMIN = 4  # may also purge and restore from the trash, and set quotas


class Action(enum.Enum):
    READ = Role.RO
    WRITE = Role.RW
    MANAGE = Role.OWNER
    ADMIN = Role.ADMIN


class Permission(str, enum.Enum):
    RO = "ro"
    RW = "rw"


class ShareState(str, enum.Enum):
    PENDING = "pending"  # an invitation the user has not answered
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class OwnerKind(str, enum.Enum):
    USER = "user"
    GROUP = "group"


@dataclass(frozen=True)
class Caller:
    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False


@dataclass(frozen=True)
class ShareView:
    kind: str  # "user" | "group"
    name: str
    permission: str  # "ro" | "rw"
    state: str = ShareState.ACCEPTED.value


@dataclass(frozen=True)
class VFolderView:
    owner_kind: str
    owner: str
    creator: str
    shares: tuple[ShareView, ...] = field(default_factory=tuple)


def role_of(vf: VFolderView, caller: Caller, group_managers: dict[str, list[str]] | None = None) -> Role:
    """The strongest role the caller has on the vfolder."""
    if caller.admin:
        return Role.ADMIN
    if vf.owner_kind == OwnerKind.USER.value and vf.owner == caller.name:
        return Role.OWNER
    role = Role.NONE
    if vf.owner_kind == OwnerKind.GROUP.value and vf.owner in caller.groups:
        managers = (group_managers or {}).get(vf.owner)
        manages = caller.name == vf.creator if managers is None else caller.name in managers
        role = Role.OWNER if manages else Role.RW
    for s in vf.shares:
        if s.state != ShareState.ACCEPTED.value:
            continue
        if (s.kind == "user" and s.name == caller.name) or (s.kind == "group" and s.name in caller.groups):
            role = max(role, Role.RW if s.permission == Permission.RW.value else Role.RO)
    return role


def allowed(action: Action, role: Role) -> bool:
    return role >= action.value


def denial(action: Action, role: Role) -> tuple[int, str] | None:
    """None when allowed; else (status, message). Strangers get 404 so that a
    vfolder's existence is not revealed."""
    if allowed(action, role):
        return None
    if role == Role.NONE:
        return 404, "no such vfolder (or it is not shared with you)"
    needs = {
        Action.READ: "read access",
        Action.WRITE: "a read-write share",
        Action.MANAGE: "ownership of the vfolder",
        Action.ADMIN: "a vfolders admin (admin:users or custom:vfolders:admin)",
    }[action]
    return 403, f"this needs {needs}; you have {role.name.lower()} access"


def can_create_for_group(caller: Caller, group: str, group_managers: dict[str, list[str]] | None) -> str | None:
    """None if the caller may create a vfolder owned by ``group``; else why not."""
    if caller.admin:
        return None
    if group not in caller.groups:
        return f"you are not a member of group {group!r}"
    managers = (group_managers or {}).get(group)
    if managers is not None and caller.name not in managers:
        return f"only the managers of group {group!r} may create its vfolders"
    return None


def host_allowed(host_groups: list[str] | None, owner_kind: str, owner: str, caller: Caller) -> bool:
    """May this owner use a storage host restricted to ``host_groups`` (None:
    everyone)? A user's vfolder needs the user in one of the groups, a group's
    vfolder needs the group listed."""
    if host_groups is None or caller.admin:
        return True
    if owner_kind == OwnerKind.GROUP.value:
        return owner in host_groups
    return bool(set(host_groups) & caller.groups)
