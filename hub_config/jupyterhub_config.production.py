"""gpuhub in production: a commented example to copy and adapt.

Differences from the demo (hub_config/jupyterhub_config.py):
- PostgreSQL for the hub and the allocator (any SQLAlchemy URL works);
- a real authenticator instead of DummyAuthenticator;
- GPUs discovered with NVML on the GPU host (or declared in an inventory for
  hosts whose agents are not deployed yet);
- servers run as the users' existing system accounts; no accounts are created.
Secrets come from the environment, never from this file: as a service,
hub_config/systemd/gpuhub-hub.service reads them from /etc/gpuhub/hub.env
(hub_config/systemd/hub.env.example; docs: "Run the hub as a service"). The services read
their settings from their own traitlets config files (``--config=FILE``; each
setting is documented in its class's help: ``python -m gpu_allocator
--help-all``), never from environment variables.
"""

import os
import sys

c = get_config()  # noqa: F821

# --- the hub ---------------------------------------------------------------------
c.JupyterHub.bind_url = "https://hub.example.com/"
c.JupyterHub.ssl_cert = "/etc/gpuhub/tls/hub.crt"
c.JupyterHub.ssl_key = "/etc/gpuhub/tls/hub.key"
c.JupyterHub.db_url = os.environ["JUPYTERHUB_DB_URL"]  # postgresql+psycopg://hub@db/jupyterhub
c.JupyterHub.cookie_secret_file = "/var/lib/gpuhub/jupyterhub_cookie_secret"
# configurable-http-proxy, removing only routes that exist (gpuhub/proxy.py)
c.JupyterHub.proxy_class = "gpuhub.proxy.GPUHubProxy"

# --- login: your site's authenticator (PAM shown; OAuthenticator, LDAP, ... work too)
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.admin_users = {"it-admin"}
c.Authenticator.allowed_groups = {"datascience"}

# --- the allocator -----------------------------------------------------------------
# The spawner's token: generate once (openssl rand -hex 32) and keep it in your
# secret store. The allocator's settings are in its own config file, e.g.
# /etc/gpuhub/gpu_allocator_config.py (mode 600: it holds the database URL):
#     c.GPUAllocator.db_url = "postgresql+psycopg://gpuhub:SECRET@db/gpuhub"
#     c.GPUAllocator.discovery = "auto"  # NVML on a GPU host; else the inventory
#     c.GPUAllocator.inventory_file = "/etc/gpuhub/gpu_inventory.yaml"
#     c.GPUAllocator.heartbeat_interval = 5  # hosts missing 3 heartbeats are marked lost
#     c.GPUAllocator.max_hours = 72  # the longest run time a user may ask for
#     # the GPU hosts' agents reach it over TLS on its own port, each with its own
#     # certificate of the site CA (gpuhub-certs; docs: "Add a GPU host"); the hub
#     # and the proxy keep talking to it on 127.0.0.1:8051
#     c.GPUAllocator.agent_tls_port = 8443  # firewall it to the GPU network
#     c.GPUAllocator.agent_tls_cert = "/etc/gpuhub/tls/allocator.crt"
#     c.GPUAllocator.agent_tls_key = "/etc/gpuhub/tls/allocator.key"  # mode 600
#     c.GPUAllocator.agent_tls_ca = "/etc/gpuhub/tls/ca.crt"
#     # idle reclaim, e.g. for students only, while others wait:
#     c.GPUAllocator.idle_reclaim = {"groups": {"students": {"threshold": 0.05, "minutes": 60}}}
spawner_token = os.environ["GPUHUB_SPAWNER_TOKEN"]
c.JupyterHub.services = [
    # first: on the hub's shutdown it stops the users' servers while the allocator
    # still runs, so that their shares are released (gpuhub/shutdown.py); drop it
    # together with c.JupyterHub.cleanup_servers = False
    {"name": "gpuhub-shutdown", "command": [sys.executable, "-m", "gpuhub.shutdown"], "display": False},
    {
        "name": "gpu-allocator",
        "url": "http://127.0.0.1:8051",
        # restarted within a second if it dies (JupyterHub alone: on its 30 s poll)
        "command": [
            sys.executable, "-m", "gpuhub.supervise", "--",
            sys.executable, "-m", "gpu_allocator",
            "--config=/etc/gpuhub/gpu_allocator_config.py",
            # on 127.0.0.1:8051 (the url above) for the hub and the proxy; the agents
            # reach it on its TLS port (agent_tls_port in its config file, above)
        ],
        # the admin panel, in the hub's Services menu (admins only; others get a 403)
        "display": True,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": ["custom:gpu-allocator:admin", "admin:users"],
    },
    {"name": "gpuhub-spawner", "api_token": spawner_token, "display": False},
    # the GPU host agents (gpuhub-agent --token-file ...) use this token, over TLS
    # with their own certificates
    {"name": "gpuhub-agent", "api_token": os.environ["GPUHUB_AGENT_TOKEN"], "display": False},
]
c.JupyterHub.custom_scopes = {
    "custom:gpu-allocator:admin": {"description": "Place, list and release GPU shares of any user."},
    "custom:gpu-allocator:agent": {"description": "Register a GPU host and send its heartbeats."},
}
# every user may use the allocator (and, below, the vfolder service): JupyterHub's
# own `user` role plus extra_user_scopes (a redefined `user` role would make
# JupyterHub ignore extra_user_scopes)
c.JupyterHub.extra_user_scopes = {"access:services!service=gpu-allocator"}
c.JupyterHub.load_roles = [
    {
        "name": "gpuhub-spawner",
        "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
        "services": ["gpuhub-spawner"],
    },
    {
        "name": "gpuhub-agent",
        "scopes": ["custom:gpu-allocator:agent", "access:services!service=gpu-allocator"],
        "services": ["gpuhub-agent"],
    },
    {"name": "gpuhub-shutdown", "scopes": ["list:users", "read:servers", "servers"],
     "services": ["gpuhub-shutdown"]},
    {
        "name": "gpu-admin",
        "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
        "groups": ["gpu-admins"],
    },
    # shares granted for servers the hub no longer runs are released (reconciliation)
    # and sums GPU-hours per group for the admin panel
    {"name": "gpu-allocator", "scopes": ["list:users", "read:servers", "list:groups", "read:groups"],
     "services": ["gpu-allocator"]},
]
# Prometheus scrapes the hub and the services with one token (README "Metrics")
if os.environ.get("GPUHUB_PROMETHEUS_TOKEN"):
    c.JupyterHub.services.append(
        {"name": "prometheus", "api_token": os.environ["GPUHUB_PROMETHEUS_TOKEN"], "display": False})
    c.JupyterHub.load_roles.append({
        "name": "prometheus", "services": ["prometheus"],
        "scopes": ["read:metrics", "access:services!service=gpu-allocator",
                   "access:services!service=vfolders"],
    })

