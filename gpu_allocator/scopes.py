"""The JupyterHub scopes the allocator checks (custom scopes are defined in the
hub's ``custom_scopes``; see hub_config/jupyterhub_config.py)."""

from __future__ import annotations

#: acts for anyone: the spawner's service token; with admin:users, the admin panel
ADMIN_SCOPE = "custom:gpu-allocator:admin"
#: either makes the caller an admin of the pool (REST API and admin panel)
ADMIN_SCOPES = frozenset({"admin:users", ADMIN_SCOPE})
#: a GPU host's agent: register and heartbeat (api.hosts)
AGENT_SCOPE = "custom:gpu-allocator:agent"
#: book GPUs ahead (api.reservations)
RESERVE_SCOPE = "custom:gpu-allocator:reserve"
