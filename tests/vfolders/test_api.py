"""The REST API in-process: CRUD, shares, invitations, trash, quotas, mounts and
the permission matrix (owner, ro share, rw share, group member, stranger, admin)
on every endpoint."""

import base64
import os
import time

import pytest

OK = "ok"
#: persona → token; the matrix vfolder is alice's, shared with bob (ro, a user
#: invitation he accepted), erin (rw, accepted) and the group bio (rw: carol)
PERSONAS = {"owner": "alice", "ro": "bob", "rw": "erin", "group": "carol", "stranger": "dave", "admin": "admin"}
READ = {"owner": OK, "ro": OK, "rw": OK, "group": OK, "stranger": 404, "admin": OK}
WRITE = {"owner": OK, "ro": 403, "rw": OK, "group": OK, "stranger": 404, "admin": OK}
MANAGE = {"owner": OK, "ro": 403, "rw": 403, "group": 403, "stranger": 404, "admin": OK}
ADMIN = {"owner": 403, "ro": 403, "rw": 403, "group": 403, "stranger": 403, "admin": OK}


def shared_vfolder(svc, name="matrix") -> str:
    vid = svc.create("alice", name)["id"]
    for who, perm in (("bob", "ro"), ("erin", "rw")):
        r = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json={"user": who, "permission": perm})
        assert r.status_code == 201 and r.json()["state"] == "pending", r.text
        r = svc.call(who, "POST", f"/invitations/{r.json()['id']}/accept")
        assert r.status_code == 200, r.text
    r = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json={"group": "bio", "permission": "rw"})
    assert r.status_code == 201 and r.json()["state"] == "accepted"
    return vid


def measured(svc, vid) -> dict:
    """The vfolder once the usage scan its creation asked for has run (a scan
    changes it in the background: a refused request must not)."""
    deadline = time.monotonic() + 30
    while (model := svc.call("admin", "GET", f"/vfolders/{vid}").json())["usage"]["measured"] is None:
        assert time.monotonic() < deadline, f"vfolder {vid} was not scanned within 30 s of its creation"
        time.sleep(0.01)
    return model


def tus_create(path):
    meta = "filename " + base64.b64encode(path.encode()).decode()
    return {"headers": {"Tus-Resumable": "1.0.0", "Upload-Length": "5", "Upload-Metadata": meta}}


