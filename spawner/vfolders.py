"""vfolders in sessions: the ``vfolders`` spawn option, the form's checkboxes,
and the mounts at ``~/vfolders/NAME``.

One validation, in the vfolder service: ``POST mounts`` (as the spawner's
token, custom:vfolders:admin) answers each mount's host path, ro/rw and group id
(vfolder_manager/storage/ownership.py: each vfolder is SERVICE:GID 2770, and a
session that mounts it gets GID as a supplementary group), and refuses unknown
names with a 400.

Where the hub runs as root on the session's host (local processes; Docker on an
engine at a ``unix://`` socket), each session gets a *session directory*
(spawner/mounts.py) that the hub binds the vfolders into and that the session
sees at ``~/vfolders`` through mount propagation. While the server runs, the
hub asks the service every ``vfolders_refresh_interval`` seconds which vfolders
the user has: one created or accepted during the session is mounted into the
running session (through an idmapped mount, as the session cannot gain its
group), and one the user lost (unshared, deleted) leaves it. Elsewhere (a Docker
engine on another host) each vfolder is a bind of its own, fixed at start, and
the lab panel says that a restart mounts new ones.

What a runtime creates is built by pure functions: :func:`docker_binds` and
:func:`local_mount_wrapper` (a command prefix that starts a local server in its
own mount namespace, binds the session directory at ``~/vfolders`` and then
drops to the user's account).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
from html import escape

from docker import errors as docker_errors
from jupyterhub.spawner import SpawnException
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Float, Unicode, default
from traitlets.config import Configurable

from gpuhub.client import ServiceClient, ServiceError
from gpuhub.numbers import human_bytes

from . import mounts as host_mounts

MOUNT_DIR = "vfolders"


class VFolderClient(ServiceClient):
    what = "the vfolder service"


# --- pure builders ---------------------------------------------------------------------


def mount_target(home: str, name: str) -> str:
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"bad mount name {name!r}")
    return f"{home.rstrip('/')}/{MOUNT_DIR}/{name}"


def docker_binds(mounts: list[dict], home: str) -> dict:
    """docker-py ``binds`` for the mounts: {host path: {"bind": target, "mode": "ro"|"rw"}}."""
    return {m["path"]: {"bind": mount_target(home, m["name"]), "mode": m["mode"]} for m in mounts}


def docker_session_bind(session_dir: str, home: str) -> dict:
    """docker-py ``binds`` for a session directory: at ~/vfolders, ``rslave``, so
    that what the hub mounts into it later reaches the container."""
    return {session_dir: {"bind": f"{home.rstrip('/')}/{MOUNT_DIR}", "mode": "rw,rslave"}}


def vfolder_gids(mounts: list[dict]) -> list[int]:
    """The groups a session needs to enter its vfolders."""
    return sorted({m["gid"] for m in mounts if m.get("gid") is not None})


def local_mount_wrapper(session_dir: str, home: str, uid: int, gid: int,
                        groups: list[int] | None = None, home_source: str | None = None) -> list[str]:
    """A prefix for the server's command line, run as root: a mount namespace
    whose mounts are slaves of the host's, where the session directory (the
    vfolders the hub bound into it, read-only ones read-only, which even root
    cannot write through) is bound at ~/vfolders, then the command runs as
    uid:gid with the supplementary ``groups`` (the account's own ones when None;
    give them plus :func:`vfolder_gids`). ``home_source``: the user's home
    vfolder, bound over ``home`` first. Empty directories that older versions
    left in ~/vfolders are removed first (a mount covers them anyway). The
    mounts vanish with the session's processes."""
    base = shlex.quote(f"{home.rstrip('/')}/{MOUNT_DIR}")
    lines = ["set -e"]
    if home_source:
        lines.append(f"mount --bind {shlex.quote(home_source)} {shlex.quote(home)}")
    lines += [
        f"mkdir -p {base} && chown {uid}:{gid} {base}",
        f"find {base} -mindepth 1 -maxdepth 1 -type d -empty -delete 2>/dev/null || true",
        f"mount --rbind {shlex.quote(session_dir)} {base}",
    ]
    which = "--init-groups" if groups is None else f"--groups={','.join(map(str, groups)) or str(gid)}"
    lines.append(f"cd {shlex.quote(home)}")  # the home as mounted, not the directory below it
    lines.append(f'exec setpriv --reuid={uid} --regid={gid} {which} -- "$@"')
    return ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c",
            "\n".join(lines), "gpuhub-vfolders"]


