"""When a request would start, holding nothing: the spawn form's "expected
start" (estimate), the spawner's validation (dry_run), POST estimates
(start_estimate), and whether an extension would delay the queue
(delays_queue). Simulations of the queue (core.queue.Sim) on the live state."""

from __future__ import annotations

import time

from ..core.model import Allocation, Request, format_gpus
from ..core.placement import NoFit, place
from ..core.pools import may_use
from ..core.queue import Queued, Sim, run_of, scaled_running
from ..core.reservations import iso
from .queue import Scheduler
from .reservations import Reservations
from .state import LiveState
from .usage import Usage


#: a "starts now" left undecided: the call's time budget was spent
UNDECIDED = object()
#: how many hosts "lands" names at most ("any of …")
LANDS_HOSTS = 8


class Estimator:
    """Start estimates from simulations of the queue; changes nothing."""

    def __init__(self, live: LiveState, usage: Usage, scheduler: Scheduler, bookings: Reservations):
        self.live = live
        self.usage = usage
        self.scheduler = scheduler
        self.bookings = bookings

    def _promised(self) -> list[Queued]:
        """Waiting requests with an 'at the latest' start, in queue order."""
        return [q for q, e in self.scheduler.queued() if e is not None and e.latest is not None]

    def estimate(self, req: Request, now: float | None = None) -> tuple[float | None, float | None]:
        """(expected, latest) start of ``req`` if it joined the queue behind every
        waiting request (the spawn form's "expected start"); nothing is held."""
        now = time.time() if now is None else now
        sim = Sim(self.live.state)
        mine = [*self._promised(), Queued("estimate", req, now)]
        rules = self.bookings.rules(now)
        run = self.live.running()
        latest = rules.simulate(sim, [run_of(a, max(now, end)) for a, end in run], mine, now)[-1]
        ratio = self.usage.ratio
        if ratio >= 1.0 or latest is None:
            return latest, latest
        expected = rules.simulate(sim, scaled_running(run, now, ratio), mine, now, ratio)[-1]
        return (min(expected, latest) if expected is not None else latest), latest

    def delays_queue(self, a: Allocation, new_end: float, now: float) -> list[str]:
        """Ids of waiting requests whose latest start would move if ``a`` ran until
        ``new_end`` instead of its current end."""
        waiting = self._promised()
        if not waiting:
            return []
        sim = Sim(self.live.state)
        running = self.live.running()
        base = [run_of(x, max(now, end)) for x, end in running]
        longer = [run_of(x, max(now, new_end)) if x.id == a.id else r for (x, _), r in zip(running, base)]
        rules = self.bookings.rules(now)
        before = rules.simulate(sim, base, waiting, now)
        after = rules.simulate(sim, longer, waiting, now)
        return [q.id for q, b, c in zip(waiting, before, after)
                if b is not None and (c is None or c > b + 1e-6)]

    def dry_run(self, req: Request, groups=None) -> dict:
        """What a request would get now, holding nothing (the spawner's validation):
        whether it fits now, its quota's verdict, and when it would start."""
        per_gpu = self.live.units_per_gpu
        out = {
            "valid": True,
            "request": {
                "user": req.user,
                "gpus": format_gpus(req.units, per_gpu),
                "units": req.units,
                "units_per_gpu": per_gpu,
                "cpu": f"{req.cpu:g}",
                "mem": f"{req.mem_mb}M",
                "max_hours": req.max_hours,
                "gpu_model": sorted(req.models),
                "pool": req.pool,
            },
        }
        out.update(self.start_estimate(req, groups))
        return out

    def where(self, req: Request, landed) -> dict:
        """Where ``req`` would land: the host and GPU model it starts on now
        (``landed``, a placement), else the up hosts in its pools that could hold
        it were they empty ("any of …")."""
        state = self.live.state
        if landed is not None:
            models = sorted({state.devices[s.device_uuid].model for s in landed.shares})
            return {"host": landed.host, "models": models, "hosts": [landed.host], "more_hosts": 0}
        per = self.live.units_per_gpu

        def could_hold(h) -> bool:  # were it empty
            devices = [d for d in h.devices if not req.models or d.model in req.models]
            return (h.cpus >= req.cpu and h.memory_mb >= req.mem_mb and may_use(h.pools, req.pools)
                    and (not req.units or len(devices) >= max(1, req.units // per))
                    and (req.units >= per or not req.units or h.fractions))

        hosts = [name for name in state.up_names() if could_hold(state.hosts[name])]
        models = sorted({d.model for name in hosts for d in state.hosts[name].devices
                         if not req.models or d.model in req.models})
        return {"host": None, "models": models, "hosts": hosts[:LANDS_HOSTS],
                "more_hosts": max(0, len(hosts) - LANDS_HOSTS)}

    def start_estimate(self, req: Request, groups=None, now: float | None = None,
                       memo: dict | None = None, deadline: float | None = None) -> dict:
        """Whether ``req`` fits now, its quota's verdict and when it would start
        (the queue's estimate); nothing is held or changed. What starts now (it
        fits, the quota allows it, nobody waits) is not simulated.

        Several requests at once (POST estimates): ``memo`` shares one simulation
        among requests that differ only in max_hours — a request's own run time
        does not move its estimated start (it is simulated last, behind every
        waiting request); a simulation that would end past ``deadline``
        (time.perf_counter(), judged by the last one's duration) does not run
        after the first, and that start is not estimated (``estimated``: false)."""
        now = time.time() if now is None else now
        usage, waiting = self.usage, self.scheduler.queue
        groups = tuple(groups) if groups is not None else usage.groups.get(req.user, ())
        req = usage.resolve_pools(req, groups)  # as submit does (PoolError: not open to them)
        out = {}
        try:
            found = place(self.live.state, req)
            out.update(fits_now=True, host=found.host)
        except NoFit as e:
            out.update(fits_now=False, message=str(e))
        limits = usage.quotas.resolve(req.user, groups)
        verdict, _ = self.scheduler.quota_verdict(req, groups, now)  # its pools' quotas too
        wait = limits.max_wait_hours if limits.max_wait_hours is not None else self.scheduler.max_wait_hours
        out["quota"] = {"verdict": verdict.verdict, "reason": verdict.reason}
        # "starts now" is what submit would do now, decided the same way (with a
        # pass of its own where requests wait), not a guess from placement alone;
        # past the call's budget it is not decided (nor claimed)
        estimated = True
        landed = None
        if verdict.ok and out["fits_now"]:
            key = ("now", req.units, req.models, req.cpu, req.mem_mb, req.max_hours, req.pools)
            if memo is None:
                landed = self.scheduler.placement_now(req, groups, now)
            else:
                if key not in memo:
                    started = time.perf_counter()
                    if waiting and None in memo and deadline is not None and started + memo[None] > deadline:
                        memo[key] = UNDECIDED
                    else:
                        memo[key] = self.scheduler.placement_now(req, groups, now)
                        if waiting:
                            memo[None] = time.perf_counter() - started
                landed = memo[key]
                if landed is UNDECIDED:
                    landed, estimated = None, False
        starts_now = landed is not None
        out["lands"] = self.where(req, landed)
        if starts_now or verdict.verdict == "hard":
            expected = latest = now if starts_now else None
        elif memo is None:
            expected, latest = self.estimate(req, now)
        else:
            shape = (req.units, req.models, req.cpu, req.mem_mb, req.pools)
            if shape not in memo:
                started = time.perf_counter()
                # (a call's first always runs; memo[None]: how long its last one took)
                if None in memo and deadline is not None and started + memo[None] > deadline:
                    memo[shape] = None
                else:
                    memo[shape] = self.estimate(req, now)
                    memo[None] = time.perf_counter() - started
            estimated = estimated and memo[shape] is not None
            expected, latest = memo[shape] or (None, None)
        out["queue"] = {
            "starts_now": starts_now,
            "estimated": estimated,
            "waiting": len(waiting),
            "eta": iso(expected),
            "eta_latest": iso(latest),
            "max_wait_hours": wait,
        }
        return out
