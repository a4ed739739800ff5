"""``gpuhub run``, ``jobs``, ``logs`` and ``cancel``: batch jobs through the
allocator's jobs API (gpu_allocator/api/jobs.py). ``ctx`` is the command's
Context (gpuhub.cli)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time

from gpuhub.client import ServiceError

from . import output
from .settings import UsageError

#: job states that are over
FINAL = ("succeeded", "failed", "cancelled", "expired")


def where(job: dict) -> str:
    """One line: where the job stands."""
    state = job["state"]
    q = job.get("queue") or {}
    if state == "queued" and q:
        line = f"queued, position {q.get('position')}"
        if q.get("eta"):
            line += f", expected start {output.clock(q.get('eta'))}"
            if q.get("eta_latest") and q.get("eta_latest") != q.get("eta"):
                line += f" (at the latest {output.clock(q.get('eta_latest'))})"
        if q.get("reason"):
            line += f": {q['reason']}"
        return line
    if state == "queued":
        return "queued (starting)"
    if state == "running":
        a = job.get("allocation") or {}
        on = f" on {job.get('host') or a.get('host')}" if (job.get("host") or a.get("host")) else ""
        gpus = a.get("gpus")
        return f"running{on}" + (f" with {gpus} GPU{'s' if gpus not in ('1', 1) and float(gpus) > 1 else ''}"
                                 if gpus else "")
    line = state + (f" (exit code {job['exit_code']})" if job.get("exit_code") is not None else "")
    return line + (f": {job['reason']}" if job.get("reason") else "")


def job_body(a) -> dict:
    body = {"command": list(a.command)}
    for key, value in (("gpus", a.gpus), ("cpu", a.cpu), ("mem", a.mem), ("max_hours", a.hours),
                       ("profile", a.profile), ("workdir", a.workdir)):
        if value is not None:
            body[key] = value
    if a.model:
        body["gpu_model"] = a.model
    if a.vfolder:
        body["vfolders"] = list(a.vfolder)
    return body


async def cmd_run(ctx) -> int:
    a = ctx.args
    if a.command and a.command[0] == "--":
        a.command = a.command[1:]
    if not a.command:
        raise UsageError("give the command after --, e.g. gpuhub run --gpus 1 -- python train.py")
    api = ctx.allocator()
    job = await api.call("POST", "jobs", job_body(a))
    # its place in the queue shows once its server's spawn reaches the allocator
    deadline = time.monotonic() + 5
    while job["state"] == "queued" and not job.get("queue") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        job = await api.call("GET", f"jobs/{job['id']}")
    if ctx.json and not a.wait:
        output.dump(job)
        return 0
    print(f"Job {job['id']}: {where(job)}", file=sys.stderr if a.wait else sys.stdout)
    if not a.wait:
        print(f"Follow it with: gpuhub logs -f {job['id']}")
        return 0
    ctx.hint = f"the job goes on; gpuhub logs -f {job['id']} follows it, gpuhub cancel {job['id']} stops it"
    try:
        job = await follow(api, job, sys.stdout.buffer)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return await interrupted(api, job)
    if ctx.json:
        output.dump(job)
    else:
        print(f"Job {job['id']} {where(job)}", file=sys.stderr)
    return exit_status(job)


def error(resp) -> ServiceError:
    """A failed logs request as the service said it."""
    try:
        message = json.loads(resp.body).get("error")
    except (ValueError, AttributeError):
        message = None
    return ServiceError(resp.code, message or f"HTTP {resp.code}: {resp.reason}")


def exit_status(job: dict) -> int:
    """The job's own exit code; 1 when it ended without one (cancelled, expired,
    failed to start)."""
    if job.get("exit_code") is not None:
        return int(job["exit_code"])
    return 0 if job["state"] == "succeeded" else 1


async def interrupted(api, job: dict) -> int:
    """Ctrl-C while following: ask whether to cancel (on a terminal)."""
    answer = ""
    if sys.stdin.isatty():
        try:
            answer = input(f"\nCancel job {job['id']}? [y/N] ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            answer = ""
    if answer in ("y", "yes"):
        job = await api.call("DELETE", f"jobs/{job['id']}")
        print(f"Job {job['id']} {where(job)}", file=sys.stderr)
        return 130
    print(f"\nJob {job['id']} goes on: gpuhub logs -f {job['id']} follows it, gpuhub cancel {job['id']} "
          "stops it.", file=sys.stderr)
    return 130


async def follow(api, job: dict, out) -> dict:
    """Write the job's output to ``out`` as it comes, until the job is over;
    the job's last state."""
    offset, state = 0, job["state"]
    while True:
        resp = await api.fetch("GET", f"jobs/{job['id']}/logs?offset={offset}&follow=1", timeout=60)
        if resp.code >= 400:
            raise error(resp)
        if resp.body:
            out.write(resp.body)
            out.flush()
        offset = int(resp.headers.get("X-Log-Offset", offset + len(resp.body)))
        state = resp.headers.get("X-Job-State", state)
        if state in FINAL and not resp.body:
            return await api.call("GET", f"jobs/{job['id']}")