def node_mount_wrapper(home: str, uid: int, gid: int, groups: list[int], mounts: list[dict],
                       home_source: str | None = None) -> list[str]:
    """A prefix for the server's command line on a node the hub does not run on
    (a Slurm job that starts as root): the same namespace as
    :func:`local_mount_wrapper`, but the node builds the mounts itself, from the
    storage paths the vfolder service answered (the vfolder root must be at the
    same path on every node). ``home_source`` is bound over ``home``; a small
    tmpfs covers ``~/vfolders`` (so nothing is written into the home vfolder
    but its mount point) and each vfolder is bound at ``~/vfolders/NAME``,
    read-only ones remounted read-only before anything runs as the user. A
    path missing on the node fails the job with a message that says so. Then
    the command runs as uid:gid with ``groups`` (the account's and the
    vfolders' groups, :func:`vfolder_gids`). Nothing is mounted into the running
    session later."""
    def need(path: str) -> str:
        q = shlex.quote(path)
        return (f"[ -d {q} ] || {{ echo {shlex.quote(f'gpuhub: {path} is not on this node: the vfolder root must be mounted at the same path on every node')} >&2; exit 1; }}")

    base = f"{home.rstrip('/')}/{MOUNT_DIR}"
    lines = ["set -e"]
    if home_source:
        lines += [need(home_source), f"mount --bind {shlex.quote(home_source)} {shlex.quote(home)}"]
    lines += [f"mkdir -p {shlex.quote(base)} && chown {uid}:{gid} {shlex.quote(base)}",
              f"mount -t tmpfs -o mode=0755,size=1m gpuhub-vfolders {shlex.quote(base)}"]
    for m in mounts:
        target = shlex.quote(mount_target(home, m["name"]))
        lines += [need(m["path"]), f"mkdir {target}", f"mount --bind {shlex.quote(m['path'])} {target}"]
        if m.get("mode") == "ro":
            lines.append(f"mount -o remount,bind,ro {target}")
    lines.append(f"cd {shlex.quote(home)}")
    lines.append(f'exec setpriv --reuid={uid} --regid={gid} --groups={",".join(map(str, groups)) or gid} -- "$@"')
    return ["unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c",
            "\n".join(lines), "gpuhub-vfolders"]


def live_changes(available: list[dict], seen: set[str], mounted: dict[str, str]) -> tuple[list[str], list[str]]:
    """What a running session's vfolders should do now: (names to mount, ids to
    unmount). ``available`` is the service's answer (each vfolder the user may
    mount: id, name); ``seen`` the ids that were there when the session started
    or were mounted since (the user chose, at start, whether to mount those);
    ``mounted`` id → name of what is mounted now. New ones are mounted unless
    their name is taken in ~/vfolders; those the user lost leave."""
    ids = {a["id"] for a in available}
    taken = set(mounted.values())
    new = [a["name"] for a in available if a["id"] not in seen and a["name"] not in taken]
    gone = [vid for vid in mounted if vid not in ids]
    return new, gone


def space_left(v: dict) -> str:
    """"3.2 GiB free of 10.0 GiB" or "1.2 GiB used, no quota" (the vfolder service's
    last measurement)."""
    if v.get("quota_bytes") is None:
        return f"{human_bytes(v.get('used_bytes') or 0)} used, no quota"
    return f"{human_bytes(v.get('free_bytes') or 0)} free of {human_bytes(v['quota_bytes'])}"


