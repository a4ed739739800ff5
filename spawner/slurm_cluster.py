"""A real Slurm cluster on one machine for the demo and the tests: munge,
slurmctld and slurmd, with GPU GRES on character-device files (``mknod … c 195
N``: no GPU needed) for hosts of gpuhub's inventory (the demo: one).

``GPUHUB_RUNTIME=slurm make demo`` starts one (hub_config/jupyterhub_config.py)
unless ``GPUHUB_SLURM_CONF`` names a site's cluster; the tests start the same
way. Root only (munged runs as ``munge``, slurmd starts jobs as the users).

Where its files live:

- ``DATA/`` (``$GPUHUB_DATA_DIR/slurm``): ``slurm.conf``, ``gres.conf``, the
  controller's state, the logs and the pid files;
- ``/run/gpuhub-slurm/TAG/`` (TAG: a hash of DATA): what other accounts must
  reach — munged's socket (munge runs as ``munge``), slurmd's spool (batch
  scripts run as the users) and the device files. A data dir under a private
  folder (0700) works.

Several nodes on one machine: each node with a ``netns`` runs its slurmd in
that network namespace (``nsenter --net=… slurmd -N NAME``), linked to the
machine by a veth pair with a /30 (``netns_nodes`` assigns them): NodeAddr is
the namespace's end, the controller listens on the machine's end of the first
node's link, and every namespace routes to it by default. munged's socket is
a file, so one munged serves every namespace. ``kill_node`` (every process of
the namespace, ``kill -9``) and ``link_down`` make a node die; ``stop`` deletes
the namespaces it made (listed in ``DATA/netns``).

GPUs are shared between jobs as ``shard`` GRES (SHARDS_PER_GPU per GPU), or,
with ``fractions="mps"``, as ``mps`` GRES (MPS_PER_GPU on each GPU's device
file; Slurm then sets the job's ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``). No MPS
daemon runs: there is no GPU.

Ports are picked free when the config is written; a cluster whose controller
still runs is reused (``start`` is idempotent). The pure builders
(``slurm_conf``, ``gres_conf``) are unit-tested; ``python -m
spawner.slurm_cluster start|stop|status DATA [--inventory FILE --host NAME]``
drives it from a shell.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: where the parts other accounts must reach live (one folder per cluster)
RUNTIME_ROOT = Path("/run/gpuhub-slurm")
#: shards per GPU the demo cluster declares (a fraction of 0.5 → 5 shards)
SHARDS_PER_GPU = 10
#: mps GRES per GPU a cluster with ``fractions="mps"`` declares (Slurm's usual
#: 100: ``--gres=mps:50`` is half of one GPU's compute)
MPS_PER_GPU = 100
#: how a cluster of this module shares a GPU between jobs: ``shard`` GRES (the
#: default) or ``mps`` GRES
FRACTIONS = ("shard", "mps")


class ClusterError(RuntimeError):
    """The cluster cannot start; the message says which daemon and its log."""


@dataclass(frozen=True)
class Node:
    """One Slurm node: a gpuhub host's name, CPUs, memory and GPUs by model
    (in device-index order)."""

    name: str
    cpus: int
    memory_mb: int
    gpus: tuple[tuple[str, int], ...]  # (model, count), device-index order
    addr: str = "127.0.0.1"
    #: the network namespace its slurmd runs in ("": the machine's); ``addr`` is
    #: then the namespace's end of its veth link and ``gateway`` the machine's
    netns: str = ""
    gateway: str = ""

    @property
    def veth(self) -> tuple[str, str]:
        """The veth pair's (machine's end, namespace's end) names."""
        return f"{self.netns}-o", f"{self.netns}-i"


def netns_nodes(nodes: list[Node], prefix: str, subnet: str) -> list[Node]:
    """``nodes``, each in a network namespace of its own: ``PREFIXi`` (i from 1)
    with the /30 ``SUBNET.4i`` (``subnet``: the first three octets of a private
    /24), the namespace's end at ``.4i+2``, the machine's at ``.4i+1``. Names of
    at most 13 characters (veth names are ``NS-o``/``NS-i``, 15 at most)."""
    out = []
    for i, n in enumerate(nodes, 1):
        ns = f"{prefix}{i}"
        if len(ns) > 13:
            raise ValueError(f"network namespace name {ns!r} is longer than 13 characters")
        out.append(Node(n.name, n.cpus, n.memory_mb, n.gpus, addr=f"{subnet}.{4 * i + 2}",
                        netns=ns, gateway=f"{subnet}.{4 * i + 1}"))
    return out


