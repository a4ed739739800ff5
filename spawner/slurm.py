"""The Slurm runtime: each server is one Slurm batch job, and Slurm decides.

Whoever owns the nodes decides: Slurm picks the node and the GPUs. gpuhub checks
the request and the user's quota before it submits (the allocator's dry run, in
GPUSpawner.apply_gpu_options: a refusal is a 400 and nothing is submitted),
shows Slurm's reason and start estimate while the job waits, and mirrors what
Slurm granted into the allocator as an *external allocation* once it runs
(``POST external``: the node and the GRES indices of ``scontrol show job -d``),
so the pool map, GPU-hours and quotas see it.

- start: ``sbatch --parsable`` (as root: ``--uid``/``--gid`` of the user's
  account, as the local runtime runs servers as the users) of a script that
  execs the servers' Python (spawner/serverenv.py); the job's environment is
  the server's (``--export=ALL`` of sbatch's own, which holds it). With
  vfolders (SlurmVFolderMixin, spawner/vfolders.py) the job is submitted as
  root instead, and its script mounts the home vfolder at ~ and the chosen
  vfolders at ~/vfolders on the node, then drops to the user's account
  (:func:`spawner.vfolders.node_mount_wrapper`): a job that runs as the user
  cannot mount;
- pending: ``squeue --start`` every slurm_poll_seconds, its reason and start
  estimate on the progress page;
- running: ``scontrol show job -d`` → node, GRES indices → ``POST external``;
  the server's address is the node's NodeAddr and the port gpuhub picked;
- stop: ``scancel``, then the mirror is released (GPUSpawner.stop);
- poll: a job that Slurm ended (scancel outside gpuhub, its time limit, a failed
  node) ends the server, with the reason for the user (``stop_reason``);
- the job id is in the spawner's state: a restarted hub finds its jobs again,
  and a job left behind by a hub that crashed while one was pending is
  cancelled before the next is submitted (never two jobs for one server).

What batchspawner 1.3.0 would have given (templated scripts, a poll by
``squeue``) is a few lines here; nothing of it is kept: its job scripts and
state do not fit the GPU life cycle (dry run before submitting, the mirror after
the job runs), and its tests fake ``sbatch``. The pure builders (``gres_args``,
``sbatch_args``, ``batch_script``) are tested without a cluster
(tests/test_slurm_unit.py); the rest against a real one (tests/test_slurm_e2e.py).
"""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction
import os
import pwd
import re
import shlex
import shutil
import time

from jupyterhub.spawner import SpawnException, Spawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Bool, CaselessStrEnum, Float, Int, List, Unicode, default

from gpu_allocator.client import AllocatorError
from gpu_allocator.core.jobs import is_job_server
from gpuhub.slurm import SQUEUE_FORMAT, JobInfo, SlurmOutputError, parse_job, parse_squeue, pending_message

from .gpu_env import describe
from .gpuspawner import GPUSpawner
from .slurm_cluster import gres_type
from .vfolders import SlurmVFolderMixin

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class SlurmError(RuntimeError):
    """A Slurm command failed; the message has its stderr."""


# --- what is submitted: pure builders ---------------------------------------------------


def job_name(user: str, server: str = "") -> str:
    """``gpuhub-USER`` or ``gpuhub-USER-SERVER``: how a server's job is found
    in ``squeue`` (and cancelled when a crash left it behind)."""
    return f"gpuhub-{user}" + (f"-{server}" if server else "")


def time_limit(max_hours: float) -> str:
    """sbatch's ``--time`` in whole minutes (rounded up) from max_hours."""
    return str(max(1, math.ceil(float(max_hours) * 60 - 1e-9)))


