"""Where the ``gpuhub`` command finds the hub and its token, and where it keeps
what it remembers.

The command line is a client on the user's machine (or in their session), not a
service: it is configured by its flags, its environment and the file that
``gpuhub login`` writes, never by traitlets. In order, the first that says:

- the hub's URL: ``--url``, ``$GPUHUB_URL``, the saved login, then inside a
  session the hub that started it (``$JUPYTERHUB_PUBLIC_HUB_URL``, else
  ``$JUPYTERHUB_API_URL`` without its ``hub/api``);
- the token: ``--token``, ``$GPUHUB_TOKEN``, the saved login, then inside a
  session ``$JUPYTERHUB_API_TOKEN`` (the server's own token, which may call both
  services);
- the services: under the hub's URL (``services/gpu-allocator/api/v1/``,
  ``services/vfolders/api/v1/``); inside a session, when the URL came from the
  session, the direct service URLs the spawner gives it (``$GPUHUB_ALLOCATOR_URL``,
  ``$GPUHUB_VFOLDERS_URL``), because the hub's API address is often not where its
  proxy answers.

The saved login is ``$XDG_CONFIG_HOME/gpuhub/config.json`` (default
``~/.config/gpuhub/config.json``), mode 600; unfinished uploads are remembered in
``$XDG_CACHE_HOME/gpuhub/uploads.json`` (default ``~/.cache/gpuhub``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ALLOCATOR_PATH = "services/gpu-allocator/api/v1/"
VFOLDERS_PATH = "services/vfolders/api/v1/"


class UsageError(Exception):
    """What the user must change on their side (exit code 2)."""


def config_dir(env=os.environ) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gpuhub"


def cache_dir(env=os.environ) -> Path:
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpuhub"


def config_file(env=os.environ) -> Path:
    return config_dir(env) / "config.json"


def load_login(env=os.environ) -> dict:
    try:
        data = json.loads(config_file(env).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_login(url: str, token: str, env=os.environ) -> Path:
    """Write the login readable by its owner only (mode 600, directory 700)."""
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file of that name may have had other modes
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path


def normalize_url(url: str) -> str:
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"{url!r} is not a hub URL; give one such as https://hub.example.org/")
    return url.rstrip("/") + "/"


def session_hub_url(env=os.environ) -> str | None:
    """The public URL of the hub that started this session, when in one."""
    public = env.get("JUPYTERHUB_PUBLIC_HUB_URL")
    if public:
        public = public.rstrip("/")
        return (public[: -len("/hub")] if public.endswith("/hub") else public) + "/"
    api = env.get("JUPYTERHUB_API_URL")
    if api:
        api = api.rstrip("/")
        if api.endswith("/hub/api"):
            api = api[: -len("hub/api")]
        return api.rstrip("/") + "/"
    return None


@dataclass
class Target:
    """Where the commands go: the hub, its two services, the token, and where
    each came from (for the error messages)."""

    url: str
    token: str
    allocator: str
    vfolders: str
    url_from: str
    token_from: str


def resolve(url: str | None = None, token: str | None = None, env=os.environ) -> Target:
    saved = load_login(env)
    saved_from = str(config_file(env))
    url_from = token_from = ""
    in_session = False
    for value, source in ((url, "--url"), (env.get("GPUHUB_URL"), "$GPUHUB_URL"),
                          (saved.get("url"), saved_from)):
        if value:
            url, url_from = value, source
            break
    else:
        url = session_hub_url(env)
        url_from, in_session = "this session ($JUPYTERHUB_API_URL)", bool(url)
    for value, source in ((token, "--token"), (env.get("GPUHUB_TOKEN"), "$GPUHUB_TOKEN"),
                          (saved.get("token"), saved_from),
                          (env.get("JUPYTERHUB_API_TOKEN"), "this session ($JUPYTERHUB_API_TOKEN)")):
        if value:
            token, token_from = value, source
            break
    if not url:
        raise UsageError("which hub? give --url https://HUB/ (or set GPUHUB_URL), or run: gpuhub login")
    url = normalize_url(url)
    if not token:
        raise UsageError(f"no token for {url}: create one at {url}hub/token, then run: gpuhub login "
                         "(or give --token, or set GPUHUB_TOKEN)")
    allocator, vfolders = url + ALLOCATOR_PATH, url + VFOLDERS_PATH
    if in_session:
        allocator = env.get("GPUHUB_ALLOCATOR_URL") or allocator
        vfolders = env.get("GPUHUB_VFOLDERS_URL") or vfolders
    return Target(url, token, allocator, vfolders, url_from, token_from)
