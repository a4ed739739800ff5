"""Storage hosts (``storage/hosts``): the hosts a caller may create vfolders on,
their capacity and I/O statistics (sampled in the background) and how their
quotas are enforced. No database: the hosts are configuration."""

from __future__ import annotations

from .base import Base


class HostsHandler(Base):
    def get(self):
        caller = self.caller
        out = []
        for h in self.manager.hosts.values():
            if not caller.admin and h.groups is not None and not (set(h.groups) & caller.groups):
                continue
            model = h.json()
            if not caller.admin:
                model.pop("path")
            model["stats"] = self.service.host_stats(h.name)
            backend = self.manager.quotas.get(h.name)
            model["quota"] = {"backend": getattr(backend, "kind", "scan"),
                              "enforced_by": "filesystem" if backend and backend.enforced_by_filesystem else "service",
                              "why": self.service.quota_why.get(h.name, "")}
            out.append(model)
        self.send({"hosts": out})


default_handlers = [
    (r"/storage/hosts", HostsHandler),
]
