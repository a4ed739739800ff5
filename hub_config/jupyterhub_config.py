"""gpuhub demo: a real JupyterHub with the GPU allocator, on an embedded default.

Start it with `make demo` (or `jupyterhub -f hub_config/jupyterhub_config.py`).

- state: SQLite in ./data (GPUHUB_DATA_DIR)
- GPUs: this host's NVIDIA GPUs via NVML when present, else the declared pool in
  hub_config/gpu_inventory.yaml (GPUHUB_INVENTORY)
- login: DummyAuthenticator, any user name and password; `admin` is a hub admin
- sessions: local processes (LocalGPUSpawner); as root, each as the user's own
  system account, created on first spawn (demo only: see create_system_users),
  running the servers' environment under /opt/gpuhub/server-envs (`make install`)

This file is the one place that reads the demo's environment variables
(GPUHUB_PORT, GPUHUB_DATA_DIR, GPUHUB_RUNTIME, GPUHUB_HEARTBEAT_INTERVAL, …) and
turns them into config: the hub's, and each service's own config file, written
into the data dir (gpu_allocator_config.py, vfolders_config.py,
gpuhub_agent_config.py) and named on the service's command line. The services
themselves read only their config.

A config file can configure the demo without the environment (the tests do):
set ``c.GPUHubDemo.*`` (below), ``c.GPUAllocator.*``, ``c.VFolderService.*``,
``c.GPUAgent.*`` or the hub's own settings first, then run this file on the
same config object::

    demo = "…/hub_config/jupyterhub_config.py"
    exec(compile(open(demo).read(), demo, "exec"), {"get_config": get_config, "__file__": demo})

(``load_subconfig`` would run it on a fresh config, which cannot see them).
What is set there wins over the environment.
"""

import json
import os
import secrets
import sys
from pathlib import Path

from traitlets import CaselessStrEnum, Int, Unicode
from traitlets.config import Configurable

c = get_config()  # noqa: F821 (provided by JupyterHub)

here = Path(__file__).resolve().parent
repo = here.parent
env = os.environ.get


