"""vfolders in real Docker sessions: the demo hub with GPUHubDemo.runtime = "docker"
(DockerGPUSpawner, the locally built gpuhub/singleuser image, the vfolder
service as a managed service; engine and image from the ``engine`` fixture in
tests/conftest.py).

What it proves:

- a ``rw`` vfolder is bind-mounted at ~/vfolders/NAME, and the container's user
  (DockerGPUSpawner.container_user, uid 1000, not root) can create files in it:
  the container gets the vfolder's group (``group_add``; the directory is
  SERVICE:GID 2770 with a default ACL, storage/ownership.py), and what it
  creates is group-writable and in that group;
- a ``ro`` share is a read-only bind: a write inside the container fails with
  EROFS (the kernel refuses it, not a permission bit);
- a file written in one session is there in the next one, which the allocator
  placed on *another host* of the demo inventory (node-a: A100, then node-b:
  L4, chosen with gpu_model). Both containers run on this machine's one engine,
  so "another host" here is the allocator's placement; what the test pins is
  that the session's view of a vfolder depends only on the storage host
  directory (the NAS), which both sessions bind from the same path, and on
  nothing of the GPU host the session landed on.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
import requests

from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    # the storage host directory (the NAS) in the hub's work directory
    pytest.mark.hub(config=lambda work: {
        "GPUHubDemo": {"runtime": "docker", "local_agent": "0"},
        "VFolderService": {"storage_hosts": {"local": {"path": str(work / "nas"), "default": True}}},
    }),
]
V = "/services/vfolders/api/v1"


@pytest.fixture(scope="module", autouse=True)
def nothing_left_in_the_engine(engine):
    """The engine runs before the hub starts; the sessions' containers and home
    volumes go after it stops."""
    yield
    for c in engine.containers.list(all=True, filters={"name": "jupyter-gpuhub-2ddv"}):
        c.remove(force=True)
    for v in engine.volumes.list(filters={"name": "gpuhub-home-gpuhub-2ddv"}):
        v.remove(force=True)


def container_of(engine, user: str):
    (c,) = engine.containers.list(filters={"name": f"jupyter-{user.replace('-', '-2d')}"})
    return c


def upload(user, vid: str, name: str, data: bytes) -> None:
    """One file through the service's tus endpoint (create, one PATCH)."""
    tus = {**user.headers, "Tus-Resumable": "1.0.0"}
    meta = "filename " + base64.b64encode(name.encode()).decode()
    r = requests.post(user.url + V + f"/vfolders/{vid}/uploads/", timeout=30,
                      headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    r = requests.patch(user.url + r.headers["Location"], data=data, timeout=30, headers={
        **tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text


PROBE = (
    "import os, errno, json\n"
    "home = os.path.expanduser('~/vfolders')\n"
    "res = {'uid': os.getuid(), 'gid': os.getgid(), 'listing': sorted(os.listdir(home))}\n"
    "os.makedirs(os.path.join(home, 'data', 'sub'), exist_ok=True)\n"
    "open(os.path.join(home, 'data', 'sub', 'hello.txt'), 'w').write('from session 1')\n"
    "try:\n"
    "    open(os.path.join(home, 'refs', 'x.txt'), 'w').write('no')\n"
    "    res['ro_write'] = 'WROTE'\n"
    "except OSError as e:\n"
    "    res['ro_write'] = errno.errorcode[e.errno]\n"
    "res['refs'] = open(os.path.join(home, 'refs', 'readme.txt')).read()\n"
    "print(json.dumps(res))\n"
)


def test_docker_sessions_mount_rw_and_ro_and_keep_files_across_hosts(hub, engine):
    alice, bob = hub.login("gpuhub-dva"), hub.login("gpuhub-dvb")
    r = alice.call("POST", V + "/vfolders", json={"name": "data"})
    assert r.status_code == 201, r.text
    data = r.json()
    refs = bob.call("POST", V + "/vfolders", json={"name": "refs"}).json()
    upload(bob, refs["id"], "readme.txt", b"bob's\n")
    s = bob.call("POST", V + f"/vfolders/{refs['id']}/shares", json={"user": "gpuhub-dva", "permission": "ro"})
    assert alice.call("POST", V + f"/invitations/{s.json()['id']}/accept").status_code == 200

    # an older per-host home: the Docker volume of DockerGPUSpawner.home_volume_template
    volume = "gpuhub-home-gpuhub-2ddva"
    engine.volumes.create(volume)
    engine.containers.run("gpuhub/singleuser:latest", ["sh", "-c", "echo old home > /home/jovyan/old.txt"],
                          volumes={volume: {"bind": "/home/jovyan", "mode": "rw"}}, user="1000:100",
                          network_mode="none", remove=True)

    # session 1 on node-a
    r = alice.spawn({"gpus": "1", "gpu_model": "A100-SXM4-80GB", "cpu": 0.5, "mem": "512M",
                     "vfolders": ["data", "refs"]})
    assert r.status_code in (201, 202), r.text
    alice.wait_ready(timeout=120)
    (a1,) = alice.allocations()
    host_config = container_of(engine, alice.name).attrs["HostConfig"]
    binds = host_config["Binds"]
    mounts = {m["name"]: m for m in hub.admin_allocator().call(
        "POST", V + "/mounts", json={"user": alice.name, "session": "probe", "vfolders": ["data", "refs"],
                                     "dry_run": True}).json()["mounts"]}
    paths = {name: m["path"] for name, m in mounts.items()}
    # the container's user gets each vfolder's group (storage/ownership.py)
    # (and the home vfolder's group: one more)
    groups = set(host_config["GroupAdd"])
    assert {str(m["gid"]) for m in mounts.values()} < groups and len(groups) == len(mounts) + 1, groups
    # the session directory at ~/vfolders (rslave), the vfolders bound into it by the hub
    (vbind,) = [b for b in binds if ":/home/jovyan/vfolders:" in b]
    assert vbind.endswith(":/home/jovyan/vfolders:rw,rslave"), binds
    out = json.loads(alice.run_code(PROBE))
    assert out["uid"] == 1000 and out["listing"] == ["data", "refs"], out
    assert out["ro_write"] == "EROFS", out  # a ro share cannot be written, whatever the file modes
    assert out["refs"] == "bob's\n"
    # on the storage host: the container user's file, in the vfolder's directory
    st = os.stat(os.path.join(paths["data"], "sub", "hello.txt"))
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, mounts["data"]["gid"], 0o660)
    st = os.stat(os.path.join(paths["data"], "sub"))  # setgid, group rwx whatever the umask
    assert (st.st_gid, st.st_mode & 0o7777) == (mounts["data"]["gid"], 0o2770)
    assert not os.path.exists(os.path.join(paths["refs"], "x.txt"))

    r = alice.call("DELETE", V + f"/vfolders/{data['id']}")
    assert r.status_code == 409 and "running session" in r.json()["error"], r.text
    # the home is the home vfolder, filled once from the old volume (#20 item 1)
    out = alice.run_code("import os\nprint(open(os.path.expanduser('~/old.txt')).read().strip())\n"
                         "open(os.path.expanduser('~/x.txt'), 'w').write('home on node-a')\n")
    assert out.strip() == "old home", out
    assert not any(b.startswith(volume + ":") for b in binds), binds  # not the per-host volume
    alice.stop()
    engine.containers.run("gpuhub/singleuser:latest", ["sh", "-c", "echo changed > /home/jovyan/old.txt"],
                          volumes={volume: {"bind": "/home/jovyan", "mode": "rw"}}, user="1000:100",
                          network_mode="none", remove=True)

    # session 2 on node-b: the file is there, and still writable by the same user
    r = alice.spawn({"gpus": "1", "gpu_model": "L4", "cpu": 0.5, "mem": "512M", "vfolders": ["data"]})
    assert r.status_code in (201, 202), r.text
    alice.wait_ready(timeout=120)
    (a2,) = alice.allocations()
    assert (a1["host"], a2["host"]) == ("node-a", "node-b")
    out = alice.run_code(
        "import os\np = os.path.expanduser('~/vfolders/data/sub/hello.txt')\n"
        "mounted = sorted(l.split()[4] for l in open('/proc/self/mountinfo') if '/vfolders/' in l.split()[4])\n"
        "print(mounted, open(p).read())\n"
        "open(p, 'a').write(', and session 2')\n"
    )
    # only what this session asked for is mounted, and no empty mount point is left for refs
    assert out.strip() == "['/home/jovyan/vfolders/data'] from session 1", out
    out = alice.run_code("import os\nh = os.path.expanduser('~')\n"
                         "print(open(h + '/x.txt').read(), '|', open(h + '/old.txt').read().strip())")
    assert out.strip() == "home on node-a | old home", out  # there on node-b; copied once, not twice
    assert alice.run_code("import os\nprint(sorted(os.listdir(os.path.expanduser('~/vfolders'))))").strip() \
        == "['data']"

    # made during the session: it appears in the running container, writable by its
    # user (an idmapped mount: the container never got this vfolder's group)
    later = alice.call("POST", V + "/vfolders", json={"name": "later"}).json()
    seen = wait_for(lambda: "later" in alice.run_code(
        "import os\nprint(os.listdir(os.path.expanduser('~/vfolders')))"), timeout=60,
        what="the new vfolder in the running container")
    assert seen
    out = alice.run_code("import os\np = os.path.expanduser('~/vfolders/later/new.txt')\n"
                         "open(p, 'w').write('made live')\nprint(os.getgroups())\n")
    r = alice.call("GET", V + f"/vfolders/{later['id']}/files/new.txt")
    assert r.status_code == 200 and r.text == "made live", (r.text, out)
    alice.stop()
    assert alice.call("DELETE", V + f"/vfolders/{later['id']}").status_code == 204
    # the service sees both sessions' bytes (a download through the API)
    r = alice.call("GET", V + f"/vfolders/{data['id']}/files/sub/hello.txt")
    assert r.status_code == 200 and r.text == "from session 1, and session 2", r.text
    assert alice.call("DELETE", V + f"/vfolders/{data['id']}").status_code == 204
    (home,) = [v for v in alice.call("GET", V + "/vfolders").json()["vfolders"] if v["kind"] == "home"]
    r = alice.call("GET", V + f"/vfolders/{home['id']}/files/x.txt")
    assert r.status_code == 200 and r.text == "home on node-a"
