"""The local-process runtime: sessions as processes on the hub's host.

For hosts without a Docker engine. As JupyterHub's LocalProcessSpawner does, a
hub running as root starts each server as the user's own system account, never
as root (accounts are created only when ``create_system_users`` is enabled). A
hub running as an ordinary account runs servers as itself, in a per-user
directory (development and demos).

When the process cannot be started at all — the account cannot execute the
command or reach a directory on its path, the command does not exist, the
working directory cannot be entered — the spawn fails with a SpawnException
that names the path, the account and what to change (the spawn page shows it),
never with a traceback; GPUSpawner.start gives the GPU share back first.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import signal
import subprocess

from jupyterhub.spawner import LocalProcessSpawner, SpawnException
from traitlets import Bool, Unicode

from .gpuspawner import GPUSpawner
from .serverenv import DEFAULT_ROOT, blocker, describe_blocker
from .vfolders import LocalVFolderMixin

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class LocalGPUSpawner(LocalVFolderMixin, GPUSpawner, LocalProcessSpawner):
    """GPU shares for sessions that run as local processes."""

    create_system_users = Bool(
        False,
        help="""When the hub runs as root and a user has no system account, create
        one (``useradd -m``) at the first spawn.

        Default False, as in JupyterHub's LocalAuthenticator: accounts are the
        site's to make. The demo turns it on, as anyone may log in there.
        """,
    ).tag(config=True)

    unprivileged_home_template = Unicode(
        "data/users/{username}",
        help="""When the hub does not run as root, servers run as the hub's own
        account, each user in this directory; ``{username}`` is expanded, and a
        relative path is relative to the hub's working directory. E.g.
        ``/srv/gpuhub/users/{username}``.

        Default ``data/users/{username}``, beside the demo's other state.
        """,
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
        try:
            if not self.privileged:
                os.makedirs(self.unprivileged_home, 0o700, exist_ok=True)
            return await super().start()
        except (OSError, subprocess.SubprocessError) as e:
            # the process could not be started (GPUSpawner.start has released the
            # share); the allocator's own errors arrive as SpawnExceptions
            message = self._start_failure(e)
            failure = SpawnException(
                message, reason="runtime", status_code=500,
                log_message=f"{message} ({type(e).__name__}: {e})",
            )
            failure.jupyterhub_message = message  # the spawn page's text (else str(failure))
            raise failure from None

    def _account(self) -> tuple[str, int, set[int], str]:
        """The account servers run as: name, uid, groups, working directory."""
        if self.privileged:
            pw = pwd.getpwnam(self.user.name)
            return pw.pw_name, pw.pw_uid, set(os.getgrouplist(pw.pw_name, pw.pw_gid)), pw.pw_dir
        try:
            name = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            name = str(os.getuid())
        return name, os.getuid(), set(os.getgroups()) | {os.getgid()}, self.unprivileged_home

    def _start_failure(self, e: BaseException) -> str:
        """One message for the spawn page: which path, which account, what to change."""
        account, uid, gids, workdir = self._account()
        who = f"the account {account} (uid {uid})"
        head = f"The server of {self.user.name} could not start:"
        cmd = (self.shell_cmd or self.cmd or [""])[0]
        if isinstance(e, subprocess.SubprocessError):
            # the preexec function failed in the child: switching to the account or
            # entering its working directory
            b = blocker(workdir, uid, gids)
            where = f" {describe_blocker(*b)} is in the way;" if b else ""
            return (f"{head} {who} could not enter its working directory {workdir};{where} "
                    f"make {workdir} a directory that {account} can enter.")
        path = getattr(e, "filename", None) or cmd
        running = path == cmd or os.path.basename(str(path)) == os.path.basename(cmd)
        if isinstance(e, FileNotFoundError) and not os.path.lexists(path):
            if running and os.sep not in str(path):
                return (f"{head} the command {path!r} is not on the PATH of the server; set "
                        "c.Spawner.cmd to the full path of a Python with jupyterhub installed, "
                        "e.g. ['/usr/bin/python3', '-m', 'jupyterhub.singleuser'].")
            return (f"{head} {path} does not exist; set c.Spawner.cmd to a Python that "
                    f"{account} can execute, e.g. ['/usr/bin/python3', '-m', 'jupyterhub.singleuser'].")
        b = blocker(path, uid, gids, execute=running)
        if b is not None:
            comp, st = b
            whom = "u" if st.st_uid == uid else "g" if st.st_gid in gids else "o"
            fix = f"chmod {whom}+x {comp}" if os.path.isdir(comp) else f"chmod {whom}+rx {comp}"
            what = "execute" if running else "open"
            remedy = (f"let it in ({fix}) or set c.Spawner.cmd to a Python it can execute"
                      if running else f"let it in ({fix})")
            if running and self.privileged:
                remedy += f" (as root, 'make install' installs one under {DEFAULT_ROOT})"
            return (f"{head} {who} cannot {what} {path} because {describe_blocker(comp, st)} "
                    f"does not allow it; {remedy}.")
        reason = getattr(e, "strerror", None) or str(e)
        return (f"{head} running {path} as {who} failed ({reason}); check that {account} can "
                "execute it, or set c.Spawner.cmd to a command that can.")

    async def poll(self):
        group = self.pid
        status = await super().poll()
        if status is not None:
            self._end_group(group)
        return status

    async def stop(self, now=False):
        group = self.pid
        await super().stop(now=now)
        self._end_group(group)

    def _end_group(self, pgid: int) -> None:
        """Kill what is left of the server's process group (it was started as a
        session of its own): a batch job's background processes, or its command
        when its runner was killed, must not outlive the GPU share."""
        if not pgid or pgid == os.getpgrp():
            return
        try:
            os.killpg(pgid, signal.SIGKILL)
            self.log.info("%s: ended the processes left in its group %i", self._log_name, pgid)
        except (ProcessLookupError, PermissionError):
            pass

    def make_preexec_fn(self, name):
        if self.privileged:
            return super().make_preexec_fn(name)
        home = self.unprivileged_home

        def preexec():
            os.chdir(home)  # made by start(), where an error can still be reported

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
