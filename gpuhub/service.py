"""The application base of gpuhub's long-running services.

- :class:`ServiceApp`: a traitlets application with a config file given on the
  command line and an asyncio main (the allocator, the agents, the vfolder service);
- :class:`HubService`: a JupyterHub service that serves HTTP, with the settings
  JupyterHub gives a managed service (where it listens, its URL prefix, the hub's
  API and the service's own token) as traits; tokens are checked with HubAuth, and
  SIGTERM or SIGINT stop it cleanly.

Services read their settings only from traitlets: a config file (``--config``)
and the command line (``--GPUAllocator.heartbeat_interval=5``). The one
exception is JupyterHub's own mechanism for managed services, its
``JUPYTERHUB_*`` environment variables, which are read here — in the defaults of
:class:`HubService`'s traits — and nowhere else in gpuhub's service code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from urllib.parse import urlparse

from tornado import web
from traitlets import Int, Unicode, default
from traitlets.config import Application

from .api import CachedHubAuth, JSONNotFound


class ServiceApp(Application):
    """Base of gpuhub's long-running services; subclasses define start_async()."""

    config_file = Unicode(
        "",
        help="""A traitlets config file (Python) to load after the command line.

        For example ``data/gpu_allocator_config.py`` with lines such as
        ``c.GPUAllocator.heartbeat_interval = 5``. The demo's
        hub_config/jupyterhub_config.py writes one for each service it runs.
        Empty (the default): the command line and the traits' defaults only.
        """,
    ).tag(config=True)

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    async def start_async(self) -> None:
        raise NotImplementedError

    def start(self):
        asyncio.run(self.start_async())


class InfoLogging(Application):
    """Log at INFO, with timestamps like JupyterHub's (for the agent and the
    shutdown service, whose few lines are what an admin reads; mix in before
    the Application)."""

    @default("log_level")
    def _default_log_level(self):
        return logging.INFO

    @default("log_format")
    def _default_log_format(self):
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"

    @default("log_datefmt")
    def _default_log_datefmt(self):
        return "%Y-%m-%d %H:%M:%S"


class HubService(ServiceApp):
    """A JupyterHub service with a REST API (tornado)."""

    #: the service's name in JupyterHub (used in scopes and messages)
    service_name = "service"
    #: where it listens when JupyterHub does not say (JUPYTERHUB_SERVICE_URL)
    default_url = "http://127.0.0.1:8000"

    ip = Unicode(
        help="""The address the service listens on, e.g. ``0.0.0.0`` so that GPU host
        agents on other machines reach the allocator directly.

        Default: the host of $JUPYTERHUB_SERVICE_URL, the ``url`` that the hub's
        ``c.JupyterHub.services`` entry gives a managed service (JupyterHub's
        mechanism: the hub and its proxy reach the service there), else 127.0.0.1.
        """,
    ).tag(config=True)

    port = Int(
        help="""The TCP port the service listens on, e.g. 8051.

        Default: the port of $JUPYTERHUB_SERVICE_URL (see ``ip``), else the
        service's own default (8051 for the allocator, 8052 for vfolders).
        """,
    ).tag(config=True)

    service_prefix = Unicode(
        help="""The URL path under which the service answers, e.g.
        ``/services/gpu-allocator/``: the proxy forwards this prefix to it.

        Default: $JUPYTERHUB_SERVICE_PREFIX (set by JupyterHub for managed
        services), else ``/services/NAME/`` as JupyterHub would name it.
        """,
    ).tag(config=True)

    hub_api_url = Unicode(
        help="""The hub's REST API, e.g. ``http://127.0.0.1:8081/hub/api``: where the
        service checks tokens and reads the hub's users, servers and groups.

        Default: $JUPYTERHUB_API_URL (set by JupyterHub for managed services).
        Empty: the service does not run under a hub, and what needs the hub's
        REST API (the allocator's reconciliation with the hub's servers, GPU-hours
        by group) is off.
        """,
    ).tag(config=True)

    api_token = Unicode(
        help="""The service's own JupyterHub API token: it authenticates the service
        to the hub (token checks, the hub's REST API) and to the other gpuhub
        services (the admin panel's storage tab asks the vfolder service).

        Default: $JUPYTERHUB_API_TOKEN. JupyterHub hands a managed service its token
        through this variable (a secret never belongs on a command line, where
        every account can read it); set it in a config file only for a service
        that JupyterHub does not start.
        """,
    ).tag(config=True)

    base_url = Unicode(
        help="""The hub's public URL prefix, e.g. ``/`` or ``/jupyter/``; the admin
        panel's pages link to the hub's pages under it.

        Default: $JUPYTERHUB_BASE_URL (set by JupyterHub for managed services),
        else ``/``, JupyterHub's own default.
        """,
    ).tag(config=True)

    data_dir = Unicode(
        help="""The directory of the service's own state when nothing else is
        configured: its default SQLite database, its cookie secret, and (vfolders)
        the default storage host. E.g. ``/var/lib/gpuhub``.

        Default: ``data`` under the working directory, as the demo (``make demo``)
        keeps all its state in the checkout's ``data/``; the demo's
        jupyterhub_config.py sets it to the hub's data directory.
        """,
    ).tag(config=True)

    @default("ip")
    def _default_ip(self):
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", self.default_url)).hostname

    @default("port")
    def _default_port(self):
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", self.default_url)).port or 80

    @default("service_prefix")
    def _default_prefix(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    @default("hub_api_url")
    def _default_hub_api_url(self):
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    @default("base_url")
    def _default_base_url(self):
        return os.environ.get("JUPYTERHUB_BASE_URL", "/")

    @default("data_dir")
    def _default_data_dir(self):
        return os.path.abspath("data")

    @property
    def under_hub(self) -> bool:
        """Whether the hub's REST API is known (the service runs under a hub)."""
        return bool(self.hub_api_url and self.api_token)

    def hub_auth_settings(self) -> dict:
        """The hub's API, the service's token and the hub's prefix, for JupyterHub's
        HubAuth and HubOAuth (so that they use the traits, not their own
        environment reads)."""
        out = {"api_token": self.api_token, "hub_prefix": self.base_url.rstrip("/") + "/hub/"}
        if self.hub_api_url:
            out["api_url"] = self.hub_api_url
        return out

    def initialize(self, argv=None):
        super().initialize(argv)
        self.hub_auth = CachedHubAuth(cache_max_age=10, **self.hub_auth_settings())

    def web_app(self, handlers: list, **settings) -> web.Application:
        return web.Application(handlers, default_handler_class=JSONNotFound, **settings)

    def listen(self, app: web.Application) -> None:
        app.listen(self.port, self.ip, xheaders=True)
        self.log.info("%s listening on http://%s:%i%s", self.service_name, self.ip, self.port,
                      self.service_prefix)

    async def wait_for_signal(self) -> None:
        """Until SIGTERM or SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
