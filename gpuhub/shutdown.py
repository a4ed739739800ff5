"""``python -m gpuhub.shutdown``: a managed service of the hub that stops the
users' servers when the hub shuts down, while the other services still run.

JupyterHub's shutdown (``JupyterHub.cleanup``) first stops its managed services,
one after the other in the order of ``c.JupyterHub.services``, and only then the
users' servers (``JupyterHub.cleanup_servers``). A server's stop gives its GPU
share back to the allocator and its vfolder mounts to the vfolder service, and
a spawn waiting in the queue leaves it: with those services already gone, every
share stayed on record as granted or queued.

This service does nothing until the hub stops it. Listed first among the
services, it is the first one stopped: on SIGINT or SIGTERM it stops every
running or pending server through the hub's REST API — as a user's Stop would:
the route leaves the proxy, the spawn or the server stops, the share is
released — and waits until none is left (at most ``GPUHubShutdown.timeout``),
then exits. The hub goes on to stop the allocator and the vfolder service, and
finds no server left to stop. The demo config lists it only where the hub stops
the servers when it stops (``JupyterHub.cleanup_servers``, on by default).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float, default

from gpuhub.client import hub_api_items
from gpuhub.service import HubService, InfoLogging


class GPUHubShutdown(InfoLogging, HubService):
    """Stops the users' servers when the hub stops this service (see the module).
    A HubService without a REST API of its own: it reads the hub's
    (``hub_api_url``, ``api_token``), and listens on no port."""

    name = "gpuhub-shutdown"
    service_name = "gpuhub-shutdown"
    description = "Stops the users' servers while the hub's other services still run."

    timeout = Float(
        50.0,
        help="""How long (seconds) the hub's shutdown waits for the users' servers to
        stop before it goes on to stop the other services; servers still running
        then are left to the hub's own cleanup, which cannot reach the allocator
        any more (their shares stay on record until the allocator's reconciliation
        releases them).

        JupyterHub sends a managed service SIGINT, SIGTERM 30 seconds later and
        SIGKILL 30 seconds after that; this service goes on through all but the
        last, so it must finish before the SIGKILL: keep it under 60. Default
        50 seconds: a local server stops in about one, a container in a few, and
        a spawn leaving the queue in about one.
        """,
    ).tag(config=True)

    poll_interval = Float(
        0.5,
        help="""How often (seconds) it asks the hub which servers are still running
        or stopping while it waits for them.

        Default 0.5 seconds: one small request per half second for the length of
        a shutdown.
        """,
    ).tag(config=True)

    aliases = {"config": "GPUHubShutdown.config_file", "log-level": "Application.log_level"}

    # --- the hub's REST API ------------------------------------------------------

    async def active_servers(self) -> list[tuple[str, str]]:
        """(user, server name) of every server that runs, starts or stops."""
        found = []
        async for user in hub_api_items(self.hub_api_url, self.api_token, "users", {"state": "active"}):
            found += [(user["name"], name) for name in sorted(user.get("servers") or {})]
        return found

    async def stop_server(self, user: str, server: str) -> None:
        path = f"users/{quote(user)}/server" + (f"s/{quote(server)}" if server else "")
        resp = await AsyncHTTPClient().fetch(HTTPRequest(
            f"{self.hub_api_url.rstrip('/')}/{path}", method="DELETE",
            headers={"Authorization": f"token {self.api_token}"}, request_timeout=30,
        ), raise_error=False)
        # 202: stopping; 204: stopped; 400 "already stopping" and 404: gone meanwhile
        if resp.code not in (202, 204, 400, 404):
            self.log.warning("could not stop %s's server %r: HTTP %s %s", user, server,
                             resp.code, _error(resp.body))

    # --- the shutdown ------------------------------------------------------------------

    async def stop_servers(self) -> list[tuple[str, str]]:
        """Stop every active server and wait until none is left (or ``timeout``);
        returns those still there."""
        started = time.monotonic()
        try:
            active = await self.active_servers()
        except Exception as e:  # the hub is gone already: nothing to do here
            self.log.warning("cannot list the servers to stop (%s); leaving them to the hub", e)
            return []
        if not active:
            self.log.info("no servers to stop")
            return []
        self.log.info("stopping %i servers before the hub stops its services: %s", len(active),
                      ", ".join(_label(u, s) for u, s in active))
        await asyncio.gather(*(self.stop_server(u, s) for u, s in active))
        deadline = started + self.timeout
        while active and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_interval)
            try:
                active = await self.active_servers()
            except Exception as e:
                self.log.warning("cannot ask the hub which servers still run: %s", e)
        if active:
            self.log.warning("%i servers still running after %g s, left to the hub: %s", len(active),
                             self.timeout, ", ".join(_label(u, s) for u, s in active))
        else:
            self.log.info("all servers stopped in %.1f s", time.monotonic() - started)
        return active

    async def start_async(self) -> None:
        self.log.info("ready: stops the users' servers when the hub shuts down")
        # JupyterHub's SIGINT; its SIGTERM 30 s later only sets the event again,
        # and the stop under way goes on
        await self.wait_for_signal()
        self.log.info("the hub is shutting down")
        await self.stop_servers()


def _label(user: str, server: str) -> str:
    return f"{user}/{server}" if server else user


def _error(body: bytes | None) -> str:
    try:
        return json.loads(body or b"{}").get("message", "")
    except (ValueError, AttributeError):
        return ""


main = GPUHubShutdown.launch_instance

if __name__ == "__main__":
    main()
