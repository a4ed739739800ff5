"""The single-user image gpuhub/singleuser:latest, for real: a Docker engine is started
(.ci/dockerd start) and the image built (spawner/image/build.sh, a no-op when it is up to date).

One container runs for the whole module with the limits a spawner would set; the checks are
`docker exec`s in it (a `docker run` per check would cost seconds each on a vfs engine).
"""

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # a Docker engine and the image

REPO = Path(__file__).resolve().parent.parent
IMAGE = "gpuhub/singleuser:latest"
UID = 4242
MEMORY = 256 * 1024 * 1024


def sh(*cmd, timeout=120, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def image():
    sh("bash", str(REPO / ".ci/dockerd"), "start", timeout=300)
    build = sh("bash", str(REPO / "spawner/image/build.sh"), timeout=1200)
    print(build.stdout[-2000:])
    return IMAGE


@pytest.fixture(scope="module")
def container(image):
    name = f"gpuhub-test-image-{uuid.uuid4().hex[:8]}"
    sh(
        "docker", "run", "-d", "--name", name,
        "--network", "host", "--user", f"{UID}:{UID}", "-e", "HOME=/tmp",
        "--memory", "256m", "--cpus", "0.5",
        image, "sleep", "infinity",
        timeout=300,
    )
    try:
        deadline = time.monotonic() + 60
        while sh("docker", "inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
            assert time.monotonic() < deadline, sh("docker", "logs", name, check=False).stderr
            time.sleep(0.2)
        yield name
    finally:
        sh("docker", "rm", "-f", name, check=False)


def dexec(container, *cmd, check=True, timeout=120):
    return sh("docker", "exec", container, *cmd, check=check, timeout=timeout)


def test_image_exists(image):
    info = json.loads(sh("docker", "image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["Labels"].get("org.gpuhub.inputs"), "image lacks the build-inputs label"
    assert any(e.startswith("PATH=/opt/gpuhub/bin:") for e in cfg["Env"]), cfg["Env"]
    # the image's own default user is not root either
    assert cfg["User"] and cfg["User"].split(":")[0] not in ("0", "root"), cfg["User"]


def test_python_packages(container):
    out = dexec(container, "python", "-c", "import jupyterlab, jupyterhub, spawner; print(jupyterhub.__version__)").stdout
    assert out.strip() == "6.1.1"


def test_versions_match_host_venv(container):
    from importlib.metadata import version

    out = dexec(container, "python", "-c", "from importlib.metadata import version as v; print(v('jupyterlab'), v('jupyter_server'))").stdout
    assert out.split() == [version("jupyterlab"), version("jupyter_server")]
    assert out.split()[0].startswith("4.")


def test_singleuser_on_path(container):
    assert dexec(container, "sh", "-c", "command -v jupyterhub-singleuser").stdout.strip() == "/opt/gpuhub/bin/jupyterhub-singleuser"
    assert "from jupyterhub.singleuser import main" in dexec(container, "cat", "/opt/gpuhub/bin/jupyterhub-singleuser").stdout
    p = dexec(container, "jupyterhub-singleuser", "--help", timeout=60)
    assert p.returncode == 0
    assert "--help-all" in p.stdout


def test_not_root(container):
    assert dexec(container, "id", "-u").stdout.strip() == str(UID)
    # the process tree, too: PID 1 of the container runs as the given uid
    assert dexec(container, "sh", "-c", "awk '/^Uid:/{print $2}' /proc/1/status").stdout.strip() == str(UID)


def cgroup_version():
    v = sh("docker", "info", "-f", "{{.CgroupVersion}}").stdout.strip()
    assert v in ("1", "2"), v
    return v


def test_memory_limit(container):
    if cgroup_version() == "2":
        limit = dexec(container, "cat", "/sys/fs/cgroup/memory.max").stdout.strip()
    else:  # cgroup v1 (this project's VMs): the memory controller is its own hierarchy
        limit = dexec(container, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert int(limit) == MEMORY
    assert sh("docker", "inspect", "-f", "{{.HostConfig.Memory}}", container).stdout.strip() == str(MEMORY)


def test_cpu_limit(container):
    if cgroup_version() == "2":
        quota, period = dexec(container, "cat", "/sys/fs/cgroup/cpu.max").stdout.split()
    else:
        quota = dexec(container, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout.strip()
        period = dexec(container, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_period_us").stdout.strip()
    assert int(quota) / int(period) == 0.5


def test_memory_limit_is_enforced(container):
    # allocating (and touching) twice the limit gets the process OOM-killed, not the host's memory
    p = dexec(container, "python", "-c", "b = bytearray(2 * %d); print('survived')" % MEMORY, check=False)
    assert p.returncode == 137, (p.returncode, p.stdout, p.stderr)
    assert "survived" not in p.stdout