def form_block(available: list[dict]) -> str:
    """The spawn form's vfolder checkboxes (checked: auto-mount)."""
    if not available:
        return ""
    rows = []
    for v in available:
        note = f" — read-only: {escape(v['reason'])}" if v.get("reason") else ""
        note += f" <span class=\"gpuhub-vfolder-space\">({escape(space_left(v))})</span>" if "used_bytes" in v else ""
        rows.append(
            f'<div class="checkbox"><label><input type="checkbox" name="vfolders" '
            f'value="{escape(v["name"])}"{" checked" if v.get("auto_mount") else ""}> '
            f'{escape(v["name"])}{note}</label></div>'
        )
    return (
        '<div class="form-group gpuhub-vfolders"><label>vfolders (mounted at ~/vfolders/NAME)</label>'
        '<input type="hidden" name="vfolders_form" value="1">' + "".join(rows) + "</div>"
    )


# --- the mixin -------------------------------------------------------------------------


class VFolderMixin(Configurable):
    """Put before GPUSpawner in a spawner's bases; configure as c.VFolderMixin.…"""

    vfolders_url = Unicode(
        "",
        help="""Base URL of the vfolder service's REST API as the hub reaches it
        directly (not through the proxy), e.g.
        ``http://127.0.0.1:8052/services/vfolders/api/v1/``.

        Default: empty, no vfolders: the spawn form offers none and sessions mount
        none.
        """,
    ).tag(config=True)

    vfolders_token = Unicode(
        "",
        help="""JupyterHub API token the spawner uses with the vfolder service: the
        token of a service whose role has custom:vfolders:admin and
        access:services!service=vfolders, as it mounts any user's vfolders (the
        demo uses its ``gpuhub-spawner`` token).

        Default: empty; the demo's jupyterhub_config.py sets it.
        """,
    ).tag(config=True)

    vfolders_session_root = Unicode(
        "/run/gpuhub/sessions",
        help="""Directory on each session's host under which the hub keeps one
        *session directory* per running server: the vfolders are bound into it
        and the session sees it at ``~/vfolders`` (spawner/mounts.py). The hub
        makes it 0700 root and a mount point of its own; e.g.
        ``/var/lib/gpuhub/sessions``.

        Default ``/run/gpuhub/sessions``: on the tmpfs of ``/run``, so nothing
        outlives a reboot; only mount points live there, never data.
        """,
    ).tag(config=True)

    vfolders_refresh_interval = Float(
        3.0,
        help="""Seconds between the hub's checks, while a server runs, of which
        vfolders its user has: a vfolder created or accepted during the session
        is then mounted into it at ``~/vfolders/NAME``, and one the user lost
        (unshared, deleted) is unmounted. 0 turns this off (new vfolders then
        appear at the next start). Each check is one ``POST mounts`` (dry run) to
        the vfolder service per running server.

        Default 3: a vfolder made in JupyterLab's panel is there before the
        panel's next refresh or two; 100 servers make ~33 light requests a
        second.
        """,
    ).tag(config=True)

    home_vfolder = Bool(
        True,
        help="""Whether each session's home directory is the user's *home vfolder*
        on the vfolder service (made on first use, listed with ``"kind":
        "home"``, counted in the user's storage quota), so that what a session
        writes in ``~`` is there in the next session on any host. At its first
        use, the user's older per-host home (the Docker volume
        ``DockerGPUSpawner.home_volume_template`` on the session's engine, or
        the local account's home directory) is copied in once, and left as it
        was.

        Default True, as Backend.AI keeps homes on the NAS. Turn it off where
        homes live elsewhere already (NFS automounts of /home): sessions then use
        the local home, or the Docker volume. Local sessions need a hub that
        runs as root for it.
        """,
    ).tag(config=True)

    vfolder_mounts: list[dict] = []
    home_mount: dict | None = None
    _vfolder_watch: PeriodicCallback | None = None
    _vfolder_check: asyncio.Future | None = None  # the watcher's check in progress
    _vfolders_seen: set = set()
    _vfolders_live: dict = {}  # vfolder id → mount name, what is in the session directory

    def _vfolder_session(self) -> str:
        return f"{self.user.name}/{self.name}"

    # what a runtime says: whether the hub can mount into the session's host, and as what group
    def live_mounts(self) -> bool:
        """Whether this session's vfolders go through a session directory that
        the hub mounts into (the hub is root on the session's host)."""
        return False

    def session_gids(self) -> tuple[int, set[int]]:
        """The session's primary group and every group it has."""
        raise NotImplementedError

    @property
    def vfolders_session_dir(self) -> str:
        return host_mounts.session_dir(self.vfolders_session_root, self.user.name, self.name)

    def uses_home(self) -> bool:
        """Whether this runtime mounts the home vfolder at the session's home."""
        return False

    @property
    def session_mounts(self) -> list[dict]:
        """Every vfolder the session gets at start: the chosen ones and the home."""
        return self.vfolder_mounts + ([self.home_mount] if self.home_mount else [])

    async def resolve_vfolders(self, names, dry_run: bool) -> dict:
        client = VFolderClient(self.vfolders_url, self.vfolders_token)
        body = {"user": self.user.name, "groups": [g.name for g in self.user.groups],
                "session": self._vfolder_session(), "vfolders": names, "dry_run": dry_run}
        if not dry_run and self.home_vfolder and self.uses_home():
            body["home"] = True
        return await client.call("POST", "mounts", body)

    # --- the home vfolder's first content -----------------------------------------------

    async def old_home(self) -> tuple[str, int] | None:
        """The runtime's per-host home of this user, if there is one with
        content: (what it is, for the log and the record; its size in bytes)."""
        return None

    async def copy_old_home(self, target: str) -> None:
        """Copy the per-host home into ``target`` (the home vfolder's directory)."""
        raise NotImplementedError

    async def migrate_home(self) -> None:
        """At the home vfolder's first use: copy the older per-host home in (with
        progress), leave the old one as it was, and have the service record it
        (and give the files the vfolder's group), so that it never happens twice."""
        home = self.home_mount
        if not home or home.get("migrated_from") is not None:
            return
        old = await self.old_home()
        if old is None:
            source = "nothing"
        else:
            source, size = old
            self._event(45, f"copying your home ({source}, {human_bytes(size)}) into your home "
                            "vfolder, once; the old one stays as it was")
            started = asyncio.get_running_loop().time()
            await self.copy_old_home(home["path"])
            self.log.info("%s: copied %s (%s) into the home vfolder %s in %.1f s; the old home is "
                          "left untouched", self._log_name, source, human_bytes(size), home["id"],
                          asyncio.get_running_loop().time() - started)
        try:
            await VFolderClient(self.vfolders_url, self.vfolders_token).call(
                "PUT", "mounts/home", {"user": self.user.name, "migrated_from": source})
        except ServiceError as e:
            if e.status != 409:  # 409: another server of the user recorded it meanwhile
                raise SpawnException(f"vfolders: could not record the home's copy: {e.message}",
                                     reason="vfolders", status_code=503) from None
        home["migrated_from"] = source

    async def apply_gpu_options(self, user_options: dict) -> None:
        """The GPU checks see the options without ``vfolders``; the vfolder
        service checks the names (a 400 names the unknown ones)."""
        await super().apply_gpu_options({k: v for k, v in user_options.items() if k != "vfolders"})
        if not self.vfolders_url:
            if user_options.get("vfolders"):
                raise web.HTTPError(400, "vfolders are not configured on this hub")
            return
        try:
            await self.resolve_vfolders(user_options.get("vfolders"), dry_run=True)
        except ServiceError as e:
            status = 400 if e.status == 400 else 503
            raise web.HTTPError(status, f"vfolders: {e.message}", reason="Invalid spawn options") from None

    def options_from_form(self, formdata):
        options = super().options_from_form(formdata)
        if formdata.get("vfolders_form") and self.form_may_set(options, "vfolders"):
            options["vfolders"] = [v for v in formdata.get("vfolders", []) if v]
        return options

    @default("options_form")
    def _default_options_form(self):
        base = super()._default_options_form()

        async def form(spawner):
            html = await base(spawner)
            if not spawner.vfolders_url:
                return html
            try:
                answer = await spawner.resolve_vfolders(None, dry_run=True)
            except ServiceError as e:
                return html + f"<p>vfolders are not available: {escape(e.message)}</p>"
            return html + form_block(answer.get("available", []))

        return form

    def get_env(self):
        env = super().get_env()
        if self.vfolders_url:
            # the lab panel: whether a vfolder made now appears here, or needs a restart
            live = self.live_mounts() and self.vfolders_refresh_interval > 0
            env["GPUHUB_VFOLDERS_LIVE"] = "1" if live else "0"
        return env

    async def start(self):
        self.vfolder_mounts, self.home_mount = [], None
        self._stop_watching()
        if self.vfolders_url:
            try:
                answer = await self.resolve_vfolders(self.user_options.get("vfolders"), dry_run=False)
            except ServiceError as e:
                raise SpawnException(f"vfolders: {e.message}", reason="vfolders",
                                     status_code=400 if e.status == 400 else 503) from None
            self.vfolder_mounts = answer["mounts"]
            self.home_mount = answer.get("home")
            self._vfolders_seen = {a["id"] for a in answer.get("available", [])}
            self._vfolders_live = {}
            if self.vfolder_mounts:
                self._event(50, "mounting vfolders: " + ", ".join(
                    f"{m['name']} ({m['mode']}{': ' + m['reason'] if m.get('reason') else ''})"
                    for m in self.vfolder_mounts))
        try:
            if self.vfolders_url:
                await self.vfolders_resolved()
            result = await super().start()
        except BaseException:
            await self._release_vfolders()
            raise
        self._start_watching()
        return result

    async def vfolders_resolved(self) -> None:
        """Runtimes prepare their mounts here (self.vfolder_mounts is set)."""

    # --- the session directory (live mounts) ----------------------------------------------

    async def mount_session_dir(self) -> None:
        """A fresh session directory with the vfolders chosen at start (the
        runtime calls this once the session's host is known)."""
        path = self.vfolders_session_dir

        def mount():
            host_mounts.make_session_dir(self.vfolders_session_root, path)
            for m in self.vfolder_mounts:
                host_mounts.add(path, m["name"], m["path"], m["mode"] == "ro")
                self._vfolders_live[m["id"]] = m["name"]

        try:
            await asyncio.to_thread(mount)
        except OSError as e:
            raise SpawnException(f"vfolders: could not mount them on this host: {e}",
                                 reason="vfolders", status_code=500) from None

    def _mount_later(self, m: dict) -> None:
        """A vfolder that arrived during the session: through an idmapped mount
        when the session lacks its group."""
        primary, groups = self.session_gids()
        gids = (m["gid"], primary) if m.get("gid") is not None and m["gid"] not in groups else None
        host_mounts.add(self.vfolders_session_dir, m["name"], m["path"], m["mode"] == "ro", gids)

    async def sync_vfolders(self) -> None:
        """One check (see vfolders_refresh_interval): mount what is new, unmount
        what the user lost, and tell the service what the session mounts now."""
        answer = await self.resolve_vfolders(None, dry_run=True)
        new, gone = live_changes(answer.get("available", []), self._vfolders_seen, self._vfolders_live)
        if not new and not gone:
            return
        for vid in gone:
            name = self._vfolders_live.pop(vid)
            await asyncio.to_thread(host_mounts.drop, self.vfolders_session_dir, name)
            self.log.info("%s: unmounted vfolder %s (no longer the user's)", self._log_name, name)
        keep = sorted(set(self._vfolders_live.values()) | set(new))
        answer = await self.resolve_vfolders(keep, dry_run=False)  # recorded: deleting them is refused now
        if answer.get("home"):
            self.home_mount = answer["home"]
        for m in answer["mounts"]:
            self._vfolders_seen.add(m["id"])
            if m["id"] in self._vfolders_live or m["name"] not in new:
                continue
            try:
                await asyncio.to_thread(self._mount_later, m)
            except OSError as e:
                self.log.error("%s: could not mount vfolder %s into the running session: %s",
                               self._log_name, m["name"], e)
                continue
            self._vfolders_live[m["id"]] = m["name"]
            self.log.info("%s: mounted vfolder %s (%s) into the running session",
                          self._log_name, m["name"], m["mode"])

    async def _check_vfolders(self) -> None:
        try:
            await self.sync_vfolders()
        except ServiceError as e:
            self.log.debug("%s: vfolder check skipped: %s", self._log_name, e.message)
        except Exception:
            self.log.exception("%s: vfolder check failed", self._log_name)

    def _watch_tick(self) -> None:
        """The watcher's callback: one check, unless the last one still runs."""
        if self._vfolder_check is not None and not self._vfolder_check.done():
            return
        self._vfolder_check = asyncio.ensure_future(self._check_vfolders())

    def _start_watching(self) -> None:
        # a PeriodicCallback, not a task that sleeps: nothing pending is left behind
        # at the hub's exit when it leaves the servers running (cleanup_servers False)
        if self.vfolders_url and self.live_mounts() and self.vfolders_refresh_interval > 0:
            self._vfolder_watch = PeriodicCallback(self._watch_tick, self.vfolders_refresh_interval * 1000)
            self._vfolder_watch.start()

    def _stop_watching(self) -> None:
        watch, self._vfolder_watch = self._vfolder_watch, None
        if watch is not None:
            watch.stop()
        check, self._vfolder_check = self._vfolder_check, None
        if check is not None:
            check.cancel()  # as before: no mount after the session is released

    async def _release_vfolders(self) -> None:
        self._stop_watching()
        if self.live_mounts():
            await asyncio.to_thread(host_mounts.remove_session_dir, self.vfolders_session_dir,
                                    self.vfolders_session_root)
            self._vfolders_live = {}
        if not self.vfolders_url:
            return
        try:
            await VFolderClient(self.vfolders_url, self.vfolders_token).call(
                "DELETE", f"mounts?session={self._vfolder_session()}")
        except ServiceError as e:
            self.log.warning("could not release the vfolder mounts of %s: %s", self._log_name, e.message)

    async def stop(self, now=False):
        self._stop_watching()
        await super().stop(now=now)
        await self._release_vfolders()

    async def poll(self):
        status = await super().poll()
        if status is not None and (self._vfolder_watch is not None or self._vfolders_live):
            await self._release_vfolders()  # the server died (or lost its share)
        elif status is None and self._vfolder_watch is None and self._vfolders_live:
            self._start_watching()  # a restarted hub: the state says what is mounted
        return status

    def load_state(self, state):
        super().load_state(state)
        live = state.get("gpuhub_vfolders") or {}
        self._vfolders_seen = set(live.get("seen", ()))
        self._vfolders_live = dict(live.get("mounted", {}))

    def get_state(self):
        state = super().get_state()
        if self._vfolders_live or self._vfolders_seen:
            state["gpuhub_vfolders"] = {"seen": sorted(self._vfolders_seen), "mounted": self._vfolders_live}
        return state


