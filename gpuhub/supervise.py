"""``python -m gpuhub.supervise -- COMMAND …``: run a service and start it again at
once when it dies.

JupyterHub notices that a managed service died only on its 30-second poll, and
every request meanwhile fails. Run as the service's command, this keeps the
service back within a second of a crash or a ``kill -9`` (with a growing pause
when it keeps dying at start-up), and forwards SIGTERM/SIGINT so that stopping
the hub stops the service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

#: a child that lived this long was not crash-looping: restart at once
HEALTHY_AFTER = 10.0
MAX_PAUSE = 10.0


def supervise(cmd: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pause = 0.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(cmd)
        code = child.wait()
        if stopping:
            return code
        lived = time.monotonic() - started
        pause = 0.0 if lived >= HEALTHY_AFTER else min(max(pause * 2, 0.25), MAX_PAUSE)
        print(
            f"gpuhub.supervise: {cmd[0]} … exited with {code} after {lived:.1f}s; "
            f"starting it again in {pause:g}s",
            file=sys.stderr, flush=True,
        )
        deadline = time.monotonic() + pause
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        if stopping:
            return code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m gpuhub.supervise -- COMMAND [ARG …]", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
