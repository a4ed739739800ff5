"""The admin panel's pages: server-rendered HTML that extends JupyterHub's own
``page.html`` (its navigation bar, Bootstrap 5 and stylesheet, served by the
hub), signed in with the hub's OAuth (HubOAuthenticated: cookies and XSRF).
Admins only: anyone else gets a 403 page and no controls. Actions are forms
(POST with the hub's XSRF token) after a confirmation dialog; each one is also
an API call (see gpu_allocator.api) and is written to the audit log.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import urlencode

from jinja2 import Environment
from jupyterhub.services.auth import HubOAuthCallbackHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import url_concat

from gpuhub.pages import PageUser, ServicePage, template_env

from .. import poolview
from ..core.quota import FIELDS, POOL_FIELDS, Limits
from ..core.reservations import Conflict
from ..core.validation import RequestError, parse_booking, parse_limits, parse_user
from ..scopes import ADMIN_SCOPE, ADMIN_SCOPES
from ..shapes import queued_json, reason_kind, reservation_json
from . import accounting, actions, queue_actions
from .charts import utilisation_chart

HERE = os.path.dirname(os.path.abspath(__file__))

TABS = [
    ("pool", "Pool map", ""),
    ("queue", "Queue", "queue"),
    ("reservations", "Reservations", "reservations"),
    ("usage", "Usage", "usage"),
    ("storage", "Storage", "storage"),
    ("audit", "Audit log", "audit"),
]


def make_env() -> Environment:
    def when(t, fmt="%Y-%m-%d %H:%M:%S"):
        return time.strftime(fmt, time.localtime(t)) if t else "—"

    def age(seconds):
        if seconds is None:
            return "never"
        seconds = max(0, int(seconds))
        if seconds < 120:
            return f"{seconds} s ago"
        if seconds < 7200:
            return f"{seconds // 60} min ago"
        if seconds < 172800:
            return f"{seconds // 3600} h ago"
        return f"{seconds // 86400} days ago"

    def nbytes(n):
        if n is None:
            return "—"
        for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
            if abs(n) < 1024 or unit == "PiB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1024

    def utc(t, fmt="%Y-%m-%d %H:%M UTC"):
        return time.strftime(fmt, time.gmtime(t)) if t else "—"

    return template_env(os.path.join(HERE, "templates"),
                        when=when, age=age, nbytes=nbytes, colour=poolview.user_colour, utc=utc)


class PageHandler(ServicePage):
    @property
    def pool(self):
        return self.service.pool

    @property
    def scopes(self) -> set[str]:
        return set((self.current_user or {}).get("scopes") or ())

    @property
    def is_admin(self) -> bool:
        return bool(ADMIN_SCOPES & self.scopes)

    def require_admin(self):
        if not self.is_admin:
            raise web.HTTPError(
                403, "The GPU pool's admin panel is for GPU pool admins (admin:users or "
                f"{ADMIN_SCOPE}). Ask an administrator if you need it.")

    def namespace(self, **ns) -> dict:
        hub = self.hub_auth.hub_prefix  # /hub/
        base = self.service.base_url
        prefix = self.service.service_prefix
        user = self.current_user
        return {
            "static_url": lambda path, include_version=True: f"{hub}static/{path}",
            "admin_static": lambda path: f"{prefix}admin/static/{path}",
            "base_url": hub,
            "prefix": base,
            "logo_url": hub + "home",
            "user": PageUser(user) if user else None,
            "admin_access": False,
            "no_spawner_check": True,
            "xsrf_token": self.xsrf_token.decode() if isinstance(self.xsrf_token, bytes) else self.xsrf_token,
            "logout_url": hub + "logout",
            "login_url": hub + "login",
            "parsed_scopes": self.scopes,
            "services": [{"name": self.service.service_name, "href": prefix}],
            "announcement": None,
            "version_hash": None,
            "service_prefix": prefix,
            "admin_url": prefix + "admin/",
            "tabs": TABS,
            "flash": self.get_argument("done", ""),
            "now": time.time(),
            **ns,
        }

    def render_page(self, template: str, **ns) -> None:
        html = self.service.templates.get_template(template).render(**self.namespace(**ns))
        self.finish(html)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if status_code >= 500 and not getattr(exc, "log_message", None):
            message = "internal error; the allocator's log has the details"
        try:
            self.render_page("admin/error.html", status_code=status_code, message=message,
                             active=None, title=f"{status_code} {self._reason}")
        except Exception:
            self.finish(f"<h1>{status_code}</h1><p>{message}</p>")

    def back(self, message: str) -> None:
        nxt = self.get_body_argument("next", "") or self.get_argument("next", "")
        admin = self.service.service_prefix + "admin/"
        if not nxt.startswith(admin) or "//" in nxt[len(admin):]:
            nxt = admin
        self.redirect(url_concat(nxt.split("#")[0], {"done": message}))


class RootHandler(PageHandler):
    @web.authenticated
    def get(self):
        self.redirect(self.service.service_prefix + "admin/")


class PoolPage(PageHandler):
    @web.authenticated
    def get(self):
        self.require_admin()
        state = self.pool.state
        try:
            page = int(self.get_argument("page", "1"))
        except ValueError:
            page = 1
        f = poolview.Filters(
            model=self.get_argument("model", ""), host=self.get_argument("host", "").strip(),
            user=self.get_argument("user", "").strip(), state=self.get_argument("state", ""),
            page=page,
        )
        hosts = poolview.host_page(state, self.pool.info, f)
        self.render_page(
            "admin/pool.html", active="pool", title="Pool map", f=f, page=hosts,
            totals=poolview.model_totals(state), per_gpu=state.units_per_gpu,
            host_counts=poolview.host_counts(state), models=state.models(),
            n_allocations=len(state.allocations), users=sorted({a.user for a in state.allocations.values()}),
            overview=poolview.overview(state) if len(state.hosts) <= poolview.OVERVIEW_MAX else None,
            fmt=lambda u: f"{u / state.units_per_gpu:g}",
            reserved={u: r for r in reversed(self.pool.reservations()) for u in r.devices},  # the next one
        )


def _form_limits(form: dict) -> dict:
    """The quota form's fields as core.validation.parse_limits takes them (empty: not set)."""
    out = {}
    for name in FIELDS:
        raw = (form.get(name) or "").strip()
        if raw == "":
            continue
        if name == "gpus":
            out[name] = raw
        elif name in ("sessions", "priority"):
            try:
                out[name] = int(raw)
            except ValueError:
                raise web.HTTPError(400, f"{name} must be a whole number") from None
        else:
            try:
                out[name] = float(raw)
            except ValueError:
                raise web.HTTPError(400, f"{name} must be a number") from None
    return out


