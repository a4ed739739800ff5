"""Idle reclaim: which GPU shares to warn and which to take back because their GPUs
stayed (nearly) unused — pure decisions over plain data.

A share's utilisation comes from its host agent's heartbeats. Where the agent
reports the allocation's own use (its processes' utilisation, agent.owners) and
could attribute every process on the share's devices (``complete``), that is the
figure: a fraction is judged by its own processes. Else it is the highest
utilisation of its devices — for a fraction, which shares its device, an upper
bound: it is seen idle only when the whole device is, never reclaimed for
someone else's idleness.

Per share, the policy of its user's groups applies (the most lenient one when
several groups have one: off beats on, else the longest ``minutes``), else the
default; no policy: never reclaimed. A share whose samples were all under
``threshold`` for ``minutes`` (and, with ``only_when_waiting``, while some
request waits in the queue) is warned ``notice_minutes`` before, then reclaimed —
never sooner than ``notice_minutes`` after its notice. A share that computes
again, or that nobody waits for any more, has its notice withdrawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FIELDS = ("threshold", "minutes", "only_when_waiting", "notice_minutes")


@dataclass(frozen=True)
class Policy:
    #: utilisation (0–1) under which a sample counts as idle
    threshold: float = 0.05
    #: how long (minutes) all samples must be idle before the share is reclaimed
    minutes: float = 60.0
    #: reclaim only while some request waits in the queue
    only_when_waiting: bool = True
    #: how long (minutes) before the reclaim the session is warned
    notice_minutes: float = 10.0


@dataclass(frozen=True)
class Policies:
    """The default policy (None: off) and per-group ones (None: off for that group)."""

    default: Policy | None = None
    groups: dict[str, Policy | None] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.default is not None or any(p is not None for p in self.groups.values())

    @property
    def longest_minutes(self) -> float:
        ps = [p for p in (self.default, *self.groups.values()) if p is not None]
        return max((p.minutes for p in ps), default=0.0)

    def resolve(self, groups) -> Policy | None:
        """The policy for a user in ``groups``: the most lenient group entry, else the default."""
        entries = [self.groups[g] for g in groups if g in self.groups]
        if not entries:
            return self.default
        if any(p is None for p in entries):
            return None
        return max(entries, key=lambda p: (p.minutes, p.notice_minutes, p.only_when_waiting, -p.threshold))


def parse_policy(value, where: str) -> Policy | None:
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object with {', '.join(FIELDS)} (or null: off)")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    p = Policy(**value)
    for name in ("threshold", "minutes", "notice_minutes"):
        v = getattr(p, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
            raise ValueError(f"{where}.{name} must be a number ≥ 0")
    if not p.threshold <= 1:
        raise ValueError(f"{where}.threshold is a utilisation from 0 to 1 (e.g. 0.05), got {p.threshold}")
    if not p.minutes > 0:
        raise ValueError(f"{where}.minutes must be more than 0")
    if not isinstance(p.only_when_waiting, bool):
        raise ValueError(f"{where}.only_when_waiting must be true or false")
    return p


def parse_policies(config: dict) -> Policies:
    """``{"default": {...} | null, "groups": {"name": {...} | null}}`` → Policies
    (missing fields take Policy's defaults). Raises ValueError."""
    if not isinstance(config, dict):
        raise ValueError("idle_reclaim must be an object")
    unknown = sorted(set(config) - {"default", "groups"})
    if unknown:
        raise ValueError(f"idle_reclaim: unknown key(s) {', '.join(unknown)}; allowed: default, groups")
    groups = config.get("groups") or {}
    if not isinstance(groups, dict):
        raise ValueError("idle_reclaim.groups must be an object {group: policy}")
    return Policies(
        parse_policy(config.get("default"), "idle_reclaim.default"),
        {str(g): parse_policy(v, f"idle_reclaim.groups.{g}") for g, v in groups.items()},
    )


def share_utilisation(device_uuids, samples: list[dict]) -> float | None:
    """A share's utilisation (0–1) in one heartbeat: the highest of its devices'
    ``utilization_gpu`` (%); None when a device has no sample."""
    by_uuid = {d.get("uuid"): d.get("utilization_gpu") for d in samples}
    values = [by_uuid.get(u) for u in device_uuids]
    if not values or any(v is None for v in values):
        return None
    return max(values) / 100.0


def allocation_utilisation(allocation_id: str, device_uuids, usage: dict) -> float | None:
    """A share's utilisation (0–1) in one heartbeat (``usage``: the host's latest,
    with ``devices`` and, where the agent tells, ``allocations``): its own
    processes' when the agent attributed every process on its devices, else its
    devices' (share_utilisation)."""
    own = (usage.get("allocations") or {}).get(allocation_id)
    if own and own.get("complete", True) and own.get("utilization_gpu") is not None:
        return float(own["utilization_gpu"]) / 100.0
    return share_utilisation(device_uuids, usage.get("devices") or ())


@dataclass(frozen=True)
class Share:
    id: str
    groups: tuple[str, ...]
    #: (time, utilisation 0–1 or None: unknown), oldest first
    samples: tuple[tuple[float, float | None], ...]
    #: when its idle notice was given (None: not warned)
    noticed_at: float | None = None
    #: a batch job's share (``gpuhub run``): never reclaimed for idleness, as it
    #: ends by itself when its command does (and its max_hours bounds it)
    batch: bool = False


@dataclass
class Decision:
    #: (share id, idle seconds, policy): give the notice now
    warn: list = field(default_factory=list)
    #: (share id, idle seconds, policy): reclaim now
    reclaim: list = field(default_factory=list)
    #: share ids whose notice is withdrawn (busy again, or nobody waits)
    clear: list = field(default_factory=list)


def idle_since(samples, threshold: float) -> float | None:
    """The time of the first sample of the trailing run of idle samples (None: the
    latest sample is not idle, or there is none)."""
    since = None
    for t, util in reversed(samples):
        if util is None or util >= threshold:
            break
        since = t
    return since


def decide(shares: list[Share], policies: Policies, waiting: bool, now: float) -> Decision:
    out = Decision()
    for s in shares:
        p = policies.resolve(s.groups)
        since = idle_since(s.samples, p.threshold) if p is not None else None
        allowed = p is not None and (waiting or not p.only_when_waiting) and not s.batch
        if since is None or not allowed:
            if s.noticed_at is not None:
                out.clear.append(s.id)
            continue
        idle = now - since
        if s.noticed_at is None:
            if idle >= max(0.0, p.minutes - p.notice_minutes) * 60.0:
                out.warn.append((s.id, idle, p))
        elif idle >= p.minutes * 60.0 and now - s.noticed_at >= p.notice_minutes * 60.0:
            out.reclaim.append((s.id, idle, p))
    return out
