"""The Data page's handlers: server-rendered HTML that extends JupyterHub's own
``page.html`` (its navigation bar, Bootstrap 5, stylesheet and light/dark
toggle, served by the hub), signed in with the hub's OAuth (HubOAuthenticated:
cookies and XSRF). Each user sees and changes only what the REST API would let
their token see and change: the same manager calls, the same permission checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from urllib.parse import quote, urlencode

from jinja2 import Environment
from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web

from gpuhub.client import ServiceError
from gpuhub.numbers import human_bytes
from gpuhub.pages import PageUser, ServicePage, template_env

from ..api.files import FilesHandler
from ..api.uploads import UploadHandler, UploadsHandler
from ..core.mounts import mount_names
from ..core.names import InvalidName, split_relpath
from ..core.permissions import Action, Caller, Role
from ..manager import Refused
from ..storage import fsops
from ..store.schema import Quota
from . import jobs as jobs_

HERE = os.path.dirname(os.path.abspath(__file__))
#: the most entries a folder listing shows (the rest: download the folder)
MAX_ENTRIES = 500


def make_env() -> Environment:
    def nbytes(n):
        return "—" if n is None else human_bytes(n)

    def when(t):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "—"

    return template_env(os.path.join(HERE, "templates"), nbytes=nbytes, when=when, urlpath=lambda p: quote(p),
                        clock=jobs_.clock, command=jobs_.short_command, gpus=jobs_.gpus,
                        badge=lambda state: jobs_.BADGES.get(state, "text-bg-secondary"))


class PageHandler(ServicePage):
    @property
    def manager(self):
        return self.service.manager

    @property
    def caller(self) -> Caller:
        user = self.current_user
        # the page acts for its user only: an admin uses the admin panel or the API
        return Caller(user["name"], frozenset(user.get("groups") or ()), False)

    async def transact(self, fn, *args):
        return await self.manager.store.run(fn, *args)

    @property
    def data_url(self) -> str:
        return self.service.service_prefix + "data/"

    def namespace(self, **ns) -> dict:
        hub = self.hub_auth.hub_prefix  # /hub/
        user = self.current_user
        xsrf = self.xsrf_token
        return {
            "static_url": lambda path, include_version=True: f"{hub}static/{path}",
            "data_static": lambda path: f"{self.data_url}static/{path}",
            "base_url": hub,
            "prefix": self.service.base_url,
            "logo_url": hub + "home",
            "user": PageUser(user) if user else None,
            "admin_access": False,
            "no_spawner_check": True,
            "xsrf_token": xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            "logout_url": hub + "logout",
            "login_url": hub + "login",
            "parsed_scopes": set((user or {}).get("scopes") or ()),
            "services": [{"name": "Data", "href": self.data_url}],
            "announcement": None,
            "version_hash": None,
            "data_url": self.data_url,
            "flash": self.get_argument("done", ""),
            "error": self.get_argument("error", ""),
            **ns,
        }

    def render_page(self, template: str, **ns) -> None:
        self.finish(self.service.templates.get_template(template).render(**self.namespace(**ns)))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if status_code >= 500 and not getattr(exc, "log_message", None):
            message = "internal error; the vfolder service's log has the details"
        try:
            self.render_page("data/error.html", status_code=status_code, message=message,
                             reason=self._reason)
        except Exception:
            self.finish(f"<h1>{status_code}</h1><p>{message}</p>")

    def back(self, done: str = "", error: str = "", vid: str | None = None, fragment: str = "") -> None:
        url = self.data_url + (f"vfolders/{vid}/" if vid else "")
        query = {k: v for k, v in (("done", done), ("error", error)) if v}
        self.redirect(url + ("?" + urlencode(query) if query else "") + (f"#{fragment}" if fragment else ""))

    def allocator(self, timeout: float = 10.0) -> jobs_.AllocatorJobs | None:
        """The allocator's jobs API as the signed-in user (their OAuth token, kept
        in the page's cookie); None when no allocator is configured."""
        url = self.service.allocator_url
        if not url:
            return None
        return jobs_.AllocatorJobs(url, self.hub_auth.get_token(self) or "", timeout=timeout)

    async def list_jobs(self) -> tuple[list[dict] | None, str]:
        """The user's newest jobs, or None and why there are none to show."""
        client = self.allocator()
        if client is None:
            return None, "No GPU allocator is configured for this page (VFolderService.allocator_url)."
        try:
            return await client.list(), ""
        except ServiceError as e:
            return None, jobs_.unreachable_message(e)


class RootRedirect(PageHandler):
    """The service's own URL (the Services menu's link): the Data page."""

    def get(self):
        self.redirect(self.data_url)


def _usage_pct(model: dict) -> float | None:
    limit = (model.get("quota") or {}).get("bytes")
    if not limit:
        return None
    return min(100.0, 100.0 * model["usage"]["bytes"] / limit)


