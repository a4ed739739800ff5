"""A user's home vfolder (#20 item 1), in the service: made on first use by the
spawner's ``POST mounts`` with ``"home": true``, listed with ``"kind": "home"``,
never shared, renamed or deleted through the API, downloadable like any
vfolder, counted in the user's storage, and filled from an older per-host home
once (``PUT mounts/home``), never twice."""

from __future__ import annotations

import os

from tests.vfolders.conftest import API  # noqa: F401  (the service's prefix, for readers)


def home_of(svc, user="alice", groups=("ml",)) -> dict:
    r = svc.call("spawner", "POST", "/mounts",
                 json={"user": user, "groups": list(groups), "session": f"{user}/", "home": True})
    assert r.status_code == 200, r.text
    return r.json()["home"]


def test_made_on_first_use_and_listed(svc):
    # a dry run (the spawn form) makes nothing
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "home": True, "dry_run": True})
    assert r.status_code == 200 and "home" not in r.json()
    assert svc.call("alice", "GET", "/vfolders").json()["vfolders"] == []
    first = home_of(svc)
    assert first["made"] is True and first["migrated_from"] is None and os.path.isdir(first["path"])
    again = home_of(svc)
    assert again["made"] is False and again["id"] == first["id"]
    (listed,) = svc.call("alice", "GET", "/vfolders").json()["vfolders"]
    assert listed["kind"] == "home" and listed["name"] == "home" and listed["id"] == first["id"]
    # never offered as a vfolder to mount under ~/vfolders (it is the home itself)
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "dry_run": True})
    assert r.json()["available"] == [] and r.json()["mounts"] == []
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "vfolders": ["home"], "dry_run": True})
    assert r.status_code == 400


def test_never_shared_renamed_or_deleted(svc):
    vid = home_of(svc)["id"]
    for method, path, body in [("POST", f"/vfolders/{vid}/shares", {"user": "bob", "permission": "ro"}),
                               ("PATCH", f"/vfolders/{vid}", {"name": "other"}),
                               ("DELETE", f"/vfolders/{vid}", None)]:
        r = svc.call("alice", method, path, json=body)
        assert r.status_code == 400 and "home folder" in r.json()["error"], (method, r.text)
    assert svc.call("alice", "GET", f"/vfolders/{vid}").json()["state"] == "ready"
    assert svc.call("bob", "GET", "/invitations").json()["invitations"] == []


def test_name_taken_and_files_downloadable(svc):
    svc.create("bob", "home")  # an ordinary vfolder of that name came first
    home = home_of(svc, "bob")
    assert home["name"] == "home-2"
    with open(os.path.join(home["path"], "notes.txt"), "w") as f:
        f.write("in my home")
    r = svc.call("bob", "GET", f"/vfolders/{home['id']}/files/notes.txt")
    assert r.status_code == 200 and r.text == "in my home"
    assert svc.call("alice", "GET", f"/vfolders/{home['id']}/files/notes.txt").status_code in (403, 404)


def test_filled_from_an_older_home_once(svc):
    home = home_of(svc)
    os.makedirs(os.path.join(home["path"], "old", "sub"))
    with open(os.path.join(home["path"], "old", "sub", "f.txt"), "w") as f:
        f.write("copied")
    os.chmod(os.path.join(home["path"], "old", "sub", "f.txt"), 0o600)
    r = svc.call("alice", "PUT", "/mounts/home", json={"user": "alice", "migrated_from": "x"})
    assert r.status_code == 403  # the spawner's, not the user's
    for bad in ({"user": "alice"}, {"user": "alice", "migrated_from": ""}, {"user": "alice", "migrated_from": 1},
                {"user": "alice", "migrated_from": "x", "extra": 1}):
        assert svc.call("spawner", "PUT", "/mounts/home", json=bad).status_code == 400, bad
    r = svc.call("spawner", "PUT", "/mounts/home",
                 json={"user": "alice", "migrated_from": "Docker volume gpuhub-home-alice on node-a"})
    assert r.status_code == 200, r.text
    st = os.stat(os.path.join(home["path"], "old", "sub", "f.txt"))
    if home["gid"] is not None:  # the vfolder's group, group read-write
        assert st.st_gid == home["gid"] and st.st_mode & 0o060 == 0o060
    assert home_of(svc)["migrated_from"] == "Docker volume gpuhub-home-alice on node-a"
    r = svc.call("spawner", "PUT", "/mounts/home", json={"user": "alice", "migrated_from": "again"})
    assert r.status_code == 409 and "already" in r.json()["error"]
