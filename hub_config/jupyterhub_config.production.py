"""gpuhub in production: a commented example to copy and adapt.

Differences from the demo (hub_config/jupyterhub_config.py):
- PostgreSQL for the hub and the allocator (any SQLAlchemy URL works);
- a real authenticator instead of DummyAuthenticator;
- GPUs discovered with NVML on the GPU host (or declared in an inventory for
  hosts whose agents are not deployed yet);
- servers run as the users' existing system accounts; no accounts are created.
Secrets come from the environment, never from this file.
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

# --- login: your site's authenticator (PAM shown; OAuthenticator, LDAP, ... work too)
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.admin_users = {"it-admin"}
c.Authenticator.allowed_groups = {"datascience"}

# --- the allocator -----------------------------------------------------------------
# The spawner's token: generate once (openssl rand -hex 32) and keep it in your
# secret store; the allocator reads its database URL from GPUAllocator.db_url.
spawner_token = os.environ["GPUHUB_SPAWNER_TOKEN"]
c.JupyterHub.services = [
    {
        "name": "gpu-allocator",
        "url": "http://127.0.0.1:8051",
        "command": [
            sys.executable, "-m", "gpu_allocator",
            "--db-url", os.environ["GPUHUB_ALLOCATOR_DB_URL"],  # postgresql+psycopg://gpuhub@db/gpuhub
            "--discovery", "auto",  # NVML on a GPU host; else --inventory FILE
            "--inventory", "/etc/gpuhub/gpu_inventory.yaml",
        ],
        "display": False,
    },
    {"name": "gpuhub-spawner", "api_token": spawner_token, "display": False},
]
c.JupyterHub.custom_scopes = {
    "custom:gpu-allocator:admin": {"description": "Place, list and release GPU shares of any user."},
}
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "access:services!service=gpu-allocator"]},
    {
        "name": "gpuhub-spawner",
        "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
        "services": ["gpuhub-spawner"],
    },
    {
        "name": "gpu-admin",
        "scopes": ["custom:gpu-allocator:admin", "access:services!service=gpu-allocator"],
        "groups": ["gpu-admins"],
    },
]

# --- sessions ------------------------------------------------------------------------
c.JupyterHub.spawner_class = "spawner.LocalGPUSpawner"
c.GPUSpawner.allocator_url = "http://127.0.0.1:8051/services/gpu-allocator/api/v1/"
c.GPUSpawner.allocator_token = spawner_token
c.GPUSpawner.default_gpus = "0.25"       # preselected in the form
c.GPUSpawner.default_cpu = 4
c.GPUSpawner.default_mem = "16G"
c.GPUSpawner.max_hours_limit = 72        # longest run time a user may ask for
c.Spawner.default_url = "/lab"
c.LocalGPUSpawner.create_system_users = False  # accounts come from your directory