ENDPOINTS = {
    "get": (READ, lambda vid, who: ("GET", f"/vfolders/{vid}", {})),
    "patch": (MANAGE, lambda vid, who: ("PATCH", f"/vfolders/{vid}", {"json": {"auto_mount": True}})),
    "delete": (MANAGE, lambda vid, who: ("DELETE", f"/vfolders/{vid}", {})),
    "clone": (READ, lambda vid, who: ("POST", f"/vfolders/{vid}/clone", {"json": {"name": f"copy-{who}"}})),
    "share": (MANAGE, lambda vid, who: ("POST", f"/vfolders/{vid}/shares",
                                        {"json": {"user": "zed", "permission": "ro"}})),
    "unshare": (MANAGE, lambda vid, who: ("DELETE", f"/vfolders/{vid}/shares", {"params": {"user": "bob"}})),
    "usage": (READ, lambda vid, who: ("GET", f"/vfolders/{vid}/usage", {})),
    "upload": (WRITE, lambda vid, who: ("POST", f"/vfolders/{vid}/uploads/", tus_create(f"{who}.txt"))),
    "download": (READ, lambda vid, who: ("GET", f"/vfolders/{vid}/files/", {})),
    "quota-get": (READ, lambda vid, who: ("GET", f"/quotas/vfolder/{vid}", {})),
    "quota-put": (ADMIN, lambda vid, who: ("PUT", f"/quotas/vfolder/{vid}", {"json": {"bytes": 10**9}})),
    "restore": (ADMIN, lambda vid, who: ("POST", f"/vfolders/{vid}/restore", {})),
    "purge": (ADMIN, lambda vid, who: ("POST", f"/vfolders/{vid}/purge", {})),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_permission_matrix(svc, endpoint):
    expected, make = ENDPOINTS[endpoint]
    for persona, who in PERSONAS.items():
        vid = shared_vfolder(svc, f"m-{endpoint}-{persona}")
        if endpoint in ("restore", "purge"):
            assert svc.call("alice", "DELETE", f"/vfolders/{vid}").status_code == 204
        before = measured(svc, vid)
        method, path, kw = make(vid, who)
        r = svc.call(who, method, path, **kw)
        want = expected[persona]
        if want == OK:
            assert r.status_code < 300, (endpoint, persona, r.status_code, r.text)
        else:
            assert r.status_code == want, (endpoint, persona, r.status_code, r.text)
            assert "error" in r.json()
            after = svc.call("admin", "GET", f"/vfolders/{vid}").json()
            assert after == before, f"{endpoint} by {persona} changed the vfolder"


def test_listing_shows_only_own_and_shared(svc):
    vid = shared_vfolder(svc)
    svc.create("dave", "private")
    names = lambda who: sorted(v["name"] for v in svc.call(who, "GET", "/vfolders").json()["vfolders"])  # noqa
    assert names("alice") == ["matrix"]
    assert names("bob") == ["matrix"] and names("carol") == ["matrix"]
    assert names("dave") == ["private"]
    assert svc.call("bob", "GET", "/vfolders", params={"all": "1"}).status_code == 403
    assert len(svc.call("admin", "GET", "/vfolders", params={"all": "1"}).json()["vfolders"]) == 2
    access = {v["id"]: v["access"] for v in svc.call("bob", "GET", "/vfolders").json()["vfolders"]}
    assert access[vid] == "ro"
    assert "shares" not in svc.call("bob", "GET", f"/vfolders/{vid}").json()


def test_auth_errors(svc):
    r = svc.call(None, "GET", "/vfolders")
    assert r.status_code == 401 and "token" in r.json()["error"]
    r = svc.call("noscope", "GET", "/vfolders")
    assert r.status_code == 403 and "access:services!service=vfolders" in r.json()["error"]


@pytest.mark.parametrize("body,status", [
    ({"name": "../x"}, 400), ({"name": ".hidden"}, 400), ({"name": "a/b"}, 400), ({"name": "x" * 65}, 400),
    ({"name": "ctl\x07"}, 400), ({}, 400), ({"name": 5}, 400), ({"name": "ok", "color": "red"}, 400),
    ({"name": "ok", "host": "nowhere"}, 400), ({"name": "ok", "auto_mount": "yes"}, 400),
    ({"name": "ok", "group": "bio"}, 403),  # alice is not in bio
])
def test_create_refusals(svc, body, status):
    r = svc.call("alice", "POST", "/vfolders", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert svc.call("alice", "GET", "/vfolders").json()["vfolders"] == []
    assert os.listdir(svc.tmp / "hosts" / "local") == [".uploads"]


def test_create_rename_unique_and_paths_from_ids(svc):
    vf = svc.create("alice", "datasets", auto_mount=True)
    assert vf["owner"] == "alice" and vf["host"] == "local" and vf["auto_mount"] and vf["state"] == "ready"
    on_disk = svc.tmp / "hosts" / "local" / vf["id"][:2] / vf["id"]
    assert on_disk.is_dir()
    assert svc.call("alice", "POST", "/vfolders", json={"name": "datasets"}).status_code == 409
    assert svc.create("bob", "datasets")["owner"] == "bob"  # unique per owner only
    m = svc.create("alice", "models")
    r = svc.call("alice", "PATCH", f"/vfolders/{m['id']}", json={"name": "datasets"})
    assert r.status_code == 409 and "already has" in r.json()["error"]
    r = svc.call("alice", "PATCH", f"/vfolders/{m['id']}", json={"name": "weights"})
    assert r.status_code == 200 and r.json()["name"] == "weights"
    assert on_disk.is_dir()  # the name is never part of the path


def test_group_vfolders_and_host_groups(svc):
    g = svc.create("alice", "shared-models", group="ml", host="nas2")
    assert g["owner_kind"] == "group" and g["owner"] == "ml" and g["host"] == "nas2"
    assert svc.call("bob", "GET", f"/vfolders/{g['id']}").json()["access"] == "rw"
    assert svc.call("carol", "GET", f"/vfolders/{g['id']}").status_code == 404
    r = svc.call("carol", "POST", "/vfolders", json={"name": "x", "host": "nas2"})
    assert r.status_code == 403 and "nas2" in r.json()["error"]
    hosts = {h["name"] for h in svc.call("carol", "GET", "/storage/hosts").json()["hosts"]}
    assert hosts == {"local"}


def test_invitation_reject_and_revoke(svc):
    vid = svc.create("alice", "data")["id"]
    s = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json={"user": "dave", "permission": "rw"}).json()
    assert svc.call("dave", "GET", f"/vfolders/{vid}").status_code == 404  # not until accepted
    inv = svc.call("dave", "GET", "/invitations").json()["invitations"]
    assert [i["vfolder"]["name"] for i in inv] == ["data"] and inv[0]["inviter"] == "alice"
    assert svc.call("bob", "POST", f"/invitations/{s['id']}/accept").status_code == 404
    assert svc.call("dave", "POST", f"/invitations/{s['id']}/reject").json()["state"] == "rejected"
    assert svc.call("dave", "POST", f"/invitations/{s['id']}/accept").status_code == 409
    assert svc.call("dave", "GET", f"/vfolders/{vid}").status_code == 404
    # invite again, accept, then revoke: at once in the API
    s = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json={"user": "dave", "permission": "rw"}).json()
    svc.call("dave", "POST", f"/invitations/{s['id']}/accept")
    assert svc.call("dave", "GET", f"/vfolders/{vid}").status_code == 200
    assert svc.call("alice", "DELETE", f"/vfolders/{vid}/shares", params={"user": "dave"}).status_code == 204
    assert svc.call("dave", "GET", f"/vfolders/{vid}").status_code == 404
    for bad in ({"user": "dave"}, {"user": "dave", "permission": "rwx"}, {"permission": "ro"},
                {"user": "a", "group": "b", "permission": "ro"}, {"user": "../x", "permission": "ro"}):
        r = svc.call("alice", "POST", f"/vfolders/{vid}/shares", json=bad)
        assert r.status_code == 400, (bad, r.text)


