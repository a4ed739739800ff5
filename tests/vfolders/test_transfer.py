"""Uploads (tus 1.0) and downloads in-process: resume, offsets, expiry, quotas,
Range, directory archives, and a traversal / symlink-escape corpus where each
attempt is a 4xx and nothing is written outside the vfolder."""

import base64
import hashlib
import io
import os
import socket
import tarfile
from datetime import timedelta

import pytest
import requests
from tusclient import client as tus

from tests.support import wait_for
from vfolder_manager.store.schema import Upload, utcnow

TUS = {"Tus-Resumable": "1.0.0"}


def meta(path: str) -> str:
    return "filename " + base64.b64encode(path.encode()).decode()


def vpath(svc, vf) -> str:
    return str(svc.tmp / "hosts" / "local" / vf["id"][:2] / vf["id"])


def upload(svc, who, vid, path, data: bytes) -> requests.Response:
    r = svc.call(who, "POST", f"/vfolders/{vid}/uploads/",
                 headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta(path)})
    if r.status_code != 201:
        return r
    loc = r.headers["Location"]
    return requests.patch(f"http://127.0.0.1:{svc.port}{loc}", data=data, timeout=60, headers={
        **TUS, "Authorization": f"token {who}", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})


def test_small_upload_and_download_with_range(svc):
    vf = svc.create("alice", "data")
    assert upload(svc, "alice", vf["id"], "dir/sub/hello.txt", b"hello world").status_code == 204
    with open(os.path.join(vpath(svc, vf), "dir/sub/hello.txt"), "rb") as f:
        assert f.read() == b"hello world"
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/dir/sub/hello.txt")
    assert r.status_code == 200 and r.content == b"hello world"
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/dir/sub/hello.txt", headers={"Range": "bytes=6-"})
    assert r.status_code == 206 and r.content == b"world" and r.headers["Content-Range"] == "bytes 6-10/11"
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/dir/sub/hello.txt", headers={"Range": "bytes=-3"})
    assert r.content == b"rld"
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/dir/sub/hello.txt", headers={"Range": "bytes=50-"})
    assert r.status_code == 416
    # a directory is a streamed tar archive
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/dir")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        assert tf.extractfile("dir/sub/hello.txt").read() == b"hello world"
    assert svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/missing").status_code == 404


def test_an_empty_upload_is_complete_when_created(svc):
    vf = svc.create("alice", "data")
    r = svc.call("alice", "POST", f"/vfolders/{vf['id']}/uploads/",
                 headers={**TUS, "Upload-Length": "0", "Upload-Metadata": meta("empty/none.txt")})
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "0", r.text
    with open(os.path.join(vpath(svc, vf), "empty/none.txt"), "rb") as f:
        assert f.read() == b""
    assert svc.call("alice", "HEAD", r.headers["Location"].split("/api/v1")[1], headers=TUS).status_code == 404
    assert not os.listdir(svc.tmp / "hosts" / "local" / ".uploads")


def test_tus_protocol_errors(svc):
    vid = svc.create("alice", "data")["id"]
    r = svc.call("alice", "OPTIONS", f"/vfolders/{vid}/uploads/")
    assert r.status_code == 204 and r.headers["Tus-Version"] == "1.0.0" and "creation" in r.headers["Tus-Extension"]
    r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/", headers={"Upload-Length": "3", "Upload-Metadata": meta("x")})
    assert r.status_code == 412
    r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/", headers={**TUS, "Upload-Metadata": meta("x")})
    assert r.status_code == 400 and "Upload-Length" in r.json()["error"]
    r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/", headers={**TUS, "Upload-Length": "3"})
    assert r.status_code == 400 and "filename" in r.json()["error"]
    r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/",
                 headers={**TUS, "Upload-Length": "10", "Upload-Metadata": meta("f.bin")})
    loc = r.headers["Location"].split("/api/v1")[1]
    hdr = {**TUS, "Content-Type": "application/offset+octet-stream"}
    assert svc.call("alice", "PATCH", loc, data=b"abcd", headers={**hdr, "Upload-Offset": "0"}).status_code == 204
    r = svc.call("alice", "PATCH", loc, data=b"zz", headers={**hdr, "Upload-Offset": "0"})
    assert r.status_code == 409 and "HEAD" in r.json()["error"]
    r = svc.call("alice", "PATCH", loc, data=b"x" * 7, headers={**hdr, "Upload-Offset": "4"})
    assert r.status_code == 400
    r = svc.call("alice", "PATCH", loc, data=b"efgh", headers={**TUS, "Upload-Offset": "4"})
    assert r.status_code == 415
    assert svc.call("alice", "HEAD", loc, headers=TUS).headers["Upload-Offset"] == "4"
    assert svc.call("bob", "HEAD", loc, headers=TUS).status_code == 404  # not bob's upload
    assert svc.call("alice", "PATCH", loc, data=b"efghij", headers={**hdr, "Upload-Offset": "4"}).status_code == 204
    r = svc.call("alice", "GET", f"/vfolders/{vid}/files/f.bin")
    assert r.content == b"abcdefghij"
    assert svc.call("alice", "HEAD", loc, headers=TUS).status_code == 404  # finished


