"""How the REST handlers are laid out and where their database work runs: one
module per resource, each URL path served from one module, and no SQL statement
on the event loop's thread (a handler that waited on the database there would
stall every other request while it did)."""

import base64
import threading
import time

import requests
from sqlalchemy import event

from vfolder_manager.api import RESOURCES, routes

TUS = {"Tus-Resumable": "1.0.0"}

#: every URL pattern under the service's prefix → the module that serves it
PATHS = {
    "api/v1/health": "gpuhub.api",
    "api/v1/vfolders": "vfolders",
    "api/v1/vfolders/([^/]+)": "vfolders",
    "api/v1/vfolders/([^/]+)/(restore|purge)": "vfolders",
    "api/v1/vfolders/([^/]+)/clone": "vfolders",
    "api/v1/vfolders/([^/]+)/shares": "shares",
    "api/v1/invitations": "shares",
    "api/v1/invitations/([^/]+)/(accept|reject)": "shares",
    "api/v1/vfolders/([^/]+)/usage": "quotas",
    "api/v1/quotas/(user|group|vfolder)/([^/]+)": "quotas",
    "api/v1/vfolders/([^/]+)/uploads/?": "uploads",
    "api/v1/vfolders/([^/]+)/uploads/([0-9a-f]{32})": "uploads",
    "api/v1/vfolders/([^/]+)/files/?(.*)": "files",
    "api/v1/storage/hosts": "hosts",
    "api/v1/mounts": "mounts",
    "api/v1/mounts/home": "mounts",
    "metrics": "metrics",
}


class _Service:
    service_prefix = "/services/vfolders/"


def test_each_path_is_served_by_one_resource_module():
    table = routes(_Service())
    prefix = "/services/vfolders/"
    served = {pattern.removeprefix(prefix): handler for pattern, handler, *_ in table}
    assert len(served) == len(table), "a URL pattern is routed twice"
    assert {p: h.__module__.removeprefix("vfolder_manager.api.") for p, h in served.items()} == PATHS
    names = [h.__name__ for h in served.values()]
    assert len(names) == len(set(names)), "two handler classes share a name"
    for module in RESOURCES:  # a module's table names only its own handlers
        assert {h.__module__ for _, h in module.default_handlers} == {module.__name__}


def test_no_sql_statement_runs_on_the_event_loop(svc, monkeypatch):
    auth = svc.service.hub_auth
    plain = auth.get_user

    def admin_reads_metrics(handler, sync=True):
        user = plain(handler, sync)
        return {**user, "scopes": [*user["scopes"], "read:metrics"]} if user and user["name"] == "admin" else user

    monkeypatch.setattr(auth, "get_user", admin_reads_metrics)
    engine = svc.service.manager.sessions.kw["bind"]
    threads: list[int] = []
    statements = lambda *_: threads.append(threading.get_ident())  # noqa: E731

    async def loop_thread() -> int:
        return threading.get_ident()

    event.listen(engine, "before_cursor_execute", statements)
    try:
        loop = svc.run(loop_thread)
        vid = svc.create("alice", "data")["id"]
        assert svc.call("alice", "GET", "/vfolders").status_code == 200
        # a tus upload: create, HEAD, PATCH (its end places the file), download
        meta = "filename " + base64.b64encode(b"dir/f.txt").decode()
        r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/",
                     headers={**TUS, "Upload-Length": "5", "Upload-Metadata": meta})
        assert r.status_code == 201, r.text
        upload = f"http://127.0.0.1:{svc.port}{r.headers['Location']}"
        auth = {**TUS, "Authorization": "token alice"}
        assert requests.head(upload, headers=auth, timeout=60).headers["Upload-Offset"] == "0"
        r = requests.patch(upload, data=b"hello", timeout=60, headers={
            **auth, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
        assert svc.call("alice", "GET", f"/vfolders/{vid}/files/dir/f.txt").content == b"hello"
        # share, accept, quotas, usage, mounts, clone, trash and purge
        r = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json={"user": "bob", "permission": "ro"})
        assert r.status_code == 201, r.text
        assert svc.call("bob", "POST", f"/invitations/{r.json()['id']}/accept").status_code == 200
        assert svc.call("admin", "PUT", "/quotas/user/alice", json={"bytes": 10**9}).status_code == 200
        assert svc.call("alice", "GET", "/quotas/user/alice").status_code == 200
        assert svc.call("alice", "GET", f"/vfolders/{vid}/usage?refresh=1").status_code == 200
        r = svc.call("spawner", "POST", "/mounts", json={"user": "bob", "session": "bob/", "vfolders": ["data"]})
        assert r.status_code == 200 and len(r.json()["mounts"]) == 1, r.text
        assert svc.call("spawner", "DELETE", "/mounts", params={"session": "bob/"}).status_code == 204
        clone = svc.call("alice", "POST", f"/vfolders/{vid}/clone", json={"name": "copy"}).json()
        deadline = time.monotonic() + 30
        while svc.call("alice", "GET", f"/vfolders/{clone['id']}").json()["state"] != "ready":
            assert time.monotonic() < deadline, "the clone did not finish in 30 s"
            time.sleep(0.05)
        assert svc.call("alice", "DELETE", f"/vfolders/{vid}").status_code == 204
        assert svc.call("admin", "POST", f"/vfolders/{vid}/purge").status_code == 204
        assert svc.call("alice", "GET", "/invitations").status_code == 200
        r = requests.get(f"http://127.0.0.1:{svc.port}/services/vfolders/metrics", timeout=60,
                         headers={"Authorization": "token admin"})
        assert r.status_code == 200 and 'gpuhub_vfolders{state="ready",storage_host="local"} 1.0' in r.text, r.text
    finally:
        event.remove(engine, "before_cursor_execute", statements)
    assert len(threads) > 20
    assert loop not in threads, f"{threads.count(loop)} of {len(threads)} SQL statements ran on the event loop"
