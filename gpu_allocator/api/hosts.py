"""REST handlers for GPU hosts' agents and for draining hosts.

- ``POST hosts/{name}/register`` and ``POST hosts/{name}/heartbeat``: the agent of
  a host (scope ``custom:gpu-allocator:agent``, or an admin). Both answer what
  the allocator holds on the host (``shares``) and which of the allocation ids
  the agent says it runs the allocator does not hold there (``unknown``, with
  ``fenced``: why): the agent stops those, and the host is ``fencing`` (no new
  placements) until a heartbeat reports none of them any more. A
  heartbeat of a host the allocator does not know, or has marked lost, is a 404:
  the agent registers again. A registration may put the host in host pools
  (``host.pools``); one that names a pool the allocator's ``pools`` does not
  configure is a 400.
- ``POST hosts/{name}/drain`` and ``…/undrain``: admins only, audited
  (admin.actions).
"""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal

from tornado import web

from gpuhub.certs import cert_names

from ..admin import actions
from ..core.model import Device, Host
from ..core.pools import PoolError, check_hosts, parse_host_pools
from ..pool import HostConflict
from ..scopes import AGENT_SCOPE
from ..shapes import allocation_json, host_json
from .base import APIHandler

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class BadBody(ValueError):
    pass


def _int(value, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadBody(f"{where} must be a whole number ≥ {minimum}, got {value!r}")
    return value


def _num(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise BadBody(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise BadBody(f"{where} must be a finite number, got {value!r}")
    return number


def _str(value, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > 255:
        raise BadBody(f"{where} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def parse_running(data: dict) -> list[str]:
    running = data.get("running", [])
    if not isinstance(running, list):
        raise BadBody("running must be a list of allocation ids")
    return [_str(r, f"running[{i}]") for i, r in enumerate(running)]


def parse_host(name: str, data: dict) -> Host:
    """The "host" object of a registration → a Host (devices on it)."""
    h = data.get("host")
    if not isinstance(h, dict):
        raise BadBody('"host" must be an object with cpus, memory_mb and devices')
    cpus = _num(h.get("cpus"), "host.cpus")
    if cpus is None or cpus <= 0:
        raise BadBody(f"host.cpus must be a positive number, got {h.get('cpus')!r}")
    memory_mb = _int(h.get("memory_mb"), "host.memory_mb", 1)
    devices_in = h.get("devices", [])
    if not isinstance(devices_in, list):
        raise BadBody("host.devices must be a list")
    devices, seen = [], set()
    for i, d in enumerate(devices_in):
        where = f"host.devices[{i}]"
        if not isinstance(d, dict):
            raise BadBody(f"{where} must be an object with index, uuid, model, memory_mb")
        uuid = _str(d.get("uuid"), f"{where}.uuid")
        if uuid in seen:
            raise BadBody(f"{where}: device {uuid} is listed twice")
        seen.add(uuid)
        devices.append(
            Device(
                host=name,
                index=_int(d.get("index", i), f"{where}.index"),
                uuid=uuid,
                model=_str(d.get("model", "unknown"), f"{where}.model"),
                memory_mb=_int(d.get("memory_mb"), f"{where}.memory_mb", 1),
                island=_str(d.get("island") or "", f"{where}.island", empty=True),
            )
        )
    try:  # the host pools its agent puts it in (GPUAgent.pools; checked against the allocator's)
        pools = parse_host_pools(h.get("pools"), "host.pools")
    except PoolError as e:
        raise BadBody(str(e)) from None
    return Host(name=name, devices=tuple(devices), cpus=cpus, memory_mb=memory_mb, pools=pools)


def parse_mps(data: dict) -> dict | None:
    """What the agent says of CUDA MPS on its host: {"available", "running",
    "pipe_dir"} (None: an agent that does not say)."""
    mps = data.get("mps")
    if mps is None:
        return None
    if not isinstance(mps, dict):
        raise BadBody('"mps" must be an object {"available", "running", "pipe_dir"}')
    pipe = mps.get("pipe_dir")
    return {
        "available": bool(mps.get("available")),
        "running": bool(mps.get("running")),
        "pipe_dir": _str(pipe, "mps.pipe_dir") if pipe is not None else None,
    }


def parse_docker(data: dict) -> dict | None:
    docker = data.get("docker")
    if docker is None:
        return None
    if not isinstance(docker, dict):
        raise BadBody('"docker" must be an object {"url", "ip", "gpu_runtime", "mps_pipe_dir"}')
    out = {"url": _str(docker.get("url"), "docker.url")}
    if docker.get("ip") is not None:
        out["ip"] = _str(docker["ip"], "docker.ip")
    out["gpu_runtime"] = bool(docker.get("gpu_runtime", False))
    mps = docker.get("mps_pipe_dir")
    out["mps_pipe_dir"] = _str(mps, "docker.mps_pipe_dir") if mps is not None else None
    return out


def parse_details(data: dict) -> dict | None:
    h = data.get("host") or {}
    details = {k: h[k] for k in ("topology", "numa") if h.get(k) is not None}
    for k, v in details.items():
        if not isinstance(v, dict | list):
            raise BadBody(f"host.{k} must be an object")
    return details or None


def parse_usage(data: dict, now: float) -> dict | None:
    """The per-device samples of a heartbeat, normalised."""
    devices = data.get("devices")
    own = parse_allocation_use(data, now)
    if devices is None:
        return {"at": now, "devices": [], **own} if own else None
    if not isinstance(devices, list):
        raise BadBody("devices must be a list of per-device samples")
    out = []
    for i, d in enumerate(devices):
        where = f"devices[{i}]"
        if not isinstance(d, dict):
            raise BadBody(f"{where} must be an object with uuid, utilization_gpu, memory_used_mb")
        processes = d.get("processes") or []
        if not isinstance(processes, list):
            raise BadBody(f"{where}.processes must be a list")
        procs = []
        for j, proc in enumerate(processes):
            pwhere = f"{where}.processes[{j}]"
            if not isinstance(proc, dict):
                raise BadBody(f"{pwhere} must be an object with pid and memory_mb")
            procs.append(
                {
                    "pid": _int(proc.get("pid"), f"{pwhere}.pid"),
                    "memory_mb": _num(proc.get("memory_mb"), f"{pwhere}.memory_mb"),
                }
            )
        out.append(
            {
                "uuid": _str(d.get("uuid"), f"{where}.uuid"),
                "utilization_gpu": _num(d.get("utilization_gpu"), f"{where}.utilization_gpu"),
                "memory_used_mb": _num(d.get("memory_used_mb"), f"{where}.memory_used_mb"),
                "processes": procs,
            }
        )
    return {"at": now, "devices": out, **own}


def parse_allocation_use(data: dict, now: float) -> dict:
    """A heartbeat's ``allocations``: each allocation's own use (its processes'
    utilisation and memory, agent.owners), normalised to ``{"allocations": {id:
    use}}`` with ``sampled_at``; {} when the agent sends none."""
    body = data.get("allocations")
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadBody("allocations must be an object {allocation id: use}")
    out = {}
    for aid, use in body.items():
        where = f"allocations[{aid!r}]"
        _str(aid, "an allocation id")
        if not isinstance(use, dict):
            raise BadBody(f"{where} must be an object with utilization_gpu and memory_used_mb")
        rows = use.get("devices") or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadBody(f"{where}.devices must be a list of objects")
        out[aid] = {
            "utilization_gpu": _num(use.get("utilization_gpu"), f"{where}.utilization_gpu"),
            "memory_used_mb": _num(use.get("memory_used_mb"), f"{where}.memory_used_mb"),
            "processes": _int(use.get("processes", 0), f"{where}.processes"),
            "complete": bool(use.get("complete", True)),
            "devices": [
                {"uuid": _str(r.get("uuid"), f"{where}.devices[{i}].uuid"),
                 "utilization_gpu": _num(r.get("utilization_gpu"), f"{where}.devices[{i}].utilization_gpu"),
                 "memory_used_mb": _num(r.get("memory_used_mb"), f"{where}.devices[{i}].memory_used_mb")}
                for i, r in enumerate(rows)
            ],
            "sampled_at": now,
        }
    return {"allocations": out}


def peer_certificate(request) -> dict | None:
    """The client's certificate on a TLS connection (the agents' port); None on
    plain HTTP (loopback) or without one."""
    sock = getattr(getattr(request.connection, "stream", None), "socket", None)
    getpeercert = getattr(sock, "getpeercert", None)
    return getpeercert() if getpeercert is not None else None


class HostAPIHandler(APIHandler):
    def host_name(self, name: str) -> str:
        if not HOST_NAME.match(name):
            raise web.HTTPError(400, f"not a host name: {name!r}")
        return name

    def agent_body(self, name: str) -> dict:
        scopes = set(self.current_user.get("scopes") or ())
        if AGENT_SCOPE not in scopes and not self.is_admin:
            raise web.HTTPError(403, f"only GPU host agents ({AGENT_SCOPE}) may do this")
        # over the TLS port for agents, a host's certificate acts for that host only
        # (the agents' token is one for all hosts; the certificate is each host's own)
        cert = peer_certificate(self.request)
        if cert and name not in cert_names(cert):
            raise web.HTTPError(403, f"this client's certificate is for {', '.join(sorted(cert_names(cert)))}, "
                                f"not for host {name}; each agent uses its own host's certificate "
                                f"(gpuhub-certs issue DIR {name} --role agent)")
        return self.body()

    def answer(self, view: dict) -> None:
        state = self.pool.state
        self.send(
            {
                "state": view["state"].value,
                "shares": [allocation_json(a, state) for a in view["shares"]],
                "unknown": view["unknown"],
                # why each unknown session is not held (the agent stops and logs them)
                "fenced": [{"allocation": e["allocation"], "reason": e["reason"]}
                           for e in view.get("fenced", ())],
                "heartbeat_interval": self.allocator.heartbeat_interval,
            }
        )


class RegisterHandler(HostAPIHandler):
    async def post(self, name):
        name = self.host_name(name)
        data = self.agent_body(name)
        try:
            host = parse_host(name, data)
            running = parse_running(data)
            docker = parse_docker(data)
            details = parse_details(data)
            mps = parse_mps(data)
            check_hosts(self.pool.usage.pools, [(name, host.pools)])
        except (BadBody, PoolError) as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            view = await self.pool.register_host(
                host, running=running, docker=docker, details=details, mps=mps
            )
        except HostConflict as e:
            raise web.HTTPError(409, str(e)) from None
        log = self.allocator.log
        log.info(
            "host %s registered by its agent: %s, %i device(s), %i share(s)",
            name, view["state"], len(host.devices), len(view["shares"]),
        )
        if view["unknown"]:
            log.warning("host %s runs allocations the allocator does not hold there: %s; "
                        "fencing: its agent stops them, no placements there until then",
                        name, ", ".join(view["unknown"]))
        self.answer(view)


class HeartbeatHandler(HostAPIHandler):
    def post(self, name):
        name = self.host_name(name)
        data = self.agent_body(name)
        now = time.time()
        try:
            running = parse_running(data)
            usage = parse_usage(data, now)
        except BadBody as e:
            raise web.HTTPError(400, str(e)) from None
        try:
            mps = parse_mps(data)
        except BadBody as e:
            raise web.HTTPError(400, str(e)) from None
        view = self.pool.heartbeat(name, running=running, usage=usage, now=now, mps=mps)
        if view is None:
            raise web.HTTPError(404, f"host {name} is not registered (or was lost): register again")
        self.answer(view)


class DrainHandler(HostAPIHandler):
    async def post(self, name, action):
        name = self.host_name(name)
        if not self.is_admin:
            raise web.HTTPError(403, "only admins may drain or undrain a host")
        reason = self.reason()
        # with its audit entry, in one transaction
        if not await actions.set_drained(self.allocator, self.user_name, name, action == "drain", reason):
            raise web.HTTPError(404, f"no host {name}")
        self.send(host_json(name, self.pool.state, self.pool.info.get(name), viewer=None))


default_handlers = [
    (r"/hosts/([^/]+)/register", RegisterHandler),
    (r"/hosts/([^/]+)/heartbeat", HeartbeatHandler),
    (r"/hosts/([^/]+)/(drain|undrain)", DrainHandler),
]