def test_expired_uploads_are_removed(svc):
    vid = svc.create("alice", "data")["id"]
    r = svc.call("alice", "POST", f"/vfolders/{vid}/uploads/",
                 headers={**TUS, "Upload-Length": "10", "Upload-Metadata": meta("f.bin")})
    uid = r.headers["Location"].rsplit("/", 1)[1]
    staging = svc.tmp / "hosts" / "local" / ".uploads" / uid
    assert staging.exists()
    with svc.service.manager.sessions.begin() as db:
        db.get(Upload, uid).expires_at = utcnow() - timedelta(seconds=1)
    assert svc.service.cleanup_uploads() == 1
    assert not staging.exists()
    assert svc.call("alice", "HEAD", r.headers["Location"].split("/api/v1")[1], headers=TUS).status_code == 404


def test_interrupted_200mb_upload_resumes_with_tuspy(svc, tmp_path):
    vf = svc.create("alice", "big")
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(200):
            f.write(block[i:] + block[:i])
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    c = tus.TusClient(f"{svc.url}/vfolders/{vf['id']}/uploads/", headers={"Authorization": "token alice"})
    first = c.uploader(file_path=str(src), chunk_size=16 << 20, metadata={"filename": "models/big.bin"})
    first.upload(stop_at=64 << 20)  # the client stops after 4 chunks…
    url = first.url
    assert first.offset == 64 << 20
    # …then a PATCH dies half way: the server keeps what arrived
    path = url.split(f":{svc.port}", 1)[1]
    s = socket.create_connection(("127.0.0.1", svc.port))
    s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: token alice\r\nTus-Resumable: 1.0.0\r\n"
               f"Upload-Offset: {64 << 20}\r\nContent-Type: application/offset+octet-stream\r\n"
               f"Content-Length: {32 << 20}\r\n\r\n").encode())
    with open(src, "rb") as f:
        f.seek(64 << 20)
        s.sendall(f.read(10 << 20))
    s.close()
    head = lambda: int(svc.call("alice", "HEAD", path.split("/api/v1")[1], headers=TUS).headers["Upload-Offset"])  # noqa
    wait_for(lambda: head() != 64 << 20, 30, "the server to keep what the cut-off PATCH sent", 0.1)
    assert (64 << 20) < head() <= (74 << 20)
    # a new client resumes from the server's offset
    second = c.uploader(file_path=str(src), url=url, chunk_size=16 << 20)
    assert second.offset == head()
    second.upload()
    out = os.path.join(vpath(svc, vf), "models/big.bin")
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    assert os.listdir(svc.tmp / "hosts" / "local" / ".uploads") == []


