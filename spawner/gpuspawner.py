"""GPUSpawner: the GPU-share life cycle, independent of how servers run.

start: validate (the allocator's dry run) → ask the allocator, with an
idempotency key, retrying while it is briefly away → put the share into the
environment → start the server with the runtime (the spawner class this is
mixed into) → on any failure, give the share back. stop, or a server found dead
by poll(): give the share back. The allocation lives in the spawner state, so a
restarted hub still releases it.
"""

from __future__ import annotations

import asyncio
import html
import time
import uuid
from urllib.parse import urlsplit

from jupyterhub.spawner import SpawnException, Spawner
from tornado import web
from traitlets import Bool, Dict, Float, Integer, List, TraitError, Unicode, default, validate

from gpu_allocator.client import DEFAULT_API_URL, AllocatorClient, AllocatorError
from gpu_allocator.core.jobs import OPTION_KEYS as JOB_OPTION_KEYS
from gpu_allocator.core.jobs import is_job_server, server_name
from gpu_allocator.core.validation import SPAWN_KEYS, RequestError
from gpuhub.numbers import human_minutes

from .gpu_env import describe, gpu_env
from .jobs import job_cmd, job_env
from .options import (
    DEFAULT_GPU_CHOICES, candidates, check_spawn_keys, clock, form_runtimes, offered, options_from_form,
    render_form,
)
from .profiles import CUSTOM, Profile, ProfileError, Resolved, parse_gpu_choices, parse_profiles, resolve, visible
from .waiting import alternatives, queue_message, sooner, waiting_view


