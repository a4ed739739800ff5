"""The local-process runtime: sessions as processes on the hub's host.

For hosts without a Docker engine. As JupyterHub's LocalProcessSpawner does, a
hub running as root starts each server as the user's own system account, never
as root (accounts are created only when ``create_system_users`` is enabled). A
hub running as an ordinary account runs servers as itself, in a per-user
directory (development and demos).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re

from jupyterhub.spawner import LocalProcessSpawner, SpawnException
from traitlets import Bool, Unicode

from .gpuspawner import GPUSpawner
from .vfolders import LocalVFolderMixin

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class LocalGPUSpawner(LocalVFolderMixin, GPUSpawner, LocalProcessSpawner):
    """GPU shares for sessions that run as local processes."""

    create_system_users = Bool(
        False,
        help="When the hub runs as root and a user has no system account, create one "
        "(useradd -m). Off by default, as in JupyterHub's LocalAuthenticator.",
    ).tag(config=True)

    unprivileged_home_template = Unicode(
        "data/users/{username}",
        help="When the hub does not run as root, servers run as the hub's own account "
        "in this directory ({username} is expanded; relative to the hub's directory).",
    ).tag(config=True)

    @property
    def privileged(self) -> bool:
        return os.getuid() == 0

    @property
    def unprivileged_home(self) -> str:
        return os.path.abspath(self.unprivileged_home_template.format(username=self.user.name))

    async def _ensure_account(self) -> None:
        name = self.user.name
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            pass
        if not self.create_system_users:
            raise SpawnException(
                f"There is no system account for {name!r} on this host; ask an admin to "
                "create it (or enable LocalGPUSpawner.create_system_users).",
                reason="no-account", status_code=500,
            )
        if not _SAFE_NAME.match(name):
            raise SpawnException(f"{name!r} is not a valid system account name", reason="no-account")
        proc = await asyncio.create_subprocess_exec(
            "useradd", "-m", "-s", "/bin/bash", name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode not in (0, 9):  # 9: created meanwhile
            raise SpawnException(
                f"could not create system account {name!r}: {out.decode().strip()}",
                reason="no-account", status_code=500,
            )
        self.log.info("created system account %s", name)

    async def start(self):
        if self.privileged:
            await self._ensure_account()
        return await super().start()

    def make_preexec_fn(self, name):
        if self.privileged:
            return super().make_preexec_fn(name)
        home = self.unprivileged_home

        def preexec():
            os.makedirs(home, 0o700, exist_ok=True)
            os.chdir(home)

        return preexec

    def user_env(self, env):
        if self.privileged:
            return super().user_env(env)
        env["USER"] = self.user.name
        env["HOME"] = self.unprivileged_home
        env["SHELL"] = "/bin/bash"
        return env

    def move_certs(self, paths):
        return super().move_certs(paths) if self.privileged else paths
