"""Storage hosts: what the admin configures, checked by a pure function."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HOST_KEYS = {"path", "default", "groups", "quota_backend", "description"}


class HostConfigError(ValueError):
    pass


@dataclass(frozen=True)
class StorageHost:
    name: str
    path: str  # absolute; an NFS mount of the NAS in production
    default: bool = False
    groups: tuple[str, ...] | None = None  # None: every user and group may use it
    quota_backend: str = "scan"  # scan | project | auto | xfs | ext4 (storage.quota.choose_backend)
    description: str = ""

    def json(self) -> dict:
        return {
            "name": self.name, "path": self.path, "default": self.default,
            "groups": list(self.groups) if self.groups is not None else None,
            "quota_backend": self.quota_backend, "description": self.description,
        }


def parse_hosts(config: dict, default_backend: str = "scan") -> dict[str, StorageHost]:
    """``{"nas1": {"path": "/mnt/nas1", "default": true, "groups": ["ml"]}}`` →
    hosts; exactly one default (the only host is the default)."""
    if not isinstance(config, dict) or not config:
        raise HostConfigError("storage_hosts must name at least one host: {name: {path: …}}")
    hosts = {}
    for name, spec in config.items():
        if not isinstance(name, str) or not _HOST_NAME.match(name):
            raise HostConfigError(f"storage host name {name!r} must be letters, digits, '_', '.', '-'")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict):
            raise HostConfigError(f"storage host {name}: give a dict with a 'path'")
        unknown = set(spec) - HOST_KEYS
        if unknown:
            raise HostConfigError(f"storage host {name}: unknown keys {sorted(unknown)}; known: {sorted(HOST_KEYS)}")
        path = spec.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise HostConfigError(f"storage host {name}: 'path' must be an absolute directory")
        groups = spec.get("groups")
        if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
            raise HostConfigError(f"storage host {name}: 'groups' must be a list of group names")
        backend = spec.get("quota_backend", default_backend)
        if backend not in ("scan", "project", "auto", "xfs", "ext4"):
            raise HostConfigError(f"storage host {name}: quota_backend must be scan, project, auto, xfs or ext4")
        hosts[name] = StorageHost(
            name=name, path=os.path.normpath(path), default=bool(spec.get("default", False)),
            groups=tuple(groups) if groups is not None else None, quota_backend=backend,
            description=str(spec.get("description", "")),
        )
    defaults = [h for h in hosts.values() if h.default]
    if len(hosts) == 1 and not defaults:
        (only,) = hosts.values()
        hosts[only.name] = StorageHost(**{**only.__dict__, "default": True})
    elif len(defaults) != 1:
        raise HostConfigError(f"exactly one storage host must be the default, found {len(defaults)}")
    return hosts


def default_host(hosts: dict[str, StorageHost]) -> StorageHost:
    return next(h for h in hosts.values() if h.default)
