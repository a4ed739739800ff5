"""gpuhub's jupyter_server extension: what the JupyterLab sidebar panel
(``labextension/``) shows about *this* session — its GPU share, live use, time
left, quotas, queue, vfolders and storage — gathered from the allocator and the
vfolder service with the single-user server's own hub token.

Handlers live under ``{base_url}gpuhub/`` (see :mod:`gpuhub.lab.handlers`); its
configuration is :class:`gpuhub.lab.config.GPUHubLab` (``c.GPUHubLab.…`` in the
server's config). The server loads it through
``etc/jupyter/jupyter_server_config.d/gpuhub.json``, which ``pip install``
(setup.py data_files) or ``labextension/install.py`` put into the environment.
"""

from __future__ import annotations

import logging

from .config import GPUHubLab
from .handlers import setup_handlers


def _jupyter_server_extension_points():
    return [{"module": "gpuhub.lab"}]


class TemplatePathShimNotice(logging.Filter):
    """Drops one notice that every session logged and no one can act on:
    JupyterHub's single-user extension (jupyterhub/singleuser/extension.py)
    always adds its templates to ``NotebookApp.extra_template_paths`` (for the
    classic notebook, which the servers do not run), and JupyterLab's config
    shim (notebook_shim) then warns that "'extra_template_paths' was found in
    both NotebookApp and ServerApp" (or "has moved from NotebookApp") at every
    start. Every other message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.getMessage())
        return not (message.startswith("'extra_template_paths' ") and "NotebookApp" in message)


def _link_jupyter_server_extension(serverapp):
    # extensions are linked in name order: gpuhub.lab before jupyterhub and jupyterlab,
    # so the filter is in place when LabApp's shim reads the config (its logger is
    # the application's, named after its class)
    logging.getLogger("LabApp").addFilter(TemplatePathShimNotice())


def _load_jupyter_server_extension(serverapp):
    setup_handlers(serverapp, GPUHubLab(parent=serverapp))
    track_session_cpu(serverapp)
    serverapp.log.info("gpuhub.lab: the gpuhub panel's API is under %sgpuhub/",
                       serverapp.web_app.settings.get("base_url", "/"))


#: what gpuhub sets in jupyter-resource-usage's ResourceUseDisplay, unless the
#: site configured it (see track_session_cpu)
RESOURCE_USE = {
    # the panel's (and the status bar's) CPU readout
    "track_cpu_percent": True,
    # its limit is the share's cores (CPU_LIMIT, which the spawner sets) and the
    # status bar draws cpu_percent / 100 against it, but its warning compares
    # cpu_percent (percent) with the limit in cores: "red" at 2% of one core.
    # Off, so that the readout reads right; the bar still shows the share's use.
    "cpu_warning_threshold": 0.0,
}


def track_session_cpu(serverapp) -> None:
    """The panel shows the session's CPU from jupyter-resource-usage, which reports
    it only with ResourceUseDisplay.track_cpu_percent (off by default; a
    jupyter_server_config.d file can only enable extensions, not set this), and
    its CPU warning mixes units (RESOURCE_USE): gpuhub's settings, each unless
    the site configured it."""
    section = serverapp.config.ResourceUseDisplay
    display = serverapp.web_app.settings.get("jupyter_resource_usage_display_config")
    for name, value in RESOURCE_USE.items():
        if name in section:
            continue
        section[name] = value
        if display is not None:  # jupyter_resource_usage was loaded first
            setattr(display, name, value)


# jupyter_server < 2 name
load_jupyter_server_extension = _load_jupyter_server_extension
