"""The allocator at site scale: decisions in process, committed grants through the
store (SQLite and PostgreSQL), and allocate+release pairs over REST through the
hub's proxy — one run, several pool sizes.

The pool: ``gpus / 8`` hosts × 8 GPUs (4 NVLink pairs each, 128 cores, 1 TiB),
filled with one live allocation per GPU (``--live-per-gpu``) from a mixed stream:
60% fractions, 30% one GPU, 10% 2–8 GPUs, 1–8 cores, 4–32 GiB
(benchmarks/placement_speed.py makes both).

- **in-process**: ``place()`` alone (placement_speed.decisions_per_second);
- **store**: the allocator's LivePool on a database already holding the live
  allocations; ``--clients`` concurrent tasks each grant then release, every grant
  answered only after its commit (group commit shares transactions);
- **REST**: a real JupyterHub with the demo config and configurable-http-proxy,
  its allocator loading the same generated pool (GPUHUB_INVENTORY); 8 client
  threads each POST allocations then DELETE it through the proxy with the
  spawner's token (keep-alive connections, every answer checked); with
  ``--queued N``, N requests of one user wait meanwhile for hosts of a model of
  their own (the queue's pass must not run per request; see LivePool.QueueView).

    python benchmarks/allocator_scale.py [--gpus 1000,10000,50000] [--rest-gpus 10000]
        [--queued 0,32] [--client http.client|requests] [--seconds 10] [--postgres-url URL] [--json]

Targets (issue #8, 10,000 GPUs, this 2-core machine): ≥ 5,000 decisions/s with p99
≤ 5 ms in process; ≥ 500 committed grants/s with p99 ≤ 50 ms through the store; ≥ 250
allocate+release pairs/s with p99 ≤ 100 ms over REST.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from placement_speed import decisions_per_second, make_pool, request  # noqa: E402

from gpu_allocator.core.model import Allocation  # noqa: E402
from gpu_allocator.core.placement import NoFit, place  # noqa: E402
from gpu_allocator.pool import LivePool  # noqa: E402
from gpu_allocator.store.ledger import Insert, Ledger, PutHost  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def filled_state(gpus: int, live: int, seed: int = 7, fill: float = 1.0):
    """The generated pool with up to ``live`` allocations placed by the real
    policy, stopping once ``fill`` of the GPU capacity is held (the mixed stream
    averages ~1.1 GPU per allocation, so a full pool refuses nearly everything)."""
    rng = random.Random(seed)
    state = make_pool(gpus)
    per = state.units_per_gpu
    cap = fill * gpus * per
    n = 0
    while (len(state.allocations) < live and n < 4 * live
           and gpus * per - sum(state.free.values()) < cap):
        n += 1
        r = request(rng, per)
        try:
            p = place(state, r)
        except NoFit:
            continue
        state.grant(Allocation(f"seed{n:07d}", f"user{n % 200}", p.host, r.units, r.cpu,
                               r.mem_mb, 8.0, p.shares, created=time.time()))
    return state


def write_state(url: str, state, source: str = "inventory") -> None:
    """Put the generated pool and its allocations into a fresh database."""
    ledger = Ledger(url, state.units_per_gpu)
    hosts = list(state.hosts.values())
    for i in range(0, len(hosts), 500):
        ledger.write([PutHost(h, source) for h in hosts[i:i + 500]])
    allocations = list(state.allocations.values())
    for i in range(0, len(allocations), 2000):
        ledger.write([Insert(a) for a in allocations[i:i + 2000]])
    ledger.close()


async def store_run(url: str, seconds: float, clients: int, seed: int = 3) -> dict:
    loop = asyncio.get_running_loop()
    ledger = await loop.run_in_executor(None, Ledger, url, 20)
    pool = LivePool(ledger, 20)
    started = time.perf_counter()
    await pool.load()
    load_s = time.perf_counter() - started
    rng = random.Random(seed)
    grant_ms: list[float] = []
    release_ms: list[float] = []
    refused = 0
    stop = time.perf_counter() + seconds
    commits0 = pool.commits

    async def client(i: int):
        nonlocal refused
        while time.perf_counter() < stop:
            r = request(rng, 20)
            t0 = time.perf_counter()
            try:
                a, _ = await pool.grant(r)
            except NoFit:
                refused += 1
                continue
            t1 = time.perf_counter()
            await pool.finish(a.id)
            t2 = time.perf_counter()
            grant_ms.append(1000 * (t1 - t0))
            release_ms.append(1000 * (t2 - t1))

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    commits = pool.commits - commits0
    pool.close()
    ledger.close()
    return {
        "load_s": round(load_s, 2),
        "grants_per_s": round(len(grant_ms) / wall, 1),
        "pairs_per_s": round(len(release_ms) / wall, 1),
        "grant_p50_ms": round(percentile(grant_ms, 0.5), 2),
        "grant_p99_ms": round(percentile(grant_ms, 0.99), 2),
        "release_p99_ms": round(percentile(release_ms, 0.99), 2),
        "refused": refused,
        "writes_per_commit": round((len(grant_ms) + len(release_ms)) / max(commits, 1), 1),
    }


def postgres_database(base_url: str):
    from sqlalchemy import create_engine, text

    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    name = f"gpuhub_bench_{secrets.token_hex(4)}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base_url.rsplit("/", 1)[0] + "/" + name, drop


def inventory_yaml(state) -> str:
    lines = ["hosts:"]
    for h in state.hosts.values():
        lines += [f"  - name: {h.name}", f"    cpus: {h.cpus:g}", f"    memory: {h.memory_mb}M", "    gpus:"]
        for d in h.devices:
            lines += [f"      - model: {d.model}", f"        memory: {d.memory_mb}M", "        count: 1",
                      f"        nvlink_island: {d.island}", f"        uuids: [{d.uuid}]"]
    return "\n".join(lines) + "\n"


#: the model of the hosts the --queued scenario fills (no other host has it)
QUEUE_MODEL = "L40S"


def add_queue_hosts(state, waiting: int, now: float) -> str:
    """For ``--queued N``: hosts of a model of their own (QUEUE_MODEL), every GPU held
    for a day by the user whose N requests will wait for them ("waiter"). Their
    running shares make that user's fair-share usage the largest, so the clients'
    requests are ordered ahead of the waiting ones, and fit elsewhere."""
    from gpu_allocator.core.model import Device, Host, Share

    hosts = max(1, -(-waiting // 16))
    for h in range(hosts):
        name = f"qhost{h:03d}"
        devs = tuple(Device(name, i, f"{name}/{i}", QUEUE_MODEL, 49152, f"nv{i // 2}") for i in range(8))
        state.put_host(Host(name, devs, 128.0, 1024 * 1024))
        for d in devs:
            state.grant(Allocation(f"q{name}{d.index}", "waiter", name, state.units_per_gpu, 1.0, 4096, 24.0,
                                   (Share(d.uuid, state.units_per_gpu),), created=now))
    return "waiter"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rest_run(gpus: int, live: int, seconds: float, threads: int = 8, fill: float = 1.0,
             queued: int = 0, client_kind: str = "http.client") -> dict:
    """Allocate+release pairs through the hub's proxy with the spawner's token,
    ``threads`` clients, each answer checked (201 with an id, then 200 with
    state "released"). ``queued``: that many requests of one user wait meanwhile
    (add_queue_hosts). ``client_kind``: http.client (one keep-alive connection per
    thread: the clients share the machine's cores with the hub, so a light client
    measures more of the server) or requests (Sessions, as before)."""
    import http.client
    from urllib.parse import urlsplit

    import requests

    from tests.support import API, Hub, pids_with_cmdline, wait_for

    state = filled_state(gpus, live, fill=fill)
    if queued:
        add_queue_hosts(state, queued, time.time())
    work = Path(tempfile.mkdtemp(prefix="gpuhub-bench-"))
    (work / "inventory.yaml").write_text(inventory_yaml(state))
    data = work / "data"
    data.mkdir()
    write_state(f"sqlite:///{data / 'gpu_allocator.sqlite'}", state)
    hub = Hub(work, config={"GPUAllocator": {"inventory_file": str(work / "inventory.yaml"),
                                             "reconcile_interval": 0.0}})
    hub.start(timeout=180)
    try:
        token = hub.spawner_token
        url = hub.url + API
        auth = {"Authorization": f"token {token}"}
        wait_for(lambda: len(requests.get(url + "/allocations", headers=auth,
                                          timeout=60).json()["allocations"]) >= len(state.allocations),
                 120, "the allocator to load the pool")
        for i in range(queued):
            r = requests.post(url + "/allocations", headers=auth, timeout=60, json={
                "user": "waiter", "gpus": "1", "gpu_model": [QUEUE_MODEL], "max_hours": 8})
            assert r.status_code == 202, (r.status_code, r.text[:200])
        if queued:
            waiting = requests.get(url + "/allocations?user=waiter", headers=auth, timeout=60).json()["queued"]
            assert len(waiting) == queued, len(waiting)
        pair_ms: list[float] = []
        post_ms: list[float] = []
        errors: list[str] = []
        refused = [0]
        stop = time.perf_counter() + seconds
        lock = threading.Lock()
        parts = urlsplit(hub.url)
        path = parts.path + API

        def http_client():
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            headers = {**auth, "Content-Type": "application/json"}

            def call(method, where, body=None):
                conn.request(method, path + where, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()

            return call

        def requests_client():
            s = requests.Session()
            s.headers.update(auth)

            def call(method, where, body=None):
                r = s.request(method, url + where, data=body, timeout=30,
                              headers={"Content-Type": "application/json"} if body else None)
                return r.status_code, r.content

            return call

        def client(i: int):
            rng = random.Random(i)
            call = (http_client if client_kind == "http.client" else requests_client)()
            while time.perf_counter() < stop:
                r = request(rng, 20)
                units = r.units
                gpus_text = str(units // 20) if units % 20 == 0 else f"{units / 20:.2f}".rstrip("0")
                body = json.dumps({"user": f"bench{i}", "gpus": gpus_text, "cpu": r.cpu, "mem": f"{r.mem_mb}M",
                                   "queue": False})  # now or never: the decision path, not waiting
                t0 = time.perf_counter()
                status, text = call("POST", "/allocations", body)
                t1 = time.perf_counter()
                if status == 409:
                    with lock:
                        refused[0] += 1
                    continue
                if status != 201:
                    with lock:
                        errors.append(f"{status} {text[:100]!r}")
                    continue
                status, text = call("DELETE", f"/allocations/{json.loads(text)['id']}")
                t2 = time.perf_counter()
                with lock:
                    if status != 200 or json.loads(text)["state"] != "released":
                        errors.append(f"DELETE {status} {text[:100]!r}")
                    post_ms.append(1000 * (t1 - t0))
                    pair_ms.append(1000 * (t2 - t0))

        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        # CPU per pair of each party: what the load of the machine (shared) does not change much
        parties = {
            "allocator": hub.allocator_pids(),
            "proxy": pids_with_cmdline("configurable-http-proxy", f"--port\0{hub.port}\0"),
        }
        cpu0 = {k: cpu_seconds(v) for k, v in parties.items()}
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t0
        client_cpu = time.process_time() - client_cpu0
        cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in parties.items()}
        pairs = max(len(pair_ms), 1)
        if queued:  # they still wait: the clients' grants went ahead without delaying them
            still = requests.get(url + "/allocations?user=waiter", headers=auth, timeout=60).json()["queued"]
            if len(still) != queued:
                errors.append(f"{queued - len(still)} waiting request(s) left the queue")
        return {
            "queued": queued,
            "client": client_kind,
            "pairs_per_s": round(len(pair_ms) / wall, 1),
            "pair_p50_ms": round(percentile(pair_ms, 0.5), 1),
            "pair_p99_ms": round(percentile(pair_ms, 0.99), 1),
            "post_p99_ms": round(percentile(post_ms, 0.99), 1),
            "refused": refused[0],
            "cpu_ms_per_pair": {"allocator": round(1000 * cpu["allocator"] / pairs, 2),
                                "proxy": round(1000 * cpu["proxy"] / pairs, 2),
                                "clients": round(1000 * client_cpu / pairs, 2)},
            "errors": len(errors),
            "first_errors": errors[:3],
        }
    finally:
        hub.stop()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus", default="1000,10000,50000")
    ap.add_argument("--rest-gpus", default="10000", help="pool sizes for the REST part ('' = skip)")
    ap.add_argument("--live-per-gpu", type=float, default=1.0)
    ap.add_argument("--fill", type=float, default=0.8,
                    help="for the store and REST parts: stop filling at this share of GPU capacity "
                         "(1.0: as full as the live count makes it; then almost every request is refused)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16, help="concurrent store clients")
    ap.add_argument("--postgres-url", default=os.environ.get("GPUHUB_TEST_POSTGRES_URL", ""),
                    help="a PostgreSQL database the benchmark may create databases from")
    ap.add_argument("--queued", default="0",
                    help="REST part: runs with that many requests of one user waiting for hosts of "
                         "their own (comma-separated, e.g. 0,32)")
    ap.add_argument("--client", choices=("http.client", "requests"), default="http.client",
                    help="REST part: the clients' HTTP library")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    results: dict = {"in_process": [], "store_sqlite": [], "store_postgresql": [], "rest": []}

    def show(kind, row):
        if not a.json:
            print(f"{kind:<17} " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    for g in (int(x) for x in a.gpus.split(",") if x):
        live = int(g * a.live_per_gpu)
        row = decisions_per_second(g, live, min(a.seconds, 5.0))
        results["in_process"].append(row)
        show("in-process", row)
        state = filled_state(g, live, fill=a.fill)
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.sqlite"
            write_state(url, state)
            row = {"gpus": g, "live": len(state.allocations),
                   **asyncio.run(store_run(url, a.seconds, a.clients))}
            results["store_sqlite"].append(row)
            show("store sqlite", row)
        if a.postgres_url:
            url, drop = postgres_database(a.postgres_url)
            try:
                write_state(url, state)
                row = {"gpus": g, "live": len(state.allocations),
                       **asyncio.run(store_run(url, a.seconds, a.clients))}
            finally:
                drop()
            results["store_postgresql"].append(row)
            show("store postgresql", row)
    for g in (int(x) for x in a.rest_gpus.split(",") if x):
        for n in (int(x) for x in a.queued.split(",") if x):
            row = {"gpus": g, **rest_run(g, int(g * a.live_per_gpu), a.seconds, fill=a.fill, queued=n,
                                         client_kind=a.client)}
            results["rest"].append(row)
            show("REST (8 clients)", row)
    if a.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
