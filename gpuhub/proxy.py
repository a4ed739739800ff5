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
"""

from __future__ import annotations

from jupyterhub.proxy import ConfigurableHTTPProxy


class GPUHubProxy(ConfigurableHTTPProxy):
    """ConfigurableHTTPProxy (configured as ``c.ConfigurableHTTPProxy.…``) that
    looks a route up before removing it."""

    async def delete_route(self, routespec):
        if await self.get_route(routespec) is None:
            self.log.debug("No route %s in the proxy: nothing to remove", routespec)
            return
        await super().delete_route(routespec)