def gres_args(request: dict, units_per_gpu: int, shards_per_gpu: int, fraction_gres: str = "shard",
              mps_per_gpu: int = 100) -> list[str]:
    """``--gres`` for a share: whole GPUs as ``gpu[:type]:N`` (a type when one
    model is asked for); a fraction as ``shard:K`` of the node's shards_per_gpu
    per GPU, or (``fraction_gres="mps"``) as ``mps:P`` of the mps_per_gpu each
    GPU has (100: P is the share's percentage of one GPU); [] for no GPU.
    Raises ValueError, saying what is allowed, for a fraction the cluster
    cannot express (no shards, or not a whole number of shards or of mps)."""
    units = int(request.get("units") or 0)
    if units <= 0:
        return []
    models = list(request.get("gpu_model") or [])
    if units % units_per_gpu == 0:
        n = units // units_per_gpu
        typed = f"{gres_type(models[0])}:" if len(models) == 1 else ""
        return [f"--gres=gpu:{typed}{n}"]
    if units > units_per_gpu:
        raise ValueError("more than one GPU must be a whole number of GPUs")
    if fraction_gres == "mps":
        per_gpu, what = mps_per_gpu, "mps"
        if not per_gpu:
            raise ValueError("this Slurm cluster declares no mps: ask for whole GPUs")
    else:
        per_gpu, what = shards_per_gpu, "shard"
        if not per_gpu:
            raise ValueError("this Slurm cluster declares no shards: ask for whole GPUs")
    count, rest = divmod(units * per_gpu, units_per_gpu)
    if rest or not count:
        step = units_per_gpu // math.gcd(units_per_gpu, per_gpu) / units_per_gpu
        asked = units / units_per_gpu
        if what == "mps":
            raise ValueError(f"{asked:g} GPU is {asked * 100:g}% of a GPU; with MPS on this Slurm cluster a "
                             f"fraction must be a whole number of the {per_gpu} mps of a GPU: a multiple "
                             f"of {step:g} GPU")
        raise ValueError(f"a fraction on Slurm must be a multiple of {step:g} GPU "
                         f"(a whole number of the {per_gpu} shards of a GPU)")
    return [f"--gres={what}:{count}"]


def sbatch_args(request: dict, *, user: str, server: str, units_per_gpu: int, shards_per_gpu: int,
                partition: str = "", workdir: str = "", output: str = "",
                account: tuple[int, int] | None = None, extra: list[str] = (),
                fraction_gres: str = "shard", mps_per_gpu: int = 100) -> list[str]:
    """The arguments of ``sbatch`` for one server (the script comes on stdin):
    its name, GRES, CPUs, memory and time limit from the validated request
    (the allocator's dry run: ``units``, ``cpu``, ``mem`` in M, ``max_hours``)."""
    args = ["--parsable", f"--job-name={job_name(user, server)}", "--nodes=1", "--ntasks=1",
            f"--cpus-per-task={max(1, math.ceil(float(request.get('cpu') or 1)))}",
            f"--mem={request.get('mem') or '1024M'}", f"--time={time_limit(request.get('max_hours') or 8)}",
            "--export=ALL", "--no-requeue"]  # a server whose node failed ends, never restarts elsewhere
    args += gres_args(request, units_per_gpu, shards_per_gpu, fraction_gres, mps_per_gpu)
    if partition:
        args.append(f"--partition={partition}")
    if workdir:
        args.append(f"--chdir={workdir}")
    if output:
        args.append(f"--output={output}")
    if account is not None:
        args += [f"--uid={account[0]}", f"--gid={account[1]}"]
    return [*args, *extra]


#: run by the job's script before the server (the servers' Python, stdlib only):
#: the id of the allocator's mirror of this job, which the spawner records right
#: after Slurm starts it, asked as the user with the server's own hub token
FIND_ALLOCATION = """\
import json, os, sys, time, urllib.request
url, job = os.environ.get("GPUHUB_ALLOCATOR_URL", ""), os.environ.get("SLURM_JOB_ID", "")
headers = {"Authorization": "token " + os.environ.get("JUPYTERHUB_API_TOKEN", "")}
deadline = time.monotonic() + float(sys.argv[1])
while url and job and time.monotonic() < deadline:
    try:
        req = urllib.request.Request(url.rstrip("/") + "/allocations", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            for a in json.load(r).get("allocations", []):
                if a.get("source") == "slurm" and str(a.get("job")) == job:
                    print(a["id"])
                    sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
"""


