"""Profiles: named spawn choices an admin declares per hub group, as KubeSpawner's
``profile_list`` and Backend.AI's session templates.

Pure functions over plain data (no spawner, no hub):

- :func:`parse_profiles` checks ``c.GPUSpawner.profiles`` once, with errors that
  name the profile, the field and what is allowed (:class:`ProfileError`);
- :func:`visible` says which profiles a user's hub groups see;
- :func:`resolve` turns a spawn request (``{"profile": "slug", …overrides}``,
  from the form or JupyterHub's REST API) into the session's options, refusing
  overrides the profile does not allow (:class:`RequestError`, a 400).

Amounts are read with the allocator's own parsers (gpu_allocator.core.validation)
for their form only; whether the pool can hold them (quantum, host sizes,
``max_hours`` limit) stays the allocator's dry run's to say, the one validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpu_allocator.core.validation import (
    RequestError, check_keys, parse_cpu, parse_gpus, parse_mem, parse_models, parse_text,
)
from gpuhub.numbers import NumberError, exact

#: the choice of free values, where allowed (GPUSpawner.allow_custom)
CUSTOM = "custom"
#: what a profile may set for its session, in the order the form shows them; its
#: ``overrides`` name those of them a user may change
FIELDS = ("gpus", "gpu_model", "cpu", "mem", "max_hours", "pool", "image", "vfolders")
#: the keys of a profile
KEYS = frozenset({"slug", "display_name", "description", "groups", "default", "overrides", "choices",
                  "environment", *FIELDS})
#: keys a request carries that are the spawner's own record, never overrides
RECORDED = frozenset({"profile", "summary"})

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: variables the hub sets for the share and the server: a profile may not replace them
RESERVED_ENV = ("JUPYTERHUB_", "GPUHUB_", "CUDA_VISIBLE_DEVICES", "CUDA_MPS_", "MEM_LIMIT", "CPU_LIMIT")
#: the finest GPU quantum a profile's amount is read with; the pool's own quantum
#: (e.g. 0.05) is the allocator's to check at spawn
_FINE_UNITS = 10**6


class ProfileError(ValueError):
    """A mistake in ``c.GPUSpawner.profiles``; the message names the profile and
    the field, and says what is allowed."""


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    description: str = ""
    #: hub groups that see it; empty: everyone
    groups: tuple[str, ...] = ()
    default: bool = False
    #: fields (of FIELDS) a user may change
    overrides: tuple[str, ...] = ()
    #: GPU amounts a user may pick (empty: the profile's ``gpus`` only)
    choices: tuple[str, ...] = ()
    #: what the profile sets for the session (FIELDS it names), as configured
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    def visible_to(self, groups) -> bool:
        return not self.groups or bool(set(self.groups) & set(groups))

    def may_change(self, name: str) -> bool:
        return name in self.overrides or (name == "gpus" and len(self.choices) > 1)

    def changeable(self) -> list[str]:
        """What a user may change, for messages: ``gpus (one of 0.25, 0.5)``."""
        out = []
        for name in FIELDS:
            if name == "gpus" and self.choices and len(self.choices) > 1:
                out.append(f"gpus (one of {', '.join(self.choices)})")
            elif name in self.overrides:
                out.append(name)
        return out


def _amount_text(value: object) -> str:
    """An amount as the form and messages show it: "0.5", "2"."""
    return value.strip() if isinstance(value, str) else f"{float(value):g}"


def _gpus(where: str, value: object) -> str:
    try:
        parse_gpus(value, _FINE_UNITS, allow_zero=True)
    except RequestError:
        raise ProfileError(f"{where} must be a GPU amount: 0 (no GPU), a fraction below 1 (e.g. "
                           f"\"0.25\") or a whole number (e.g. \"2\"), got {value!r}"[:300]) from None
    return value.strip() if isinstance(value, str) else _amount_text(value)


def _same_amount(a: object, b: object) -> bool:
    try:
        return exact(a, "gpus") == exact(b, "gpus")
    except NumberError:
        return False


def parse_gpu_choices(choices: object) -> tuple[str, ...]:
    """``c.GPUSpawner.gpu_choices``: a list of GPU amounts (text), none twice."""
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ProfileError(f"gpu_choices must be a non-empty list of GPU amounts, e.g. [\"0.5\", \"1\"], "
                           f"got {choices!r}"[:300])
    out: list[str] = []
    for i, c in enumerate(choices):
        amount = _gpus(f"gpu_choices[{i}]", c)
        if any(_same_amount(amount, o) for o in out):
            raise ProfileError(f"gpu_choices[{i}]: {amount} is listed twice")
        out.append(amount)
    return tuple(out)


def _names(where: str, value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ProfileError(f"{where} must be a list of {what}, got {value!r}"[:300])
    if len(set(value)) != len(value):
        raise ProfileError(f"{where} names one of them twice: {list(value)!r}"[:300])
    return tuple(value)


def parse_profile(raw: object, index: int, *, images: bool = True) -> Profile:
    """One profile (a dict of KEYS) → a Profile; ``images``: whether the runtime
    runs images (DockerGPUSpawner), else ``image`` is refused."""
    where = f"profiles[{index}]"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where} must be a dict with a \"slug\", got {raw!r}"[:300])
    slug = raw.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ProfileError(f"{where}: slug must be lower-case letters, digits and '-' (at most 63, "
                           f"e.g. \"pytorch-small\"), got {slug!r}"[:300])
    if slug == CUSTOM:
        raise ProfileError(f"{where}: the slug {CUSTOM!r} is the free choice's; allow it with "
                           "GPUSpawner.allow_custom instead")
    where = f"{where} ({slug!r})"
    try:
        check_keys(raw, KEYS)
    except RequestError as e:
        raise ProfileError(f"{where}: {str(e).replace('option(s)', 'key(s)')}") from None
    try:
        display = parse_text(raw.get("display_name", slug), "display_name", 100) or slug
        description = parse_text(raw.get("description", ""), "description", 1000)
    except RequestError as e:
        raise ProfileError(f"{where}: {e}") from None
    groups = _names(f"{where}: groups", raw.get("groups") or [], "hub group names")
    default = raw.get("default", False)
    if not isinstance(default, bool):
        raise ProfileError(f"{where}: default must be true or false, got {default!r}")
    overrides = _names(f"{where}: overrides", raw.get("overrides") or [], "fields")
    unknown = [o for o in overrides if o not in FIELDS]
    if unknown:
        raise ProfileError(f"{where}: overrides names {', '.join(map(repr, unknown))}; a user may be "
                           f"let to change: {', '.join(FIELDS)}")
    settings: dict = {}
    if "gpus" in raw:
        settings["gpus"] = _gpus(f"{where}: gpus", raw["gpus"])
    choices: tuple[str, ...] = ()
    if "choices" in raw:
        if not isinstance(raw["choices"], (list, tuple)) or not raw["choices"]:
            raise ProfileError(f"{where}: choices must be a non-empty list of GPU amounts, e.g. "
                               f"[\"0.25\", \"0.5\"], got {raw['choices']!r}"[:300])
        try:
            choices = parse_gpu_choices(list(raw["choices"]))
        except ProfileError as e:
            raise ProfileError(f"{where}: {str(e).replace('gpu_choices', 'choices')}") from None
        if "gpus" in overrides:
            raise ProfileError(f"{where}: \"gpus\" is in overrides (any amount) and choices are given "
                               "(one of them): keep one of the two")
        if "gpus" in settings:
            if not any(_same_amount(settings["gpus"], c) for c in choices):
                raise ProfileError(f"{where}: gpus {settings['gpus']} is not one of its choices "
                                   f"({', '.join(choices)})")
        else:
            settings["gpus"] = choices[0]
    try:
        if "gpu_model" in raw:
            parse_models(raw["gpu_model"])
            settings["gpu_model"] = raw["gpu_model"]
        if "cpu" in raw:
            parse_cpu(raw["cpu"])
            settings["cpu"] = raw["cpu"]
        if "mem" in raw:
            parse_mem(raw["mem"])
            settings["mem"] = raw["mem"]
        if "max_hours" in raw:  # the longest allowed is the allocator's (GPUAllocator.max_hours)
            h = exact(raw["max_hours"], "max_hours")
            if h <= 0:
                raise RequestError(f"max_hours must be more than 0, got {raw['max_hours']!r}")
            settings["max_hours"] = raw["max_hours"]
        if "pool" in raw:
            settings["pool"] = parse_text(raw["pool"], "pool", 63)
    except (RequestError, NumberError) as e:
        raise ProfileError(f"{where}: {e}") from None
    if "image" in raw:
        if not images:
            raise ProfileError(f"{where}: image is for the Docker runtime (DockerGPUSpawner); this "
                               "runtime runs no images: remove it, or give it only to Docker hubs")
        if not isinstance(raw["image"], str) or not raw["image"].strip():
            raise ProfileError(f"{where}: image must be an image name, e.g. \"gpuhub/singleuser:latest\"")
        settings["image"] = raw["image"]
    if "vfolders" in raw:
        settings["vfolders"] = list(_names(f"{where}: vfolders", raw["vfolders"], "vfolder names"))
    if "image" in overrides and not images:
        raise ProfileError(f"{where}: overrides names image, but this runtime runs no images")
    environment = raw.get("environment") or {}
    if not isinstance(environment, dict):
        raise ProfileError(f"{where}: environment must be a dict of variable → text, "
                           f"e.g. {{\"OMP_NUM_THREADS\": \"4\"}}")
    for k, v in environment.items():
        if not isinstance(k, str) or not _ENV_NAME.match(k):
            raise ProfileError(f"{where}: environment: {k!r} is not a variable name")
        if k.startswith(RESERVED_ENV):
            raise ProfileError(f"{where}: environment: {k} is set by the hub for the share and the "
                               f"server (names starting {', '.join(RESERVED_ENV)} are its own)")
        if not isinstance(v, str):
            raise ProfileError(f"{where}: environment: {k} must be text, got {v!r}"[:300])
    return Profile(slug=slug, display_name=display, description=description, groups=groups,
                   default=default, overrides=overrides, choices=choices, settings=settings,
                   environment=dict(environment))


def parse_profiles(raw: object, *, images: bool = True) -> tuple[Profile, ...]:
    """``c.GPUSpawner.profiles`` → Profiles, in their order; a ProfileError names
    the first mistake. ``images``: whether the runtime runs images."""
    if not isinstance(raw, (list, tuple)):
        raise ProfileError(f"profiles must be a list of dicts, got {raw!r}"[:300])
    out: list[Profile] = []
    for i, item in enumerate(raw):
        p = parse_profile(item, i, images=images)
        if any(o.slug == p.slug for o in out):
            raise ProfileError(f"profiles[{i}]: the slug {p.slug!r} is used twice")
        out.append(p)
    return tuple(out)


def visible(profiles, groups) -> list[Profile]:
    """The profiles a user in hub ``groups`` sees: those without groups, and those
    naming one of theirs."""
    groups = set(groups)
    return [p for p in profiles if p.visible_to(groups)]


def default_profile(shown: list[Profile]) -> Profile | None:
    """The first shown profile marked ``default``, else the first shown."""
    return next((p for p in shown if p.default), shown[0] if shown else None)


def offered_text(shown: list[Profile], custom: bool) -> str:
    names = [p.slug for p in shown] + ([CUSTOM] if custom else [])
    return ", ".join(names) if names else "none"


@dataclass(frozen=True)
class Resolved:
    """A request resolved: the profile (None: free choices), the session's options
    (what the rest of the spawn reads, without ``profile``), and its environment."""
    profile: Profile | None
    options: dict
    environment: dict

    @property
    def slug(self) -> str:
        return self.profile.slug if self.profile else CUSTOM


def resolve(request: dict, profiles, groups, *, user: str, allow_custom: bool,
            known_keys: frozenset[str] = frozenset(FIELDS)) -> Resolved:
    """A spawn request → the session's options. ``{"profile": SLUG, …}``: the
    profile's settings, changed by the overrides it allows (any other is a
    RequestError naming what may change); ``"custom"`` or no ``profile`` with
    ``allow_custom``: the request as it is (checked later, as always); no
    ``profile`` without it: the user's default profile. A profile the user's
    groups do not see is refused as if unknown, naming those they see."""
    if not isinstance(request, dict):
        raise RequestError("spawn options must be a JSON object")
    shown = visible(profiles, groups)
    custom = allow_custom or not profiles
    rest = {k: v for k, v in request.items() if k not in RECORDED}
    slug = request.get("profile")
    if slug is not None and not isinstance(slug, str):
        raise RequestError(f"profile must be the slug of a profile, got {slug!r}"[:200])
    if slug in (None, "", CUSTOM) and custom:
        return Resolved(None, rest, {})
    if slug == CUSTOM:
        raise RequestError(f"free choices (profile {CUSTOM!r}) are not offered to {user}; profiles "
                           f"offered to {user}: {offered_text(shown, False)}")
    if slug in (None, ""):
        profile = default_profile(shown)
        if profile is None:
            raise RequestError(f"no profile is offered to {user} and free choices are not allowed; "
                               "ask an admin to offer one to your groups")
    else:
        profile = next((p for p in shown if p.slug == slug), None)
        if profile is None:
            raise RequestError(f"profile {slug[:63]!r} is not offered to {user}; profiles offered to "
                               f"{user}: {offered_text(shown, custom)}")
    which = f"profile {profile.slug!r}" + (" (your default: name another with \"profile\")"
                                           if slug in (None, "") else "")
    check_keys(rest, known_keys)
    refused = [k for k in rest if not profile.may_change(k)]
    if refused:
        may = profile.changeable()
        raise RequestError(
            f"{which} does not let you change {', '.join(refused)}; "
            + (f"it lets you change: {', '.join(may)}" if may else "it lets you change nothing")
            + (f" (or pick profile {CUSTOM!r} for free choices)" if custom else ""))
    if "gpus" in rest and profile.choices and "gpus" not in profile.overrides:
        if not any(_same_amount(rest["gpus"], c) for c in profile.choices):
            raise RequestError(f"{which} offers gpus {' or '.join(profile.choices)}, "
                               f"not {rest['gpus']!r}"[:300])
    options = {**profile.settings, **rest}
    return Resolved(profile, options, dict(profile.environment))


def facts(profile: Profile, defaults: dict) -> str:
    """"0.5 GPU · A100 · 4 CPU · 16G · 8 h": what a profile's session gets (its
    settings over the spawner's defaults), for its card."""
    s = {**defaults, **profile.settings}
    gpus = str(s.get("gpus", "0"))
    if profile.choices and len(profile.choices) > 1:
        gpu = f"{' or '.join(profile.choices)} GPU"
    else:
        gpu = "no GPU" if _same_amount(gpus, 0) else f"{gpus} GPU"
    parts = [gpu]
    if s.get("gpu_model"):
        models = s["gpu_model"]
        parts.append("/".join(models) if isinstance(models, list) else str(models))
    parts += [f"{s['cpu']:g} CPU" if isinstance(s.get("cpu"), float) else f"{s.get('cpu')} CPU",
              str(s.get("mem")), f"{float(s.get('max_hours')):g} h"]
    if s.get("pool"):
        parts.append(f"pool {s['pool']}")
    return " · ".join(parts)