class QueuePage(PageHandler):
    @web.authenticated
    def get(self):
        self.require_admin()
        pool = self.pool
        per = pool.units_per_gpu
        rows = []
        for q, e in pool.queued():
            j = queued_json(q, e, per)
            j["kind"] = reason_kind(j["reason"] or "")
            if j["kind"] == "reservation":  # admins see whose (users: only until when)
                rule = pool.restriction(q.req, time.time())
                j["reason"] = rule.reason(time.time(), admin=True) if rule.blocking else j["reason"]
            j["user_priority"] = pool.quotas.resolve(q.req.user, q.groups).priority or 0
            j["own_priority"] = q.priority  # None: the user's applies
            j["eta_t"] = e.expected if e else None
            j["eta_latest_t"] = e.latest if e else None
            j["submitted_t"] = q.submitted
            rows.append(j)
        quotas = pool.quotas
        table = [("user", n, "", v.as_dict(per)) for n, v in sorted(quotas.users.items())]
        table += [("group", n, "", v.as_dict(per)) for n, v in sorted(quotas.groups.items())]
        for p, rows in sorted(quotas.pools.items()):  # per host pool: gpus, sessions, GPU-hours there
            table += [("user", n, p, v.as_dict(per)) for n, v in sorted(rows.users.items())]
            table += [("group", n, p, v.as_dict(per)) for n, v in sorted(rows.groups.items())]
            if rows.default != Limits():
                table.append(("default", "*", p, rows.default.as_dict(per)))
        self.render_page("admin/queue.html", active="queue", title="Queue", queued=rows,
                         quotas=table, fields=FIELDS, default=quotas.default.as_dict(per),
                         pools=sorted(pool.pools),
                         ratio=pool.ratio)