def netns_available(probe: str = "gpuhub-probe") -> str:
    """Why network namespaces cannot be made here ("": they can), by making one
    (``ip netns add``) and deleting it."""
    if shutil.which("ip") is None:
        return "the ip command is not installed (apt-get install iproute2)"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if made.returncode != 0:
        return f"ip netns add fails here: {made.stderr.strip() or made.returncode}"
    return ""


def gres_type(model: str) -> str:
    """A GPU model as a Slurm GRES type: ``A100-SXM4-80GB`` → ``a100_sxm4_80gb``
    (lower case, letters, digits and ``_``)."""
    return re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_") or "gpu"


def _check_fractions(fractions: str) -> None:
    if fractions not in FRACTIONS:
        raise ValueError(f"fractions must be one of {', '.join(FRACTIONS)}, not {fractions!r}")


def node_gres(node: Node, shards_per_gpu: int = SHARDS_PER_GPU, fractions: str = "shard") -> str:
    """``gpu:a100:4,shard:40`` (slurm.conf's Gres= of the node); with
    ``fractions="mps"``, ``gpu:a100:4,mps:400`` (MPS_PER_GPU per GPU)."""
    _check_fractions(fractions)
    parts = [f"gpu:{gres_type(m)}:{n}" for m, n in node.gpus]
    total = sum(n for _, n in node.gpus)
    if fractions == "mps" and total:
        parts.append(f"mps:{total * MPS_PER_GPU}")
    elif shards_per_gpu and total:
        parts.append(f"shard:{total * shards_per_gpu}")
    return ",".join(parts)


def controller_addr(nodes: list[Node]) -> str:
    """Where slurmd and the commands reach slurmctld: the machine's end of the
    first namespaced node's link, else loopback."""
    return next((n.gateway for n in nodes if n.netns), "127.0.0.1")


