"""The application base of gpuhub's long-running services.

- :class:`ServiceApp`: a traitlets application with a config file given on the
  command line and an asyncio main (the allocator, the agents, the vfolder service);
- :class:`HubService`: a JupyterHub service that serves HTTP — where it listens
  comes from the environment JupyterHub gives managed services
  (JUPYTERHUB_SERVICE_URL, …_PREFIX), tokens are checked with HubAuth, and SIGTERM
  or SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
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
        "", help="A traitlets config file (Python) to load, e.g. gpu_allocator_config.py."
    ).tag(config=True)

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    async def start_async(self) -> None:
        raise NotImplementedError

    def start(self):
        asyncio.run(self.start_async())


class HubService(ServiceApp):
    """A JupyterHub service with a REST API (tornado)."""

    #: the service's name in JupyterHub (used in scopes and messages)
    service_name = "service"
    #: where it listens when JupyterHub does not say (JUPYTERHUB_SERVICE_URL)
    default_url = "http://127.0.0.1:8000"

    ip = Unicode(help="Address to listen on. Default: from $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )
    port = Int(help="Port to listen on. Default: from $JUPYTERHUB_SERVICE_URL.").tag(config=True)
    service_prefix = Unicode(
        help="URL prefix of the service. Default: $JUPYTERHUB_SERVICE_PREFIX or "
        "/services/NAME/."
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

    def initialize(self, argv=None):
        super().initialize(argv)
        self.hub_auth = CachedHubAuth(cache_max_age=10)

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