class QueueAction(PageHandler):
    @web.authenticated
    async def post(self, request_id, action):
        self.require_admin()
        reason = actions.clean_reason(self.get_body_argument("reason", ""))
        actor = self.current_user["name"]
        try:
            if action == "cancel":
                q = await queue_actions.cancel(self.service, actor, request_id, reason)
                self.back(f"Request {request_id} of {q.req.user} cancelled.")
            else:
                try:  # empty: the request takes its user's priority again
                    priority = queue_actions.parse_priority(self.get_body_argument("priority", ""),
                                                            allow_none=True)
                except ValueError as e:
                    raise web.HTTPError(400, str(e)) from None
                d = await queue_actions.set_priority(self.service, actor, request_id, priority, reason)
                self.back(f"Priority of request {request_id} of {d['user']} set to {priority}." if priority
                          is not None else f"Request {request_id} of {d['user']} has its user's priority again.")
        except queue_actions.NotQueued:
            raise web.HTTPError(404, f"no queued request {request_id}") from None


class QuotaAction(PageHandler):
    @web.authenticated
    async def post(self):
        self.require_admin()
        kind = self.get_body_argument("kind", "")
        # a host pool's row ("": over every pool): gpus, sessions, GPU-hours there
        in_pool = self.get_body_argument("pool", "").strip()
        if in_pool and in_pool not in self.pool.pools:
            raise web.HTTPError(400, f"no pool {in_pool!r}; GPUAllocator.pools has {', '.join(self.pool.pools)}")
        if kind not in ("user", "group") and not (kind == "default" and in_pool):
            raise web.HTTPError(400, "kind is user or group (default: only with a pool)")
        if kind == "default":
            name = "*"
        else:
            try:
                name = parse_user(self.get_body_argument("name", "").strip())
            except RequestError as e:
                raise web.HTTPError(400, str(e).replace("user", kind, 1)) from None
        reason = actions.clean_reason(self.get_body_argument("reason", ""))
        actor = self.current_user["name"]
        where = f" in pool {in_pool}" if in_pool else ""
        if self.get_body_argument("remove", ""):
            await queue_actions.set_quota(self.service, actor, kind, name, None, reason, pool=in_pool)
            self.back(f"Quota of {kind} {name}{where} removed.")
            return
        form = {k: self.get_body_argument(k, "") for k in ("gpus", "sessions", "gpu_hours", "priority",
                                                            "share", "max_wait_hours")}
        try:
            limits = parse_limits(_form_limits(form), self.pool.units_per_gpu,
                                  POOL_FIELDS if in_pool else FIELDS)
        except RequestError as e:
            raise web.HTTPError(400, str(e) + (" (in a pool)" if in_pool else "")) from None
        await queue_actions.set_quota(self.service, actor, kind, name, limits, reason, pool=in_pool)
        self.back(f"Quota of {kind} {name}{where} set.")