def slurm_conf(name: str, nodes: list[Node], data: Path, run: Path, ports: tuple[int, int],
               shards_per_gpu: int = SHARDS_PER_GPU, slurmd_timeout: int = 30, fractions: str = "shard") -> str:
    """The cluster's slurm.conf: its own ports, state, spool, pid and log paths;
    linuxproc process tracking and no task plugin (no cgroups needed), the
    cons_tres selector with memory as a resource, GRES gpu and shard (or mps:
    ``fractions``). A node
    that does not answer for ``slurmd_timeout`` seconds is DOWN, and its jobs
    end as NODE_FAIL (never requeued: JobRequeue=0)."""
    ctld_port, slurmd_port = ports
    lines = [
        f"# written by gpuhub (spawner/slurm_cluster.py) for {data}",
        f"ClusterName={name}",
        f"SlurmctldHost=localhost({controller_addr(nodes)})",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={run / 'munge' / 'munge.socket'}",
        "CredType=cred/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={data / 'state'}",
        f"SlurmdSpoolDir={run / 'spool'}/slurmd-%n",
        f"SlurmctldPidFile={data / 'slurmctld.pid'}",
        f"SlurmdPidFile={data}/slurmd-%n.pid",
        f"SlurmctldLogFile={data / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={data}/log/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        f"GresTypes=gpu,{fractions}",
        # the node's CPUs and memory are gpuhub's inventory's, not this machine's
        "SlurmdParameters=config_overrides",
        "DefMemPerCPU=512",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=2,bf_interval=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MessageTimeout=10",
        f"SlurmdTimeout={slurmd_timeout}",
        "JobRequeue=0",
        "InactiveLimit=0",
        "MinJobAge=300",
        "KillWait=5",
    ]
    for n in nodes:
        lines.append(
            f"NodeName={n.name} NodeHostname={socket.gethostname()} NodeAddr={n.addr} CPUs={n.cpus} "
            f"RealMemory={n.memory_mb} Gres={node_gres(n, shards_per_gpu, fractions)} State=UNKNOWN"
        )
    lines.append(f"PartitionName=gpu Nodes={','.join(n.name for n in nodes)} Default=YES "
                 "MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def gres_conf(nodes: list[Node], dev: Path, shards_per_gpu: int = SHARDS_PER_GPU, fractions: str = "shard") -> str:
    """gres.conf: each node's GPUs as the device files ``dev/NODE/nvidiaI``, and
    its shards (a count per node), or with ``fractions="mps"`` MPS_PER_GPU mps
    GRES on each GPU's device file (Slurm needs the file: an mps GRES is the
    share of the gpu GRES with the same file)."""
    _check_fractions(fractions)
    lines = []
    for n in nodes:
        index = 0
        for model, count in n.gpus:
            files = f"{dev / n.name}/nvidia[{index}-{index + count - 1}]" if count > 1 else \
                f"{dev / n.name}/nvidia{index}"
            lines.append(f"NodeName={n.name} Name=gpu Type={gres_type(model)} File={files}")
            index += count
        if fractions == "mps":
            lines += [f"NodeName={n.name} Name=mps Count={MPS_PER_GPU} File={dev / n.name}/nvidia{i}"
                      for i in range(index)]
        elif shards_per_gpu and index:
            lines.append(f"NodeName={n.name} Name=shard Count={index * shards_per_gpu}")
    return "\n".join(lines) + "\n"


def nodes_from_inventory(path: str | os.PathLike, names: list[str] | None = None) -> list[Node]:
    """The inventory's hosts (``names``: only those) as Slurm nodes."""
    from gpu_allocator.inventory import load_inventory

    out = []
    for h in load_inventory(path):
        if names and h.name not in names:
            continue
        gpus: list[tuple[str, int]] = []
        for d in h.devices:
            if gpus and gpus[-1][0] == d.model:
                gpus[-1] = (d.model, gpus[-1][1] + 1)
            else:
                gpus.append((d.model, 1))
        out.append(Node(h.name, max(1, int(h.cpus)), h.memory_mb, tuple(gpus)))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


class SlurmCluster:
    """A one-machine Slurm cluster in ``data`` (see the module docstring)."""

    def __init__(self, data: str | os.PathLike, nodes: list[Node] | None = None,
                 shards_per_gpu: int = SHARDS_PER_GPU, runtime_root: Path = RUNTIME_ROOT,
                 slurmd_timeout: int = 30, fractions: str = "shard"):
        _check_fractions(fractions)
        self.data = Path(data).resolve()
        self.nodes = list(nodes or [])
        self.shards_per_gpu = shards_per_gpu
        self.fractions = fractions
        self.slurmd_timeout = slurmd_timeout
        tag = hashlib.sha256(str(self.data).encode()).hexdigest()[:10]
        self.name = f"gpuhub{tag[:6]}"
        self.run = runtime_root / tag
        self.conf = self.data / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment Slurm's commands need to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def munge_socket(self) -> Path:
        return self.run / "munge" / "munge.socket"

    def node_names(self) -> list[str]:
        """The nodes of the written config (a cluster started earlier)."""
        if not self.conf.exists():
            return [n.name for n in self.nodes]
        return re.findall(r"^NodeName=(\S+)", self.conf.read_text(), re.M)

    def running(self) -> bool:
        return _alive(self.data / "slurmctld.pid") is not None and \
            _alive(self.run / "munge" / "munged.pid") is not None

    # --- start -----------------------------------------------------------------------

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Start munged, slurmctld and one slurmd per node, and wait until every
        node is idle (or busy with jobs of an earlier start); a cluster that
        runs already is kept as it is."""
        if any(ch.isspace() for ch in str(self.data)):
            raise ClusterError(f"slurm.conf cannot name a path with spaces ({self.data}): "
                               "set GPUHUB_DATA_DIR to a folder whose path has none")
        if os.geteuid() != 0:
            raise ClusterError("a Slurm cluster of the demo's own needs root (munged runs as munge, "
                               "slurmd starts jobs as the users); set GPUHUB_SLURM_CONF to use a site's")
        for tool in ("munged", "slurmctld", "slurmd", "sinfo"):
            if shutil.which(tool) is None:
                raise ClusterError(f"{tool} is not installed: apt-get install slurmctld slurmd slurm-client munge")
        if self.running():
            self._wait_nodes(timeout)
            return self
        self.stop()  # whatever half of an earlier one is left
        if not self.nodes:
            raise ClusterError(f"no nodes to run in {self.data}")
        for sub in ("state", "log"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        self._make_runtime_dir()
        self._make_netns()
        self.conf.write_text(slurm_conf(self.name, self.nodes, self.data, self.run,
                                        (_free_port(), _free_port()), self.shards_per_gpu,
                                        self.slurmd_timeout, self.fractions))
        (self.data / "gres.conf").write_text(gres_conf(self.nodes, self.run / "dev", self.shards_per_gpu,
                                                       self.fractions))
        self._start_munge()
        self._daemon(["slurmctld", "-f", str(self.conf)], "slurmctld", self.data / "log" / "slurmctld.log")
        for n in self.nodes:
            self._daemon([*_in_netns(n.netns), "slurmd", "-f", str(self.conf), "-N", n.name],
                         f"slurmd of {n.name}", self.data / "log" / f"slurmd-{n.name}.log")
        self._wait_nodes(timeout)
        return self

    def _make_netns(self) -> None:
        """Each namespaced node's namespace, veth pair, addresses and default
        route (to the machine's end), recorded in DATA/netns for ``stop``."""
        spaced = [n for n in self.nodes if n.netns]
        if not spaced:
            return
        (self.data / "netns").write_text("".join(f"{n.netns} {n.veth[0]}\n" for n in spaced))
        for n in spaced:
            outside, inside = n.veth
            _kill_netns(n.netns)  # left over from an interrupted run
            _ip("netns", "del", n.netns, check=False)
            _ip("link", "del", outside, check=False)
            _ip("netns", "add", n.netns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", n.netns)
            _ip("addr", "add", f"{n.gateway}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", n.netns, "addr", "add", f"{n.addr}/30", "dev", inside)
            _ip("-n", n.netns, "link", "set", inside, "up")
            _ip("-n", n.netns, "link", "set", "lo", "up")
            _ip("-n", n.netns, "route", "add", "default", "via", n.gateway)

    def _netns(self) -> list[tuple[str, str]]:
        """(namespace, machine's veth end) of the namespaces this cluster made."""
        path = self.data / "netns"
        if not path.exists():
            return []
        return [tuple(line.split()[:2]) for line in path.read_text().splitlines() if len(line.split()) >= 2]

    def _netns_of(self, node: str) -> tuple[str, str]:
        spaced = {n.name: (n.netns, n.veth[0]) for n in self.nodes if n.netns}
        if node not in spaced:
            raise ClusterError(f"{node} does not run in a network namespace of this cluster")
        return spaced[node]

    def kill_node(self, node: str) -> list[int]:
        """The node dies: ``kill -9`` every process in its namespace (slurmd, the
        jobs' slurmstepd and whatever they run); the pids killed."""
        return _kill_netns(self._netns_of(node)[0])

    def link_down(self, node: str) -> None:
        """The node's network goes: the machine's end of its veth link down."""
        _ip("link", "set", self._netns_of(node)[1], "down")

    def _make_runtime_dir(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run.parent, 0o755)
        os.chmod(self.run, 0o755)
        munge = self.run / "munge"
        key_dir = munge / "key"
        key_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(munge, "munge", "munge")
        shutil.chown(key_dir, "munge", "munge")
        os.chmod(munge, 0o755)  # munged: the socket's folder must be searchable by all
        os.chmod(key_dir, 0o700)
        key = key_dir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o400)
        spool = self.run / "spool"
        spool.mkdir(exist_ok=True)
        os.chmod(spool, 0o755)
        jobs = self.run / "jobs"  # the jobs' output (SlurmGPUSpawner.job_output)
        jobs.mkdir(exist_ok=True)
        os.chmod(jobs, 0o1777)
        for n in self.nodes:
            dev = self.run / "dev" / n.name
            dev.mkdir(parents=True, exist_ok=True)
            for i in range(sum(c for _, c in n.gpus)):
                path = dev / f"nvidia{i}"
                if not path.exists():
                    os.mknod(path, 0o666 | 0o020000, os.makedev(195, i))

    def _start_munge(self) -> None:
        m = self.run / "munge"
        cmd = ["runuser", "-u", "munge", "--", "munged", f"--socket={self.munge_socket}",
               f"--key-file={m / 'key' / 'munge.key'}", f"--pid-file={m / 'munged.pid'}",
               f"--log-file={m / 'munged.log'}", f"--seed-file={m / 'munged.seed'}"]
        self._daemon(cmd, "munged", m / "munged.log")

    def _daemon(self, cmd: list[str], what: str, log: Path) -> None:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, start_new_session=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise ClusterError(f"{what} did not start ({' '.join(cmd)}: exit {r.returncode}): "
                               f"{r.stderr.strip()} {tail}")

    def sinfo(self) -> dict[str, str]:
        """{node: state} as ``sinfo`` says (idle, mix, alloc, down, …)."""
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True,
                           text=True, timeout=15)
        if r.returncode != 0:
            return {}
        return dict(line.split()[:2] for line in r.stdout.splitlines() if len(line.split()) >= 2)

    def _wait_nodes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.sinfo()
            names = self.node_names()
            if names and all(states.get(n, "").rstrip("*~#") in ("idle", "mix", "alloc") for n in names):
                return
            time.sleep(0.5)
        raise ClusterError(f"the Slurm nodes did not come up within {timeout:g} s ({states}); "
                           f"see {self.data / 'log'}")

    # --- stop -----------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, stop the daemons, remove the runtime folder. Safe to
        call on a cluster that is not (or half) running."""
        if _alive(self.data / "slurmctld.pid") and self.conf.exists():
            subprocess.run(["scancel", "--full", "--state=PENDING"], env=self.env, capture_output=True, timeout=15)
            subprocess.run(["scancel", "--full", "--state=RUNNING"], env=self.env, capture_output=True, timeout=15)
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline:
                r = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%T"], env=self.env,
                                   capture_output=True, text=True, timeout=15)
                live = [s for s in r.stdout.split() if s not in ("COMPLETED", "CANCELLED", "FAILED",
                                                                 "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                                                                 "PREEMPTED", "BOOT_FAIL", "DEADLINE")]
                if r.returncode != 0 or not live:
                    break
                time.sleep(0.5)
        pidfiles = sorted(self.data.glob("slurmd-*.pid")) + [self.data / "slurmctld.pid",
                                                             self.run / "munge" / "munged.pid"]
        for pidfile in pidfiles:
            pid = _alive(pidfile)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout / 3
            while time.monotonic() < deadline and _alive(pidfile) == pid:
                time.sleep(0.1)
            if _alive(pidfile) == pid:
                os.kill(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
        # job steps outlive slurmd; none of this cluster's may outlive it
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            try:
                if cmd.startswith(b"slurmstepd") and f"SLURM_CONF={self.conf}".encode() in (p / "environ").read_bytes():
                    os.kill(int(p.name), signal.SIGKILL)
            except OSError:
                continue
        for ns, outside in self._netns():
            _kill_netns(ns)
            _ip("netns", "del", ns, check=False)
            _ip("link", "del", outside, check=False)  # gone with the namespace, normally
        (self.data / "netns").unlink(missing_ok=True)
        shutil.rmtree(self.run, ignore_errors=True)


def _in_netns(netns: str) -> list[str]:
    """The command prefix that runs in the namespace's network only (``ip netns
    exec`` would also remount /sys, where slurmd needs the machine's cgroups)."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []


def _ip(*args: str, check: bool = True) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and r.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _kill_netns(netns: str) -> list[int]:
    """``kill -9`` every process in the network namespace; the pids."""
    r = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=15)
    pids = [int(p) for p in r.stdout.split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spawner.slurm_cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("data", help="the cluster's folder (the demo's: $GPUHUB_DATA_DIR/slurm)")
    p.add_argument("--inventory", help="gpuhub inventory (YAML) whose hosts become nodes (start)")
    p.add_argument("--host", action="append", help="only this inventory host (repeatable)")
    p.add_argument("--fractions", choices=FRACTIONS, default="shard",
                   help="how jobs share a GPU: shard GRES (default) or mps GRES, 100 per GPU (start)")
    args = p.parse_args(argv)
    nodes = nodes_from_inventory(args.inventory, args.host) if args.inventory else []
    cluster = SlurmCluster(args.data, nodes, fractions=args.fractions)
    if args.action == "start":
        cluster.start()
        print(f"SLURM_CONF={cluster.conf}")
    elif args.action == "stop":
        cluster.stop()
    else:
        print("running" if cluster.running() else "stopped", cluster.sinfo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