async def cmd_jobs(ctx) -> int:
    data = await ctx.allocator().call("GET", f"jobs?limit={ctx.args.limit}")
    if ctx.json:
        output.dump(data)
        return 0
    jobs = data["jobs"]
    if not jobs:
        print("No jobs yet: gpuhub run -- COMMAND")
        return 0
    output.table(["ID", "STATE", "EXIT", "GPUS", "SUBMITTED", "STARTED", "ENDED", "COMMAND"], [
        [j["id"], j["state"], j.get("exit_code"), (j.get("options") or {}).get("gpus", "default"),
         output.clock(j.get("submitted")), output.clock(j.get("started")), output.clock(j.get("ended")),
         _short(shlex.join(j["command"]))] for j in jobs])
    return 0


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


async def cmd_logs(ctx) -> int:
    api = ctx.allocator()
    job = await api.call("GET", f"jobs/{ctx.args.id}")
    if ctx.args.follow:
        ctx.hint = f"the job goes on; gpuhub cancel {job['id']} stops it"
        await follow(api, job, sys.stdout.buffer)
        return 0
    offset = 0
    while True:
        resp = await api.fetch("GET", f"jobs/{job['id']}/logs?offset={offset}", timeout=60)
        if resp.code >= 400:
            raise error(resp)
        if not resp.body:
            break
        sys.stdout.buffer.write(resp.body)
        offset = int(resp.headers.get("X-Log-Offset", offset + len(resp.body)))
    sys.stdout.buffer.flush()
    if not offset and job["state"] == "queued":
        print(f"Job {job['id']} has no output yet: {where(job)}", file=sys.stderr)
    return 0


async def cmd_cancel(ctx) -> int:
    job = await ctx.allocator().call("DELETE", f"jobs/{ctx.args.id}")
    if ctx.json:
        output.dump(job)
    else:
        print(f"Job {job['id']} {where(job)}; its share is given back.")
    return 0


def add_commands(sub, command) -> None:
    """``run``, ``jobs``, ``logs``, ``cancel`` on the top-level subparsers."""
    c = command(sub, "run", cmd_run, "run a command as a batch job with a GPU share",
                "Submit COMMAND as a batch job: it waits in the same queue as sessions (same quotas "
                "and fair share), runs with its own GPU share and your home (and the vfolders named) "
                "mounted, and gives the share back when it exits. Its output goes to jobs/ID/output.log "
                "in your home. Prints the job's id and its place in the queue; with --wait, follows its "
                "output and exits with the command's own exit code (Ctrl-C asks whether to cancel it). "
                "Options left out take the hub's defaults (as the spawn form's).")
    c.add_argument("--gpus", metavar="N", help="GPUs: a fraction such as 0.5, or a whole number (0: none)")
    c.add_argument("--cpu", metavar="N", help="CPU cores, e.g. 4")
    c.add_argument("--mem", metavar="SIZE", help="memory, e.g. 16G")
    c.add_argument("--hours", metavar="H", help="the longest it may run, in hours (max_hours), e.g. 2")
    c.add_argument("--model", metavar="M", help="a GPU model, e.g. A100")
    c.add_argument("--profile", metavar="P", help="a profile of the hub (its slug), e.g. pytorch-small")
    c.add_argument("--vfolder", metavar="NAME", action="append", help="mount this vfolder (repeat for more)")
    c.add_argument("--workdir", metavar="DIR", help="run in this directory of your home (default: the home)")
    c.add_argument("--wait", action="store_true", help="follow its output; exit with its exit code")
    c.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND…",
                   help="the command and its arguments, after --")
    c = command(sub, "jobs", cmd_jobs, "your batch jobs, newest first")
    c.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    c = command(sub, "logs", cmd_logs, "a job's output (stdout and stderr)",
                "Print a job's output (jobs/ID/output.log in your home); with -f, follow it until "
                "the job ends.")
    c.add_argument("id", metavar="ID", help="the job's id (gpuhub jobs lists them)")
    c.add_argument("-f", "--follow", action="store_true", help="follow the output until the job ends")
    c = command(sub, "cancel", cmd_cancel, "cancel a queued or running job",
                "Cancel a job: one waiting leaves the queue, one running gets SIGTERM (then SIGKILL "
                "after 10 s); its share goes back to the pool.")
    c.add_argument("id", metavar="ID", help="the job's id")