class UsagePage(PageHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        by = self.get_argument("by", "user")
        by = by if by in ("user", "group") else "user"
        since, until = self.get_argument("since", ""), self.get_argument("until", "")
        error = None
        try:
            table, start, end = await accounting.usage_table(self.service, since or None, until or None, by)
        except accounting.PeriodError as e:
            error, table = str(e), []
            start, end = accounting.period(None, None)
        charts = {}
        for window in ("24h", "7d"):
            series = self.service.samples.series(window, 96 if window == "24h" else 168)
            charts[window] = [
                (model, utilisation_chart(points, series["start"], series["end"], window,
                                          f"{model} — last {'24 hours' if window == '24h' else '7 days'}"))
                for model, points in series["models"].items()
            ]
        top = max((r["gpu_hours"] for r in table), default=0.0) or 1.0
        query = {"by": by, "format": "csv", "since": since or f"{start:.0f}", "until": until or f"{end:.0f}"}
        self.render_page(
            "admin/usage.html", active="usage", title="Usage", by=by, table=table, top=top,
            since=since or time.strftime("%Y-%m-%d", time.gmtime(start)),
            until=until or time.strftime("%Y-%m-%d", time.gmtime(end)),
            start=start, end=end, error=error, charts=charts,
            csv_url=self.service.service_prefix + "admin/usage.csv?" + urlencode(query),
            interval=self.service.samples.interval,
        )


class UsageCSV(PageHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        by = self.get_argument("by", "user")
        if by not in ("user", "group"):
            raise web.HTTPError(400, "by is user or group")
        try:
            table, start, end = await accounting.usage_table(
                self.service, self.get_argument("since", None), self.get_argument("until", None), by)
        except accounting.PeriodError as e:
            raise web.HTTPError(400, str(e)) from None
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="gpu-hours-by-{by}.csv"')
        self.finish(accounting.to_csv(by, table, start, end))


class StoragePage(PageHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        hosts, error = [], None
        url = self.service.vfolders_url
        if not url:
            error = "the vfolder service is not configured (GPUAllocator.vfolders_url)"
        else:
            try:
                resp = await AsyncHTTPClient().fetch(HTTPRequest(
                    url.rstrip("/") + "/storage/hosts",
                    headers={"Authorization": f"token {self.service.api_token}"},
                    request_timeout=10,
                ))
                hosts = json.loads(resp.body)["hosts"]
            except Exception as e:
                error = f"the vfolder service did not answer: {e}"
        self.render_page("admin/storage.html", active="storage", title="Storage", hosts=hosts, error=error)


class AuditPage(PageHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        try:
            page = max(1, int(self.get_argument("page", "1")))
        except ValueError:
            page = 1
        per_page = 50
        entries, total = await self.pool.read(
            lambda: actions.read_audit(self.pool.ledger, per_page, (page - 1) * per_page))
        self.render_page("admin/audit.html", active="audit", title="Audit log", entries=entries,
                         total=total, page=page, pages=max(1, -(-total // per_page)))


class DrainAction(PageHandler):
    @web.authenticated
    async def post(self, name, action):
        self.require_admin()
        reason = actions.clean_reason(self.get_body_argument("reason", ""))
        if not await actions.set_drained(self.service, self.current_user["name"], name,
                                         action == "drain", reason):
            raise web.HTTPError(404, f"no host {name}")
        self.back(f"Host {name} {action}ed.")


class RevokeAction(PageHandler):
    @web.authenticated
    async def post(self, allocation_id):
        self.require_admin()
        reason = actions.clean_reason(self.get_body_argument("reason", ""))
        done = await actions.revoke(self.service, self.current_user["name"], allocation_id, reason)
        if done is None:
            raise web.HTTPError(404, f"no live allocation {allocation_id}")
        self.back(f"Allocation {allocation_id} of {done.user} revoked; the hub stops the session.")


class ReservationsPage(PageHandler):
    @web.authenticated
    def get(self):
        self.require_admin()
        state, now = self.pool.state, time.time()
        rows = []
        for r in self.pool.reservations(now=now):
            j = reservation_json(r, state, now)
            j["start_t"], j["end_t"] = r.start, r.end
            rows.append(j)
        hour = (int(now) // 3600 + 1) * 3600
        self.render_page(
            "admin/reservations.html", active="reservations", title="Reservations", reservations=rows,
            hosts=[(n, sorted({d.model for d in h.devices})) for n, h in sorted(state.hosts.items()) if h.devices],
            models=state.models(),
            default_start=time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour)),
            default_end=time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour + 4 * 3600)),
        )


class ReservationAction(PageHandler):
    """Book (POST …/reservations) or cancel (POST …/reservations/{id}/cancel): the
    same audited actions as the API (admin.actions)."""

    @web.authenticated
    async def post(self, reservation_id=None):
        self.require_admin()
        actor = self.current_user["name"]
        if reservation_id is not None:
            reason = actions.clean_reason(self.get_body_argument("reason", ""))
            done = await actions.cancel_reservation(self.service, actor, reservation_id, reason)
            if done is None:
                raise web.HTTPError(404, f"no active reservation {reservation_id}")
            self.back(f"Reservation {reservation_id} of {done.user} cancelled.")
            return
        form = {k: self.get_body_argument(k, "").strip() for k in ("host", "model", "gpus", "start", "end", "note")}
        data = {k: v for k, v in form.items() if v != ""}
        try:
            if "gpus" in data:
                data["gpus"] = int(data["gpus"]) if data["gpus"].isdigit() else data["gpus"]
            booking = parse_booking(data, self.pool.state, time.time())
            user = parse_user(self.get_body_argument("user", "").strip())
        except RequestError as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            r = await actions.reserve(self.service, actor, user=user, **booking)
        except Conflict as e:
            raise web.HTTPError(409, str(e)) from None
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        self.back(f"Reserved {r.gpus} × {r.model} on {r.host} for {r.user} (reservation {r.id}).")


class OAuthCallback(HubOAuthCallbackHandler):
    def initialize(self, service):
        self.hub_auth = service.hub_oauth


class StaticHandler(web.StaticFileHandler):
    pass
