"""The allocator's background loops: lost hosts, reconciliation with the hub,
and the database lock. Each runs on the event loop; decisions are the pool's."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

from gpuhub.client import hub_api_items
from gpuhub.slurm import HOLDING, SQUEUE_FORMAT, parse_squeue

from .admin.actions import revoke
from .core.external import stale
from .core.jobs import is_job_server
from .core.reclaim import Share, allocation_utilisation, decide
from .pool.state import when


async def every(app, interval: float, fn, what: str, traceback: bool = True) -> None:
    """Await ``fn()`` every ``interval`` seconds (a sleep first), for ever; a
    failure is logged as "<what> failed" and the loop goes on. ``traceback``
    False: one line with the error, for the expected ones (a peer that does not
    answer) that would otherwise fill the log with tracebacks."""
    while True:
        await asyncio.sleep(interval)
        try:
            await fn()
        except Exception as e:
            if traceback:
                app.log.exception("%s failed", what)
            else:
                app.log.warning("%s failed: %s", what, e)


async def check_hosts(app, started: float) -> float | None:
    """Mark agent hosts without a recent heartbeat lost. Hosts get a full grace
    period after the allocator starts, so an allocator outage does not count as
    their loss. Returns the oldest heartbeat still alive."""
    now = time.time()
    threshold = app.missed_heartbeats * app.heartbeat_interval
    cutoff = now - threshold if now - threshold > started else 0.0
    for host, ids in await app.pool.mark_lost(cutoff, now):
        app.log.warning(
            "host %s missed %i heartbeats: marked lost; its allocations are lost: %s",
            host, app.missed_heartbeats, ", ".join(ids) or "none",
        )
    return app.pool.oldest_heartbeat()


async def watch_heartbeats(app) -> None:
    """Check for lost hosts at least every heartbeat_interval, and right when the
    oldest heartbeat expires, so a host is lost missed_heartbeats ×
    heartbeat_interval after its last heartbeat (plus a few ms)."""
    started = time.time()
    interval = app.heartbeat_interval
    threshold = app.missed_heartbeats * interval
    while True:
        delay = interval
        try:
            oldest = await check_hosts(app, started)
            if oldest is not None:
                expires = max(oldest, started) + threshold
                delay = min(interval, max(0.05, expires - time.time() + 0.01))
        except Exception:
            app.log.exception("checking the hosts' heartbeats failed")
        await asyncio.sleep(delay)


async def hub_servers(app) -> set[tuple[str, str]]:
    """(user, server name) of every server the hub runs or is starting, from its
    REST API (the service's token needs list:users and read:servers)."""
    return {
        (user["name"], name)
        async for user in hub_api_items(app.hub_api_url, app.api_token, "users", {"state": "active"})
        for name in (user.get("servers") or {})
    }


async def reconcile(app, now: float | None = None, servers: set | None = None) -> list[str]:
    """Release shares granted for hub servers that the hub does not run, once they
    are older than the grace period. Returns the released ids."""
    pool = app.pool
    now = time.time() if now is None else now
    candidates = [
        a for a in pool.live()
        if pool.hub_server.get(a.id) is not None and now - a.created > app.reconcile_grace
    ]
    if not candidates:
        return []
    if servers is None:
        servers = await hub_servers(app)
    released = []
    for a in candidates:
        server = pool.hub_server.get(a.id)
        if server is None or (a.user, server) in servers:
            continue
        if await pool.finish(a.id) is not None:
            released.append(a.id)
            app.log.warning(
                "released %s of %s: the hub runs no server %r for it (granted %.0f s ago; "
                "its answer never reached a spawner, or the server ended without releasing it)",
                a.id, a.user, server, now - a.created,
            )
    return released


async def reconcile_forever(app) -> None:
    if not app.reconcile_interval or not app.under_hub:
        return
    await every(app, app.reconcile_interval, lambda: reconcile(app),
                "reconciling shares with the hub", traceback=False)


# --- external allocations: Slurm ------------------------------------------------------


async def squeue(slurm_conf: str, timeout: float = 30) -> str:
    """``squeue``'s listing of every job (gpuhub.slurm.SQUEUE_FORMAT); raises
    RuntimeError when Slurm does not answer (then nothing is released)."""
    env = {**os.environ, "SLURM_CONF": slurm_conf} if slurm_conf else None
    proc = await asyncio.create_subprocess_exec(
        "squeue", "-h", "-o", SQUEUE_FORMAT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        raise RuntimeError(f"squeue did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"squeue failed (exit {proc.returncode}): {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def reconcile_slurm(app, listing: str | None = None, taken_at: float | None = None) -> list[str]:
    """Free the mirrors of Slurm jobs that no longer hold their GPUs (cancelled
    outside gpuhub, past their time limit, their node failed): compared with
    ``squeue`` (``listing``: its output, taken at ``taken_at``). Returns the
    released ids."""
    pool = app.pool
    mirrors = [a for a in pool.live() if a.source == "slurm"]
    if not mirrors:
        return []
    if listing is None:
        taken_at = time.time()
        listing = await squeue(app.slurm_conf)
    taken_at = time.time() if taken_at is None else taken_at
    holding = {line.job_id for line in parse_squeue(listing) if line.state in HOLDING}
    released = []
    for a in stale(mirrors, "slurm", holding, taken_at, app.slurm_reconcile_grace):
        if await pool.finish(a.id) is not None:
            released.append(a.id)
            app.log.warning("released %s of %s: its Slurm job %s no longer runs (squeue)", a.id, a.user, a.job)
    return released


async def reconcile_slurm_forever(app) -> None:
    if not app.slurm_reconcile_interval:
        return
    await every(app, app.slurm_reconcile_interval, lambda: reconcile_slurm(app),
                "reconciling external allocations with Slurm", traceback=False)


async def watch_lock(app, interval: float = 5.0) -> None:
    """An allocator that lost its hold on the database (a PostgreSQL session cut)
    must stop writing: it exits, and its supervisor starts one that waits."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if not await loop.run_in_executor(None, app.lock.alive):
            app.log.error("lost the database lock on %s: exiting", app.lock.describe())
            os._exit(3)


async def time_limits(app, now: float | None = None) -> tuple[list, list]:
    """Warn the shares whose run time ends within 15 and 5 minutes (the notice is
    on GET allocations/{id}; the lab panel and the hub show it) and end those past
    it (state "expired": the spawner's poll stops the session)."""
    warned, expired = await app.pool.expire_due(now)
    for a, minutes in warned:
        app.log.info("allocation %s of %s: %i minutes of its run time left", a.id, a.user, minutes)
    for a in expired:
        app.log.warning("allocation %s of %s: its run time (%g h) is over; ended", a.id, a.user, a.max_hours)
    return warned, expired


async def time_limits_forever(app) -> None:
    """Run time limits, and the queue's timer pass (estimates move with the clock,
    waits expire), every time_limit_interval."""
    async def both():
        await time_limits(app)
        await app.pool.schedule()

    await every(app, app.time_limit_interval, both, "the time-limit check or the queue's pass")


# --- idle reclaim ------------------------------------------------------------------------


def record_utilisation(app, now: float) -> None:
    """Append each live share's utilisation from its host's latest heartbeat to its
    history (memory only; a restarted allocator starts over, which only delays a
    reclaim), keeping one sample older than the longest policy window."""
    pool, history = app.pool, app.idle_history
    live = pool.state.allocations
    for aid in [aid for aid in history if aid not in live]:
        del history[aid]
    keep = app.reclaim_policies.longest_minutes * 60.0 + 2 * app.time_limit_interval
    for a in live.values():
        rec = pool.info.get(a.host)
        usage = rec.usage if rec is not None else None
        if not usage or "at" not in usage:
            continue
        h = history.setdefault(a.id, deque())
        if h and h[-1][0] >= usage["at"]:
            continue  # no heartbeat since the last pass
        h.append((usage["at"], allocation_utilisation(a.id, [s.device_uuid for s in a.shares], usage)))
        while len(h) > 1 and h[1][0] <= now - keep:
            h.popleft()


async def idle_reclaim(app, now: float | None = None) -> tuple[list, list]:
    """Warn the shares idle for (minutes − notice_minutes) through the time-limit
    notices' channel (GET allocations/{id} ``notice``: the lab panel shows it), and
    reclaim those idle for ``minutes`` whose notice is old enough: revoked by
    "idle-reclaim" (audited), so the spawner's poll stops the session and tells
    the user why. Returns (warned, reclaimed) allocations."""
    policies = app.reclaim_policies
    if not policies.enabled:
        return [], []
    pool = app.pool
    now = time.time() if now is None else now
    record_utilisation(app, now)
    shares = [
        Share(a.id, tuple(pool.groups.get(a.user, ())), tuple(app.idle_history.get(a.id, ())),
              (pool.notices.get(a.id) or {}).get("idle_at"), is_job_server(a.server))
        for a in pool.state.allocations.values()
    ]
    d = decide(shares, policies, bool(pool.queue), now)
    warned, reclaimed = [], []
    for aid in d.clear:
        notice = pool.notices.get(aid)
        if notice is not None:
            if notice.get("message") == notice.pop("idle_message", None):
                notice.pop("message", None)
            notice.pop("idle_at", None)
            app.log.info("allocation %s uses its GPU again (or nobody waits): idle notice withdrawn", aid)
    for aid, idle, p in d.warn:
        a = pool.state.allocations[aid]
        at = now + max(p.notice_minutes * 60.0, p.minutes * 60.0 - idle)
        message = (
            f"This session's GPU has been idle (under {p.threshold:.0%} utilisation) for "
            f"{idle / 60:.0f} min: it will be stopped at {when(at)} to free the GPU"
            f"{' for others who are waiting' if p.only_when_waiting else ''}, unless it uses the GPU "
            "again. Save your work."
        )
        notice = pool.notices.setdefault(aid, {"sent": []})
        notice.update(message=message, idle_message=message, idle_at=now, at=now)
        warned.append(a)
        app.log.info("allocation %s of %s: GPU idle for %.0f min; noticed", aid, a.user, idle / 60)
    for aid, idle, p in d.reclaim:
        done = await revoke(app, "idle-reclaim", aid, f"reclaimed: GPU idle for {idle / 60:.0f} min")
        app.idle_history.pop(aid, None)
        if done is not None:
            reclaimed.append(done)
    return warned, reclaimed


async def idle_reclaim_forever(app) -> None:
    """Idle reclaim every time_limit_interval (only when a policy is configured)."""
    if not app.reclaim_policies.enabled:
        return
    await every(app, app.time_limit_interval, lambda: idle_reclaim(app), "the idle-reclaim check")
