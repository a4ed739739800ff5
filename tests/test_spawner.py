"""GPUSpawner inside JupyterHub's MockHub (pytest-jupyterhub), with the real
allocator process as a managed service and a minimal single-user server."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from jupyterhub.tests.utils import add_user, api_request

from gpu_allocator.client import AllocatorClient
from spawner import LocalGPUSpawner
from spawner.serverenv import server_python
from tests.support import REPO, free_port, until

pytestmark = pytest.mark.e2e  # a MockHub, the allocator process and single-user servers

INVENTORY = REPO / "hub_config" / "gpu_inventory.yaml"


@pytest.fixture
async def gpuhub(hub_app, tmp_path):
    """A MockHub whose spawner is LocalGPUSpawner, plus the allocator service."""
    port, token = free_port(), secrets.token_hex(16)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY.read_text())
    allocator_url = f"http://127.0.0.1:{port}/services/gpu-allocator/api/v1/"
    config = {
        "JupyterHub": {
            "bind_url": f"http://127.0.0.1:{free_port()}/",
            "cookie_secret_file": str(tmp_path / "cookie_secret"),
            "spawner_class": LocalGPUSpawner,
            "services": [
                {
                    "name": "gpu-allocator",
                    "url": f"http://127.0.0.1:{port}",
                    "command": [sys.executable, "-m", "gpu_allocator",
                                f"--GPUAllocator.data_dir={tmp_path / 'allocator'}",
                                f"--inventory={inventory}"],
                },
                {"name": "gpuhub-spawner", "api_token": token},
            ],
            "custom_scopes": {"custom:gpu-allocator:admin": {"description": "any user's shares"}},
            "load_roles": [
                {
                    "name": "gpuhub-spawner",
                    "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
                    "services": ["gpuhub-spawner"],
                }
            ],
        },
        "GPUSpawner": {"allocator_url": allocator_url, "allocator_token": token},
        # the servers run as the users' accounts, which may not enter this checkout
        # (a clone under /root): the servers' environment, as the demo runs them
        "Spawner": {"cmd": [server_python(log=lambda *a: None), "-m", "jupyterhub.tests.mocksu"],
                    "poll_interval": 1},
        "LocalGPUSpawner": {
            "create_system_users": True,
            "unprivileged_home_template": str(tmp_path / "home" / "{username}"),
        },
    }
    app = await hub_app(config)
    client = AllocatorClient(allocator_url, token)

    async def allocator_up():
        try:
            return await client.pool()
        except Exception:
            return None

    await until(allocator_up, 30, "allocator")
    app.gpu_client = client
    app.inventory = inventory
    yield app
    for user in list(app.users.values()):
        for spawner in user.spawners.values():
            if spawner.active:
                await user.stop(spawner.name)
    for service in app._service_map.values():
        if service.managed and service.spawner:
            await service.stop()


async def live(app) -> list[dict]:
    """Live allocations, as the allocator reports them (list endpoint, admin view)."""
    return (await app.gpu_client.call("GET", "allocations"))["allocations"]


async def spawn(app, name, options, expect=(201, 202)):
    add_user(app.db, app, name=name)
    r = await api_request(app, "users", name, "server", method="post", data=json.dumps(options))
    assert r.status_code in expect, r.text
    return app.users[name], r


async def test_spawn_puts_the_share_into_env_state_and_progress(gpuhub):
    user, _ = await spawn(gpuhub, "gpuhub-mock-a", {"gpus": 0.5, "cpu": 1, "mem": "1G", "gpu_model": "A100-SXM4-80GB"})
    await until(lambda: user.spawner.ready, 30, "server ready")
    spawner = user.spawner
    (allocation,) = await live(gpuhub)
    env = spawner.get_env()
    assert env["CUDA_VISIBLE_DEVICES"] == allocation["devices"][0]["uuid"]
    assert env["GPUHUB_ALLOCATION"] == allocation["id"]
    assert env["GPUHUB_GPUS"] == "0.5"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=40960M"
    assert env["MEM_LIMIT"] == str(1024**3) and env["CPU_LIMIT"] == "1.0"
    assert spawner.get_state()["gpuhub_allocation"]["id"] == allocation["id"]
    messages = [e["message"] for e in spawner._events]
    assert messages[0] == "requesting 0.5 GPU"
    assert messages[1].startswith("allocated 0.5 × A100-SXM4-80GB (GPU-")
    assert messages[2] == "starting server"
    assert spawner.orm_spawner.user_options["summary"] == "0.5 GPU A100-SXM4-80GB · 1 CPU · 1024M · 8h"
    assert spawner.orm_spawner.user_options["profile"] == "custom"  # free choices (no profiles here)

    r = await api_request(gpuhub, "users", "gpuhub-mock-a", "server", method="delete")
    assert r.status_code in (202, 204)
    await until(lambda: not user.spawner.active, 30, "server stopped")
    assert await live(gpuhub) == []


async def test_invalid_options_are_refused_before_anything_is_held(gpuhub):
    add_user(gpuhub.db, gpuhub, name="gpuhub-mock-b")
    for options in ({"gpus": 1.5}, {"gpus": "nan"}, {"gpus": 8}, {"gpu": 1}):
        r = await api_request(
            gpuhub, "users", "gpuhub-mock-b", "server", method="post", data=json.dumps(options)
        )
        assert r.status_code == 400, (options, r.text)
    assert await live(gpuhub) == []


async def test_no_room_is_a_503_with_what_is_free(gpuhub):
    filler = await gpuhub.gpu_client.allocate(user="someone", gpus=4)
    try:
        user = add_user(gpuhub.db, gpuhub, name="gpuhub-mock-c")
        gpuhub.users[user.name].spawner.queue_requests = False  # now or never
        _, r = await spawn(gpuhub, "gpuhub-mock-c", {"gpus": 4}, expect=(503,))
        message = r.json()["message"]
        assert "Not enough free resources for 4 GPU" in message and "node-b: 2 idle" in message
        assert [a["id"] for a in await live(gpuhub)] == [filler["id"]]
    finally:
        await gpuhub.gpu_client.release(filler["id"])


async def test_a_start_that_fails_half_way_returns_the_share(gpuhub):
    user = add_user(gpuhub.db, gpuhub, name="gpuhub-mock-d")
    gpuhub.users[user.name].spawner.cmd = ["/nonexistent/jupyterhub-singleuser"]
    r = await api_request(gpuhub, "users", user.name, "server", method="post",
                          data=json.dumps({"gpus": 1, "gpu_model": "A100-SXM4-80GB"}))
    assert r.status_code >= 400
    messages = [e["message"] for e in gpuhub.users[user.name].spawner._events]
    assert any(m.startswith("allocated 1 × A100-SXM4-80GB") for m in messages), messages
    assert await live(gpuhub) == []
    message = r.json()["message"]
    assert "/nonexistent/jupyterhub-singleuser does not exist" in message and "c.Spawner.cmd" in message


async def test_a_command_the_account_cannot_execute_is_a_spawn_error_naming_path_and_account(gpuhub):
    """Issue #9: a root hub runs the server as the user's account, which cannot enter
    a private directory (mode 0700) holding the command; a hub running as an ordinary
    account runs it as itself, and then the command is simply not executable."""
    name = "gpuhub-mock-noexec"
    private = Path(tempfile.mkdtemp(prefix="gpuhub-private-"))
    try:
        command = private / "python3"
        command.write_text("#!/bin/sh\nexit 0\n")
        command.chmod(0o755 if os.getuid() == 0 else 0o644)
        in_the_way = private if os.getuid() == 0 else command
        add_user(gpuhub.db, gpuhub, name=name)
        gpuhub.users[name].spawner.cmd = [str(command), "-m", "jupyterhub.singleuser"]
        r = await api_request(gpuhub, "users", name, "server", method="post",
                              data=json.dumps({"gpus": 0.5}))
        assert r.status_code == 500, r.text
        message = r.json()["message"]
        account = name if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        assert message.startswith(f"The server of {name} could not start: the account {account} ")
        assert f"cannot execute {command} because {in_the_way} (mode " in message, message
        assert re.search(rf"\(chmod [ugo]\+r?x {re.escape(str(in_the_way))}\)", message), message
        assert "c.Spawner.cmd" in message
        assert "Traceback" not in message
        # the spawn page shows the same sentence; the share went back
        r = await api_request(gpuhub, "users", name, "server/progress", stream=True)
        (event,) = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
        assert event["failed"] and event["message"] == f"Spawn failed: {message}", event
        assert await live(gpuhub) == []
        assert not gpuhub.users[name].spawner.active
    finally:
        shutil.rmtree(private)


async def test_a_server_that_dies_returns_the_share(gpuhub):
    user, _ = await spawn(gpuhub, "gpuhub-mock-e", {"gpus": 0.25})
    await until(lambda: user.spawner.ready, 30, "server ready")
    assert len(await live(gpuhub)) == 1
    os.kill(user.spawner.pid, signal.SIGKILL)
    # the hub's poll (every second here) notices the death; the spawner releases
    await until(lambda: not user.spawner.active, 30, "hub notices the death")

    async def released():
        return await live(gpuhub) == []

    await until(released, 10, "share released")


async def test_a_restarted_hub_releases_the_share_from_saved_state(gpuhub):
    user, _ = await spawn(gpuhub, "gpuhub-mock-f", {"gpus": 2})
    await until(lambda: user.spawner.ready, 30, "server ready")
    (allocation,) = await live(gpuhub)
    assert len(allocation["devices"]) == 2
    # forget the spawner object, as a hub restart does; the new one loads the state
    old = user.spawners.pop("")
    fresh = user.spawner
    assert fresh is not old and fresh.allocation["id"] == allocation["id"]
    r = await api_request(gpuhub, "users", user.name, "server", method="delete")
    assert r.status_code in (202, 204)
    await until(lambda: not fresh.active, 30, "server stopped")
    assert await live(gpuhub) == []


async def test_the_form_offers_only_what_the_pool_can_hold(gpuhub):
    user = add_user(gpuhub.db, gpuhub, name="gpuhub-mock-g")
    spawner = gpuhub.users[user.name].spawner
    filler = await gpuhub.gpu_client.allocate(user="someone", gpus=0.25, gpu_model="A100-SXM4-80GB")
    try:
        form = await spawner.get_options_form()
    finally:
        await gpuhub.gpu_client.release(filler["id"])
    assert '<option value="4">' in form and '<option value="8"' not in form
    assert "node-a: 3.75 of 4 × A100-SXM4-80GB free (3 idle GPUs)" in form
    assert spawner.options_from_form(
        {"gpus": ["custom"], "gpus_custom": ["0.15"], "cpu": ["2"], "mem": ["2G"], "max_hours": ["1"]}
    ) == {"gpus": "0.15", "cpu": "2", "mem": "2G", "max_hours": "1"}