class LocalVFolderMixin(VFolderMixin):
    """Local processes: a hub that runs as root wraps the server's command in
    :func:`local_mount_wrapper` and drops privileges there instead of in the
    pre-exec hook."""

    def live_mounts(self) -> bool:
        return bool(self.vfolders_url) and os.getuid() == 0

    def session_gids(self) -> tuple[int, set[int]]:
        pw = pwd.getpwnam(self.user.name)
        return pw.pw_gid, set(os.getgrouplist(pw.pw_name, pw.pw_gid)) | set(vfolder_gids(self.session_mounts))

    def uses_home(self) -> bool:
        return self.live_mounts()

    async def old_home(self) -> tuple[str, int] | None:
        home = pwd.getpwnam(self.user.name).pw_dir

        def size() -> tuple[int, int]:
            total = files = 0
            for entry in os.listdir(home) if os.path.isdir(home) else ():
                if entry == MOUNT_DIR:
                    continue
                path = os.path.join(home, entry)
                walk = [(path, [], [])] if not os.path.isdir(path) or os.path.islink(path) else os.walk(path)
                for root, _, names in walk:
                    for n in names or [""]:
                        try:
                            total += os.lstat(os.path.join(root, n) if n else root).st_size
                            files += 1
                        except OSError:
                            pass
            return total, files

        total, files = await asyncio.to_thread(size)
        return (f"{home} on {os.uname().nodename}", total) if files else None

    async def copy_old_home(self, target: str) -> None:
        home = pwd.getpwnam(self.user.name).pw_dir
        entries = [os.path.join(home, e) for e in sorted(os.listdir(home)) if e != MOUNT_DIR]
        proc = await asyncio.create_subprocess_exec(
            "cp", "-a", "--", *entries, target + "/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode:
            raise SpawnException(f"could not copy your home {home} into your home vfolder: "
                                 f"{out.decode(errors='replace').strip()[-500:]}", reason="vfolders")

    def _wrapped(self) -> bool:
        return self.live_mounts()

    async def start(self):
        original = list(self.cmd)
        try:
            return await super().start()
        finally:
            self.cmd = original  # the wrapper is for this start only

    async def vfolders_resolved(self) -> None:
        if self._wrapped():
            await self.migrate_home()
            await self.mount_session_dir()
            pw = pwd.getpwnam(self.user.name)
            extra = vfolder_gids(self.session_mounts)
            groups = sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)) | set(extra)) if extra else None
            self.cmd = local_mount_wrapper(self.vfolders_session_dir, pw.pw_dir, pw.pw_uid, pw.pw_gid, groups,
                                           (self.home_mount or {}).get("path")) + list(self.cmd)

    def make_preexec_fn(self, name):
        if not self._wrapped():
            return super().make_preexec_fn(name)
        home = pwd.getpwnam(name).pw_dir

        def preexec():
            os.chdir(home)  # the wrapper drops to the user's account itself

        return preexec


