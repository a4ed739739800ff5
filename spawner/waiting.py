"""What the one waiting in the queue is shown: pure builders over the allocator's
answers (a queued request's body, POST estimates' answer).

The spawn-pending page (hub_config/templates/spawn_pending.html) and the hub's home
page read :func:`waiting_view`'s dict: from each progress event of a queued spawn
(``gpuhub_queue``) and from ``GPUSpawner.queue_state``. Its "would start sooner"
lines come from the same estimates as the spawn form's (POST estimates), for the
alternatives :func:`alternatives` lists: smaller shares of the same model, and the
same share of every other model.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from gpu_allocator.core.model import Request
from gpu_allocator.core.queue import describe

from .options import clock

#: how many alternatives are shown at most (the soonest first)
MAX_SOONER = 3
#: an alternative counts as sooner when it starts at least this much earlier (s)
SOONER_MARGIN = 300.0


def ordinal(n: int) -> str:
    """1 → "1st", 2 → "2nd", 11 → "11th", 23 → "23rd"."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def share_label(gpus: str, models=(), units_per_gpu: int = 20) -> str:
    """"0.5 GPU", "2 GPUs", "1 × L4", "0.25 × A100": a share as the queue says it."""
    units = int(Fraction(gpus) * units_per_gpu)
    return describe(Request("-", units, models=frozenset(models)), units_per_gpu)


def queue_message(queued: dict) -> str:
    """"queued: 3rd for 2 × A100, expected start 14:20 (at the latest 15:05)"."""
    per = queued.get("units_per_gpu") or 20
    what = describe(Request("-", queued.get("units") or 0, models=frozenset(queued.get("gpu_model") or ())), per)
    pos = queued.get("position")
    head = f"queued: {ordinal(pos)} for {what}" if pos else f"queued for {what}"
    eta, latest = clock(queued.get("eta")), clock(queued.get("eta_latest"))
    if eta:
        head += f", expected start {eta}"
        if latest and latest != eta:
            head += f" (at the latest {latest})"
    elif queued.get("reason"):
        head += f" — {queued['reason']}"
    if eta and queued.get("reason") and not queued["reason"].startswith("waiting"):
        head += f" — {queued['reason']}"
    return head


def alternatives(queued: dict, offered: list[str], models: list[str]) -> list[dict]:
    """Requests that might start sooner than ``queued`` (its body from the
    allocator): each smaller share of ``offered`` (the form's GPU choices) with the
    same models, and the same share on each other model of the pool; the same CPU,
    memory and run time (POST estimates' ``requests``)."""
    want = Fraction(queued["gpus"])
    base = {"cpu": queued.get("cpu"), "mem": queued.get("mem"), "max_hours": queued.get("max_hours")}
    mine = list(queued.get("gpu_model") or ())
    out = []
    for c in offered:
        if c not in ("0", "custom") and Fraction(c) < want:
            out.append({**base, "gpus": c, "gpu_model": mine[0] if len(mine) == 1 else None})
    for m in models:
        if m not in mine:
            out.append({**base, "gpus": queued["gpus"], "gpu_model": m})
    return out


def _start(e: dict, now: float) -> float | None:
    if e.get("error") or (e.get("quota") or {}).get("verdict") == "hard":
        return None
    if e.get("starts_now"):
        return now
    if e.get("eta"):
        return datetime.fromisoformat(e["eta"]).timestamp()
    return None


def sooner(queued: dict, candidates: list[dict], answer: dict, now: float) -> list[dict]:
    """The alternatives (``candidates`` and POST estimates' ``answer`` for them)
    that would start at least SOONER_MARGIN earlier than ``queued``'s expected
    start, soonest first: ``{"share", "gpus", "gpu_model", "starts_now", "eta"}``."""
    mine = datetime.fromisoformat(queued["eta"]).timestamp() if queued.get("eta") else None
    found = []
    for req, e in zip(candidates, answer.get("estimates") or ()):
        t = _start(e, now)
        if t is None or (mine is not None and t > mine - SOONER_MARGIN):
            continue
        models = [req["gpu_model"]] if req.get("gpu_model") else []
        per = queued.get("units_per_gpu") or 20
        found.append((t, {"share": share_label(req["gpus"], models, per), "gpus": req["gpus"],
                          "gpu_model": req.get("gpu_model"), "starts_now": bool(e.get("starts_now")),
                          "eta": e.get("eta")}))
    found.sort(key=lambda x: x[0])
    return [f for _, f in found[:MAX_SOONER]]


def waiting_view(queued: dict, soon: list[dict] = ()) -> dict:
    """What the waiting page and the home page show of a queued request: its
    position, expected start, at the latest (ISO times; the browser shows them in
    its own clock), what it waits for, and what would start sooner."""
    models = list(queued.get("gpu_model") or ())
    return {
        "id": queued.get("id"),
        "share": share_label(queued.get("gpus") or "0", models, queued.get("units_per_gpu") or 20),
        "position": queued.get("position"),
        "position_text": ordinal(queued["position"]) if queued.get("position") else None,
        "eta": queued.get("eta"),
        "eta_latest": queued.get("eta_latest"),
        "eta_clock": clock(queued.get("eta")),
        "eta_latest_clock": clock(queued.get("eta_latest")),
        "reason": queued.get("reason") or "",
        "sooner": list(soon),
    }