class GPUHubDemo(Configurable):
    """The demo's own settings: ``c.GPUHubDemo.*`` from a config file that loads
    this one, else the environment variable each names, else the default."""

    data_dir = Unicode(
        env("GPUHUB_DATA_DIR", str(repo / "data")),
        help="All the demo's state: the hub's and the services' databases, tokens, "
        "cookie secrets, and the services' config files. $GPUHUB_DATA_DIR; default "
        "the checkout's data/.",
    ).tag(config=True)
    runtime = CaselessStrEnum(
        ["auto", "docker", "local", "slurm"], env("GPUHUB_RUNTIME", "auto"),
        help="Where sessions run: 'docker' (containers), 'local' (processes), 'slurm' "
        "(one Slurm batch job per server: a cluster of the demo's own, or "
        "slurm_conf's) or 'auto': Docker when an engine answers and the single-user "
        "image is built (`make image`), else local. $GPUHUB_RUNTIME; default auto.",
    ).tag(config=True)
    slurm_conf = Unicode(
        env("GPUHUB_SLURM_CONF", ""),
        help="With runtime 'slurm': the slurm.conf of a site's cluster to submit to, "
        "e.g. /etc/slurm/slurm.conf (then the inventory, GPUHUB_INVENTORY, must list "
        "its GPU nodes with `owner: slurm`). $GPUHUB_SLURM_CONF; default empty: the "
        "demo starts a cluster of its own (munge, slurmctld, one slurmd per inventory "
        "host; root only) with its config at $GPUHUB_DATA_DIR/slurm/slurm.conf, and "
        "stops it with the hub.",
    ).tag(config=True)
    slurm_node = Unicode(
        env("GPUHUB_SLURM_NODE", ""),
        help="With runtime 'slurm' and no slurm_conf: the one inventory host the "
        "demo's own cluster runs, as a slurmd on this machine, e.g. node-b. "
        "$GPUHUB_SLURM_NODE; default empty: every host of the inventory, each a slurmd "
        "in a network namespace of its own (slurm_subnet), or the first host alone "
        "where namespaces cannot be made.",
    ).tag(config=True)
    slurm_subnet = Unicode(
        env("GPUHUB_SLURM_SUBNET", "10.213.40"),
        help="With the demo's own cluster of several nodes: the private /24 (its "
        "first three octets) that links their network namespaces to this machine, "
        "one /30 per node (node i: SUBNET.4i+2, this machine's end SUBNET.4i+1). "
        "$GPUHUB_SLURM_SUBNET; default 10.213.40, which the tests do not use; pick "
        "another where it is in use on this machine.",
    ).tag(config=True)
    internal_ip = Unicode(
        env("GPUHUB_INTERNAL_IP", ""),
        help="Where the hub's API and gpuhub's services (allocator, vfolders) listen, "
        "and where sessions reach them, e.g. 10.0.0.5 for the nodes of a site's Slurm "
        "cluster. $GPUHUB_INTERNAL_IP; default empty: 127.0.0.1, or, with the demo's "
        "own cluster in network namespaces, this machine's end of the first node's "
        "link (which every namespace routes to). Not the address people use: that "
        "is JupyterHub.ip ($GPUHUB_IP).",
    ).tag(config=True)
    slurm_fractions = CaselessStrEnum(
        ["shard", "mps"], env("GPUHUB_SLURM_FRACTIONS", "shard"),
        help="With runtime 'slurm': how a fraction of a GPU is asked of Slurm, "
        "'shard' (--gres=shard:K) or 'mps' (--gres=mps:P, P the percentage of one "
        "GPU): SlurmGPUSpawner.fraction_gres, and, for the demo's own cluster, the "
        "GRES it declares (shards, or 100 mps per GPU). $GPUHUB_SLURM_FRACTIONS; "
        "default shard, as before.",
    ).tag(config=True)
    local_agent = CaselessStrEnum(
        ["auto", "1", "0"], env("GPUHUB_LOCAL_AGENT", "auto"),
        help="Whether this host's GPUs join the pool through its own agent (CUDA MPS "
        "for fractions): '1', '0', or 'auto' (when NVML finds NVIDIA GPUs). "
        "$GPUHUB_LOCAL_AGENT; default auto.",
    ).tag(config=True)
    local_agent_inventory_host = Unicode(
        env("GPUHUB_LOCAL_AGENT_INVENTORY_HOST", ""),
        help="Makes the local agent play this host of the declared inventory instead "
        "of using NVML, e.g. node-a. $GPUHUB_LOCAL_AGENT_INVENTORY_HOST; default empty.",
    ).tag(config=True)
    allocator_port = Int(
        int(env("GPUHUB_ALLOCATOR_PORT", "8051")),
        help="Port of the allocator service (the hub and agents reach it directly). "
        "$GPUHUB_ALLOCATOR_PORT; default 8051.",
    ).tag(config=True)
    vfolders_port = Int(
        int(env("GPUHUB_VFOLDERS_PORT", "8052")),
        help="Port of the vfolder service. $GPUHUB_VFOLDERS_PORT; default 8052.",
    ).tag(config=True)
    server_envs = Unicode(
        env("GPUHUB_SERVER_ENVS", "/opt/gpuhub/server-envs"),
        help="Where `make install` put the single-user servers' environment (as root). "
        "$GPUHUB_SERVER_ENVS; default /opt/gpuhub/server-envs, the Makefile's.",
    ).tag(config=True)


demo = GPUHubDemo(config=c)
data_dir = Path(demo.data_dir).resolve()
data_dir.mkdir(parents=True, exist_ok=True)


def from_env(section, names: dict) -> None:
    """section[trait] = parse($VAR) for each VAR: (trait, parse) whose variable is
    set and whose trait the including config has not set."""
    for var, (trait, parse) in names.items():
        if env(var) and trait not in section:
            section[trait] = parse(env(var))


def service_config(name: str, *classes: str) -> str:
    """Write the sections ``classes`` of this config into the data dir as the
    service's own config file; return the --config flag that names it."""
    path = data_dir / f"{name}_config.py"
    lines = [f"# written by {Path(__file__).name} at each hub start: edit that, not this", ""]
    lines += [f"c.{cls}.{trait} = {value!r}" for cls in classes for trait, value in c[cls].items()]
    path.write_text("\n".join(lines) + "\n")
    return f"--config={path}"


def secret(name: str) -> str:
    """A token kept in the data dir (mode 600), made on first start."""
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