class DockerVFolderMixin(VFolderMixin):
    """Docker: with an engine on the hub's own host (a ``unix://`` socket) and a
    hub that runs as root, the session directory is bound at ~/vfolders
    (``rslave``); otherwise each vfolder is a bind of its own, fixed at start."""

    def live_mounts(self) -> bool:
        return (bool(self.vfolders_url) and os.getuid() == 0
                and str(self.endpoint.get("url", "")).startswith("unix://"))

    def session_gids(self) -> tuple[int, set[int]]:
        primary = int(self.container_user.partition(":")[2] or 0)
        return primary, {primary} | set(vfolder_gids(self.session_mounts))

    def uses_home(self) -> bool:
        return bool(self.vfolders_url)  # a bind from the NAS path, as every vfolder's

    @property
    def home_volume(self) -> str:
        return self.format_volume_name(self.home_volume_template, self)  # as DockerSpawner names it

    async def old_home(self) -> tuple[str, int] | None:
        try:
            await self.docker("inspect_volume", self.home_volume)
        except docker_errors.NotFound:
            return None
        out = await self._in_helper(["du", "-sb", "/from"], {self.home_volume: {"bind": "/from", "mode": "ro"}})
        size = int(out.split()[0]) if out.split() and out.split()[0].isdigit() else 0
        host = (self.allocation or {}).get("host") or self.endpoint.get("url")
        return f"Docker volume {self.home_volume} on {host}", size

    async def copy_old_home(self, target: str) -> None:
        await self._in_helper(["sh", "-c", "cd /from && cp -a . /to/"],
                              {self.home_volume: {"bind": "/from", "mode": "ro"}, target: {"bind": "/to", "mode": "rw"}})

    async def _in_helper(self, command: list[str], binds: dict) -> str:
        """Run ``command`` as root in a short-lived container of the session's image
        on the session's engine, without network; its output."""
        host_config = await self.docker("create_host_config", binds=binds, network_mode="none")
        c = await self.docker("create_container", self.image, command=command, user="0",
                              host_config=host_config, labels={"gpuhub.helper": "home-copy"})
        try:
            await self.docker("start", c["Id"])
            result = await self.docker("wait", c["Id"])
            logs = (await self.docker("logs", c["Id"])).decode(errors="replace")
        finally:
            await self.docker("remove_container", c["Id"], force=True)
        if result.get("StatusCode"):
            raise SpawnException(f"could not copy your home volume {self.home_volume} into your home "
                                 f"vfolder: {logs.strip()[-500:]}", reason="vfolders")
        return logs

    async def create_object(self):
        # the allocation, and so the engine, is known by now
        await self.migrate_home()
        if self.live_mounts():
            await self.mount_session_dir()
        return await super().create_object()

    @property
    def volume_binds(self):
        binds = super().volume_binds
        if self.home_mount:  # the home vfolder instead of the per-host home volume
            binds = {k: v for k, v in binds.items() if v.get("bind") != self.notebook_dir}
            binds[self.home_mount["path"]] = {"bind": self.notebook_dir, "mode": "rw"}
        if self.live_mounts():
            binds.update(docker_session_bind(self.vfolders_session_dir, self.notebook_dir))
        else:
            binds.update(docker_binds(self.vfolder_mounts, self.notebook_dir))
        return binds

    def vfolder_host_config(self) -> dict:
        """docker-py host_config for the vfolders: their groups (``group_add``), so
        the container's user (DockerGPUSpawner.container_user) may enter them."""
        gids = vfolder_gids(self.session_mounts)
        return {"group_add": [str(g) for g in gids]} if gids else {}