class GPUSpawner(Spawner):
    """GPU shares for single-user servers; combine with a runtime spawner that
    comes after it in the bases (``class LocalGPUSpawner(GPUSpawner,
    LocalProcessSpawner)``). Configure it as ``c.GPUSpawner.…``."""

    allocator_url = Unicode(
        DEFAULT_API_URL,
        help="""Base URL of the allocator's REST API as the hub reaches it directly
        (not through the proxy), e.g.
        ``http://127.0.0.1:8051/services/gpu-allocator/api/v1/``.

        Default: the allocator on this machine at the demo's port 8051, where a
        managed service of the hub listens.
        """,
    ).tag(config=True)

    named_server_limit = Integer(
        2,
        help="""The most named servers (JupyterHub's ``allow_named_servers``) a user
        may run at once, pending ones included; the default server does not
        count. A spawn over it is refused with a 400 that names the running ones.
        0: no limit of its own (the allocator's sessions quota still counts every
        server that holds a GPU share). Per group through JupyterHub's
        ``c.Spawner.group_overrides``, e.g. ``{"students": {"groups":
        ["students"], "spawner_override": {"named_server_limit": 1}}}``.

        Default 2: a CPU server to edit in and a GPU server to train on, at the
        same time. (JupyterHub's own ``named_server_limit_per_user`` limits how
        many named servers exist, running or not.)
        """,
    ).tag(config=True)

    allocator_token = Unicode(
        "",
        help="""JupyterHub API token the spawner uses with the allocator: the token
        of a service (the demo's ``gpuhub-spawner``) whose role has the
        custom:gpu-allocator:admin scope, as it places and releases shares for
        any user.

        Default: empty; the demo's jupyterhub_config.py sets it to the token it
        keeps in its data directory. Without one every spawn is refused.
        """,
    ).tag(config=True)

    allocator_retry_seconds = Float(
        20.0,
        help="""How long (seconds) a spawn keeps retrying while the allocator cannot be
        reached.

        Retries carry the same idempotency key, so a grant whose answer was lost is
        answered again, never granted twice. Default 20 seconds: a supervised
        allocator restarts within seconds after a crash, and a standby takes
        over within a few.
        """,
    ).tag(config=True)

    mps_timeout = Float(
        60.0,
        help="""How long (seconds) a spawn of a fractional share waits for the CUDA MPS
        daemon of its host to run (the agent starts it when the host gets its
        first fraction).

        The server starts only once MPS enforces the share's limits; after this
        long the spawn fails with a message that names the host. Default 60
        seconds: several heartbeats of a slow agent, well within JupyterHub's
        start_timeout.
        """,
    ).tag(config=True)

    default_gpus = Unicode(
        "0.5",
        help="""GPU share preselected in the spawn form and used when a REST spawn
        request names none, e.g. ``1`` or ``0.25``; ``0``: no GPU.

        Default ``0.5``: half a GPU, enough for most notebooks, and two of them
        fit on one GPU.
        """,
    ).tag(config=True)

    default_cpu = Float(
        2.0,
        help="""CPU cores of a session whose request names none, e.g. 4.

        Default 2: a notebook and a data loader.
        """,
    ).tag(config=True)

    default_mem = Unicode(
        "4G",
        help="""Memory of a session whose request names none, e.g. ``16G`` or
        ``512M``.

        Default ``4G``.
        """,
    ).tag(config=True)

    default_max_hours = Float(
        8.0,
        help="""Expected run time (hours) of a session whose request names none,
        e.g. 24. The longest allowed is the allocator's GPUAllocator.max_hours (one
        setting, checked by the allocator).

        Default 8 hours: a working day; the queue's estimates rely on it.
        """,
    ).tag(config=True)

    queue_requests = Bool(
        True,
        help="""Whether a spawn whose GPUs are not free now waits in the allocator's
        queue (its position and estimated start show on the progress page).

        False: now or never (503). Default True: the queue's fair share and
        promises only work for requests that wait in it.
        """,
    ).tag(config=True)

    queue_poll_seconds = Float(
        2.0,
        help="""While a spawn waits in the allocator's queue, how often (seconds) it
        asks for its position and estimated start (shown on the spawn progress
        page).

        Default 2 seconds: a granted share starts its server promptly, at one small
        request per waiting spawn every two seconds.
        """,
    ).tag(config=True)

    queue_alternatives_seconds = Float(
        30.0,
        help="""How often (seconds) a spawn waiting in the queue asks the allocator what
        would start sooner (a smaller share, another GPU model), for the waiting page.

        One POST estimates per waiting spawn and interval (the allocator caches
        estimates per shape), e.g. 30. Lower shows new chances sooner at more load on
        the allocator; the waiting page's position and start times follow every
        poll (queue_poll_seconds) regardless.
        """,
    ).tag(config=True)

    queue_max_wait_hours = Float(
        168.0,
        help="""How long (hours) a spawn may wait in the queue when the allocator sets
        no limit for the user's groups (GPUAllocator.max_wait_hours or a quota's
        max_wait_hours).

        JupyterHub's start_timeout is raised by this much for a spawn that waits,
        and applied by the spawner to the server's own start. Default 168 hours
        (a week), GPUAllocator.max_hours' default.
        """,
    ).tag(config=True)

    job_poll_interval = Float(
        1.0,
        help="""How often (seconds) the hub checks whether a batch job's process
        (``gpuhub run``: the named server ``job-ID``) has ended, in place of
        Spawner.poll_interval for that server. Its GPU share goes back when the
        hub sees the end.

        Default 1 second: the share is free again about a second after the
        command exits, at one cheap check per running job and second.
        """,
    ).tag(config=True)

    profiles = List(
        Dict(),
        help="""Profiles: named spawn choices offered per hub group, first on the
        spawn form (as radio cards) and by name in the REST API
        (``{"profile": "pytorch-small", "gpus": "0.25"}``), as KubeSpawner's
        profile_list and Backend.AI's session templates. Each is a dict:

        - ``slug`` (required): its name in requests, lower-case letters, digits
          and ``-``, e.g. ``"pytorch-small"`` (``"custom"`` is the free choice's);
        - ``display_name``, ``description``: what the form's card says;
        - ``groups``: the hub groups that see it, e.g. ``["ml"]``; empty or absent:
          everyone. A user outside them can neither see nor name it;
        - what the session gets: ``gpus`` (an amount, e.g. ``"0.5"``; ``"0"`` no
          GPU) or ``choices`` (amounts the user picks from, e.g. ``["0.25",
          "0.5"]``), ``gpu_model`` (a model or a list of them), ``cpu`` (cores),
          ``mem`` (e.g. ``"16G"``), ``max_hours``, ``pool`` (a host pool),
          ``image`` (DockerGPUSpawner only; allowed even if not in
          allowed_images), ``vfolders`` (names of the user's vfolders to mount,
          instead of the auto-mount ones), ``environment`` (variables, e.g.
          ``{"OMP_NUM_THREADS": "4"}``). What it leaves out is the spawner's
          default (default_gpus, default_cpu, …);
        - ``overrides``: which of those fields a user may change, e.g. ``["gpus",
          "max_hours"]``; any other in a request is a 400 naming what may change.
          Default: none;
        - ``default``: true for the profile preselected (the first visible one
          with it, else the first visible); also what a request without
          ``profile`` gets where allow_custom is False.

        Checked when the hub loads it (spawner/profiles.py): a mistake stops the
        spawner with a message naming the profile and the field. Amounts are
        checked against the pool by the allocator at spawn, as every request's.

        Default: empty, no profiles: the form offers free choices only.
        JupyterHub's ``Spawner.group_overrides`` may set it (and allow_custom)
        per group too; the form applies them before it renders.
        """,
    ).tag(config=True)

    allow_custom = Bool(
        True,
        help="""Whether users may make free choices of GPU share, CPU, memory and run
        time beside the profiles: the form's card "custom", and a REST request
        with ``"profile": "custom"`` or without ``profile``.

        False: only profiles (a request without ``profile`` gets the user's
        default profile; ``"custom"`` is a 400 naming the profiles open to them).
        Per group with ``Spawner.group_overrides``, e.g. ``{"1-staff": {"groups":
        ["staff"], "spawner_override": {"allow_custom": True}}}``. Without
        profiles, free choices are always allowed. Default True: a hub without
        profiles works as before.
        """,
    ).tag(config=True)

    gpu_choices = List(
        Unicode(),
        list(DEFAULT_GPU_CHOICES),
        help="""The GPU amounts the form's free choice offers, as text, e.g. ``["0",
        "0.5", "1", "2"]`` (``"0"``: no GPU); the form shows those some host of the
        pool could hold, and "custom…" for any other amount. REST requests are not
        limited to them (the allocator checks every amount).

        Default ``["0", "0.25", "0.5", "1", "2", "4"]``: no GPU, the common
        fractions, and whole GPUs up to a 4-GPU host.
        """,
    ).tag(config=True)

    @validate("gpu_choices")
    def _check_gpu_choices(self, proposal):
        try:
            return list(parse_gpu_choices(proposal["value"]))
        except ProfileError as e:
            raise TraitError(f"GPUSpawner.{e}") from None

    @validate("profiles")
    def _check_profiles(self, proposal):
        try:
            parse_profiles(proposal["value"], images="image" in self.extra_option_keys)
        except ProfileError as e:
            raise TraitError(f"GPUSpawner.{e}") from None
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events: list[dict] = []
        self._progress_changed = asyncio.Event()

    # --- state -----------------------------------------------------------------

    #: the runtime's own scheduler places the share (Slurm: spawner.slurm): start()
    #: asks the allocator for none (its dry run has validated the request and the
    #: quota); the runtime records what that scheduler granted as an external
    #: allocation, in ``allocation``, which stop and poll then treat as any share
    places_itself: bool = False
    #: the validated request of the server being started (runtimes read it)
    spawn_request: dict | None = None

    allocation: dict | None = None
    #: JupyterHub's start_timeout as configured (the server's own start)
    _server_start_timeout: int | None = None
    #: the validated request of the spawn under way (the allocator's dry-run answer)
    gpu_request: dict | None = None
    #: the spawn under way, resolved (spawner.profiles.resolve): its profile, options
    #: and environment; ``requested_options``: what the user asked for
    resolved: Resolved | None = None
    requested_options: dict | None = None

    #: while the spawn waits in the queue: what the waiting page and the home page
    #: show (spawner.waiting.waiting_view); None otherwise
    queue_state: dict | None = None

    #: the batch job this server runs (the allocator's record, GET jobs/ID), if any
    job: dict | None = None

    #: why the hub stopped the last server (its share was lost or revoked): shown
    #: to the user on the spawn form and as the first progress event of the
    #: next spawn; kept in the spawner state (survives clear_state and hub restarts)
    stop_reason: str | None = None

    def load_state(self, state):
        super().load_state(state)
        self.allocation = state.get("gpuhub_allocation")
        self.stop_reason = state.get("gpuhub_stop_reason")
        self.job = state.get("gpuhub_job")
        if self.job:
            # a restarted hub checks a running job as often as the one that started it
            self.poll_interval = self.job_poll_interval

    def get_state(self):
        state = super().get_state()
        if self.allocation:
            state["gpuhub_allocation"] = self.allocation
        if self.stop_reason:
            state["gpuhub_stop_reason"] = self.stop_reason
        if self.job:
            state["gpuhub_job"] = self.job
        return state

    # clear_state() deliberately keeps the allocation: runtimes clear their state
    # inside stop(), before the share is released, and a share whose release
    # failed must stay on record until a later stop, poll or start releases it.

    # --- options -----------------------------------------------------------------

    @property
    def allocator_client(self) -> AllocatorClient:
        return AllocatorClient(self.allocator_url, self.allocator_token)

    @property
    def option_defaults(self) -> dict:
        return {
            "gpus": self.default_gpus,
            "cpu": self.default_cpu,
            "mem": self.default_mem,
            "max_hours": self.default_max_hours,
        }

    #: the allocator's last answer to GET pool (runtimes read host details from it)
    pool_model: dict = {}

    async def fetch_pool(self) -> dict:
        try:
            self.pool_model = await self.allocator_client.pool()
        except AllocatorError as e:
            raise SpawnException(
                f"The GPU allocator is not available: {e.message}",
                reason="allocator", status_code=503,
            ) from None
        return self.pool_model

    # --- profiles --------------------------------------------------------------------

    @property
    def group_names(self) -> list[str]:
        return sorted(g.name for g in getattr(self.user, "groups", ()) or ())

    def all_profiles(self) -> tuple[Profile, ...]:
        """c.GPUSpawner.profiles, parsed (checked when set)."""
        return parse_profiles(self.profiles, images="image" in self.extra_option_keys)

    def visible_profiles(self) -> list[Profile]:
        """The profiles this user's hub groups see."""
        return visible(self.all_profiles(), self.group_names)

    def resolve_options(self, user_options: dict) -> Resolved:
        """The spawn request (form or REST) → its profile and the session's
        options; a 400 for a profile not offered to the user or an override it
        does not allow."""
        try:
            return resolve(user_options, self.all_profiles(), self.group_names, user=self.user.name,
                           allow_custom=self.allow_custom,
                           known_keys=SPAWN_KEYS | self.extra_option_keys | {"vfolders"})
        except RequestError as e:
            raise web.HTTPError(400, str(e), reason="Invalid spawn options") from None

    def form_may_set(self, options: dict, name: str) -> bool:
        """Whether the form's own field ``name`` (e.g. the vfolder checkboxes)
        belongs in ``options``: with free choices, or a profile that lets the user
        change it."""
        slug = options.get("profile")
        if slug in (None, "", CUSTOM):
            return True
        return any(p.slug == slug and p.may_change(name) for p in self.visible_profiles())

    @default("options_form")
    def _default_options_form(self):
        async def form(spawner):
            # Spawner.group_overrides are applied before a spawn; the form shows their
            # profiles and choices too
            await spawner.apply_group_overrides()
            pool = await spawner.fetch_pool()
            notice = ""
            if spawner.stop_reason:
                notice = (
                    '<div class="alert alert-warning" role="alert" id="gpuhub-stop-reason">'
                    f"{html.escape(spawner.stop_reason)}</div>\n"
                )
            shown = spawner.visible_profiles()
            custom = spawner.allow_custom or not spawner.profiles
            estimates = await spawner.fetch_estimates(pool, shown, custom)
            return notice + render_form(pool, spawner.option_defaults, spawner.form_images(), estimates,
                                        shown, custom, spawner.form_gpu_choices(pool))

        return form

    async def fetch_estimates(self, pool: dict, profiles: list[Profile] = (), custom: bool = True) -> dict | None:
        """When each GPU choice of the form (``custom``) and each of the user's
        ``profiles`` would start for this user, and their quota (one POST
        estimates); None when the allocator cannot say (the form renders
        without them)."""
        defaults = self.option_defaults
        runtimes = form_runtimes(defaults["max_hours"], float(pool.get("max_hours") or 168))
        requests = candidates(pool, defaults, runtimes, self.form_gpu_choices(pool)) if custom else []
        mine = [p for p in profiles if float(p.settings.get("gpus", defaults["gpus"])) > 0]
        extra = [self.gpu_options(p.settings) | {"gpu_model": p.settings.get("gpu_model") or None}
                 for p in mine]
        answer = await self._estimates(requests + extra, "start estimates for the form")
        if answer is None:
            return None
        ests = list(answer.get("estimates") or ())
        answer = {**answer, "estimates": ests[:len(requests)]}
        # the form's script asks again when CPU or memory change: GET estimates,
        # through the hub's proxy, as the user (the allocator's own path)
        url = urlsplit(self.allocator_url).path + "estimates"
        return {"runtimes": runtimes, "requests": requests, "answer": answer, "url": url,
                "profiles": {p.slug: e for p, e in zip(mine, ests[len(requests):])}}

    def form_gpu_choices(self, pool: dict) -> list[str]:
        """The GPU amounts the form offers (and the waiting page's alternatives):
        gpu_choices; a runtime that cannot run some amounts leaves them out."""
        return list(self.gpu_choices)

    def form_images(self) -> list[str]:
        """Images the form offers (runtimes with images override this)."""
        return []

    #: user_options keys the runtime handles itself (e.g. "image" for Docker)
    extra_option_keys: frozenset[str] = frozenset()

    def options_from_form(self, formdata):
        return options_from_form(formdata)

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return type(self).apply_spawn_options

    async def apply_spawn_options(self, user_options: dict) -> None:
        """The spawn request (form or REST): its profile resolved (a 400 for one not
        offered or an override not allowed), then the session's options checked
        as every request's (apply_gpu_options: the allocator's dry run, the
        vfolder service, the runtime's images). The spawn then reads the
        session's options from ``user_options``; the database keeps what the
        user asked for (JupyterHub reuses it for a spawn without options)."""
        user_options = await self.job_options(user_options)
        self.requested_options = {k: v for k, v in (user_options or {}).items() if k != "summary"} \
            if isinstance(user_options, dict) else user_options
        self.resolved = self.resolve_options(user_options)
        self.user_options = {**self.resolved.options, "profile": self.resolved.slug}
        await self.apply_gpu_options(dict(self.resolved.options))

    async def job_options(self, user_options) -> dict:
        """A batch job's spawn (``{"job": ID}``, from the allocator): the job's own
        share and vfolders, read from the allocator's record (the spawn request
        names only the job). Other spawns may not use a job's server name."""
        self.job = None
        job_id = user_options.get("job") if isinstance(user_options, dict) else None
        if job_id is None:
            if is_job_server(self.name):
                raise web.HTTPError(400, f"server names starting with {server_name('')!r} are for batch jobs "
                                    "(gpuhub run); choose another name", reason="Invalid spawn options")
            return user_options
        if set(user_options) != {"job"} or not isinstance(job_id, str):
            raise web.HTTPError(400, 'a batch job\'s spawn names only its job: {"job": ID}',
                                reason="Invalid spawn options")
        try:
            job = await self.allocator_client.call("GET", f"jobs/{job_id}")
        except AllocatorError as e:
            raise web.HTTPError(400 if e.status in (400, 404) else 503, f"batch job {job_id}: {e.message}",
                                reason="Invalid spawn options") from None
        if job.get("user") != self.user.name or job.get("server") != self.name or job.get("state") != "queued":
            raise web.HTTPError(400, f"batch job {job_id} is not a queued job of {self.user.name} for the "
                                f"server {self.name!r}", reason="Invalid spawn options")
        self.job = job
        return {k: v for k, v in (job.get("options") or {}).items() if k in JOB_OPTION_KEYS}

    def gpu_options(self, user_options: dict) -> dict:
        """The GPU request of a spawn: the user's options over the defaults."""
        merged = dict(self.option_defaults)
        merged.update({k: v for k, v in user_options.items() if k in SPAWN_KEYS and v not in ("", None)})
        return merged

    async def apply_gpu_options(self, user_options: dict) -> None:
        """Validate the spawn request (form or REST) before anything starts — by the
        allocator, the one validation: a bad value is a 400 whose message says
        what is allowed, and nothing is held."""
        try:
            check_spawn_keys(user_options, self.extra_option_keys)
        except RequestError as e:
            raise web.HTTPError(400, str(e), reason="Invalid spawn options") from None
        running = other_named_servers(self.user, self.name)
        if self.name and self.named_server_limit and len(running) >= self.named_server_limit:
            raise web.HTTPError(
                400, f"{self.user.name} already runs {len(running)} named server"
                f"{'s' if len(running) != 1 else ''} ({', '.join(running)}), the most allowed at once "
                f"({self.named_server_limit}); stop one on the hub's home page first",
                reason="Invalid spawn options")
        try:
            checked = await self.allocator_client.check(
                user=self.user.name, **self.gpu_options(user_options),
                groups=sorted(g.name for g in getattr(self.user, "groups", ()) or ()),
            )
        except AllocatorError as e:
            if e.status in (400, 403):
                raise web.HTTPError(400, e.message, reason="Invalid spawn options") from None
            raise web.HTTPError(
                503, f"The GPU allocator is not available: {e.message}", reason="allocator"
            ) from None
        self.gpu_request = checked["request"]
        # a spawn that will wait in the queue must not be killed by JupyterHub's
        # start_timeout (read when start() is called, after this hook): raise it by
        # the longest wait; start() applies the configured one to the server itself
        if self._server_start_timeout is None:
            self._server_start_timeout = self.start_timeout
        queue = checked.get("queue") or {}
        if checked.get("request", {}).get("units") and not queue.get("starts_now", True):
            wait = queue.get("max_wait_hours") or self.queue_max_wait_hours
            self.start_timeout = int(self._server_start_timeout + wait * 3600)
        else:
            self.start_timeout = self._server_start_timeout
        # a new spawn begins here: its progress starts empty
        self._events = []
        self._progress_changed.set()
        self.cpu_limit = float(self.gpu_request["cpu"])
        self.mem_limit = int(self.gpu_request["mem"].rstrip("M")) * 1024**2

    # --- progress ----------------------------------------------------------------

    def _event(self, progress: int, message: str, queue: dict | None = None) -> None:
        """A progress event; ``queue``: while the spawn waits in the queue, what the
        waiting page shows (spawner.waiting.waiting_view), as ``gpuhub_queue``."""
        self.log.info("%s: %s", self._log_name, message)
        event = {"progress": progress, "message": message}
        if queue is not None:
            event["gpuhub_queue"] = queue
        self._events.append(event)
        self._progress_changed.set()

    async def progress(self):
        """Our steps of the spawn, replayed from the start for every watcher;
        JupyterHub stops iterating when the spawn finishes."""
        sent, events = 0, None
        while True:
            if self._events is not events:  # a new spawn began
                events, sent = self._events, 0
            while sent < len(events):
                yield events[sent]
                sent += 1
            self._progress_changed.clear()
            await self._progress_changed.wait()

    # --- life cycle ----------------------------------------------------------------

    def summary(self, req: dict) -> str:
        """What the session got, in one line (``user_options["summary"]``)."""
        gpu = "no GPU" if not req["units"] else f"{req['gpus']} GPU"
        models = f" {'/'.join(req['gpu_model'])}" if req.get("gpu_model") else ""
        return f"{gpu}{models} · {req['cpu']} CPU · {req['mem']} · {req['max_hours']:g}h"

    async def _allocate(self, req: dict) -> dict:
        """Ask for the share; while the allocator is unreachable (restarting) ask
        again with the same idempotency key."""
        self._event(10, f"requesting {req['gpus']} GPU" if req["units"] else "requesting no GPU")
        key = f"{self.user.name}/{self.name}/{uuid.uuid4().hex}"
        body = {
            "user": self.user.name,
            "server": self.name,
            "key": key,
            "gpus": req["gpus"],
            "cpu": req["cpu"],
            "mem": req["mem"],
            "max_hours": req["max_hours"],
            "gpu_model": req.get("gpu_model") or None,
            # the host pool the user picked (None: any open to them)
            "pool": req.get("pool") or None,
            # the allocator's quotas, fair share and host pools are per JupyterHub group
            "groups": sorted(g.name for g in getattr(self.user, "groups", ()) or ()),
            "queue": self.queue_requests,
        }
        deadline = time.monotonic() + self.allocator_retry_seconds
        pause = 0.25
        while True:
            try:
                allocation = await self.allocator_client.allocate(**body)
                break
            except AllocatorError as e:
                if e.status == 409:
                    raise SpawnException(e.message, reason="capacity", status_code=503) from None
                if e.status == 400:
                    raise SpawnException(e.message, reason="invalid", status_code=400) from None
                if e.status < 500 or time.monotonic() > deadline:
                    raise SpawnException(
                        f"The GPU allocator failed: {e.message}", reason="allocator", status_code=503
                    ) from None
                self.log.warning("%s: the allocator is away (%s); asking again", self._log_name, e.message)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
        if allocation.get("state") == "queued":
            allocation = await self._wait_in_queue(allocation)
        self._event(40, f"allocated {describe(allocation)}")
        return allocation

    async def allocation_ready(self) -> None:
        """The share is granted and enforced; runtimes prepare what depends on its
        host here (e.g. which engine to use)."""

    async def _wait_for_mps(self) -> None:
        """A fractional share is enforced by its host's MPS daemon: the server must
        not run its first instruction before the daemon is there."""
        mps = self.allocation.get("mps")
        if not mps or mps.get("state") == "ready":
            return
        host = self.allocation["host"]
        self._event(45, f"waiting for CUDA MPS on {host} to enforce the share")
        deadline = time.monotonic() + self.mps_timeout
        while mps.get("state") == "starting" and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            try:
                current = await self.allocator_client.get(self.allocation["id"])
            except AllocatorError:
                continue
            if current.get("state") != "granted":
                raise SpawnException(f"The GPU share was {current.get('state')} while starting.",
                                     reason="allocator", status_code=503)
            mps = current.get("mps") or {}
            self.allocation["mps"] = mps
        if mps.get("state") != "ready":
            why = ("MPS is not available there" if mps.get("state") == "unavailable"
                   else f"its MPS daemon did not start within {self.mps_timeout:g} s")
            raise SpawnException(
                f"The fractional GPU share on {host} cannot be enforced: {why}. Ask for a "
                "whole GPU, or ask an admin to check the host's agent log (nvidia-cuda-mps-control).",
                reason="mps", status_code=503,
            )
        self._event(50, f"CUDA MPS on {host} enforces the share")

    async def _wait_in_queue(self, queued: dict) -> dict:
        """The request waits in the allocator's queue: show its position and start
        estimates as they move, until it is granted. Cancelling the spawn (Stop on
        the progress page, DELETE of the server) takes it out of the queue."""
        self.allocation = queued  # a stop now cancels the queued request (_release)
        last = None
        soon: list[dict] = []
        asked = -float("inf")
        try:
            while True:
                state = queued.get("state")
                if state == "granted":
                    return queued
                if state != "queued":
                    self.allocation = None
                    why = queued.get("reason") or state
                    raise SpawnException(
                        f"Your GPU request left the queue ({state}): {why}",
                        reason="queue", status_code=503,
                    )
                if time.monotonic() - asked >= self.queue_alternatives_seconds:
                    asked = time.monotonic()
                    soon = await self._sooner(queued)
                view = waiting_view(queued, soon)
                self.queue_state = view
                message = queue_message(queued)
                if (message, view) != last:
                    self._event(20, message, queue=view)
                    last = (message, view)
                await asyncio.sleep(self.queue_poll_seconds)
                try:
                    queued = await self.allocator_client.get(queued["id"])
                except AllocatorError as e:
                    if e.status == 404:
                        queued = {"state": "gone", "reason": "the allocator does not know it"}
                    else:
                        self.log.warning("%s: cannot ask the allocator about %s (%s); waiting",
                                         self._log_name, queued["id"], e.message)
                        queued = {**self.allocation}
        except BaseException:
            if self.allocation and self.allocation.get("state") == "queued":
                await self._release("the spawn was cancelled while queued")
            raise
        finally:
            self.queue_state = None

    async def _sooner(self, queued: dict) -> list[dict]:
        """What would start sooner than ``queued`` (smaller shares, other models),
        from the same estimates as the spawn form's; [] when the allocator cannot
        say (the waiting page then shows none)."""
        try:
            pool = self.pool_model or await self.allocator_client.pool()
            self.pool_model = pool
        except AllocatorError as e:
            self.log.warning("%s: no alternatives for the waiting page: %s", self._log_name, e.message)
            return []
        requests = alternatives(queued, offered(pool, self.form_gpu_choices(pool)), list(pool.get("models") or []))
        answer = await self._estimates(requests, "alternatives for the waiting page")
        return [] if answer is None else sooner(queued, requests, answer, time.time())

    async def _estimates(self, requests: list[dict], what: str) -> dict | None:
        """POST estimates for this user's ``requests`` (their hub groups for the
        quotas); None when there are none or the allocator cannot say (logged as
        no ``what``)."""
        if not requests:
            return None
        try:
            return await self.allocator_client.estimates(
                user=self.user.name, requests=requests,
                groups=sorted(g.name for g in getattr(self.user, "groups", ()) or ()),
            )
        except AllocatorError as e:
            self.log.warning("%s: no %s: %s", self._log_name, what, e.message)
            return None

    async def start(self):
        if self.stop_reason:
            self._event(0, self.stop_reason)
            self.stop_reason = None
        await self._release("left over from an earlier server")
        req, self.gpu_request = self.gpu_request, None
        if req is None:  # apply_user_options was replaced by the admin's own hook
            await self.apply_spawn_options(self.user_options)
            req, self.gpu_request = self.gpu_request, None
        self.spawn_request = req
        self.allocation = await self._allocate(req) if req["units"] and not self.places_itself else None
        if self.allocation:
            try:
                await self._wait_for_mps()
            except BaseException:
                await self._release("MPS not ready")
                raise
        if self.allocation:
            await self.allocation_ready()
        # user_options: "profile" is the profile's slug ("custom": free choices; the
        # Profile column of JupyterHub's admin page), "summary" what the session
        # got; the database keeps the request as asked (plus both), so that a spawn
        # that reuses it resolves the profile again
        resolved = self.resolved or Resolved(None, dict(self.user_options), {})
        self.user_options = {**self.user_options, "profile": resolved.slug, "summary": self.summary(req)}
        self.orm_spawner.user_options = {**(self.requested_options or {}), "profile": resolved.slug,
                                         "summary": self.user_options["summary"]}
        self._event(60, "starting the batch job" if self.job else "starting server")
        if self.job:
            # the job's runner instead of JupyterLab; the hub looks for its end often
            server_cmd, self.cmd = self.cmd, self.job_cmd()
            self.poll_interval = self.job_poll_interval
        try:
            if (self._server_start_timeout and self.start_timeout > self._server_start_timeout
                    and not self.places_itself):
                # the hub's timeout was raised for the wait in the queue: the server's
                # own start keeps the configured one
                result = await asyncio.wait_for(super().start(), self._server_start_timeout)
            else:
                result = await super().start()
        except BaseException:
            await self._release("spawn failed")
            raise
        finally:
            if self.job:
                self.cmd = server_cmd
        if self.job:
            await self.job_started()
        return result

    def job_cmd(self) -> list[str]:
        try:
            return job_cmd(list(self.cmd))
        except ValueError as e:
            raise SpawnException(str(e), reason="job", status_code=500) from None

    async def job_started(self) -> None:
        """Tell the allocator the job runs: where, and which home vfolder holds
        its folder jobs/ID/ (its logs and exit code)."""
        home = getattr(self, "home_mount", None) or {}
        # the share's host; a Slurm job without GPUs (no mirror): its node
        host = (self.allocation or {}).get("host") or getattr(self, "job_node", None) or ""
        try:
            await self.allocator_client.call("POST", f"jobs/{self.job['id']}/started",
                                             {"host": host, "home_vfolder": home.get("id") or ""})
        except AllocatorError as e:  # the allocator's watch sees the server run anyway
            self.log.warning("%s: could not report the job's start: %s", self._log_name, e.message)

    @property
    def profile_environment(self) -> dict:
        """The environment of the spawn's profile (over Spawner.environment)."""
        return dict(self.resolved.environment) if self.resolved else {}

    def get_env(self):
        env = super().get_env()
        env.update(self.profile_environment)
        env.update(gpu_env(self.allocation))
        if self.job:
            env.update(job_env(self.job))
        return env

    async def _release(self, why: str) -> None:
        allocation, self.allocation = self.allocation, None
        if not allocation:
            self.log.debug("%s: no GPU allocation to release (%s)", self._log_name, why)
            return
        try:
            await self.allocator_client.release(allocation["id"])
            self.log.info("released GPU allocation %s of %s (%s)", allocation["id"], self._log_name, why)
        except AllocatorError as e:
            # keep it in state so a later stop/poll retries; never forget a share
            self.allocation = allocation
            self.log.error("could not release %s: %s", allocation["id"], e.message)

    async def stop(self, now=False):
        await super().stop(now=now)
        await self._release("server stopped")

    def time_limit(self) -> dict | None:
        """For the hub's home and spawn-pending pages (hub_config/templates): when
        this server's GPU share ends, and the notice due (as of the last poll)."""
        return time_limit(self.name, self.allocation)

    async def poll(self):
        """Dead if the runtime says so — or if the share is no longer granted (its
        host was lost, an admin revoked it): then the session is stopped, since
        its GPUs may already belong to someone else."""
        status = await super().poll()
        if status is not None:
            await self._release("server is gone")
            return status
        if not self.allocation:
            return status
        try:
            current = await self.allocator_client.get(self.allocation["id"])
        except AllocatorError as e:
            if e.status != 404:
                return status  # allocator unreachable: no reason to kill a session
            current = {"state": "unknown to the allocator"}
        if current.get("state") == "granted":
            # the run time's end, extension and notices move: the hub's pages show them
            self.allocation.update({k: current.get(k) for k in ("ends_at", "extended", "notice", "max_hours")
                                    if k in current})
            return status
        lost, self.allocation = self.allocation, None
        self.stop_reason = stop_reason(lost, current)
        self.log.warning(
            "%s: allocation %s is %s (host %s); stopping the session: %s",
            self._log_name, lost["id"], current.get("state"), lost.get("host"), self.stop_reason,
        )
        try:
            await asyncio.wait_for(super().stop(now=True), timeout=30)
        except Exception as e:  # the host may be unreachable: it is dead to us anyway
            self.log.warning("%s: could not stop the session cleanly: %s", self._log_name, e)
        return 1


