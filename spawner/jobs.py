"""Batch jobs in the spawner (gpu_allocator.core.jobs): a job is the named server
``job-ID`` whose process is the job's runner (``gpuhub.jobrun``) instead of
JupyterLab. What changes for it is built here, as pure functions: the command
and the environment. GPUSpawner asks the allocator for the job's record (never
trusting the spawn request for the command) and reports when it runs.
"""

from __future__ import annotations

import json
import os

#: the module that runs a job's command in the session (gpuhub/jobrun.py)
RUNNER = "gpuhub.jobrun"
#: what starts JupyterLab in a session's command, as the hub's configs write it
_SINGLEUSER_MODULES = ("jupyterhub.singleuser", "jupyter_server.serverapp", "jupyterlab.labapp")
_SINGLEUSER_SCRIPTS = ("jupyterhub-singleuser", "jupyter-labhub", "jupyter-lab")


def job_cmd(cmd: list[str], python: str = "python3") -> list[str]:
    """The server's command with its JupyterLab replaced by the job's runner:
    ``[PY, -m, jupyterhub.singleuser]`` → ``[PY, -m, gpuhub.jobrun]``;
    ``[jupyterhub-singleuser]`` → ``[python3, -m, gpuhub.jobrun]`` (the image's
    Python on its PATH); a wrapper before it (the mounts' shell) is kept."""
    out = list(cmd)
    for i, arg in enumerate(out):
        if arg == "-m" and i + 1 < len(out) and out[i + 1] in _SINGLEUSER_MODULES:
            return out[:i + 1] + [RUNNER]
        if os.path.basename(arg) in _SINGLEUSER_SCRIPTS:
            return out[:i] + [python, "-m", RUNNER]
    raise ValueError(f"cannot run a batch job with the server command {cmd!r}: set c.Spawner.cmd to "
                     "[PYTHON, '-m', 'jupyterhub.singleuser'] or ['jupyterhub-singleuser']")


def job_env(job: dict) -> dict[str, str]:
    """What the runner reads: the job's id, command and working directory."""
    return {
        "GPUHUB_JOB_ID": job["id"],
        "GPUHUB_JOB_COMMAND": json.dumps(list(job["command"])),
        "GPUHUB_JOB_WORKDIR": job.get("workdir") or "",
    }
