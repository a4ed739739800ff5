"""gpuhub demo: a real JupyterHub with the GPU allocator, on an embedded default.

Start it with `make demo` (or `jupyterhub -f hub_config/jupyterhub_config.py`).

- state: SQLite in ./data (GPUHUB_DATA_DIR)
- GPUs: this host's NVIDIA GPUs via NVML when present, else the declared pool in
  hub_config/gpu_inventory.yaml (GPUHUB_INVENTORY)
- login: DummyAuthenticator, any user name and password; `admin` is a hub admin
- sessions: local processes (LocalGPUSpawner); as root, each as the user's own
  system account, created on first spawn (demo only: see create_system_users),
  running the servers' environment under /opt/gpuhub/server-envs (`make install`)

Ports come from the environment so that tests can run several hubs side by side.
"""

import os
import secrets
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub)

here = Path(__file__).resolve().parent
repo = here.parent
data_dir = Path(os.environ.get("GPUHUB_DATA_DIR", repo / "data")).resolve()
data_dir.mkdir(parents=True, exist_ok=True)
env = os.environ.get


def secret(name: str) -> str:
    """A token kept in the data dir (mode 600), made on first start."""
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


# --- the hub -----------------------------------------------------------------
c.JupyterHub.ip = env("GPUHUB_IP", "127.0.0.1")
c.JupyterHub.port = int(env("GPUHUB_PORT", "8000"))
c.JupyterHub.hub_port = int(env("GPUHUB_HUB_PORT", "8081"))
c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('GPUHUB_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.pid_file = str(data_dir / "jupyterhub-proxy.pid")
chp = repo / "hub_config" / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
if chp.exists():
    c.ConfigurableHTTPProxy.command = [str(chp)]

# --- who may log in ----------------------------------------------------------
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}

