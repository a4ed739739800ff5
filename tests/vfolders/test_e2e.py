"""The real hub (demo config, real proxy, the vfolder service as a managed
service) with local-process sessions: create, share, mount, write in one
session and read in the next; ro really is read-only inside the session;
deleting a mounted vfolder is refused."""

import os
import subprocess

import pytest

from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.getuid() != 0, reason="mounting vfolders into local sessions needs a hub that runs as root"),
]
V = "/services/vfolders/api/v1"


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


def test_vfolders_made_or_lost_during_a_session_come_and_go(hub):
    """#19 item 2: a vfolder created, or an invitation accepted, during a
    session appears in the running session (mount propagation from the hub's
    session directory; an idmapped mount, as the running server cannot gain the
    vfolder's group), writable; one the user loses leaves; empty directories
    that an older version left in ~/vfolders are not shown."""
    alice, bob = hub.login("gpuhub-vfe"), hub.login("gpuhub-vff")
    assert alice.spawn({"gpus": "0"}).status_code in (201, 202)  # creates the account
    alice.wait_ready()
    alice.stop()
    home = os.path.expanduser("~gpuhub-vfe")
    os.makedirs(os.path.join(home, "vfolders", "ghost"), exist_ok=True)  # an old empty mount point
    assert alice.spawn({"gpus": "0"}).status_code in (201, 202)
    alice.wait_ready()
    listing = "import os\nprint(sorted(os.listdir(os.path.expanduser('~/vfolders'))))"
    assert alice.run_code(listing).strip() == "[]"

    mine = alice.call("POST", V + "/vfolders", json={"name": "mine"}).json()
    wait_for(lambda: "mine" in alice.run_code(listing), timeout=60, what="mine in the running session")
    out = alice.run_code("import os\nopen(os.path.expanduser('~/vfolders/mine/a.txt'), 'w').write('live')\n"
                         "print(os.getgroups())")
    r = alice.call("GET", V + f"/vfolders/{mine['id']}/files/a.txt")
    assert r.status_code == 200 and r.text == "live", (r.text, out)

    theirs = bob.call("POST", V + "/vfolders", json={"name": "theirs"}).json()
    s = bob.call("POST", V + f"/vfolders/{theirs['id']}/shares", json={"user": alice.name, "permission": "ro"})
    assert alice.call("POST", V + f"/invitations/{s.json()['id']}/accept").status_code == 200
    wait_for(lambda: "theirs" in alice.run_code(listing), timeout=60, what="the accepted share")
    out = alice.run_code("import errno, os\ntry:\n    open(os.path.expanduser('~/vfolders/theirs/x'), 'w')\n"
                         "except OSError as e:\n    print(errno.errorcode[e.errno])")
    assert out.strip() == "EROFS", out
    # bob takes it back: it leaves alice's running session
    assert bob.call("DELETE", V + f"/vfolders/{theirs['id']}/shares?user={alice.name}").status_code == 204
    wait_for(lambda: "theirs" not in alice.run_code(listing), timeout=60, what="the unshared vfolder to leave")
    alice.stop()