# --- sessions ------------------------------------------------------------------------
# Containers on the host the allocator chose; each agent registers its engine
# (--docker-url). Entries here override what agents register.
c.JupyterHub.spawner_class = "spawner.DockerGPUSpawner"
# named servers, each with its own share and time limit; at most two running at once
# per user, one for the group "students"
c.JupyterHub.allow_named_servers = True
c.GPUSpawner.named_server_limit = 2
c.Spawner.group_overrides = {
    "10-students-one-named-server": {"groups": ["students"],
                                     "spawner_override": {"named_server_limit": 1}},
}
c.DockerGPUSpawner.allowed_images = ["gpuhub/singleuser:latest", "registry.example.com/ds/pytorch:2.5"]
c.DockerGPUSpawner.docker_endpoints = {
    "gpu-07": {"url": "tcp://10.0.0.7:2376", "ip": "10.0.0.7", "gpu_runtime": True,
               "mps_pipe_dir": "/var/lib/gpuhub-agent/mps/pipe",
               "tls": {"client_cert": ("/etc/gpuhub/tls/client.crt", "/etc/gpuhub/tls/client.key"),
                       "ca_cert": "/etc/gpuhub/tls/ca.crt", "verify": True}},
}
# every engine an agent registers (tcp://…:2376, dockerd --tlsverify with the site CA)
# is reached with the hub's client certificate (gpuhub-certs issue DIR hub-docker-client
# --role docker-client); an entry above with its own "tls" keeps that
c.DockerGPUSpawner.docker_tls = {
    "client_cert": ("/etc/gpuhub/tls/client.crt", "/etc/gpuhub/tls/client.key"),
    "ca_cert": "/etc/gpuhub/tls/ca.crt", "verify": "/etc/gpuhub/tls/ca.crt",
}
c.JupyterHub.hub_connect_ip = "10.0.0.2"  # containers on other hosts reach the hub here
c.GPUSpawner.allocator_url = "http://127.0.0.1:8051/services/gpu-allocator/api/v1/"
c.GPUSpawner.allocator_token = spawner_token
c.GPUSpawner.default_gpus = "0.25"       # preselected in the form
c.GPUSpawner.default_cpu = 4
c.GPUSpawner.default_mem = "16G"
# Profiles per hub group (docs: "Offer profiles per group"): first on the spawn form,
# by slug in the REST API ({"profile": "pytorch-small", "gpus": "0.25"}); each group
# sees those naming it (no "groups": everyone). allow_custom = False leaves only
# profiles; a group may keep free choices through JupyterHub's group_overrides.
# c.GPUSpawner.profiles = [
#     {"slug": "pytorch-small", "display_name": "PyTorch, a fraction of a GPU",
#      "description": "Notebooks and small models", "image": "registry.example.com/ds/pytorch:2.5",
#      "choices": ["0.25", "0.5"], "cpu": 4, "mem": "16G", "max_hours": 8,
#      "vfolders": ["datasets"], "environment": {"OMP_NUM_THREADS": "4"},
#      "groups": ["datascience"], "overrides": ["max_hours"], "default": True},
#     {"slug": "train-a100", "display_name": "Training, whole A100s", "gpus": "1",
#      "gpu_model": "A100-SXM4-80GB", "cpu": 16, "mem": "64G", "max_hours": 48,
#      "groups": ["training"], "overrides": ["gpus", "max_hours"]},
# ]
# c.GPUSpawner.allow_custom = False
# c.Spawner.group_overrides = {
#     "1-gpu-admins": {"groups": ["gpu-admins"], "spawner_override": {"allow_custom": True}},
# }
# c.GPUSpawner.gpu_choices = ["0", "0.25", "0.5", "1", "2", "4", "8"]  # the free choice's amounts
# the longest run time a user may ask for is the allocator's: GPUAllocator.max_hours
# the home and spawn-pending pages say when a server stops (gpuhub's templates)
c.JupyterHub.template_paths = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")]
# idle reclaim is the allocator's too: GPUAllocator.idle_reclaim (see above)
c.Spawner.default_url = "/lab"
# (for process sessions on the hub host instead: spawner.LocalGPUSpawner, with
#  c.LocalGPUSpawner.create_system_users = False: accounts come from your directory)