def other_named_servers(user, name: str) -> list[str]:
    """The user's named servers other than ``name`` that run or are starting
    (waiting in the queue counts)."""
    return sorted(n for n, sp in getattr(user, "spawners", {}).items()
                  if n and n != name and not is_job_server(n) and getattr(sp, "active", False))


def time_limit(name: str, allocation: dict | None, now: float | None = None) -> dict | None:
    """"Your server NAME stops at 14:20 (in 42 min); extend it once in JupyterLab's
    GPU panel" and its parts (``ends_at`` ISO for the page's script to show in the
    browser's time zone, ``clock`` in the hub's), plus the allocator's notice (the
    15- and 5-minute warnings, an idle-reclaim warning); None without a time limit."""
    if not allocation or not allocation.get("ends_at") or allocation.get("state", "granted") != "granted":
        return None
    from datetime import datetime

    now = time.time() if now is None else now
    ends = datetime.fromisoformat(allocation["ends_at"]).timestamp()
    minutes = max(0, int(-(-(ends - now) // 60)))
    label = f"Your server {name}" if name else "Your server"
    extend = ("it was extended once already" if allocation.get("extended")
              else "extend it once in JupyterLab's GPU panel")
    at = clock(allocation["ends_at"])
    return {
        "label": label, "ends_at": allocation["ends_at"], "clock": at, "minutes": minutes,
        "duration": human_minutes(minutes), "extend": extend, "notice": allocation.get("notice"),
        "text": f"{label} stops at {at} (in {human_minutes(minutes)}); {extend}",
    }


def stop_reason(allocation: dict, current: dict) -> str:
    """What the user is told when the hub stopped their server because its GPU
    share is no longer granted."""
    host = allocation.get("host") or "its host"
    state = current.get("state") or "gone"
    when = current.get("released")
    at = f" at {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(when))}" if when is not None else ""
    if state == "lost":
        why = (f"the GPU host {host} stopped answering and was marked lost{at}; its "
               "session is stopped (fenced) there when the host comes back")
    elif state == "revoked" and current.get("revoked_by") == "idle-reclaim":
        detail = (current.get("reason") or "its GPU was idle").removeprefix("reclaimed: ")
        why = f"its GPU share was reclaimed{at} for others waiting: {detail}"
    elif state == "revoked":
        by = current.get("revoked_by")
        why = f"an administrator{f' ({by})' if by else ''} revoked its GPU share{at}"
        if current.get("reason"):
            why += f": {current['reason']}"
    elif state == "expired":
        why = f"its run time (max_hours, {allocation.get('max_hours', '?')} h) was over{at}"
    elif state == "released":
        why = f"its GPU share was released{at} (by an administrator or the allocator)"
    else:
        why = f"its GPU share is {state}"
    return (f"Your previous server was stopped: {why}. Its GPUs may be given to others; "
            "unsaved work in that session is lost. Start a new server to continue.")
