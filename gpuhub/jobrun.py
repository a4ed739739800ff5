"""The runner of a batch job (``gpuhub run``), started by the spawner in place of
JupyterLab (spawner/jobs.py), with the job's GPU share in its environment.

It runs the job's command in the home (or the job's working directory under
it), with stdout and stderr appended to ``~/jobs/ID/output.log``. When the
command ends it writes ``~/jobs/ID/exit.json`` (exit code, signal, times; written
whole, then renamed) and exits with the command's code, so the hub sees the
server end and gives the share back. SIGTERM (the job cancelled, or its server
stopped) goes on to the command's process group, and a SIGKILL to the command
follows after ``GPUHUB_JOB_KILL_AFTER`` seconds (default 10). The command dies
with the runner (PR_SET_PDEATHSIG), and the runtime ends what is left of the
group (the local runtime kills the server's process group when it ends; a
container or a Slurm job ends whole), so no process outlives the share.

Meanwhile it answers HTTP where JupyterHub expects the server
(``$JUPYTERHUB_SERVICE_URL``), so the hub sees it start; every request gets
the same short text, no job details.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def exit_code(returncode: int) -> tuple[int, int | None]:
    """asyncio's returncode (negative: killed by that signal) → (the shell's exit
    code, the signal)."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def command_env(env: dict, python: str | None = None) -> dict:
    """The command's environment: the runner's own, less the job's command, with
    the bin directory of the session's Python (this runner's: the servers'
    environment, or the image's) at the end of PATH, so that its tools
    (``jupyter nbconvert`` of the panel's *Run as job*) are found where the hub's
    PATH does not reach them; and Python's output unbuffered (so that `gpuhub
    logs -f` shows a script's prints as they happen) unless the job says
    otherwise."""
    out = {k: v for k, v in env.items() if k != "GPUHUB_JOB_COMMAND"}
    bin_dir = os.path.dirname(python or sys.executable)
    path = out.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    if bin_dir and bin_dir not in path.split(os.pathsep):
        path = path + os.pathsep + bin_dir
    out["PATH"] = path
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


    return out


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


async def serve(url: str, text: bytes, answered: asyncio.Event):
    """Answer every HTTP request at ``url``'s host and port with ``text``;
    ``answered`` is set once one was answered (the hub saw the server up)."""

    async def answer(reader, writer):
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(text), text))
            await writer.drain()
            answered.set()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    u = urlparse(url)
    return await asyncio.start_server(answer, u.hostname or "127.0.0.1", u.port or 8888)


async def run(env: dict) -> int:
    job_id = env["GPUHUB_JOB_ID"]
    command = json.loads(env["GPUHUB_JOB_COMMAND"])
    home = Path(env.get("HOME") or os.getcwd())
    folder = home / "jobs" / job_id
    folder.mkdir(parents=True, exist_ok=True)
    workdir = home / env.get("GPUHUB_JOB_WORKDIR", "") if env.get("GPUHUB_JOB_WORKDIR") else home
    kill_after = float(env.get("GPUHUB_JOB_KILL_AFTER") or 10)
    server = None
    answered = asyncio.Event()
    if env.get("JUPYTERHUB_SERVICE_URL"):
        server = await serve(env["JUPYTERHUB_SERVICE_URL"],
                             b"This server runs a gpuhub batch job; see `gpuhub logs` or the hub's Data page.\n",
                             answered)
    else:
        answered.set()
    started = time.time()
    stopped = False
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal():
        nonlocal stopped
        stopped = True
        signalled.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    with open(folder / "output.log", "ab", buffering=0) as log:
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=str(workdir), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=_die_with_parent, env=command_env(env),
            )
        except OSError as e:
            log.write(f"gpuhub: cannot run {command[0]!r} in {workdir}: {e.strerror or e}\n".encode())
            code, sig = (127 if isinstance(e, FileNotFoundError) else 126), None
        else:
            waiting = asyncio.ensure_future(proc.wait())
            stop = asyncio.ensure_future(signalled.wait())
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                # the command and whatever it started (same process group; this
                # runner's handler ignores its own copy of the signal)
                try:
                    os.killpg(os.getpgrp(), signal.SIGTERM)
                except OSError:
                    proc.terminate()
                try:
                    await asyncio.wait_for(asyncio.shield(waiting), kill_after)
                except asyncio.TimeoutError:
                    proc.kill()
                    await waiting
            stop.cancel()
            code, sig = exit_code(proc.returncode)
    write_json(folder / "exit.json", {"exit_code": code, "signal": sig, "stopped": stopped,
                                      "started_at": started, "ended_at": time.time()})
    if server is not None:
        # a command that ended at once: the hub must still see its server up (it
        # then sees it end), or its spawn would wait for it until http_timeout
        if not stopped:
            try:
                await asyncio.wait_for(answered.wait(), float(env.get("GPUHUB_JOB_UP_WAIT") or 30))
            except asyncio.TimeoutError:
                pass
        server.close()
    return code


def main() -> None:
    if "GPUHUB_JOB_ID" not in os.environ or "GPUHUB_JOB_COMMAND" not in os.environ:
        print("gpuhub.jobrun runs a batch job inside its server (the spawner starts it); "
              "use `gpuhub run -- COMMAND` to submit one", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(run(dict(os.environ))))


if __name__ == "__main__":
    main()
