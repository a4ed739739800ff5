"""The hub's Data page, served by the vfolder service (a managed service with
``display: True``: it is in the hub's *Services* menu, named by the demo's
``info.display_name``): every user's vfolders with their space and quota, their
invitations, create, share and trash, resumable uploads from the browser (tus,
with tus-js-client, the library of the lab panel) whose progress survives a
reload, and downloads; the user's batch jobs (``gpuhub run``) with their state,
logs and a Cancel button, from the allocator as the user (data.jobs). No server
of the user needs to run.

- pages (``{prefix}data/…``, see data.pages): HubOAuth sign-in (the service's
  own OAuth client), server-rendered from JupyterHub's ``page.html``; actions are
  forms with the hub's XSRF token, each one call of the manager, as the REST API
  makes it;
- ``{prefix}data/uploads/…`` and ``{prefix}data/files/…``: the REST API's own tus
  and download handlers, signed in with the page's OAuth cookie (and, for what
  changes anything, its XSRF token in ``X-XSRFToken``) instead of a token.
"""

from __future__ import annotations

import os

from jupyterhub.services.auth import HubOAuth

from gpuhub.pages import cookie_secret

from ..api.base import VID
from . import pages


def attach(service) -> None:
    """Give the service what the page needs: the hub's OAuth client and templates."""
    service.hub_oauth = HubOAuth(cache_max_age=10, **service.hub_auth_settings())
    service.templates = pages.make_env()


def settings(service) -> dict:
    return {"cookie_secret": cookie_secret(service.data_dir, "vfolders-cookie-secret")}


def routes(service) -> list:
    prefix = service.service_prefix.rstrip("/") + "/"
    data = prefix + "data"
    kw = {"service": service}
    return [
        (prefix, pages.RootRedirect, kw),
        (prefix + "oauth_callback", pages.OAuthCallback, kw),
        (data + "/?", pages.DataPage, kw),
        (data + f"/vfolders/{VID}/?", pages.VFolderPage, kw),
        (data + "/create", pages.CreateAction, kw),
        (data + f"/vfolders/{VID}/(share|unshare|trash)", pages.VFolderAction, kw),
        (data + r"/invitations/([^/]+)/(accept|reject)", pages.InvitationAction, kw),
        (data + r"/jobs/([0-9a-f]{12})/logs/?", pages.JobPage, kw),
        (data + r"/jobs/([0-9a-f]{12})/logs\.txt", pages.JobLogText, kw),
        (data + r"/jobs/([0-9a-f]{12})/cancel", pages.JobCancel, kw),
        (data + f"/uploads/{VID}/?", pages.DataUploads, kw),
        (data + f"/uploads/{VID}/([0-9a-f]{{32}})", pages.DataUpload, kw),
        (data + f"/files/{VID}/?(.*)", pages.DataFiles, kw),
        (data + r"/static/(.*)", pages.StaticHandler, {"path": os.path.join(pages.HERE, "static")}),
    ]
