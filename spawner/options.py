"""The spawn options: the form a user sees, and the parsing of what comes back.

The same validation (gpu_allocator.validation) serves the form and the hub's REST
API, so `{"gpus": 1.5}` is refused with the same words either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from gpu_allocator.model import Host, Pool, format_gpus
from gpu_allocator.validation import (
    SPAWN_KEYS,
    RequestError,
    check_capacity,
    check_keys,
    parse_cpu,
    parse_gpus,
    parse_hours,
    parse_mem,
)

GPU_CHOICES = ("0", "0.25", "0.5", "1", "2", "4")


@dataclass(frozen=True)
class SpawnRequest:
    units: int
    cpu: float
    mem_mb: int
    max_hours: float
    units_per_gpu: int

    @property
    def gpus(self) -> str:
        return format_gpus(self.units, self.units_per_gpu)

    def profile(self) -> str:
        """One line for JupyterHub's admin page (its Profile column)."""
        gpu = "no GPU" if not self.units else f"{self.gpus} GPU"
        return f"{gpu} · {self.cpu:g} CPU · {self.mem_mb}M · {self.max_hours:g}h"


def parse_spawn_options(
    options: dict, pool: Pool, *, defaults: dict, max_hours: float,
    extra_keys: frozenset[str] = frozenset(),
) -> SpawnRequest:
    """Validate user_options (from the form or the REST API) against the pool;
    ``extra_keys`` are passed through for the runtime to check."""
    if not isinstance(options, dict):
        raise RequestError("spawn options must be a JSON object")
    check_keys(options, SPAWN_KEYS | extra_keys)
    merged = {**defaults, **{k: v for k, v in options.items() if k in SPAWN_KEYS - {"profile"}}}
    req = SpawnRequest(
        units=parse_gpus(merged["gpus"], pool.units_per_gpu, allow_zero=True),
        cpu=parse_cpu(merged["cpu"]),
        mem_mb=parse_mem(merged["mem"]),
        max_hours=parse_hours(merged["max_hours"], max_hours),
        units_per_gpu=pool.units_per_gpu,
    )
    check_capacity(pool, req.units, req.cpu, req.mem_mb)
    return req


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """Form fields → user_options (strings stay strings; validation comes later)."""

    def first(key: str) -> str:
        return (formdata.get(key) or [""])[0].strip()

    gpus = first("gpus")
    if gpus == "custom":
        gpus = first("gpus_custom")
    options = {"gpus": gpus, "cpu": first("cpu"), "mem": first("mem"), "max_hours": first("max_hours")}
    if first("image"):
        options["image"] = first("image")
    return options


def _offered(pool: Pool) -> list[str]:
    """The preset GPU amounts some host of this pool could ever hold."""
    per_gpu = pool.units_per_gpu
    biggest = max((len(h.devices) for h in pool.hosts if h.state != "lost"), default=0)
    offered = []
    for choice in GPU_CHOICES:
        try:
            units = parse_gpus(choice, per_gpu, allow_zero=True)
        except RequestError:
            continue
        if units <= biggest * per_gpu:
            offered.append(choice)
    return offered


def _free_summary(pool: Pool) -> list[str]:
    per_gpu = pool.units_per_gpu
    free = pool.free_units()
    lines = []
    for h in pool.hosts:
        if h.state != "up" or not h.devices:
            continue
        idle = sum(1 for d in h.devices if free[d.uuid] == per_gpu)
        total_free = sum(free[d.uuid] for d in h.devices)
        model = h.devices[0].model
        lines.append(
            f"{escape(h.name)}: {format_gpus(total_free, per_gpu)} of {len(h.devices)} × "
            f"{escape(model)} free ({idle} idle GPU{'s' if idle != 1 else ''})"
        )
    return lines


def _largest_host(pool: Pool) -> Host | None:
    hosts = [h for h in pool.hosts if h.state != "lost"]
    return max(hosts, key=lambda h: (len(h.devices), h.cpus), default=None)


def _image_field(images: list[str]) -> str:
    if len(images) < 2:
        return ""
    options = "".join(f'<option value="{escape(i)}">{escape(i)}</option>' for i in images)
    return f"""
<div class="form-group">
  <label for="gpuhub-image">Image</label>
  <select class="form-control" name="image" id="gpuhub-image">{options}</select>
</div>"""


def render_form(pool: Pool, defaults: dict, images: list[str] = ()) -> str:
    """The spawn page's form, built from what the pool can hold and has free now
    (and the images an admin configured, where the runtime has images)."""
    offered = _offered(pool)
    biggest = _largest_host(pool)
    max_gpus = len(biggest.devices) if biggest else 0
    quantum = format_gpus(1, pool.units_per_gpu)
    default_gpus = str(defaults.get("gpus", "0"))
    gpu_options = "\n".join(
        f'<option value="{c}"{" selected" if c == default_gpus else ""}>'
        f'{"none" if c == "0" else c + " GPU"}</option>'
        for c in offered
    )
    free_lines = "".join(f"<li>{line}</li>" for line in _free_summary(pool)) or "<li>nothing</li>"
    max_cpu = biggest.cpus if biggest else 1
    return f"""
{_image_field(list(images))}
<div class="form-group gpuhub-options">
  <label for="gpuhub-gpus">GPU share</label>
  <select class="form-control" name="gpus" id="gpuhub-gpus"
          onchange="document.getElementById('gpuhub-gpus-custom').style.display = this.value === 'custom' ? '' : 'none'">
    {gpu_options}
    <option value="custom">custom…</option>
  </select>
  <input class="form-control" type="number" name="gpus_custom" id="gpuhub-gpus-custom"
         min="{quantum}" max="{max_gpus}" step="{quantum}" style="display: none"
         placeholder="a multiple of {quantum} below 1, or a whole number up to {max_gpus}">
  <p class="help-block">Free right now:</p>
  <ul class="gpuhub-free">{free_lines}</ul>
</div>
<div class="form-group">
  <label for="gpuhub-cpu">CPU cores</label>
  <input class="form-control" type="number" name="cpu" id="gpuhub-cpu" min="0.1" step="0.1"
         max="{max_cpu:g}" value="{escape(str(defaults['cpu']))}">
</div>
<div class="form-group">
  <label for="gpuhub-mem">Memory</label>
  <input class="form-control" type="text" name="mem" id="gpuhub-mem" pattern="[0-9.]+[KMGT]?"
         value="{escape(str(defaults['mem']))}" placeholder="e.g. 8G">
</div>
<div class="form-group">
  <label for="gpuhub-hours">Expected run time (hours)</label>
  <input class="form-control" type="number" name="max_hours" id="gpuhub-hours" min="0.5" step="0.5"
         value="{escape(str(defaults['max_hours']))}">
</div>
"""
