"""vfolders in sessions: the ``vfolders`` spawn option, the form's checkboxes,
and the mounts at ``~/vfolders/NAME``.

One validation, in the vfolder service: ``POST mounts`` (as the spawner's
token, custom:vfolders:admin) answers each mount's host path, ro/rw and group id
(vfolder_manager/storage/ownership.py: each vfolder is SERVICE:GID 2770, and a
session that mounts it gets GID as a supplementary group), and refuses unknown
names with a 400. What a runtime creates is built by pure
functions: :func:`docker_binds` (read-only bind mounts for Docker) and
:func:`local_mount_wrapper` (a command prefix that starts a local server in its
own mount namespace, binds the vfolders, remounts the read-only ones ``ro`` and
then drops to the user's account).
"""

from __future__ import annotations

import os
import pwd
import shlex
from html import escape

from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import Unicode, default
from traitlets.config import Configurable

from gpuhub.client import ServiceClient, ServiceError
from gpuhub.numbers import human_bytes

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


def vfolder_gids(mounts: list[dict]) -> list[int]:
    """The groups a session needs to enter its vfolders."""
    return sorted({m["gid"] for m in mounts if m.get("gid") is not None})


def local_mount_wrapper(mounts: list[dict], home: str, uid: int, gid: int,
                        groups: list[int] | None = None) -> list[str]:
    """A prefix for the server's command line, run as root: a private mount
    namespace where each vfolder is bound at ~/vfolders/NAME (read-only ones
    remounted ``ro``, which even root cannot write through), then the command
    runs as uid:gid with the supplementary ``groups`` (the account's own ones
    when None; give them plus :func:`vfolder_gids`). The mounts vanish with the
    session's processes."""
    lines = ["set -e"]
    base = f"{home.rstrip('/')}/{MOUNT_DIR}"
    lines.append(f"mkdir -p {shlex.quote(base)} && chown {uid}:{gid} {shlex.quote(base)}")
    for m in mounts:
        dst, src = shlex.quote(mount_target(home, m["name"])), shlex.quote(m["path"])
        lines.append(f"mkdir -p {dst} && chown {uid}:{gid} {dst}")
        lines.append(f"mount --bind {src} {dst}")
        if m["mode"] == "ro":
            lines.append(f"mount -o remount,bind,ro {dst}")
    which = "--init-groups" if groups is None else f"--groups={','.join(map(str, groups)) or str(gid)}"
    lines.append(f'exec setpriv --reuid={uid} --regid={gid} {which} -- "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            "\n".join(lines), "gpuhub-vfolders"]




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

    vfolder_mounts: list[dict] = []

    def _vfolder_session(self) -> str:
        return f"{self.user.name}/{self.name}"

    async def resolve_vfolders(self, names, dry_run: bool) -> dict:
        client = VFolderClient(self.vfolders_url, self.vfolders_token)
        body = {"user": self.user.name, "groups": [g.name for g in self.user.groups],
                "session": self._vfolder_session(), "vfolders": names, "dry_run": dry_run}
        return await client.call("POST", "mounts", body)

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
        if formdata.get("vfolders_form"):
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

    async def start(self):
        self.vfolder_mounts = []
        if self.vfolders_url:
            try:
                answer = await self.resolve_vfolders(self.user_options.get("vfolders"), dry_run=False)
            except ServiceError as e:
                raise SpawnException(f"vfolders: {e.message}", reason="vfolders",
                                     status_code=400 if e.status == 400 else 503) from None
            self.vfolder_mounts = answer["mounts"]
            self.vfolders_resolved()
            if self.vfolder_mounts:
                self._event(50, "mounting vfolders: " + ", ".join(
                    f"{m['name']} ({m['mode']}{': ' + m['reason'] if m.get('reason') else ''})"
                    for m in self.vfolder_mounts))
        try:
            return await super().start()
        except BaseException:
            await self._release_vfolders()
            raise

    def vfolders_resolved(self) -> None:
        """Runtimes prepare their mounts here (self.vfolder_mounts is set)."""

    async def _release_vfolders(self) -> None:
        if not self.vfolders_url:
            return
        try:
            await VFolderClient(self.vfolders_url, self.vfolders_token).call(
                "DELETE", f"mounts?session={self._vfolder_session()}")
        except ServiceError as e:
            self.log.warning("could not release the vfolder mounts of %s: %s", self._log_name, e.message)

    async def stop(self, now=False):
        await super().stop(now=now)
        await self._release_vfolders()


class LocalVFolderMixin(VFolderMixin):
    """Local processes: a hub that runs as root wraps the server's command in
    :func:`local_mount_wrapper` and drops privileges there instead of in the
    pre-exec hook."""

    def _wrapped(self) -> bool:
        return bool(self.vfolder_mounts) and os.getuid() == 0

    async def start(self):
        original = list(self.cmd)
        try:
            return await super().start()
        finally:
            self.cmd = original  # the wrapper is for this start only

    def vfolders_resolved(self) -> None:
        if self._wrapped():
            pw = pwd.getpwnam(self.user.name)
            extra = vfolder_gids(self.vfolder_mounts)
            groups = sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)) | set(extra)) if extra else None
            self.cmd = local_mount_wrapper(self.vfolder_mounts, pw.pw_dir, pw.pw_uid, pw.pw_gid, groups) + list(self.cmd)

    def make_preexec_fn(self, name):
        if not self._wrapped():
            return super().make_preexec_fn(name)
        home = pwd.getpwnam(name).pw_dir

        def preexec():
            os.chdir(home)  # the wrapper drops to the user's account itself

        return preexec


class DockerVFolderMixin(VFolderMixin):
    @property
    def volume_binds(self):
        binds = super().volume_binds
        binds.update(docker_binds(self.vfolder_mounts, self.notebook_dir))
        return binds

    def vfolder_host_config(self) -> dict:
        """docker-py host_config for the vfolders: their groups (``group_add``), so
        the container's user (DockerGPUSpawner.container_user) may enter them."""
        gids = vfolder_gids(self.vfolder_mounts)
        return {"group_add": [str(g) for g in gids]} if gids else {}