# =============================================================================
# --- vfolders (see README "vfolders"); appended, uncomment to enable ---------
# c.JupyterHub.services.append({
#     "name": "vfolders", "url": "http://127.0.0.1:8052",
#     "command": [sys.executable, "-m", "gpuhub.supervise", "--", sys.executable, "-m",
#                 "vfolder_manager", "--VFolderService.config_file=/etc/gpuhub/vfolders_config.py"],
# })
# c.JupyterHub.custom_scopes["custom:vfolders:admin"] = {
#     "description": "Manage every vfolder: trash, quotas, mounts of any user's session."}
# c.JupyterHub.extra_user_scopes.add("access:services!service=vfolders")
# for _role in c.JupyterHub.load_roles:
#     if _role["name"] == "gpu-admin":
#         _role["scopes"] += ["access:services!service=vfolders", "custom:vfolders:admin"]
# c.JupyterHub.load_roles.append({"name": "vfolders-spawner", "services": ["gpuhub-spawner"],
#     "scopes": ["custom:vfolders:admin", "access:services!service=vfolders"]})
# c.VFolderMixin.vfolders_url = "http://127.0.0.1:8052/services/vfolders/api/v1/"
# c.VFolderMixin.vfolders_token = spawner_token
# where each session's vfolder mount directory lives on its host (0700 root; only mount
# points), and how often a running session picks up vfolders made or lost meanwhile
# c.VFolderMixin.vfolders_session_root = "/run/gpuhub/sessions"
# c.VFolderMixin.vfolders_refresh_interval = 3.0
# the admin panel's Storage tab reads the storage hosts with the allocator's token:
# for _role in c.JupyterHub.load_roles:
#     if _role["name"] == "gpu-allocator":
#         _role["scopes"].append("access:services!service=vfolders")
# and in /etc/gpuhub/gpu_allocator_config.py:
#     c.GPUAllocator.vfolders_url = "http://127.0.0.1:8052/services/vfolders/api/v1/"
# the Data page's Jobs section (the user's batch jobs) calls the allocator with the
# user's OAuth token: "access:services!service=gpu-allocator" in the vfolders service's
# "oauth_client_allowed_scopes", and in /etc/gpuhub/vfolders_config.py:
#     c.VFolderService.allocator_url = "http://127.0.0.1:8051/services/gpu-allocator/api/v1/"