class DataPage(PageHandler):
    @web.authenticated
    async def get(self):
        caller = self.caller

        def read(db):
            rows = self.manager.accessible(db, caller)
            names = mount_names([(vf.id, vf.name, vf.owner_kind, vf.owner) for vf, _ in rows], caller.name)
            vfolders = []
            for vf, role in rows:
                model = self.manager.json(db, vf, role, caller)
                model["mount_name"] = names[vf.id]
                model["used_pct"] = _usage_pct(model)
                vfolders.append(model)
            vfolders.sort(key=lambda v: (v["kind"] != "home", v["owner"] != caller.name, v["mount_name"]))
            q = db.get(Quota, ("user", caller.name))
            used = self.manager.owner_usage(db, "user", caller.name)
            storage = {"bytes": used.bytes, "files": used.files,
                       "limit": q.max_bytes if q else None, "limit_files": q.max_files if q else None}
            storage["pct"] = min(100.0, 100.0 * used.bytes / q.max_bytes) if q and q.max_bytes else None
            return vfolders, self.manager.invitations(db, caller), storage

        (vfolders, invitations, storage), (jobs, jobs_error) = await asyncio.gather(
            self.transact(read), self.list_jobs())
        self.render_page("data/index.html", title="Data", vfolders=vfolders, invitations=invitations,
                         storage=storage, jobs=jobs, jobs_error=jobs_error, active_states=jobs_.ACTIVE)


def list_folder(base: str, parts: tuple[str, ...]) -> tuple[list[dict], bool]:
    """The entries of a folder in a vfolder (links shown, never followed);
    whether the listing was cut at MAX_ENTRIES."""
    fd, st = fsops.open_entry(base, parts)
    try:
        if not stat.S_ISDIR(st.st_mode):
            raise fsops.PathRefused(400, "not a folder: download it instead")
        out = []
        with os.scandir(fd) as it:
            for entry in it:
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind = "dir" if stat.S_ISDIR(est.st_mode) else "file" if stat.S_ISREG(est.st_mode) else "other"
                out.append({"name": entry.name, "kind": kind, "size": est.st_size if kind == "file" else None,
                            "mtime": est.st_mtime})
    finally:
        os.close(fd)
    out.sort(key=lambda e: (e["kind"] != "dir", e["name"].lower()))
    return out[:MAX_ENTRIES], len(out) > MAX_ENTRIES


class VFolderPage(PageHandler):
    @web.authenticated
    async def get(self, vid):
        caller = self.caller
        try:
            parts = split_relpath(self.get_argument("path", ""))
        except InvalidName as e:
            raise web.HTTPError(400, str(e)) from None

        def read(db):
            vf, role = self.manager.get(db, vid, caller, Action.READ)
            model = self.manager.json(db, vf, role, caller)
            model["used_pct"] = _usage_pct(model)
            model["mount_name"] = mount_names([(vf.id, vf.name, vf.owner_kind, vf.owner)], caller.name)[vf.id]
            return model, self.manager.path_of(vf), role

        try:
            model, base, role = await self.transact(read)
        except Refused as e:
            raise web.HTTPError(e.status, e.message) from None
        try:
            entries, cut = await asyncio.get_running_loop().run_in_executor(None, list_folder, base, parts)
        except fsops.PathRefused as e:
            raise web.HTTPError(e.status, e.message) from None
        path = "/".join(parts)
        crumbs = [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]
        self.render_page("data/vfolder.html", title=model["mount_name"], v=model, entries=entries, cut=cut,
                         path=path, crumbs=crumbs, writable=role >= Role.RW and model["state"] == "ready",
                         manages=role >= Role.OWNER)


class CreateAction(PageHandler):
    @web.authenticated
    async def post(self):
        caller = self.caller
        name = self.get_body_argument("name", "").strip()

        def create(db):
            vf = self.manager.create(db, caller, name)
            return vf.id

        try:
            vid = await self.transact(create)
        except Refused as e:
            return self.back(error=f"Could not create {name!r}: {e.message}")
        self.service.schedule_scan(vid)
        self.back(done=f"Created vfolder {name}.", vid=vid)


class VFolderAction(PageHandler):
    @web.authenticated
    async def post(self, vid, action):
        caller = self.caller
        user = self.get_body_argument("user", "").strip()
        permission = self.get_body_argument("permission", "ro")

        def act(db):
            vf, _ = self.manager.get(db, vid, caller, Action.MANAGE)
            if action == "share":
                self.manager.share(db, vf, caller, {"user": user, "permission": permission})
                return f"Invited {user} to {vf.name} ({permission}); they accept on their Data page."
            if action == "unshare":
                self.manager.unshare(db, vf, {"user": user})
                return f"{user} no longer shares {vf.name}."
            self.manager.trash(db, vf)
            return f"Moved {vf.name} to the trash (an administrator can restore it)."

        try:
            message = await self.transact(act)
        except Refused as e:
            return self.back(error=e.message, vid=None if action == "trash" and e.status == 404 else vid)
        self.back(done=message, vid=None if action == "trash" else vid)


