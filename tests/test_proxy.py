"""gpuhub.proxy.GPUHubProxy's launch of configurable-http-proxy: through node
with gpuhub/proxy_client_resets.mjs preloaded, so that a browser resetting a
websocket (a JupyterLab terminal or tab closing) is not logged as "Uncaught
Exception: read ECONNRESET" (#19 item 8)."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

import pytest

from gpuhub.proxy import PRELOAD, node_command
from tests.support import REPO, free_port, wait_for


def test_node_command(tmp_path):
    chp = tmp_path / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"
    chp.parent.mkdir(parents=True)
    chp.write_text("#!/usr/bin/env node\n")
    link = tmp_path / "chp"
    link.symlink_to(chp)
    which = {"node": "/usr/bin/node", "chp": str(link)}.get
    assert node_command([str(link), "--x"], which) == ["/usr/bin/node", "--import", str(PRELOAD), str(chp), "--x"]
    assert node_command(["chp"], which)[3] == str(chp)
    assert node_command(["missing"], which) == ["missing"]  # as configured: JupyterHub says it is missing
    assert node_command(["node", "x.js"], which) == ["node", "x.js"]
    assert PRELOAD.is_file()


def _echo_server(port: int) -> None:
    import asyncio

    from tornado import ioloop, web, websocket

    class Echo(websocket.WebSocketHandler):
        def on_message(self, message):
            self.write_message(message)

    asyncio.set_event_loop(asyncio.new_event_loop())
    web.Application([(r"/ws", Echo)]).listen(port, "127.0.0.1")
    ioloop.IOLoop.current().start()


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.mark.e2e
@pytest.mark.parametrize("preload", [False, True])
def test_reset_websocket_clients_are_not_uncaught_exceptions(preload):
    """The real CHP of hub_config/proxy before and after: websockets proxied to an
    echo server, then reset by the client (SO_LINGER 0) after the upgrade and
    before it; a clean client still gets its echo."""
    chp = REPO / "hub_config" / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        pytest.fail("configurable-http-proxy is not installed: run make install")
    target, port, api = free_port(), free_port(), free_port()
    threading.Thread(target=_echo_server, args=(target,), daemon=True).start()
    command = [str(chp), "--port", str(port), "--api-port", str(api),
               "--default-target", f"http://127.0.0.1:{target}"]
    proc = subprocess.Popen(node_command(command) if preload else command,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port)).close() or True, 30, "the proxy")
        for after_upgrade in (True, False, True):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(UPGRADE)
            if after_upgrade:
                assert s.recv(12) == b"HTTP/1.1 101"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            time.sleep(0.3)
        s = socket.create_connection(("127.0.0.1", port))  # a client that stays: its echo
        s.sendall(UPGRADE)
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
        s.sendall(bytes([0x81, 0x82, 0, 0, 0, 0]) + b"hi")  # a masked text frame (zero mask)
        assert s.recv(16) == bytes([0x81, 0x02]) + b"hi"
        s.close()
        time.sleep(0.5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    if preload:
        assert "Uncaught Exception" not in out and "ECONNRESET" not in out, out
    else:  # what CHP 5.3.0 alone logs: this test would see a fixed CHP
        assert "Uncaught Exception: read ECONNRESET" in out, out