def batch_script(cmd: list[str], python: str | None = None, allocation_wait: float = 60) -> str:
    """The job's script: it replaces itself with the server (exec), so that the
    job ends when the server does and scancel's signal reaches it. Before
    that, when the session has GPUs and ``python`` is given, it waits (at most
    ``allocation_wait`` seconds) for the allocator's mirror of the job and
    exports its id as ``GPUHUB_ALLOCATION`` (the lab panel's share, the
    kernels' environment); without one in time the server starts without it."""
    lines = [
        "#!/bin/bash",
        "# a gpuhub single-user server (spawner/slurm.py)",
        # the GPUs Slurm gave the job, for the session's panel and logs
        'export GPUHUB_SLURM_JOB="$SLURM_JOB_ID" GPUHUB_HOST="$SLURMD_NODENAME"',
    ]
    if python:
        find = f"{shlex.quote(python)} -c {shlex.quote(FIND_ALLOCATION)} {allocation_wait:g}"
        lines += [
            'if [ "${GPUHUB_GPUS:-0}" != "0" ] && [ -z "${GPUHUB_ALLOCATION:-}" ]; then',
            f'    GPUHUB_ALLOCATION="$({find} || true)"',
            '    if [ -n "$GPUHUB_ALLOCATION" ]; then export GPUHUB_ALLOCATION; else unset GPUHUB_ALLOCATION; fi',
            "fi",
        ]
    lines += [f"exec {shlex.join(cmd)}", ""]
    return "\n".join(lines)


def mirror_body(job: JobInfo, request: dict, *, user: str, server: str, units_per_gpu: int,
                shards_per_gpu: int, mps_per_gpu: int = 100) -> dict | None:
    """The allocator's ``POST external`` body for a running job: its node, the
    GPU indices it holds and the units on each (whole GPUs, or its shards' or
    mps' share of one: ``GRES=mps:50(IDX:0)`` of 100 per GPU is half of GPU 0);
    None when it holds no GPU."""
    uses = job.gres.get(job.node) or next(iter(job.gres.values()), [])
    gpus = [u for u in uses if u.name == "gpu" and u.indexes]
    shared = [(u, per) for u in uses if u.indexes
              for name, per in (("shard", shards_per_gpu), ("mps", mps_per_gpu)) if u.name == name and per]
    if gpus:
        indexes = sorted({i for u in gpus for i in u.indexes})
        units_each = units_per_gpu
    elif shared:
        indexes = sorted({i for u, _ in shared for i in u.indexes})
        of_one = sum(u.count / per for u, per in shared)  # in GPUs
        units_each = max(1, round(of_one * units_per_gpu / len(indexes)))
    else:
        return None
    return {
        "source": "slurm", "job": job.job_id, "host": job.node, "devices": indexes, "units_each": units_each,
        "user": user, "server": server, "cpu": request.get("cpu"), "mem": request.get("mem"),
        "max_hours": request.get("max_hours"),
    }


def fraction_note(fraction_gres: str) -> str:
    """What the spawn form says about fractions of a GPU on Slurm: what is, and
    what is not, fenced between jobs on one GPU."""
    if fraction_gres == "mps":
        text = ("On this Slurm cluster a fraction of a GPU is a CUDA MPS share (<code>mps:P</code>): "
                "Slurm sets <code>CUDA_MPS_ACTIVE_THREAD_PERCENTAGE</code> to its percentage, which "
                "limits the GPU's compute your CUDA processes may use where the node runs an MPS "
                "daemon. Its memory is not fenced: Slurm sets no memory limit "
                "(<code>CUDA_MPS_PINNED_DEVICE_MEM_LIMIT</code>), so jobs on the same GPU share all "
                "of its memory. Whole GPUs are not shared with other jobs.")
    else:
        text = ("On this Slurm cluster a fraction of a GPU is a Slurm shard (<code>shard:K</code>): "
                "nothing is fenced, neither the GPU's memory nor its compute; jobs on the same GPU "
                "share all of it. Whole GPUs are not shared with other jobs.")
    return f'<p class="help-block form-text gpuhub-slurm-fractions" id="gpuhub-slurm-fractions">{text}</p>\n'