class SlurmVFolderMixin(LocalVFolderMixin):
    """Slurm jobs (spawner/slurm.py): the hub is not on the node, so it cannot
    mount into the session. With vfolders and a hub that runs as root, the job
    is submitted as root (no ``--uid``) and its script starts with
    :func:`node_mount_wrapper`, which mounts the home vfolder and the chosen
    vfolders from their storage paths on the node and then drops to the user's
    account (Slurm runs a job as the submitting account, and a job that runs as
    the user cannot mount). No live mounts: a vfolder made during the session
    appears at the next start (``GPUHUB_VFOLDERS_LIVE=0``, the panel says so).
    The user's older home, copied into the home vfolder at its first use, is
    the account's home as the hub sees it (one shared ``/home`` on a cluster)."""

    def live_mounts(self) -> bool:
        return False

    def _wrapped(self) -> bool:
        return bool(self.vfolders_url) and os.getuid() == 0

    def uses_home(self) -> bool:
        return self._wrapped()

    def job_runs_as_root(self) -> bool:
        return self._wrapped()

    async def vfolders_resolved(self) -> None:
        if not self._wrapped():
            return
        uid, gid, home = await self.account()  # made first where the hub makes accounts
        await self.migrate_home()
        pw = pwd.getpwuid(uid)
        groups = sorted(set(os.getgrouplist(pw.pw_name, gid)) | set(vfolder_gids(self.session_mounts)))
        self.cmd = node_mount_wrapper(home, uid, gid, groups, self.vfolder_mounts,
                                      (self.home_mount or {}).get("path")) + list(self.cmd)
