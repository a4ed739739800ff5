"""The hub's proxy: JupyterHub's ConfigurableHTTPProxy, removing only routes that
exist (``c.JupyterHub.proxy_class = "gpuhub.proxy.GPUHubProxy"``).

JupyterHub removes a server's route from the proxy whenever the server stops,
also when its spawn was cancelled before the server started — a spawn that
leaves the allocator's queue (Stop or "Leave the queue" on the waiting page, the
hub's shutdown). That server was never added to the proxy:
configurable-http-proxy answers the DELETE with 404, which JupyterHub logs as an
error (``api_request to proxy failed: 404``) and a warning. This proxy looks the
route up first (JupyterHub's own ``Proxy.get_route``: one read of the proxy's
route table, which always answers 200) and removes it only when it is there.

It also starts configurable-http-proxy with ``proxy_client_resets.mjs``
preloaded (``node --import``): CHP 5.3.0 leaves its proxy server's "error" event
without a listener, so a browser that resets a websocket (a JupyterLab terminal
or tab closing) made it log "Uncaught Exception: read ECONNRESET". See
:attr:`GPUHubProxy.quiet_client_resets`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from jupyterhub.proxy import ConfigurableHTTPProxy
from traitlets import Bool

PRELOAD = Path(__file__).resolve().parent / "proxy_client_resets.mjs"


def node_command(command: list[str], which=shutil.which) -> list[str]:
    """``command`` (CHP's launcher, e.g. ``["configurable-http-proxy"]``) as
    ``node --import PRELOAD <CHP's script> …``; unchanged when the launcher is
    not found or is already run through node."""
    if not command or os.path.basename(command[0]) in ("node", "nodejs"):
        return command
    found = which(command[0]) if os.sep not in command[0] else command[0]
    node = which("node") or which("nodejs")
    if not found or not node:
        return command
    return [node, "--import", str(PRELOAD), os.path.realpath(found), *command[1:]]


class GPUHubProxy(ConfigurableHTTPProxy):
    """ConfigurableHTTPProxy (configured as ``c.ConfigurableHTTPProxy.…``) that
    looks a route up before removing it."""

    quiet_client_resets = Bool(
        True,
        help="""Start configurable-http-proxy with gpuhub's ``proxy_client_resets.mjs``
        preloaded (``node --import``), which gives the proxy server the "error"
        listener CHP 5.3.0 lacks: a websocket client that went away (ECONNRESET,
        EPIPE, ECONNABORTED: a closed JupyterLab terminal or tab) is closed
        quietly instead of being logged as "Uncaught Exception: read ECONNRESET";
        any other proxy error is still logged.

        Default True. Turn it off to run ``command`` exactly as configured (a
        CHP that is not a node script, or a newer CHP that handles it).
        """,
    ).tag(config=True)

    async def start(self):
        if self.quiet_client_resets:
            wrapped = node_command(self.command)
            if wrapped != self.command:
                self.log.info("Starting configurable-http-proxy through node with gpuhub's client-reset "
                              "listener (%s)", PRELOAD.name)
            self.command = wrapped
        return await super().start()

    async def delete_route(self, routespec):
        if await self.get_route(routespec) is None:
            self.log.debug("No route %s in the proxy: nothing to remove", routespec)
            return
        await super().delete_route(routespec)