# --- the hub -----------------------------------------------------------------
c.JupyterHub.setdefault("ip", env("GPUHUB_IP", "127.0.0.1"))
c.JupyterHub.setdefault("port", int(env("GPUHUB_PORT", "8000")))
c.JupyterHub.setdefault("hub_port", int(env("GPUHUB_HUB_PORT", "8081")))
c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.setdefault("api_url", f"http://127.0.0.1:{env('GPUHUB_PROXY_API_PORT', '8001')}")
c.ConfigurableHTTPProxy.pid_file = str(data_dir / "jupyterhub-proxy.pid")
# configurable-http-proxy, removing only routes that exist (a spawn that left the
# queue never had one: gpuhub/proxy.py)
c.JupyterHub.proxy_class = "gpuhub.proxy.GPUHubProxy"
chp = repo / "hub_config" / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
if chp.exists():
    c.ConfigurableHTTPProxy.command = [str(chp)]

# --- who may log in ----------------------------------------------------------
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}

# --- the allocator, as a managed JupyterHub service --------------------------
allocator_port = demo.allocator_port
spawner_token = secret("gpuhub-spawner-token")
# GPU host agents (gpuhub-agent) register and heartbeat with this token
agent_token = secret("gpuhub-agent-token")
# the allocator's settings (GPUAllocator traits; see their help), written into its
# config file below, once the vfolder section has added its own
c.GPUAllocator.setdefault("data_dir", str(data_dir))
# (the Slurm runtime writes an inventory of its own cluster unless one is named)
inventory_named = "inventory_file" in c.GPUAllocator or bool(env("GPUHUB_INVENTORY"))
c.GPUAllocator.setdefault("inventory_file", env("GPUHUB_INVENTORY", str(here / "gpu_inventory.yaml")))
# --- the demo's own Slurm cluster: its nodes (started below, with the runtime) ---
# One slurmd per inventory host, each in a network namespace of its own, so that
# Slurm places sessions on several nodes as on a site's cluster (GPUHUB_SLURM_NODE:
# one host, a slurmd on this machine). The namespaces reach this machine only at
# their links' ends: the hub's API and the services then listen on the first one.
slurm_nodes: list = []
if demo.runtime == "slurm" and not demo.slurm_conf:
    from spawner.slurm_cluster import netns_available, netns_nodes, nodes_from_inventory

    slurm_nodes = nodes_from_inventory(c.GPUAllocator.inventory_file)
    if demo.slurm_node:
        slurm_nodes = [n for n in slurm_nodes if n.name == demo.slurm_node]
        if not slurm_nodes:
            sys.exit(f"gpuhub: no inventory host {demo.slurm_node!r} for the Slurm cluster "
                     f"(GPUHUB_SLURM_NODE) in {c.GPUAllocator.inventory_file}")
    elif len(slurm_nodes) > 1:
        why_not = netns_available()
        if why_not:
            print(f"gpuhub: one Slurm node only ({slurm_nodes[0].name}): {why_not}", flush=True)
            slurm_nodes = slurm_nodes[:1]
        else:
            slurm_nodes = netns_nodes(slurm_nodes, "gpuhub-sn", demo.slurm_subnet)
internal_ip = demo.internal_ip or (slurm_nodes[0].gateway if slurm_nodes and slurm_nodes[0].netns
                                   else "127.0.0.1")
c.JupyterHub.setdefault("hub_ip", internal_ip)
c.JupyterHub.setdefault("hub_connect_ip", internal_ip)

