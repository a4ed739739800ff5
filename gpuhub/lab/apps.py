"""Apps in the session: VS Code and TensorBoard behind the single-user server.

jupyter-server-proxy (a server extension of every session) reads these two
functions through its ``jupyter_serverproxy_servers`` entry points (pyproject.toml;
in the servers' environment, the ``gpuhub-apps`` dist-info that
spawner/serverenv.install_lab writes) and so:

- serves VS Code (code-server) at ``/user/NAME/vscode/`` and TensorBoard at
  ``/user/NAME/tensorboard/``, behind the hub's login like the rest of the session;
- starts each app on its first request, as a child process of the single-user
  server: in the session's share — the same account, cgroup or container, and the
  same environment (``CUDA_VISIBLE_DEVICES``, ``GPUHUB_ALLOCATION``, the MPS limits);
- puts a tile for each in JupyterLab's launcher (it opens the app in a new tab).

code-server is found as ``$GPUHUB_CODE_SERVER``, else ``bin/code-server`` of the
server's own environment (the servers' environment and the Docker image link it
there: spawner/codeserver.py installs it), else on the PATH; without it the VS
Code tile is hidden. TensorBoard reads ``$GPUHUB_TENSORBOARD_LOGDIR``, by default
``~/runs`` (where PyTorch's SummaryWriter writes from a notebook in the home).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent / "icons"


def code_server() -> str | None:
    """The code-server launcher this session would run, or None."""
    for candidate in (os.environ.get("GPUHUB_CODE_SERVER"), str(Path(sys.prefix) / "bin" / "code-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("code-server")


def _home() -> str:
    return os.environ.get("HOME") or os.getcwd()


def vscode_command(port: int) -> list[str]:
    binary = code_server()
    if binary is None:
        raise FileNotFoundError("code-server is not installed in this session's environment")
    return [
        binary, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}",
        "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust",
        "--disable-getting-started-override",
        _home(),
    ]


def vscode() -> dict:
    """jupyter-server-proxy's settings for ``/vscode/``."""
    return {
        "command": vscode_command,
        "timeout": 120,  # the first start of code-server in a session takes a few seconds
        "new_browser_tab": True,
        "launcher_entry": {
            "enabled": code_server() is not None,
            "title": "VS Code",
            "icon_path": str(ICONS / "vscode.svg"),
        },
    }


def tensorboard_logdir() -> str:
    logdir = os.environ.get("GPUHUB_TENSORBOARD_LOGDIR") or os.path.join(_home(), "runs")
    os.makedirs(logdir, exist_ok=True)
    return logdir


def tensorboard_command(port: int, base_url: str) -> list[str]:
    binary = Path(sys.executable).parent / "tensorboard"
    head = [str(binary)] if binary.exists() else [sys.executable, "-m", "tensorboard.main"]
    return [
        *head, "--logdir", tensorboard_logdir(), "--host", "127.0.0.1", "--port", str(port),
        # TensorBoard serves under the proxy's full path (absolute_url below)
        "--path_prefix", base_url.rstrip("/") + "/tensorboard",
    ]


def tensorboard() -> dict:
    """jupyter-server-proxy's settings for ``/tensorboard/``."""
    return {
        "command": tensorboard_command,
        "absolute_url": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {
            "title": "TensorBoard",
            "icon_path": str(ICONS / "tensorboard.svg"),
        },
    }