def test_trash_restore_purge(svc):
    vf = svc.create("alice", "old")
    path = svc.tmp / "hosts" / "local" / vf["id"][:2] / vf["id"]
    (path / "f").write_text("x")
    assert svc.call("alice", "DELETE", f"/vfolders/{vf['id']}").status_code == 204
    assert svc.call("alice", "GET", "/vfolders").json()["vfolders"] == []
    assert svc.create("alice", "old")["name"] == "old"  # the name is free again
    trash = svc.call("admin", "GET", "/vfolders", params={"all": "1", "trash": "1"}).json()["vfolders"]
    assert [v["id"] for v in trash] == [vf["id"]]
    r = svc.call("admin", "POST", f"/vfolders/{vf['id']}/restore")
    assert r.status_code == 409 and "already has" in r.json()["error"]
    assert svc.call("admin", "POST", f"/vfolders/{vf['id']}/purge").status_code == 204
    assert not path.exists()
    assert svc.call("admin", "GET", f"/vfolders/{vf['id']}").status_code == 404


def test_delete_refused_while_mounted(svc):
    vf = svc.create("alice", "inuse", auto_mount=True)
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "groups": ["ml"], "session": "alice/"})
    assert r.status_code == 200 and [m["name"] for m in r.json()["mounts"]] == ["inuse"]
    r = svc.call("alice", "DELETE", f"/vfolders/{vf['id']}")
    assert r.status_code == 409 and "alice/" in r.json()["error"] and "stop" in r.json()["error"]
    assert svc.call("alice", "GET", f"/vfolders/{vf['id']}").json()["state"] == "ready"
    assert svc.call("spawner", "DELETE", "/mounts", params={"session": "alice/"}).status_code == 204
    assert svc.call("alice", "DELETE", f"/vfolders/{vf['id']}").status_code == 204


def test_mounts_resolve(svc):
    own = svc.create("alice", "data", auto_mount=True)
    bobs = svc.create("bob", "data")
    s = svc.call("bob", "POST", f"/vfolders/{bobs['id']}/shares", json={"user": "alice", "permission": "ro"}).json()
    svc.call("alice", "POST", f"/invitations/{s['id']}/accept")
    r = svc.call("alice", "POST", "/mounts", json={"user": "alice"})
    assert r.status_code == 403  # only the spawner (an admin) resolves mounts
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "vfolders": ["nope"], "dry_run": True})
    assert r.status_code == 400 and "nope" in r.json()["error"] and "data@bob" in r.json()["error"]
    r = svc.call("spawner", "POST", "/mounts",
                 json={"user": "alice", "vfolders": ["data", "data@bob"], "dry_run": True})
    mounts = {m["name"]: m for m in r.json()["mounts"]}
    assert mounts["data"]["mode"] == "rw" and mounts["data"]["path"].endswith(own["id"])
    assert mounts["data@bob"]["mode"] == "ro" and mounts["data@bob"]["reason"] == "shared read-only"


def test_quotas(svc):
    vf = svc.create("alice", "q")
    assert svc.call("alice", "GET", "/quotas/user/alice").json()["bytes"] is None
    assert svc.call("alice", "GET", "/quotas/user/bob").status_code == 403
    assert svc.call("alice", "PUT", "/quotas/user/alice", json={"bytes": 10}).status_code == 403
    for bad in ({"bytes": -1}, {"bytes": 1.5}, {"bytes": "10"}, {"bytes": True}, {"size": 1}):
        assert svc.call("admin", "PUT", "/quotas/user/alice", json=bad).status_code == 400
    r = svc.call("admin", "PUT", "/quotas/user/alice", json={"bytes": 1000, "files": 5})
    assert r.status_code == 200
    assert svc.call("alice", "GET", "/quotas/user/alice").json()["files"] == 5
    assert svc.call("bob", "GET", "/quotas/group/ml").status_code == 200
    assert svc.call("carol", "GET", "/quotas/group/ml").status_code == 403
    assert svc.call("admin", "PUT", f"/quotas/vfolder/{vf['id']}", json={"bytes": 3}).status_code == 200
    assert svc.call("alice", "GET", f"/vfolders/{vf['id']}").json()["quota"]["bytes"] == 3
