"""The CUDA MPS control daemon of a host, run while some device carries a
fractional share (the sessions' CUDA_MPS_* limits are enforced by it).

Started as ``nvidia-cuda-mps-control -d`` with CUDA_MPS_PIPE_DIRECTORY and
CUDA_MPS_LOG_DIRECTORY under the agent's directory, stopped with ``echo quit |
nvidia-cuda-mps-control``. One daemon serves every device of the host. It is
left running when the agent exits (sessions keep their MPS server) and adopted
by the next agent. Without the binary, MPS is reported unavailable, once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie nobody reaped yet is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class MPSManager:
    def __init__(self, directory: str | os.PathLike, binary: str = "nvidia-cuda-mps-control",
                 log: logging.Logger | None = None):
        self.directory = Path(directory)
        self.pipe_dir = self.directory / "pipe"
        self.log_dir = self.directory / "log"
        self.binary = binary
        self.log = log or logging.getLogger("gpuhub-agent.mps")
        self._warned = False
        self._lock = asyncio.Lock()

    @property
    def path(self) -> str | None:
        return shutil.which(self.binary)

    @property
    def available(self) -> bool:
        return self.path is not None

    @property
    def running(self) -> bool:
        """The control daemon's pipe exists, and the process of its pid file (when
        there is one) is alive: a daemon that crashed is started again."""
        if not (self.pipe_dir / "control").exists():
            return False
        try:
            pid = int((self.pipe_dir / "nvidia-cuda-mps-control.pid").read_text().strip())
        except (OSError, ValueError):
            return True
        return _alive(pid)

    def status(self) -> dict:
        return {"available": self.available, "running": self.running}

    def _env(self) -> dict:
        return {
            **os.environ,
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir),
        }

    async def _control(self, *args: str, stdin: bytes | None = None) -> tuple[int, str]:
        """Run the control binary; its output goes to a file, not a pipe, so that a
        daemon that keeps the descriptors open cannot hang the call."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out_path = self.log_dir / "agent-control.out"
        with open(out_path, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                self.path, *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=self._env(), start_new_session=True,
            )
            if stdin is not None:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                code = await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                return -1, "timed out after 30s"
        return code, out_path.read_text(errors="replace").strip()

    async def ensure(self, wanted: bool) -> bool:
        """Start the daemon when ``wanted`` and it is not running; stop it when not
        wanted and it runs. Returns whether it runs afterwards."""
        async with self._lock:
            if not self.available:
                if wanted and not self._warned:
                    self._warned = True
                    self.log.warning(
                        "fractional GPU shares on this host, but %s is not installed: "
                        "MPS is unavailable, shares are not enforced", self.binary,
                    )
                return False
            running = self.running
            if wanted and not running:
                for d in (self.pipe_dir, self.log_dir):
                    d.mkdir(parents=True, exist_ok=True)
                    d.chmod(0o755)
                code, out = await self._control("-d")
                if code != 0:
                    self.log.error("starting the MPS control daemon failed (%s): %s", code, out)
                    return False
                self.log.info("started the MPS control daemon (pipes in %s)", self.pipe_dir)
            elif not wanted and running:
                code, out = await self._control(stdin=b"quit\n")
                if code != 0:
                    self.log.error("stopping the MPS control daemon failed (%s): %s", code, out)
                else:
                    self.log.info("stopped the MPS control daemon: no fractional shares left")
            return self.running