def end_reason(job: JobInfo | None, job_id: str) -> str:
    """Why a server's job is no longer running, for the user (stop_reason)."""
    if job is None:
        why = f"its Slurm job {job_id} is gone from Slurm (it ended a while ago)"
    elif job.state == "CANCELLED":
        why = f"its Slurm job {job_id} was cancelled (scancel, outside gpuhub)"
    elif job.state == "TIMEOUT":
        why = f"its Slurm job {job_id} reached its time limit ({job.time_limit})"
    elif job.state in ("NODE_FAIL", "BOOT_FAIL"):
        why = f"the node {job.node or '?'} of its Slurm job {job_id} failed"
    elif job.state == "PREEMPTED":
        why = f"its Slurm job {job_id} was preempted by a job of higher priority"
    elif job.state == "OUT_OF_MEMORY":
        why = f"its Slurm job {job_id} ran out of memory"
    else:
        why = f"its Slurm job {job_id} ended ({job.state}, exit code {job.exit_code or '?'})"
    return (f"Your previous server was stopped: {why}. Its GPUs are free for others; "
            "unsaved work in that session is lost. Start a new server to continue.")


# --- the runtime -----------------------------------------------------------------------------


class SlurmRuntime(Spawner):
    """Servers as Slurm batch jobs (the runtime; SlurmGPUSpawner adds the GPU
    life cycle). Configure it as ``c.SlurmGPUSpawner.…``."""

    slurm_conf = Unicode(
        "",
        help="""Path of the cluster's slurm.conf, given to every Slurm command as
        SLURM_CONF, e.g. ``/etc/slurm/slurm.conf``.

        Default empty: Slurm's own default (what ``sbatch`` on the hub's PATH
        uses). The demo sets it to its own cluster's
        (``$GPUHUB_DATA_DIR/slurm/slurm.conf``) or to ``$GPUHUB_SLURM_CONF``.
        """,
    ).tag(config=True)

    partition = Unicode(
        "",
        help="""The Slurm partition servers are submitted to, e.g. ``gpu``.

        Default empty: the cluster's default partition.
        """,
    ).tag(config=True)

    shards_per_gpu = Int(
        10,
        help="""How many ``shard`` GRES each GPU of the cluster has (gres.conf's
        ``Name=shard Count=`` divided by the node's GPUs), e.g. 10: a fraction of
        0.5 GPU is submitted as ``--gres=shard:5``. 0: the cluster has no
        shards, and only whole GPUs are offered.

        Default 10, the demo cluster's (spawner/slurm_cluster.py): fractions in
        steps of 0.1 GPU. Shards share a GPU without fencing its memory.
        """,
    ).tag(config=True)

    fraction_gres = CaselessStrEnum(
        ["shard", "mps"],
        "shard",
        help="""How a fraction of a GPU is asked of Slurm: ``"shard"`` (``--gres=shard:K``,
        K of shards_per_gpu per GPU) or ``"mps"`` (``--gres=mps:P``, P of
        mps_per_gpu per GPU: with gres.conf's usual ``Name=mps Count=100`` per
        GPU, P is the share's percentage of one GPU, and Slurm sets the job's
        ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` to it), e.g. ``"mps"`` on a
        cluster whose slurm.conf has ``GresTypes=gpu,mps``. Whole GPUs are
        ``--gres=gpu[:type]:N`` either way.

        Default ``"shard"``, what the demo's own cluster declares. It is
        configured, not read from the cluster: the form and the allocator's dry
        run come before any Slurm command, a cluster may declare both (or its
        partitions differ), and a site knows which one its users' jobs may
        use. Shards fence nothing; MPS limits the compute a job's CUDA
        processes use (only where the node runs an MPS control daemon), and
        Slurm 22.05 sets no ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``, so a
        fraction's memory is not fenced under either.
        """,
    ).tag(config=True)

    mps_per_gpu = Int(
        100,
        help="""How many ``mps`` GRES each GPU of the cluster has (gres.conf's
        ``Name=mps Count=`` of one GPU's device file), e.g. 100: a fraction of
        0.5 GPU is ``--gres=mps:50``. Used with fraction_gres ``"mps"``.

        Default 100, Slurm's documented usual count (one per percent of the
        GPU), and the demo cluster's with ``fractions="mps"``.
        """,
    ).tag(config=True)

    job_output = Unicode(
        "/tmp/gpuhub-slurm-%u-%j.log",
        help="""Where a server's job writes its output on the compute node (sbatch
        ``--output``; Slurm's patterns: ``%j`` job id, ``%u`` user, ``%x`` job
        name), e.g. ``/scratch/%u/gpuhub-%j.log``.

        Default ``/tmp/gpuhub-slurm-%u-%j.log``: a folder every account can write
        on every node (the user's home may not exist on the node yet), one file
        per user and job (job ids start again in a new cluster: another
        user's old file must not be in the way). The demo's own cluster puts
        them in its runtime folder, removed with it.
        """,
    ).tag(config=True)

    sbatch_extra_args = List(
        Unicode(),
        help="""Further sbatch arguments for every server's job, e.g.
        ``["--account=physics", "--qos=interactive"]``.

        Default none.
        """,
    ).tag(config=True)

    slurm_poll_seconds = Float(
        2.0,
        help="""While a server's job waits in Slurm's queue, how often (seconds)
        the spawner asks ``squeue --start`` for its reason and estimate (shown on
        the progress page).

        Default 2 seconds: a job that starts is seen within one scheduling pass,
        at one small query per waiting spawn.
        """,
    ).tag(config=True)

    slurm_command_timeout = Float(
        30.0,
        help="""How long (seconds) a Slurm command (sbatch, squeue, scontrol,
        scancel) may take before it counts as failed.

        Default 30 seconds: Slurm's own MessageTimeout is 10 s, and a busy
        controller answers within a few.
        """,
    ).tag(config=True)

    server_ip = Unicode(
        "0.0.0.0",
        help="""The address the server binds on its compute node, e.g.
        ``0.0.0.0``; the hub reaches it at the node's NodeAddr.

        Default ``0.0.0.0``: the hub is on another machine than the node on a
        real cluster, and the node's own address is not known before Slurm
        picks it. The server authenticates every request with the hub.
        """,
    ).tag(config=True)

    allocation_wait = Float(
        60.0,
        help="""How long (seconds) a GPU session's job script waits, before it
        starts the server, for the allocator's mirror of the job, whose id it
        exports as ``GPUHUB_ALLOCATION`` (the lab panel's share). The spawner
        records the mirror once it sees the job run (within
        slurm_poll_seconds); without one in time the server starts without it.

        Default 60 seconds: far more than a poll, short of the hub's start
        timeout; 0 turns the wait off.
        """,
    ).tag(config=True)

    create_system_users = Bool(
        False,
        help="""When the hub runs as root and a user has no system account, create
        one (``useradd -m``) before the first job, as LocalGPUSpawner's.

        Default False: a cluster's accounts are the site's to make (and must exist
        on every node); the demo turns it on for its one-machine cluster.
        """,
    ).tag(config=True)

    #: the server's Slurm job id (in the spawner's state) and its node
    job_id: str | None = None
    job_node: str | None = None

    def load_state(self, state):
        super().load_state(state)
        self.job_id = state.get("slurm_job_id")
        self.job_node = state.get("slurm_node")

    def get_state(self):
        state = super().get_state()
        if self.job_id:
            state["slurm_job_id"] = self.job_id
            state["slurm_node"] = self.job_node
        return state

    def clear_state(self):
        super().clear_state()
        self.job_id = self.job_node = None

    # --- Slurm's commands -----------------------------------------------------------------

    def slurm_env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    async def slurm(self, *cmd: str, stdin: str | None = None, env: dict | None = None,
                    check: bool = True) -> tuple[int, str, str]:
        """Run a Slurm command; (exit code, stdout, stderr). ``check``: raise
        SlurmError unless it exits 0."""
        exe = shutil.which(cmd[0], path=os.environ.get("PATH")) or cmd[0]
        proc = await asyncio.create_subprocess_exec(
            exe, *cmd[1:], env=self.slurm_env(env),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None),
                                              self.slurm_command_timeout)
        except asyncio.TimeoutError:
            proc.kill()
            raise SlurmError(f"{cmd[0]} did not answer within {self.slurm_command_timeout:g} s") from None
        rc, text, errors = proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()
        if check and rc != 0:
            raise SlurmError(f"{' '.join(cmd[:2])} failed (exit {rc}): {errors}")
        return rc, text, errors

    async def slurm_job(self, job_id: str) -> JobInfo | None:
        """``scontrol show job -d``; None when Slurm no longer knows the job.
        Raises SlurmError when Slurm does not answer."""
        rc, out, err = await self.slurm("scontrol", "show", "job", "-d", job_id, check=False)
        if rc != 0:
            if "Invalid job id" in err:
                return None
            raise SlurmError(f"scontrol show job {job_id} failed (exit {rc}): {err}")
        return parse_job(out)

    async def node_address(self, node: str) -> str:
        _, out, _ = await self.slurm("scontrol", "show", "node", node)
        m = re.search(r"NodeAddr=(\S+)", out)
        return m.group(1) if m else node

    # --- accounts ----------------------------------------------------------------------------

    async def account(self) -> tuple[int, int, str] | None:
        """(uid, gid, home) of the user's account when the hub is root (jobs run
        as it); None otherwise (jobs run as the hub's account)."""
        if os.getuid() != 0:
            return None
        name = self.user.name
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            if not self.create_system_users:
                raise SpawnException(
                    f"There is no system account for {name!r}; ask an admin to create it on the hub "
                    "and every Slurm node (or enable SlurmGPUSpawner.create_system_users).",
                    reason="no-account", status_code=500) from None
            if not _SAFE_NAME.match(name):
                raise SpawnException(f"{name!r} is not a valid system account name", reason="no-account") from None
            proc = await asyncio.create_subprocess_exec("useradd", "-m", "-s", "/bin/bash", name,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            if proc.returncode not in (0, 9):
                raise SpawnException(f"could not create system account {name!r}: {out.decode().strip()}",
                                     reason="no-account", status_code=500) from None
            pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid, pw.pw_dir

    # --- life cycle ------------------------------------------------------------------------------

    def progress_event(self, progress: int, message: str) -> None:
        """A progress event (SlurmGPUSpawner: on the spawn page)."""
        self.log.info("%s: %s", self._log_name, message)

    def save_state(self) -> None:
        """Write the job id into the hub's database now (JupyterHub writes the
        state only once start returns): a hub that crashes while the job waits
        finds it on restart."""
        try:
            self.orm_spawner.state = self.get_state()
            self.db.commit()
        except Exception as e:  # never fail a spawn over it
            self.log.warning("%s: could not save the Slurm job id early: %s", self._log_name, e)

    async def cancel_leftovers(self, name: str) -> None:
        """Jobs of this server left behind (a hub that crashed while one
        waited, before its id was saved): cancelled, never a second job."""
        rc, out, _ = await self.slurm("squeue", "-h", "-n", name, "-o", SQUEUE_FORMAT, check=False)
        left = [line.job_id for line in parse_squeue(out)] if rc == 0 else []
        if left:
            self.log.warning("%s: cancelling Slurm job(s) %s left behind", self._log_name, ", ".join(left))
            await self.slurm("scancel", *left, check=False)

    def job_runs_as_root(self) -> bool:
        """Whether the job is submitted as root, without ``--uid`` (its script
        drops to the user's account itself: SlurmVFolderMixin's mounts)."""
        return False

    async def submit(self, request: dict) -> str:
        account = await self.account()
        self.port = random_port()
        self.ip = self.server_ip
        env = self.get_env()
        home = account[2] if account else os.getcwd()
        if account:
            name = self.user.name
            env.update(USER=name, LOGNAME=name, HOME=home, SHELL="/bin/bash")
        # Slurm sets the job's GPUs; the hub's notion of "none yet" must not win
        for key in ("CUDA_VISIBLE_DEVICES", "GPUHUB_ALLOCATION", "GPUHUB_HOST"):
            env.pop(key, None)
        for key in [k for k in env if k.startswith("CUDA_MPS_")]:  # an mps job's are Slurm's too
            env.pop(key)
        env["GPUHUB_GPUS"] = str(request.get("gpus") or "0")
        env = {**{k: v for k, v in os.environ.items() if k == "PATH" or k.startswith("LC_") or k == "LANG"},
               **env}
        try:
            args = sbatch_args(
                request, user=self.user.name, server=self.name,
                units_per_gpu=int(request.get("units_per_gpu") or 20), shards_per_gpu=self.shards_per_gpu,
                partition=self.partition, workdir=home, output=self.job_output,
                account=account[:2] if account and not self.job_runs_as_root() else None,
                extra=list(self.sbatch_extra_args), fraction_gres=self.fraction_gres,
                mps_per_gpu=self.mps_per_gpu,
            )
        except ValueError as e:
            raise SpawnException(str(e), reason="invalid", status_code=400) from None
        await self.cancel_leftovers(job_name(self.user.name, self.name))
        python = next((c for c in self.cmd if os.path.basename(c).startswith("python")), None)
        script = batch_script([*self.cmd, *self.get_args()], python if self.allocation_wait > 0 else None,
                              self.allocation_wait)
        try:
            _, out, _ = await self.slurm("sbatch", *args, stdin=script, env=env)
        except SlurmError as e:
            raise SpawnException(f"Slurm refused the job: {e}", reason="slurm", status_code=503) from None
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SpawnException(f"sbatch answered {out.strip()!r}, not a job id", reason="slurm", status_code=503)
        return job_id

    async def wait_running(self, job_id: str) -> JobInfo:
        """Until the job runs: Slurm's reason and start estimate as progress
        events (when they change). Raises SpawnException if it ends first."""
        shown = None
        while True:
            rc, out, _ = await self.slurm("squeue", "--start", "-h", "-j", job_id, "-o", SQUEUE_FORMAT, check=False)
            lines = parse_squeue(out) if rc == 0 else []
            if lines and lines[0].state == "PENDING":
                message = pending_message(lines[0], time.time())
                if message != shown:
                    self.progress_event(20, f"Slurm job {job_id}: {message}")
                    shown = message
            else:
                info = await self.slurm_job(job_id)
                if info is None or not (info.holding or info.waiting):
                    raise SpawnException(end_reason(info, job_id).replace("Your previous server was stopped",
                                                                          "Your server could not start"),
                                         reason="slurm", status_code=503)
                if info.holding:
                    return info
            await asyncio.sleep(self.slurm_poll_seconds)

    async def start(self):
        request = getattr(self, "spawn_request", None) or {}
        self.job_id = await self.submit(request)
        self.job_node = None
        self.save_state()
        self.progress_event(15, f"submitted Slurm job {self.job_id} ({job_name(self.user.name, self.name)})")
        try:
            info = await self.wait_running(self.job_id)
            self.job_node = info.node
            await self.slurm_job_running(info, request)
            address = await self.node_address(info.node)
        except BaseException:
            await self.cancel_job("the spawn failed or was cancelled")
            raise
        return address, self.port

    async def slurm_job_running(self, info: JobInfo, request: dict) -> None:
        """The job runs (SlurmGPUSpawner mirrors its GPUs here)."""
        self.progress_event(50, f"Slurm job {info.job_id} runs on {info.node}")

    async def cancel_job(self, why: str) -> None:
        job_id, self.job_id = self.job_id, None
        if not job_id:
            return
        self.log.info("%s: scancel %s (%s)", self._log_name, job_id, why)
        try:
            await self.slurm("scancel", job_id)
            deadline = time.monotonic() + self.slurm_command_timeout
            while time.monotonic() < deadline:
                info = await self.slurm_job(job_id)
                if info is None or not (info.holding or info.waiting):
                    return
                await asyncio.sleep(0.5)
            self.log.warning("%s: Slurm job %s still ends after %g s", self._log_name, job_id,
                             self.slurm_command_timeout)
        except SlurmError as e:
            self.job_id = job_id  # keep it: a later stop tries again
            self.log.error("%s: could not cancel Slurm job %s: %s", self._log_name, job_id, e)

    async def stop(self, now=False):
        await self.cancel_job("server stopped")

    async def poll(self):
        """None while the job runs (or Slurm cannot say); else 1, with the reason
        for the user in ``stop_reason``."""
        if not self.job_id:
            return 0
        try:
            info = await self.slurm_job(self.job_id)
        except (SlurmError, SlurmOutputError) as e:
            self.log.warning("%s: cannot ask Slurm about job %s (%s); assuming it runs",
                             self._log_name, self.job_id, e)
            return None
        if info is not None and (info.holding or info.waiting):
            return None
        state = info.state if info else "unknown to Slurm"
        if is_job_server(self.name):
            # a batch job's runner exited, and its Slurm job with it: the end
            # expected (its exit code is in ~/jobs/ID/exit.json), no notice
            self.log.info("%s: Slurm job %s of the batch job ended (%s)", self._log_name, self.job_id, state)
        else:
            self.stop_reason = end_reason(info, self.job_id)
            self.log.warning("%s: Slurm job %s ended (%s)", self._log_name, self.job_id, state)
        self.job_id = None
        return 1


class SlurmGPUSpawner(SlurmVFolderMixin, GPUSpawner, SlurmRuntime):
    """GPU shares on a Slurm cluster: Slurm places them, the allocator validates
    before and mirrors after (see the module docstring)."""

    places_itself = True

    async def apply_gpu_options(self, user_options: dict) -> None:
        """GPUSpawner's checks (the allocator's dry run), then whether the share
        maps onto the cluster's GRES (a fraction as a whole number of shards or
        mps): a 400 saying what is allowed, before anything is submitted."""
        await super().apply_gpu_options(user_options)
        request = self.gpu_request or {}
        try:
            gres_args(request, int(request.get("units_per_gpu") or 20), self.shards_per_gpu,
                      self.fraction_gres, self.mps_per_gpu)
        except ValueError as e:
            self.gpu_request = None
            raise web.HTTPError(400, str(e), reason="Invalid spawn options") from None

    def form_gpu_choices(self, pool: dict) -> list[str]:
        """gpu_choices less the fractions this cluster cannot express (not a whole
        number of its shards, or of its mps): the form never offers what the
        spawn would refuse."""
        per = int(pool.get("units_per_gpu") or 20)
        return [c for c in self.gpu_choices if self.expressible(c, per)]

    def expressible(self, amount: str, units_per_gpu: int) -> bool:
        units = Fraction(amount) * units_per_gpu
        if units.denominator != 1:
            return False
        try:
            gres_args({"units": int(units)}, units_per_gpu, self.shards_per_gpu, self.fraction_gres, self.mps_per_gpu)
        except ValueError:
            return False
        return True

    @default("options_form")
    def _default_options_form(self):
        base = super()._default_options_form()

        async def form(spawner):
            return await base(spawner) + fraction_note(spawner.fraction_gres)

        return form

    def progress_event(self, progress: int, message: str) -> None:
        self._event(progress, message)

    async def slurm_job_running(self, info: JobInfo, request: dict) -> None:
        uses = ", ".join(f"{u.name}{':' + u.type if u.type else ''}:{u.count}(IDX:{','.join(map(str, u.indexes))})"
                         for u in info.gres.get(info.node, []))
        self._event(45, f"Slurm job {info.job_id} runs on {info.node}" + (f" with {uses}" if uses else ""))
        body = mirror_body(info, request, user=self.user.name, server=self.name,
                           units_per_gpu=int(request.get("units_per_gpu") or 20),
                           shards_per_gpu=self.shards_per_gpu, mps_per_gpu=self.mps_per_gpu)
        if body is None:
            return
        try:
            self.allocation = await self.allocator_client.call("POST", "external", body)
        except AllocatorError as e:
            # the job runs whatever the mirror says: Slurm decides; the pool map
            # lacks it until the allocator is back (logged, not fatal)
            self.log.error("%s: could not mirror Slurm job %s into the allocator: %s",
                           self._log_name, info.job_id, e.message)
            return
        self._event(50, f"allocated {describe(self.allocation)} (Slurm job {info.job_id})")