def test_quota_refuses_upload_and_mounts_read_only(svc):
    vf = svc.create("alice", "small", auto_mount=True)
    assert svc.call("admin", "PUT", f"/quotas/vfolder/{vf['id']}", json={"bytes": 1000}).status_code == 200
    assert upload(svc, "alice", vf["id"], "a.bin", b"x" * 600).status_code == 204
    svc.run(svc.service.scan, vf["id"])
    assert svc.call("alice", "GET", f"/vfolders/{vf['id']}/usage").json()["bytes"] == 600
    r = upload(svc, "alice", vf["id"], "b.bin", b"x" * 600)
    assert r.status_code == 413 and "quota" in r.json()["error"]
    assert not os.path.exists(os.path.join(vpath(svc, vf), "b.bin"))
    assert upload(svc, "alice", vf["id"], "c.bin", b"x" * 400).status_code == 204
    svc.run(svc.service.scan, vf["id"])
    model = svc.call("alice", "GET", f"/vfolders/{vf['id']}").json()
    assert model["over_quota"] and "1000" in model["over_quota"] or "quota" in model["over_quota"]
    r = svc.call("spawner", "POST", "/mounts", json={"user": "alice", "dry_run": True})
    (m,) = r.json()["mounts"]
    assert m["mode"] == "ro" and "quota" in m["reason"]
    # a per-user quota counts all the user's vfolders
    other = svc.create("alice", "other")
    svc.call("admin", "PUT", "/quotas/user/alice", json={"bytes": 1500})
    r = upload(svc, "alice", other["id"], "d.bin", b"x" * 600)
    assert r.status_code == 413 and "user alice" in r.json()["error"]


@pytest.fixture
def escape(svc, tmp_path):
    """A vfolder with links that point out of it, and an outside directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-CONTENT")
    vf = svc.create("alice", "trap")
    root = vpath(svc, vf)
    os.symlink(str(outside), os.path.join(root, "link-dir"))
    os.symlink(str(outside / "secret.txt"), os.path.join(root, "link-file"))
    os.symlink("../../..", os.path.join(root, "up"))
    os.mkdir(os.path.join(root, "real"))
    return vf, outside


UPLOAD_CORPUS = ["../evil.txt", "../../evil.txt", "/tmp/evil.txt", "real/../../evil.txt", "link-dir/evil.txt",
                 "link-file", "up/evil.txt", "real/./x", "a\\..\\evil.txt", "real//x", "..", ".", "real/..",
                 "x\x00y", "link-dir"]


@pytest.mark.parametrize("path", UPLOAD_CORPUS)
def test_upload_traversal_corpus(svc, escape, path):
    vf, outside = escape
    before = sorted(os.listdir(outside))
    r = upload(svc, "alice", vf["id"], path, b"pwned")
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
    assert "error" in r.json()
    assert sorted(os.listdir(outside)) == before and (outside / "secret.txt").read_text() == "TOP-SECRET-CONTENT"
    assert not list(svc.tmp.glob("**/evil.txt"))


def test_symlink_swapped_in_during_upload(svc, escape):
    vf, outside = escape
    root = vpath(svc, vf)
    r = svc.call("alice", "POST", f"/vfolders/{vf['id']}/uploads/",
                 headers={**TUS, "Upload-Length": "5", "Upload-Metadata": meta("real/evil.txt")})
    assert r.status_code == 201
    loc = r.headers["Location"].split("/api/v1")[1]
    os.rmdir(os.path.join(root, "real"))
    os.symlink(str(outside), os.path.join(root, "real"))  # the race, won by the attacker
    r = svc.call("alice", "PATCH", loc, data=b"pwned", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 400 and "link" in r.json()["error"]
    assert sorted(os.listdir(outside)) == ["secret.txt"]


DOWNLOAD_CORPUS = ["../x", "%2e%2e/%2e%2e/etc/passwd", "real/%2e%2e/%2e%2e/x", "/etc/passwd", "link-file",
                   "link-dir", "link-dir/secret.txt", "up/", "up/etc/passwd", "real%2f..%2f..%2fx", "real/%00"]


@pytest.mark.parametrize("path", DOWNLOAD_CORPUS)
def test_download_traversal_corpus(svc, escape, path):
    vf, _ = escape
    url = f"{svc.url}/vfolders/{vf['id']}/files/{path}"
    r = requests.get(url, headers={"Authorization": "token alice"}, timeout=30)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.content[:200])
    assert b"TOP-SECRET" not in r.content and b"root:" not in r.content


def test_archive_never_follows_links(svc, escape):
    vf, _ = escape
    r = svc.call("alice", "GET", f"/vfolders/{vf['id']}/files/")
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tf:
        links = {m.name: m.linkname for m in tf.getmembers() if m.issym()}
        assert set(links) == {"trap/link-dir", "trap/link-file", "trap/up"}
        assert not any(m.isfile() for m in tf.getmembers())
    assert b"TOP-SECRET" not in r.content