# --- the allocator, as a managed JupyterHub service --------------------------
allocator_port = int(env("GPUHUB_ALLOCATOR_PORT", "8051"))
spawner_token = secret("gpuhub-spawner-token")
# GPU host agents (gpuhub-agent) register and heartbeat with this token
agent_token = secret("gpuhub-agent-token")
c.JupyterHub.services = [
    {
        "name": "gpu-allocator",
        "url": f"http://127.0.0.1:{allocator_port}",
        # GPUHUB_ALLOCATOR_BIND: where agents on other hosts reach it (e.g. 0.0.0.0);
        # the hub and its proxy keep using 127.0.0.1
        # gpuhub.supervise starts the allocator again within a second if it dies
        # (JupyterHub itself would notice only on its 30 s poll)
        "command": [
            sys.executable, "-m", "gpuhub.supervise", "--",
            sys.executable, "-m", "gpu_allocator",
            f"--ip={env('GPUHUB_ALLOCATOR_BIND', '127.0.0.1')}",
        ],
        "environment": {
            "GPUHUB_DATA_DIR": str(data_dir),
            "GPUHUB_INVENTORY": env("GPUHUB_INVENTORY", str(here / "gpu_inventory.yaml")),
            "GPUHUB_HEARTBEAT_INTERVAL": env("GPUHUB_HEARTBEAT_INTERVAL", "5"),
            # shares granted for servers the hub does not run are released after this
            "GPUHUB_RECONCILE_INTERVAL": env("GPUHUB_RECONCILE_INTERVAL", "60"),
            "GPUHUB_RECONCILE_GRACE": env("GPUHUB_RECONCILE_GRACE", "300"),
            "GPUHUB_ALLOCATOR_DB_URL": env("GPUHUB_ALLOCATOR_DB_URL", ""),
            # seconds between the utilisation samples the admin panel charts
            "GPUHUB_SAMPLE_INTERVAL": env("GPUHUB_SAMPLE_INTERVAL", "60"),
            # run-time limits (warnings, expiry) and the queue's timer pass
            "GPUHUB_TIME_LIMIT_INTERVAL": env("GPUHUB_TIME_LIMIT_INTERVAL", "30"),
            # idle reclaim (JSON, GPUAllocator.idle_reclaim; empty: off)
            "GPUHUB_IDLE_RECLAIM": env("GPUHUB_IDLE_RECLAIM", ""),
            "PYTHONUNBUFFERED": "1",
        },
        # the admin panel (/services/gpu-allocator/admin/) is in the Services menu;
        # it signs in with the hub's OAuth and asks for the scopes that make an admin
        # of the pool (a user who lacks them gets neither: a 403 page)
        "display": True,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": ["custom:gpu-allocator:admin", "admin:users"],
    },
    # the identity the spawner uses to place and release shares for any user
    {"name": "gpuhub-spawner", "api_token": spawner_token, "display": False},
    # the identity of the GPU host agents
    {"name": "gpuhub-agent", "api_token": agent_token, "display": False},
]
c.JupyterHub.custom_scopes = {
    "custom:gpu-allocator:admin": {
        "description": "Place, list and release GPU shares of any user.",
    },
    "custom:gpu-allocator:agent": {
        "description": "Register a GPU host with the allocator and send its heartbeats.",
    },
    # advance reservations (README "Advance reservations"): grant it to a group
    # with a role, e.g. {"name": "reservers", "scopes": [...], "groups": ["reservers"]}
    "custom:gpu-allocator:reserve": {
        "description": "Book GPUs of a host ahead of time for one's own sessions.",
    },
}
c.JupyterHub.load_roles = [
    # every user may read the pool and manage their own shares
    {"name": "user", "scopes": ["self", "access:services!service=gpu-allocator"]},
    {
        "name": "gpuhub-spawner",
        "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
        "services": ["gpuhub-spawner"],
    },
    {
        "name": "gpu-admin",
        "scopes": ["custom:gpu-allocator:admin", "custom:gpu-allocator:reserve",
                   "access:services!service=gpu-allocator"],
        "users": ["admin"],
    },
    {
        "name": "gpuhub-agent",
        "scopes": ["custom:gpu-allocator:agent", "access:services!service=gpu-allocator"],
        "services": ["gpuhub-agent"],
    },
    # the allocator compares the shares it granted with the servers the hub runs,
    # and sums GPU-hours per group for the admin panel
    {"name": "gpu-allocator", "scopes": ["list:users", "read:servers", "list:groups", "read:groups"],
     "services": ["gpu-allocator"]},
]

# --- Prometheus: one token scrapes the hub (/hub/metrics) and both services -------
# (/services/gpu-allocator/metrics, /services/vfolders/metrics); see README "Metrics"
c.JupyterHub.services.append(
    {"name": "prometheus", "api_token": secret("gpuhub-prometheus-token"), "display": False}
)
c.JupyterHub.load_roles.append({
    "name": "prometheus",
    "scopes": ["read:metrics", "access:services!service=gpu-allocator"],
    "services": ["prometheus"],
})