class InvitationAction(PageHandler):
    @web.authenticated
    async def post(self, sid, answer):
        caller = self.caller

        def act(db):
            s = self.manager.answer(db, caller, sid, answer == "accept")
            return s.vfolder.name, s.vfolder.owner

        try:
            name, owner = await self.transact(act)
        except Refused as e:
            return self.back(error=e.message)
        self.back(done=f"{'Accepted' if answer == 'accept' else 'Declined'} {owner}'s vfolder {name}.")


# --- batch jobs: the allocator's, as the signed-in user -------------------------------------


class JobPage(PageHandler):
    """One job: its state and the last LOG_TAIL bytes of its output (refreshed
    by data.js while it is not over)."""

    @web.authenticated
    async def get(self, job_id):
        client = self.allocator()
        if client is None:
            raise web.HTTPError(503, "No GPU allocator is configured for this page (VFolderService.allocator_url).")
        try:
            job = await client.get(job_id)
            size = await self.log_size(job)
            offset = max(0, size - jobs_.LOG_TAIL) if size else 0
            data, headers = await client.logs(job_id, offset)
        except ServiceError as e:
            raise web.HTTPError(e.status if 400 <= e.status < 600 else 502, jobs_.unreachable_message(e)) from None
        self.render_page("data/job.html", title=f"job {job_id}", job=job, log=data.decode("utf-8", "replace"),
                         offset=offset, next_offset=int(headers.get("X-Log-Offset") or offset + len(data)),
                         note=headers.get("X-Log-Note", ""), active=job["state"] in jobs_.ACTIVE)

    async def log_size(self, job: dict) -> int | None:
        """How long the job's output.log is, read where it lies (the user's home
        vfolder on this service's storage), so that the page asks the allocator
        for its tail only; None when it cannot be told."""
        vid = job.get("home_vfolder")
        if not vid:
            return None
        caller = self.caller

        def base_of(db):
            vf, _ = self.manager.get(db, vid, caller, Action.READ)
            return self.manager.path_of(vf)

        try:
            base = await self.transact(base_of)
            parts = split_relpath(f"{job['folder']}/output.log")
        except (Refused, InvalidName, KeyError):
            return None

        def size():
            fd, st = fsops.open_entry(base, parts)
            os.close(fd)
            return st.st_size

        try:
            return await asyncio.get_running_loop().run_in_executor(None, size)
        except (fsops.PathRefused, OSError):
            return None


class JobLogText(PageHandler):
    """``jobs/ID/logs.txt?offset=N``: the job's output from byte N as text (for the
    page's refresh), with the allocator's X-Log-Offset, X-Job-State and
    X-Job-Exit-Code."""

    @web.authenticated
    async def get(self, job_id):
        client = self.allocator()
        if client is None:
            raise web.HTTPError(503, "no GPU allocator is configured")
        try:
            offset = max(0, int(self.get_argument("offset", "0")))
        except ValueError:
            raise web.HTTPError(400, "offset must be a byte count") from None
        try:
            data, headers = await client.logs(job_id, offset)
        except ServiceError as e:
            self.set_status(e.status if 400 <= e.status < 600 else 502)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            return self.finish(e.message)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        for h in ("X-Log-Offset", "X-Job-State", "X-Job-Exit-Code"):
            if h in headers:
                self.set_header(h, headers[h])
        self.finish(data)


class JobCancel(PageHandler):
    @web.authenticated
    async def post(self, job_id):
        client = self.allocator(timeout=70.0)  # the hub's removal of a running job's server
        if client is None:
            return self.back(error="No GPU allocator is configured for this page.", fragment="data-jobs")
        try:
            job = await client.cancel(job_id)
        except ServiceError as e:
            return self.back(error=f"Could not cancel job {job_id}: {e.message}", fragment="data-jobs")
        self.back(done=f"Cancelled job {job['id']} ({job['state']}).", fragment="data-jobs")


# --- the REST API's handlers, signed in with the page's cookie ----------------------------


class CookieAuth:
    """The Data page's own tus and download endpoints: the REST API's handlers,
    authenticated by the page's OAuth cookie instead of a token. What changes
    anything (tus POST, PATCH, DELETE) also needs the page's XSRF token in
    ``X-XSRFToken``: HubOAuth accepts the cookie only with it."""

    def initialize(self, service):
        super().initialize(service)
        self.hub_auth = service.hub_oauth

    def check_xsrf_cookie(self):
        return self.hub_auth.check_xsrf_cookie(self)

    def prepare(self):
        if self.current_user is None:
            raise web.HTTPError(403, "not signed in (or the page is old): reload the Data page")
        return super().prepare()


class DataUploads(CookieAuth, UploadsHandler):
    def upload_location(self, vid: str, uid: str) -> str:
        return f"{self.service.service_prefix}data/uploads/{vid}/{uid}"


class DataUpload(CookieAuth, UploadHandler):
    pass


class DataFiles(CookieAuth, FilesHandler):
    pass


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self, service):
        self.hub_auth = service.hub_oauth


class StaticHandler(web.StaticFileHandler):
    pass
