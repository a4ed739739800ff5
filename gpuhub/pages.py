"""What the services' HTML pages share (the allocator's admin panel, the vfolder
service's Data page): each is a hub service page signed in with the hub's OAuth
(HubOAuthenticated: cookies and XSRF) and rendered from JupyterHub's own
``page.html`` (template_env)."""

from __future__ import annotations

import json
import os
import secrets

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from jupyterhub._data import DATA_FILES_PATH
from jupyterhub.services.auth import HubOAuthenticated
from markupsafe import Markup
from tornado import web


def cookie_secret(data_dir: str, name: str) -> bytes:
    """The service's cookie secret, kept in ``data_dir/name`` (mode 600), so
    sign-ins survive a restart."""
    path = os.path.join(data_dir, name)
    try:
        with open(path, "rb") as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def template_env(templates_dir: str, **filters) -> Environment:
    """A page's jinja environment: its own templates in ``templates_dir`` first,
    then JupyterHub's (``page.html`` and what it extends), autoescaped, with the
    page's own ``filters``."""
    env = Environment(
        loader=ChoiceLoader([
            FileSystemLoader(templates_dir),
            FileSystemLoader(os.path.join(DATA_FILES_PATH, "templates")),
        ]),
        autoescape=True,
    )
    env.filters.update(filters)
    return env


class PageUser:
    """What JupyterHub's page.html reads of ``user``."""

    def __init__(self, model: dict):
        self.name = model["name"]
        self.json_escaped_name = Markup(json.dumps(self.name)[1:-1])


class ServicePage(HubOAuthenticated, web.RequestHandler):
    """A page of ``service`` (its ``hub_oauth`` signs the user in)."""

    def initialize(self, service):
        self.service = service
        self.hub_auth = service.hub_oauth
