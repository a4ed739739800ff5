"""The lab panel's server extension as a traitlets ``Configurable``, configured
from the single-user server's config (``jupyter_server_config.py`` or a
``jupyter_server_config.d/*.json`` file), e.g.::

    c.GPUHubLab.allocator_url = "http://10.0.0.5:8051/services/gpu-allocator/api/v1/"
    c.GPUHubLab.nvml = False

Two kinds of traits:

- **configuration** (where the services are, timeouts, NVML on or off, how much
  history the sparklines keep). The services' URLs default to what the spawner
  puts into the server's environment (``GPUHUB_ALLOCATOR_URL``,
  ``GPUHUB_VFOLDERS_URL``), so a hub needs no server config at all.
- **the session's facts**, which only the spawner knows and hands over in the
  server's environment (the spawner → session interface): whose server it is,
  its token, which allocation and which GPUs. They are read here, as the
  defaults of traits, and nowhere else.
"""

from __future__ import annotations

import os

from traitlets import Bool, Float, Unicode, default
from traitlets.config import Configurable


def _env(name: str) -> str | None:
    return os.environ.get(name)


class GPUHubLab(Configurable):
    """gpuhub's JupyterLab panel API (``{base_url}gpuhub/``): what it asks the
    GPU allocator and the vfolder service, and how."""

    # --- configuration -------------------------------------------------------------

    allocator_url = Unicode(
        help="""URL of the GPU allocator's REST API, as this server reaches it, ending
        in ``/api/v1/``.

        Example: ``http://127.0.0.1:8051/services/gpu-allocator/api/v1/``.

        Default: ``$GPUHUB_ALLOCATOR_URL``, which gpuhub's hub config puts into every
        server's environment (``c.Spawner.environment``), so that the panel talks to
        the allocator the hub uses. Empty: the panel's GPU sections say that no
        allocator is configured.
        """,
    ).tag(config=True)

    @default("allocator_url")
    def _default_allocator_url(self):
        return _env("GPUHUB_ALLOCATOR_URL") or ""

    vfolders_url = Unicode(
        help="""URL of the vfolder service's REST API, as this server reaches it,
        ending in ``/api/v1/``.

        Example: ``http://127.0.0.1:8052/services/vfolders/api/v1/``.

        Default: ``$GPUHUB_VFOLDERS_URL``, which gpuhub's hub config puts into every
        server's environment. Empty: the vfolder and storage sections say that no
        vfolder service is configured.
        """,
    ).tag(config=True)

    @default("vfolders_url")
    def _default_vfolders_url(self):
        return _env("GPUHUB_VFOLDERS_URL") or ""

    request_timeout = Float(
        10.0,
        help="""Seconds to wait for one answer of a service (connecting included)
        before the panel's section shows an error instead.

        Example: ``c.GPUHubLab.request_timeout = 30`` for services far away.

        Default 10: the panel asks every few seconds; a slower answer is better
        shown as a failure than stacked behind the next poll.
        """,
    ).tag(config=True)

    upload_timeout = Float(
        120.0,
        help="""Seconds to wait for the vfolder service to take one chunk of a
        resumable (tus) upload that the panel passes through.

        Example: ``c.GPUHubLab.upload_timeout = 600`` for slow storage.

        Default 120: a chunk is a few MiB; the browser resumes an upload that failed
        from the server's offset, so a generous limit costs nothing.
        """,
    ).tag(config=True)

    nvml = Bool(
        True,
        help="""Whether to read this session's own GPU use through NVML (per process)
        when the server runs on a host with an NVIDIA driver.

        Example: ``c.GPUHubLab.nvml = False`` to show only the host agent's
        whole-device samples.

        Default True: per-process readings are the session's own use; hosts without
        NVML fall back to the agent's samples (or to simulated ones on a declared,
        mock GPU) whatever this says.
        """,
    ).tag(config=True)

    history_seconds = Float(
        600.0,
        help="""Seconds of history the panel's sparklines (GPU use, storage
        throughput) show; points older than this are dropped.

        Example: ``c.GPUHubLab.history_seconds = 3600`` for the last hour.

        Default 600 (ten minutes): long enough to see a training loop's rhythm,
        short enough that each poll's answer stays small.
        """,
    ).tag(config=True)

    # --- the session's facts (the spawner's environment) ----------------------------

    user = Unicode(
        help="""The name of the user whose server this is.

        Default: ``$JUPYTERHUB_USER``, set by JupyterHub's spawner. Configure it only
        to test the extension outside a hub.
        """,
    ).tag(config=True)

    @default("user")
    def _default_user(self):
        return _env("JUPYTERHUB_USER") or ""

    api_token = Unicode(
        help="""The token the extension calls the services with: this server's own
        hub token, whose scopes (``c.Spawner.server_token_scopes``) reach the two
        services as the user.

        Default: ``$JUPYTERHUB_API_TOKEN``, set by JupyterHub's spawner. Configure it
        only to test the extension outside a hub.
        """,
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self):
        return _env("JUPYTERHUB_API_TOKEN") or ""

    allocation = Unicode(
        None,
        allow_none=True,
        help="""The id of this session's GPU allocation; None: a CPU-only session.

        Default: ``$GPUHUB_ALLOCATION``, set by gpuhub's spawner when it was granted
        a share. Configure it only to test the extension outside a hub.
        """,
    ).tag(config=True)

    @default("allocation")
    def _default_allocation(self):
        return _env("GPUHUB_ALLOCATION") or None

    gpus = Unicode(
        None,
        allow_none=True,
        help="""The GPUs of this session's share, as the allocator counts them
        (``"0.5"``, ``"2"``); shown beside the allocation.

        Default: ``$GPUHUB_GPUS``, set by gpuhub's spawner.
        """,
    ).tag(config=True)

    @default("gpus")
    def _default_gpus(self):
        return _env("GPUHUB_GPUS")

    vfolders_live = Bool(
        help="""Whether a vfolder created or accepted during this session is
        mounted into it (the hub mounts it at ``~/vfolders/NAME`` within seconds);
        when False, the panel says that restarting the server mounts it.

        Default: ``$GPUHUB_VFOLDERS_LIVE`` (``1`` or ``0``), set by gpuhub's
        spawner, which knows whether it can mount into this session's host; True
        when unset.
        """,
    ).tag(config=True)

    @default("vfolders_live")
    def _default_vfolders_live(self):
        return _env("GPUHUB_VFOLDERS_LIVE") != "0"

    host = Unicode(
        None,
        allow_none=True,
        help="""The GPU host this session's share is on.

        Default: ``$GPUHUB_HOST``, set by gpuhub's spawner.
        """,
    ).tag(config=True)

    @default("host")
    def _default_host(self):
        return _env("GPUHUB_HOST")

    cuda_visible_devices = Unicode(
        None,
        allow_none=True,
        help="""The devices CUDA sees in this session (empty: none).

        Default: ``$CUDA_VISIBLE_DEVICES``, set by gpuhub's spawner.
        """,
    ).tag(config=True)

    @default("cuda_visible_devices")
    def _default_cuda_visible_devices(self):
        return _env("CUDA_VISIBLE_DEVICES")

    def session_env(self) -> dict[str, str]:
        """The session's facts under the names the spawner gave them (the panel's
        ``share.env``); the ones it did not set are left out."""
        facts = {"GPUHUB_ALLOCATION": self.allocation, "GPUHUB_GPUS": self.gpus,
                 "GPUHUB_HOST": self.host, "CUDA_VISIBLE_DEVICES": self.cuda_visible_devices}
        return {k: v for k, v in facts.items() if v is not None}
