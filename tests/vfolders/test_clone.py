"""POST vfolders/{id}/clone: the copytree (pcp) engine in the background, the
progress the vfolder's model reports while it runs, the result and failures."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests.support import wait_for
from vfolder_manager import service as service_module
from vfolder_manager.ptools.engine import Op, PathError
from vfolder_manager.storage.ownership import vfolder_gid
from vfolder_manager.store.schema import VFolder


def wait_state(svc, who, vid, states, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = svc.call(who, "GET", f"/vfolders/{vid}").json()
        if m["state"] in states:
            return m
        time.sleep(0.05)
    raise TimeoutError(f"vfolder {vid} still {m['state']} ({m['progress']})")


def fill(path: str) -> dict[str, bytes]:
    files = {"a.bin": os.urandom(300_000), "d/b.txt": b"hello\n", "d/e/c.bin": os.urandom(100_000)}
    for rel, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        with open(os.path.join(path, rel), "wb") as f:
            f.write(data)
    os.symlink("b.txt", os.path.join(path, "d", "link"))
    return files


def tree(path: str) -> dict[str, object]:
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, path)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = "dir"
            else:
                out[rel] = open(p, "rb").read()
    return out


def test_clone_copies_the_tree_and_reports_progress(svc, monkeypatch):
    """The copy is held half done (a.bin, 3/4 of the bytes, not yet there) until
    the model has shown a percentage below 100: what a user polling GET sees."""
    svc.service.clone_progress_interval = 0.05
    src = svc.create("alice", "data")
    with svc.service.manager.sessions.begin() as db:
        src_path = svc.service.manager.path_of(db.get(VFolder, src["id"]))
    files = fill(src_path)
    real_copytree = service_module.ptools.copytree
    seen_partial = threading.Event()

    def held_copytree(s, d, **kw):
        errors = real_copytree(s, d, **kw)
        held = os.path.join(d, "a.bin")
        data = open(held, "rb").read()
        os.unlink(held)  # "not copied yet"
        assert seen_partial.wait(20), "no partial progress was reported"
        with open(held, "wb") as f:
            f.write(data)
        return errors

    monkeypatch.setattr(service_module.ptools, "copytree", held_copytree)
    r = svc.call("bob", "POST", f"/vfolders/{src['id']}/clone", json={"name": "mine"})
    assert r.status_code == 404  # not shared with bob yet: it does not exist for him
    s = svc.call("alice", "POST", f"/vfolders/{src['id']}/shares", json={"user": "bob", "permission": "ro"}).json()
    assert svc.call("bob", "POST", f"/invitations/{s['id']}/accept").status_code == 200

    r = svc.call("bob", "POST", f"/vfolders/{src['id']}/clone", json={"name": "mine"})
    assert r.status_code == 202, r.text
    clone = r.json()
    assert clone["state"] == "cloning" and clone["cloned_from"] == src["id"] and clone["owner"] == "bob"
    assert clone["access"] == "owner"  # a ro reader's clone is their own, writable copy

    progress = []
    deadline = time.monotonic() + 20
    while not seen_partial.is_set() and time.monotonic() < deadline:
        m = svc.call("bob", "GET", f"/vfolders/{clone['id']}").json()
        progress.append(m["progress"])
        if m["progress"] and "%" in m["progress"] and not m["progress"].startswith("100"):
            pct = float(m["progress"].split("%")[0])
            assert 0 < pct < 60, m["progress"]  # a.bin, 3/4 of the bytes, is missing
            assert m["progress"].endswith("(5 of 6 entries)"), m["progress"]
            assert m["state"] == "cloning"
            # a clone in progress cannot be mounted yet
            r = svc.call("spawner", "POST", "/mounts", json={"user": "bob", "vfolders": ["mine"], "dry_run": True})
            assert r.status_code == 400 and "mine" in r.json()["error"], r.text
            seen_partial.set()
        time.sleep(0.02)
    assert seen_partial.is_set(), progress

    done = wait_state(svc, "bob", clone["id"], {"ready", "failed"})
    assert done["state"] == "ready" and done["progress"] == "100%", done
    with svc.service.manager.sessions.begin() as db:
        dst_path = svc.service.manager.path_of(db.get(VFolder, clone["id"]))
    assert tree(dst_path) == tree(src_path)
    assert tree(dst_path)["d/link"] == ("link", "b.txt")  # links are copied as links
    # the copy belongs to the clone's own group (storage/ownership.py)
    gid = vfolder_gid(clone["id"], svc.service.vfolder_gid_base)
    assert os.stat(dst_path).st_gid == gid or os.getuid() != 0
    # the clone's usage is scanned when it is ready
    wait_for(lambda: svc.call("bob", "GET", f"/vfolders/{clone['id']}/usage").json()["files"] == 6, 10,
             "the clone's usage scan", 0.05)
    assert svc.call("bob", "GET", f"/vfolders/{clone['id']}/usage").json()["bytes"] >= sum(map(len, files.values()))
    # and it is a copy: changing it leaves the source alone
    os.unlink(os.path.join(dst_path, "d", "b.txt"))
    assert os.path.exists(os.path.join(src_path, "d", "b.txt"))
    r = svc.call("spawner", "POST", "/mounts", json={"user": "bob", "vfolders": ["mine"], "dry_run": True})
    assert r.status_code == 200 and r.json()["mounts"][0]["mode"] == "rw", r.text


@pytest.mark.parametrize("how", ["errors", "exception"])
def test_a_failed_clone_says_why(svc, monkeypatch, how):
    src = svc.create("alice", "data")
    if how == "errors":
        def copytree(s, d, **kw):
            os.mkdir(d)
            return [PathError(os.fsencode(os.path.join(d, "x.bin")), 28, Op.COPY)]  # ENOSPC
    else:
        def copytree(s, d, **kw):
            raise OSError(5, "Input/output error")
    monkeypatch.setattr(service_module.ptools, "copytree", copytree)
    r = svc.call("alice", "POST", f"/vfolders/{src['id']}/clone", json={"name": "copy"})
    assert r.status_code == 202, r.text
    m = wait_state(svc, "alice", r.json()["id"], {"ready", "failed"})
    assert m["state"] == "failed", m
    if how == "errors":
        assert m["progress"] == "clone failed: 1 errors, first: x.bin: No space left on device", m
    else:
        assert m["progress"].startswith("clone failed:") and "Input/output error" in m["progress"], m
    assert svc.call("spawner", "POST", "/mounts", json={"user": "alice", "vfolders": ["copy"]}).status_code == 400
    # a failed clone can be deleted, and its name used again
    assert svc.call("alice", "DELETE", f"/vfolders/{m['id']}").status_code == 204
    r = svc.call("alice", "POST", f"/vfolders/{src['id']}/clone", json={"name": "copy"})
    assert r.status_code == 202, r.text


def test_clone_refusals(svc):
    src = svc.create("alice", "data")
    assert svc.call("alice", "POST", f"/vfolders/{src['id']}/clone", json={"name": "data"}).status_code == 409
    assert svc.call("alice", "POST", f"/vfolders/{src['id']}/clone", json={"name": "x", "bogus": 1}).status_code == 400
    assert svc.call("dave", "POST", f"/vfolders/{src['id']}/clone", json={"name": "x"}).status_code == 404
    assert svc.call("alice", "DELETE", f"/vfolders/{src['id']}").status_code == 204
    r = svc.call("alice", "POST", f"/vfolders/{src['id']}/clone", json={"name": "x"})
    assert r.status_code in (404, 409), r.text  # a trashed vfolder is not cloned