# --- sessions -----------------------------------------------------------------
# GPUHUB_RUNTIME: "docker" (containers), "local" (processes) or "auto": Docker when
# an engine answers and the single-user image is built (`make image`), else local.
def pick_runtime(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.images.get("gpuhub/singleuser:latest")
        return "docker"
    except Exception:
        return "local"


runtime = pick_runtime(env("GPUHUB_RUNTIME", "auto"))
print(f"gpuhub: sessions run as {'Docker containers' if runtime == 'docker' else 'local processes'}"
      f" (GPUHUB_RUNTIME={env('GPUHUB_RUNTIME', 'auto')})", flush=True)
# --- this host's own agent: fractions enforced on a GPU workstation -------------
# With NVIDIA GPUs here (or GPUHUB_LOCAL_AGENT=1), the pool comes from an agent for
# this host, as on any GPU server: it runs the CUDA MPS daemon that enforces
# fractional shares (and reports when it cannot: then no fractions are offered).
# GPUHUB_LOCAL_AGENT_INVENTORY_HOST makes it play a host of the declared inventory.
def local_agent_wanted() -> bool:
    wanted = env("GPUHUB_LOCAL_AGENT", "auto")
    if wanted != "auto":
        return wanted == "1"
    from gpu_allocator.inventory import nvml_available

    return nvml_available()


if local_agent_wanted():
    agent_cmd = [
        sys.executable, "-m", "gpuhub.supervise", "--", sys.executable, "-m", "gpu_allocator.agent",
        f"--allocator-url=http://127.0.0.1:{allocator_port}/services/gpu-allocator/api/v1/",
    ]
    if env("GPUHUB_LOCAL_AGENT_INVENTORY_HOST"):
        agent_cmd += [f"--inventory={env('GPUHUB_INVENTORY', str(here / 'gpu_inventory.yaml'))}",
                      f"--inventory-host={env('GPUHUB_LOCAL_AGENT_INVENTORY_HOST')}"]
    if os.getuid() != 0:  # as root: /var/lib/gpuhub-agent, reachable by the users' sessions
        agent_cmd.append(f"--state-dir={data_dir / 'agent'}")
    if runtime == "docker":
        agent_cmd.append("--docker-url=unix:///var/run/docker.sock")
    allocator = next(s for s in c.JupyterHub.services if s["name"] == "gpu-allocator")
    allocator["command"].append("--discovery=agents")
    c.JupyterHub.services.append({
        "name": "gpuhub-agent-local",
        "command": agent_cmd,
        "environment": {"GPUHUB_AGENT_TOKEN": agent_token, "PYTHONUNBUFFERED": "1",
                        "GPUHUB_DATA_DIR": str(data_dir),
                        **({"GPUHUB_AGENT_STATE_DIR": env("GPUHUB_AGENT_STATE_DIR")}
                           if env("GPUHUB_AGENT_STATE_DIR") else {})},
        "display": False,
    })
    print("gpuhub: this host's GPUs join the pool through its own agent (CUDA MPS for fractions)",
          flush=True)

c.JupyterHub.spawner_class = (
    "spawner.DockerGPUSpawner" if runtime == "docker" else "spawner.LocalGPUSpawner"
)
c.GPUSpawner.allocator_url = f"http://127.0.0.1:{allocator_port}/services/gpu-allocator/api/v1/"
c.GPUSpawner.allocator_token = spawner_token
c.GPUSpawner.default_gpus = "0.5"
if runtime == "local":
    # what local servers inherit from the hub: LocalProcessSpawner's own list, plus
    # JUPYTER_PATH / JUPYTER_CONFIG_PATH (extra extension dirs, as the tests use for a
    # freshly built panel); containers keep DockerSpawner's empty list (the hub's
    # PATH means nothing inside an image)
    local_env_keep = ["CONDA_DEFAULT_ENV", "CONDA_ROOT", "JUPYTERHUB_SINGLEUSER_APP", "LANG",
                      "LC_ALL", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "VIRTUAL_ENV",
                      "JUPYTER_PATH", "JUPYTER_CONFIG_PATH"]
    c.Spawner.env_keep = local_env_keep
    # As root, servers run as the users' own accounts, which cannot enter a checkout
    # under a private home: they execute the servers' environment that `make install`
    # puts under /opt/gpuhub/server-envs (spawner/serverenv.py), not the hub's .venv.
    from spawner.serverenv import server_python

    python = server_python()
    c.Spawner.cmd = [python, "-m", "jupyterhub.singleuser"]
    if python != sys.executable:
        # nothing of the hub's venv: its bin/ first on PATH, no PYTHONPATH
        c.Spawner.env_keep = [k for k in local_env_keep if k not in ("PATH", "PYTHONPATH", "VIRTUAL_ENV")]
        c.Spawner.environment = {
            "PATH": os.pathsep.join([str(Path(python).parent), env("PATH", "/usr/bin:/bin")]),
            "VIRTUAL_ENV": str(Path(python).parent.parent),
        }
c.Spawner.default_url = "/lab"
# the home and spawn-pending pages say when a server's run time (max_hours) ends
# (hub_config/templates extend JupyterHub's own; GPUSpawner.time_limit)
c.JupyterHub.template_paths = [str(here / "templates")]
c.Spawner.poll_interval = int(env("GPUHUB_POLL_INTERVAL", "30"))
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
# demo only: make a system account for whoever logs in when the hub runs as root
c.LocalGPUSpawner.create_system_users = True
c.LocalGPUSpawner.unprivileged_home_template = str(data_dir / "users" / "{username}")

# =============================================================================
# --- vfolders: named folders on storage hosts, mounted into sessions ----------
# (the vfolder service's whole configuration; appended, the sections above are
# the allocator's)
# Storage host: GPUHUB_VFOLDERS_DIR (default: the data dir's vfolders/); in
# production, an NFS mount of the NAS — see README "vfolders".
vfolders_port = int(env("GPUHUB_VFOLDERS_PORT", "8052"))
c.JupyterHub.services.append({
    "name": "vfolders",
    "url": f"http://127.0.0.1:{vfolders_port}",
    "command": [sys.executable, "-m", "gpuhub.supervise", "--", sys.executable, "-m", "vfolder_manager"],
    "environment": {
        "GPUHUB_DATA_DIR": str(data_dir),
        "GPUHUB_VFOLDERS_DIR": env("GPUHUB_VFOLDERS_DIR", str(data_dir / "vfolders")),
        "PYTHONUNBUFFERED": "1",
    },
    "display": False,
})
c.JupyterHub.custom_scopes["custom:vfolders:admin"] = {
    "description": "Manage every vfolder: trash, quotas, mounts of any user's session.",
}
for _role in c.JupyterHub.load_roles:
    if _role["name"] == "user":
        _role["scopes"].append("access:services!service=vfolders")
    if _role["name"] == "gpu-admin":
        _role["scopes"] += ["custom:vfolders:admin", "access:services!service=vfolders"]
    if _role["name"] in ("gpu-allocator", "prometheus"):
        # the admin panel's storage tab; the vfolder service's metrics
        _role["scopes"].append("access:services!service=vfolders")
for _service in c.JupyterHub.services:
    if _service["name"] == "gpu-allocator":
        _service["environment"]["GPUHUB_VFOLDERS_URL"] = (
            f"http://127.0.0.1:{vfolders_port}/services/vfolders/api/v1/"
        )
c.JupyterHub.load_roles.append({
    "name": "vfolders-spawner",
    "scopes": ["custom:vfolders:admin", "access:services!service=vfolders"],
    "services": ["gpuhub-spawner"],
})
c.VFolderMixin.vfolders_url = f"http://127.0.0.1:{vfolders_port}/services/vfolders/api/v1/"
c.VFolderMixin.vfolders_token = spawner_token

# =============================================================================
# --- the JupyterLab panel (labextension/, server extension gpuhub.lab) --------
# (appended as one block; the sections above are the allocator's and vfolders')
# The panel's server extension calls both services with the single-user server's
# own token. That token's scopes replace JupyterHub's defaults, so list them again
# and add the two services; users get the same service scopes through
# extra_user_scopes (JupyterHub 6) rather than a redefined `user` role.
_lab_service_scopes = ["access:services!service=gpu-allocator", "access:services!service=vfolders"]
c.Spawner.server_token_scopes = ["access:servers!server", "users:activity!user", *_lab_service_scopes]
c.JupyterHub.extra_user_scopes = set(_lab_service_scopes)
# where the server extension finds the services (host networking in Docker too)
c.Spawner.environment.update({
    "GPUHUB_ALLOCATOR_URL": c.GPUSpawner.allocator_url,
    "GPUHUB_VFOLDERS_URL": c.VFolderMixin.vfolders_url,
})

