"""The real hub (demo config, real proxy, the vfolder service as a managed
service) with local-process sessions: create, share, mount, write in one
session and read in the next; ro really is read-only inside the session;
deleting a mounted vfolder is refused."""

import os

import pytest

from hubprocess import Hub, free_port, wait_for

pytestmark = pytest.mark.e2e
V = "/services/vfolders/api/v1"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if os.getuid() != 0:
        pytest.skip("mounting vfolders into local sessions needs a hub that runs as root")
    h = Hub(tmp_path_factory.mktemp("vfhub"), GPUHUB_VFOLDERS_PORT=str(free_port()))
    try:
        h.start()
        wait_for(lambda: h.admin_allocator().call("GET", V + "/health").status_code == 200, 60,
                 "the vfolder service")
        yield h
    finally:
        h.stop()


def test_mount_write_read_ro_and_refused_delete(hub):
    alice, bob = hub.login("gpuhub-vfa"), hub.login("gpuhub-vfb")
    r = alice.call("POST", V + "/vfolders", json={"name": "data", "auto_mount": True})
    assert r.status_code == 201, r.text
    data = r.json()
    refs = bob.call("POST", V + "/vfolders", json={"name": "refs"}).json()
    s = bob.call("POST", V + f"/vfolders/{refs['id']}/shares", json={"user": "gpuhub-vfa", "permission": "ro"})
    assert s.status_code == 201, s.text
    assert alice.call("POST", V + f"/invitations/{s.json()['id']}/accept").status_code == 200

    r = alice.spawn({"gpus": "0", "vfolders": ["nope"]})
    assert r.status_code == 400 and "nope" in r.json()["message"], r.text

    r = alice.spawn({"gpus": "0", "vfolders": ["data", "refs"]})
    assert r.status_code in (201, 202), r.text
    alice.wait_ready()
    out = alice.run_code(
        "import os, errno\n"
        "home = os.path.expanduser('~/vfolders')\n"
        "print(sorted(os.listdir(home)))\n"
        "open(os.path.join(home, 'data', 'hello.txt'), 'w').write('from session 1')\n"
        "try:\n"
        "    open(os.path.join(home, 'refs', 'x.txt'), 'w').write('no')\n"
        "    print('WROTE-RO')\n"
        "except OSError as e:\n"
        "    print('refused', errno.errorcode[e.errno])\n"
    )
    assert "['data', 'refs']" in out, out
    assert "refused EROFS" in out and "WROTE-RO" not in out, out

    r = alice.call("DELETE", V + f"/vfolders/{data['id']}")
    assert r.status_code == 409 and "running session" in r.json()["error"], r.text

    alice.stop()
    assert alice.spawn({"gpus": "0"}).status_code in (201, 202)  # auto-mount: data only
    alice.wait_ready()
    out = alice.run_code(
        "import os\nhome = os.path.expanduser('~/vfolders')\n"
        "print(os.path.ismount(os.path.join(home, 'refs')), open(os.path.join(home, 'data', 'hello.txt')).read())\n"
    )
    # the second session mounts only the auto-mount vfolder, and sees session 1's file
    assert out.strip() == "False from session 1", out
    alice.stop()
    assert alice.call("DELETE", V + f"/vfolders/{data['id']}").status_code == 204
