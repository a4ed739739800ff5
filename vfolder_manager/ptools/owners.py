"""User and group names to ids, as chown(1) and find -user accept them."""
from __future__ import annotations

import grp
import pwd


class InvalidOwner(ValueError):
    pass


def uid_of(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise InvalidOwner(f"invalid user: '{name}'") from None


def gid_of(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise InvalidOwner(f"invalid group: '{name}'") from None


def parse_owner(spec: str) -> tuple[int, int]:
    """``USER[:GROUP]``, ``USER:``, ``:GROUP`` -> (uid, gid); -1 means unchanged."""
    user, sep, group = spec.partition(":")
    uid = gid = -1
    if user:
        try:
            uid = uid_of(user)
        except InvalidOwner:
            raise InvalidOwner(f"invalid user: '{spec}'") from None
        if sep and not group:
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                raise InvalidOwner(f"invalid spec: '{spec}'") from None
    if group:
        try:
            gid = gid_of(group)
        except InvalidOwner:
            raise InvalidOwner(f"invalid group: '{spec}'") from None
    return uid, gid