def test_home_follows_the_user_across_hosts_and_is_filled_once(hub):
    """#20 item 1: the session's home is the user's home vfolder. A file written
    in ~ in a session on node-a is there in the next session on node-b; the
    vfolder API lists the home (``kind: home``) and its download is what was
    written. The account's older local home was copied in at the first use,
    once: a later change to it is not copied again, and it is left as it was."""
    name = "gpuhub-vfhome"
    if subprocess.run(["id", name], capture_output=True).returncode:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    old_home = os.path.expanduser(f"~{name}")
    with open(os.path.join(old_home, "old.txt"), "w") as f:
        f.write("from the old home")
    os.makedirs(os.path.join(old_home, "vfolders", "stale"), exist_ok=True)  # a mount point: not copied
    u = hub.login(name)
    r = u.spawn({"gpus": "1", "gpu_model": "A100-SXM4-80GB"})
    assert r.status_code in (201, 202), r.text
    u.wait_ready()
    assert u.allocations()[0]["host"] == "node-a"
    out = u.run_code("import os\nhome = os.path.expanduser('~')\n"
                     "print(open(os.path.join(home, 'old.txt')).read(), sorted(os.listdir(home + '/vfolders')))\n"
                     "open(os.path.join(home, 'x.txt'), 'w').write('written on node-a')\n")
    assert out.strip() == "from the old home []", out
    u.stop()
    with open(os.path.join(old_home, "old.txt"), "w") as f:
        f.write("changed later")  # not copied again
    r = u.spawn({"gpus": "1", "gpu_model": "L4"})
    assert r.status_code in (201, 202), r.text
    u.wait_ready()
    assert u.allocations()[0]["host"] == "node-b"
    out = u.run_code("import os\nhome = os.path.expanduser('~')\n"
                     "print(open(home + '/x.txt').read(), '|', open(home + '/old.txt').read())")
    assert out.strip() == "written on node-a | from the old home", out
    u.stop()
    (home,) = [v for v in u.call("GET", V + "/vfolders").json()["vfolders"] if v["kind"] == "home"]
    r = u.call("GET", V + f"/vfolders/{home['id']}/files/x.txt")
    assert r.status_code == 200 and r.text == "written on node-a"
    assert open(os.path.join(old_home, "old.txt")).read() == "changed later"  # left as it was
    log = hub.log_tail(200000)
    assert "copied" in log and "into the home vfolder" in log
    # the servers' output is in the hub's log: JupyterLab started (twice) without the
    # template-path notice (#19 item 8)
    assert "Jupyter Server" in log and "extra_template_paths" not in log


def test_rw_share_between_two_system_accounts(hub):
    """Two users' local sessions (their own system accounts, the servers' default
    umask) on one rw vfolder at the same time: each changes, renames and deletes
    the other's files and directories (the vfolder's group and default ACL,
    vfolder_manager/storage/ownership.py)."""
    alice, bob = hub.login("gpuhub-vfc"), hub.login("gpuhub-vfd")
    team = alice.call("POST", V + "/vfolders", json={"name": "team"}).json()
    s = alice.call("POST", V + f"/vfolders/{team['id']}/shares", json={"user": "gpuhub-vfd", "permission": "rw"})
    assert bob.call("POST", V + f"/invitations/{s.json()['id']}/accept").status_code == 200
    for u in (alice, bob):
        assert u.spawn({"gpus": "0", "vfolders": ["team"]}).status_code in (201, 202)
    for u in (alice, bob):
        u.wait_ready()
    t = "os.path.expanduser('~/vfolders/team')"
    out = alice.run_code(
        f"import os\nt = {t}\nos.makedirs(os.path.join(t, 'd'))\n"
        "open(os.path.join(t, 'd', 'a.txt'), 'w').write('alice')\n"
        "print(oct(os.umask(0o022)), oct(os.stat(os.path.join(t, 'd', 'a.txt')).st_mode & 0o777))\n")
    assert out.split()[1] == "0o660", out  # group-writable although the umask is 022
    out = bob.run_code(
        f"import os\nt = {t}\n"
        "open(os.path.join(t, 'd', 'a.txt'), 'a').write(', bob')\n"
        "open(os.path.join(t, 'd', 'b.txt'), 'w').write('bob')\n"
        "os.rename(os.path.join(t, 'd'), os.path.join(t, 'shared'))\n"
        "print(os.getuid(), sorted(os.listdir(os.path.join(t, 'shared'))))\n")
    assert "['a.txt', 'b.txt']" in out, out
    out = alice.run_code(
        f"import os\nt = {t}\n"
        "print(open(os.path.join(t, 'shared', 'a.txt')).read())\n"
        "open(os.path.join(t, 'shared', 'b.txt'), 'a').write(', alice')\n"
        "os.remove(os.path.join(t, 'shared', 'a.txt'))\n"
        "print(os.getuid(), open(os.path.join(t, 'shared', 'b.txt')).read())\n")
    lines = out.split("\n")
    assert lines[0] == "alice, bob" and lines[1].endswith("bob, alice"), out
    assert lines[1].split()[0] != "0"  # not root: the user's own account
    for u in (alice, bob):
        u.stop()