from_env(c.GPUAllocator, {
    # where agents on other hosts reach it (e.g. 0.0.0.0); the hub, its proxy and
    # the sessions keep using internal_ip
    "GPUHUB_ALLOCATOR_BIND": ("ip", str),
    "GPUHUB_ALLOCATOR_DB_URL": ("db_url", str),
    "GPUHUB_HEARTBEAT_INTERVAL": ("heartbeat_interval", float),
    # shares granted for servers the hub does not run are released after this
    "GPUHUB_RECONCILE_INTERVAL": ("reconcile_interval", float),
    "GPUHUB_RECONCILE_GRACE": ("reconcile_grace", float),
    # seconds between the utilisation samples the admin panel charts
    "GPUHUB_SAMPLE_INTERVAL": ("sample_interval", float),
    # run-time limits (warnings, expiry) and the queue's timer pass
    "GPUHUB_TIME_LIMIT_INTERVAL": ("time_limit_interval", float),
    "GPUHUB_MAX_HOURS": ("max_hours", float),
    # idle reclaim (JSON, GPUAllocator.idle_reclaim; empty: off)
    "GPUHUB_IDLE_RECLAIM": ("idle_reclaim", json.loads),
})
c.JupyterHub.services = [
    {
        "name": "gpu-allocator",
        "url": f"http://{internal_ip}:{allocator_port}",
        # gpuhub.supervise starts the allocator again within a second if it dies
        # (JupyterHub itself would notice only on its 30 s poll); its --config
        # is appended below
        "command": [
            sys.executable, "-m", "gpuhub.supervise", "--",
            sys.executable, "-m", "gpu_allocator",
        ],
        "environment": {"PYTHONUNBUFFERED": "1"},
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
# every user may read the pool and manage their own shares: JupyterHub's own
# `user` role plus extra_user_scopes (both services; below, with the lab panel's)
c.JupyterHub.load_roles = [
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
    # and sums GPU-hours per group for the admin panel; it starts and removes the
    # servers of batch jobs (gpu_allocator/jobs.py: the named servers job-ID)
    {"name": "gpu-allocator", "scopes": ["list:users", "read:servers", "list:groups", "read:groups",
                                         "servers", "delete:servers"],
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
# GPUHubDemo.runtime: "docker" (containers), "local" (processes) or "auto": Docker
# when an engine answers and the single-user image is built (`make image`), else local.
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


runtime = pick_runtime(demo.runtime)
print(f"gpuhub: sessions run as "
      f"{ {'docker': 'Docker containers', 'slurm': 'Slurm batch jobs'}.get(runtime, 'local processes')}"
      f" (GPUHUB_RUNTIME={demo.runtime})", flush=True)
# --- this host's own agent: fractions enforced on a GPU workstation -------------
# With NVIDIA GPUs here (or GPUHUB_LOCAL_AGENT=1), the pool comes from an agent for
# this host, as on any GPU server: it runs the CUDA MPS daemon that enforces
# fractional shares (and reports when it cannot: then no fractions are offered).
# GPUHUB_LOCAL_AGENT_INVENTORY_HOST makes it play a host of the declared inventory.
def local_agent_wanted() -> bool:
    wanted = demo.local_agent
    if wanted != "auto":
        return wanted == "1"
    from gpu_allocator.inventory import nvml_available

    return nvml_available()


if local_agent_wanted():
    agent = c.GPUAgent
    agent.setdefault("allocator_url", f"http://{internal_ip}:{allocator_port}/services/gpu-allocator/api/v1/")
    agent.setdefault("token_file", str(data_dir / "gpuhub-agent-token"))  # kept by secret() above
    if demo.local_agent_inventory_host:
        agent.setdefault("inventory_file", c.GPUAllocator.inventory_file)
        agent.setdefault("inventory_host", demo.local_agent_inventory_host)
    from_env(agent, {"GPUHUB_AGENT_STATE_DIR": ("state_dir", str)})
    if os.getuid() != 0:  # as root: /var/lib/gpuhub-agent, reachable by the users' sessions
        agent.setdefault("state_dir", str(data_dir / "agent"))
    if runtime == "docker":
        agent.setdefault("docker_url", "unix:///var/run/docker.sock")
    c.GPUAllocator.discovery = "agents"
    c.JupyterHub.services.append({
        "name": "gpuhub-agent-local",
        "command": [sys.executable, "-m", "gpuhub.supervise", "--", sys.executable, "-m",
                    "gpu_allocator.agent", service_config("gpuhub_agent", "GPUAgent")],
        "environment": {"PYTHONUNBUFFERED": "1"},
        "display": False,
    })
    print("gpuhub: this host's GPUs join the pool through its own agent (CUDA MPS for fractions)",
          flush=True)

c.JupyterHub.spawner_class = {
    "docker": "spawner.DockerGPUSpawner", "slurm": "spawner.SlurmGPUSpawner",
}.get(runtime, "spawner.LocalGPUSpawner")
c.GPUSpawner.allocator_url = f"http://{internal_ip}:{allocator_port}/services/gpu-allocator/api/v1/"
c.GPUSpawner.allocator_token = spawner_token
c.GPUSpawner.default_gpus = "0.5"
# named servers: e.g. "edit" without a GPU beside "train" with one, each with its own
# share and time limit (GPUSpawner.named_server_limit: how many run at once)
c.JupyterHub.setdefault("allow_named_servers", True)
# profiles per hub group (GPUSpawner.profiles; spawner/profiles.py): the demo's group
# "ml" (alice and bob) sees two, first on the spawn form, plus free choices
# (GPUSpawner.allow_custom); everyone else gets the free form. Checked here, so a
# mistake stops the hub at start with a message naming it.
c.JupyterHub.setdefault("load_groups", {"ml": {"users": ["alice", "bob"]}})
c.GPUSpawner.setdefault("profiles", [
    {"slug": "ml-notebook", "display_name": "Notebook, a fraction of a GPU",
     "description": "A quarter or half of a GPU for exploring data and small models.",
     "choices": ["0.25", "0.5"], "cpu": 2, "mem": "8G", "max_hours": 8,
     "environment": {"OMP_NUM_THREADS": "2"}, "groups": ["ml"], "overrides": ["max_hours"], "default": True},
    {"slug": "ml-train", "display_name": "Training, whole GPUs",
     "description": "One GPU or more, for a day; pick how many.",
     "gpus": "1", "cpu": 4, "mem": "16G", "max_hours": 24, "groups": ["ml"], "overrides": ["gpus", "max_hours"],
     **({"image": "gpuhub/singleuser:latest"} if runtime == "docker" else {})},
])
from spawner.profiles import parse_profiles  # noqa: E402

parse_profiles(c.GPUSpawner.profiles, images=runtime == "docker")
if runtime == "slurm":
    # Slurm decides where sessions run (spawner/slurm.py): the allocator checks
    # requests and quotas before a job is submitted and mirrors what Slurm granted.
    # Without GPUHUB_SLURM_CONF, a cluster of the demo's own (spawner/slurm_cluster.py,
    # its nodes planned above) plays the hosts of the inventory; the allocator's
    # inventory is then those hosts, owned by Slurm (`owner: slurm`).
    import atexit

    import yaml

    slurm_conf = demo.slurm_conf
    if not slurm_conf:
        from spawner.slurm_cluster import SlurmCluster

        cluster = SlurmCluster(data_dir / "slurm", slurm_nodes, fractions=demo.slurm_fractions).start()
        slurm_conf = str(cluster.conf)
        c.SlurmGPUSpawner.setdefault("job_output", f"{cluster.run}/jobs/%u-%j.log")
        if not inventory_named:
            names = {n.name for n in slurm_nodes}
            inventory = yaml.safe_load(Path(c.GPUAllocator.inventory_file).read_text())
            hosts = [{**h, "owner": "slurm"} for h in inventory["hosts"] if h["name"] in names]
            slurm_inventory = data_dir / "slurm" / "inventory.yaml"
            slurm_inventory.write_text(yaml.safe_dump({"hosts": hosts}))
            c.GPUAllocator.inventory_file = str(slurm_inventory)
        # a hub that leaves its servers running on exit leaves their cluster running too
        if c.JupyterHub.get("cleanup_servers", True):
            atexit.register(cluster.stop)
        where = ", ".join(f"{n.name} ({n.addr}, network namespace {n.netns})" if n.netns else n.name
                          for n in slurm_nodes)
        print(f"gpuhub: a Slurm cluster of the demo's own runs {where}: SLURM_CONF={slurm_conf}",
              flush=True)
    c.SlurmGPUSpawner.slurm_conf = slurm_conf
    c.SlurmGPUSpawner.setdefault("fraction_gres", demo.slurm_fractions)
    c.GPUAllocator.setdefault("slurm_conf", slurm_conf)
    from_env(c.GPUAllocator, {"GPUHUB_SLURM_RECONCILE_INTERVAL": ("slurm_reconcile_interval", float)})
    c.SlurmGPUSpawner.create_system_users = True
if runtime in ("local", "slurm"):
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

    python = server_python(root=Path(demo.server_envs))
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
c.Spawner.setdefault("poll_interval", int(env("GPUHUB_POLL_INTERVAL", "30")))
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
vfolders_port = demo.vfolders_port
c.VFolderService.setdefault("data_dir", str(data_dir))
from_env(c.VFolderService, {
    "GPUHUB_VFOLDERS_DIR": ("storage_hosts", lambda path: {"local": {"path": os.path.abspath(path), "default": True}}),
    "GPUHUB_VFOLDERS_DB_URL": ("db_url", str),
})
# the Data page's Jobs section: the allocator's jobs API, called with the user's
# own OAuth token (hence the allocator's access scope below)
c.VFolderService.setdefault("allocator_url", f"http://{internal_ip}:{allocator_port}/services/gpu-allocator/api/v1/")
c.JupyterHub.services.append({
    "name": "vfolders",
    "url": f"http://{internal_ip}:{vfolders_port}",
    "command": [sys.executable, "-m", "gpuhub.supervise", "--", sys.executable, "-m", "vfolder_manager",
                service_config("vfolders", "VFolderService")],
    "environment": {"PYTHONUNBUFFERED": "1"},
    # the Data page (/services/vfolders/data/) is in every user's Services menu,
    # as "Data" (info.display_name; hub_config/templates/page.html shows it); it
    # signs in with the hub's OAuth, with the user's groups (their group vfolders)
    # and access to the allocator (the page lists the user's batch jobs there, as
    # the user)
    "display": True,
    "info": {"display_name": "Data"},
    "oauth_no_confirm": True,
    "oauth_client_allowed_scopes": ["read:users:groups!user", "access:services!service=gpu-allocator"],
})
c.JupyterHub.custom_scopes["custom:vfolders:admin"] = {
    "description": "Manage every vfolder: trash, quotas, mounts of any user's session.",
}
for _role in c.JupyterHub.load_roles:
    if _role["name"] == "gpu-admin":
        _role["scopes"] += ["custom:vfolders:admin", "access:services!service=vfolders"]
    if _role["name"] in ("gpu-allocator", "prometheus"):
        # the admin panel's storage tab; the vfolder service's metrics
        _role["scopes"].append("access:services!service=vfolders")
    if _role["name"] == "gpu-allocator":
        # batch jobs' logs and exit codes, in jobs/ID/ of each user's home vfolder
        _role["scopes"].append("custom:vfolders:admin")
c.GPUAllocator.setdefault("vfolders_url", f"http://{internal_ip}:{vfolders_port}/services/vfolders/api/v1/")
# the allocator's config file, complete now (the sections above added to it)
for _service in c.JupyterHub.services:
    if _service["name"] == "gpu-allocator":
        _service["command"].append(service_config("gpu_allocator", "GPUAllocator"))
c.JupyterHub.load_roles.append({
    "name": "vfolders-spawner",
    "scopes": ["custom:vfolders:admin", "access:services!service=vfolders"],
    "services": ["gpuhub-spawner"],
})
c.VFolderMixin.vfolders_url = f"http://{internal_ip}:{vfolders_port}/services/vfolders/api/v1/"
c.VFolderMixin.vfolders_token = spawner_token
# each session's mount directory (spawner/mounts.py), beside the demo's other state, so
# that two demos (or test hubs) on one machine never share one
c.VFolderMixin.setdefault("vfolders_session_root", str(data_dir / "sessions"))

# =============================================================================
# --- the JupyterLab panel (labextension/, server extension gpuhub.lab) --------
# (appended as one block; the sections above are the allocator's and vfolders')
# The panel's server extension calls both services with the single-user server's
# own token. That token's scopes replace JupyterHub's defaults, so list them again
# and add the two services; users get the same service scopes through
# extra_user_scopes (JupyterHub 6), JupyterHub's `user` role left as it is (a
# redefined one would make JupyterHub ignore extra_user_scopes).
_lab_service_scopes = ["access:services!service=gpu-allocator", "access:services!service=vfolders"]
c.Spawner.server_token_scopes = ["access:servers!server", "users:activity!user", *_lab_service_scopes]
c.JupyterHub.extra_user_scopes = set(_lab_service_scopes)
# where the server extension finds the services (host networking in Docker too)
c.Spawner.environment.update({
    "GPUHUB_ALLOCATOR_URL": c.GPUSpawner.allocator_url,
    "GPUHUB_VFOLDERS_URL": c.VFolderMixin.vfolders_url,
})


# =============================================================================
# --- a clean stop (gpuhub/shutdown.py) ------------------------------------------
# JupyterHub stops its managed services before the users' servers, which then
# could not give their GPU shares and vfolder mounts back. The gpuhub-shutdown
# service, first in the list, is the first the hub stops: it stops every server
# (and spawn waiting in the queue) through the hub's API, while the allocator
# and the vfolder service still run. Only where the hub stops the servers at all.
if c.JupyterHub.get("cleanup_servers", True):
    c.JupyterHub.services.insert(0, {
        "name": "gpuhub-shutdown",
        "command": [sys.executable, "-m", "gpuhub.shutdown", service_config("gpuhub_shutdown", "GPUHubShutdown")],
        "environment": {"PYTHONUNBUFFERED": "1"},
        "display": False,
    })
    c.JupyterHub.load_roles.append({
        "name": "gpuhub-shutdown",
        "scopes": ["list:users", "read:servers", "servers"],
        "services": ["gpuhub-shutdown"],
    })
