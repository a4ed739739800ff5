"""The spawn options: the form a user sees, and what comes back from it.

The form is built from the allocator's ``GET pool`` answer (the wire shape);
validation is not done here but by the allocator (``POST allocations`` with
``"dry_run": true``), so the form, the hub's REST API and the allocator's API
refuse the same values with the same words.
"""

from __future__ import annotations

from html import escape

from gpu_allocator.core.validation import SPAWN_KEYS, RequestError, check_keys

GPU_CHOICES = ("0", "0.25", "0.5", "1", "2", "4")

__all__ = ["GPU_CHOICES", "SPAWN_KEYS", "check_spawn_keys", "options_from_form", "render_form"]


def check_spawn_keys(options: object, extra_keys: frozenset[str] = frozenset()) -> dict:
    """user_options must be an object with known keys (the runtime's own, like
    "image", are in ``extra_keys``)."""
    if not isinstance(options, dict):
        raise RequestError("spawn options must be a JSON object")
    check_keys({k: v for k, v in options.items() if k != "profile"}, SPAWN_KEYS | extra_keys)
    return options


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """Form fields → user_options (strings stay strings; validation comes later)."""

    def first(key: str) -> str:
        return (formdata.get(key) or [""])[0].strip()

    gpus = first("gpus")
    if gpus == "custom":
        gpus = first("gpus_custom")
    options = {"gpus": gpus, "cpu": first("cpu"), "mem": first("mem"), "max_hours": first("max_hours")}
    if first("gpu_model"):
        options["gpu_model"] = first("gpu_model")
    if first("image"):
        options["image"] = first("image")
    return options


def _up(pool: dict) -> list[dict]:
    return [h for h in pool.get("hosts", []) if h["state"] != "lost"]


def _no_fractions(pool: dict) -> list[str]:
    """Hosts with GPUs that cannot enforce fractional shares (no CUDA MPS)."""
    return [h["name"] for h in _up(pool) if h["devices"] and h.get("fractions") is False]


def _offered(pool: dict) -> list[str]:
    """The preset GPU amounts some host of this pool could ever hold."""
    biggest = max((len(h["devices"]) for h in _up(pool)), default=0)
    fractions = any(h["devices"] and h.get("fractions", True) for h in _up(pool))
    offered = []
    for choice in GPU_CHOICES:
        amount = float(choice)
        if amount < 1 and choice != "0" and ((amount * pool["units_per_gpu"]) % 1 or not fractions):
            continue  # not a multiple of this pool's quantum, or no host enforces fractions
        if amount <= biggest:
            offered.append(choice)
    return offered


def _free_summary(pool: dict) -> list[str]:
    lines = []
    hosts = [h for h in pool.get("hosts", []) if h["state"] == "up" and h["devices"]]
    per_gpu = pool["units_per_gpu"]
    for h in hosts[:12]:
        idle = sum(1 for d in h["devices"] if d["free_units"] == per_gpu)
        free_units = sum(d["free_units"] for d in h["devices"])
        free = f"{free_units / per_gpu:g}"
        model = h["devices"][0]["model"]
        lines.append(
            f"{escape(h['name'])}: {free} of {len(h['devices'])} × {escape(model)} free "
            f"({idle} idle GPU{'s' if idle != 1 else ''})"
        )
    if len(hosts) > 12:
        lines.append(f"and {len(hosts) - 12} more hosts")
    return lines


def _fraction_note(pool: dict) -> str:
    hosts = _no_fractions(pool)
    if not hosts:
        return ""
    everywhere = len(hosts) == len([h for h in _up(pool) if h["devices"]])
    where = "no host" if everywhere else ", ".join(escape(h) for h in hosts[:8])
    return (
        '<p class="help-block form-text gpuhub-no-fractions">'
        f"Fractions of a GPU are {'not offered' if everywhere else 'not placed on ' + where}: "
        f"{'no host' if everywhere else 'these hosts'} can enforce them (CUDA MPS is not "
        "available there — no nvidia-cuda-mps-control, or GPUs in MIG mode). Whole GPUs work.</p>"
    )


def _image_field(images: list[str]) -> str:
    if len(images) < 2:
        return ""
    options = "".join(f'<option value="{escape(i)}">{escape(i)}</option>' for i in images)
    return f"""
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-image">Image</label>
  <select class="form-control form-select" name="image" id="gpuhub-image">{options}</select>
</div>"""


def _model_field(models: list[str]) -> str:
    if len(models) < 2:
        return ""
    options = "".join(f'<option value="{escape(m)}">{escape(m)}</option>' for m in models)
    return f"""
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-model">GPU model</label>
  <select class="form-control form-select" name="gpu_model" id="gpuhub-model">
    <option value="">any</option>{options}
  </select>
</div>"""


def render_form(pool: dict, defaults: dict, images: list[str] = ()) -> str:
    """The spawn page's form, built from what the pool can hold and has free now
    (and the images an admin configured, where the runtime has images)."""
    offered = _offered(pool)
    up = _up(pool)
    biggest = max(up, key=lambda h: (len(h["devices"]), float(h["cpus"])), default=None)
    max_gpus = len(biggest["devices"]) if biggest else 0
    quantum = pool.get("quantum", "0.05")
    default_gpus = str(defaults.get("gpus", "0"))
    gpu_options = "\n".join(
        f'<option value="{c}"{" selected" if c == default_gpus else ""}>'
        f'{"none" if c == "0" else c + " GPU"}</option>'
        for c in offered
    )
    free_lines = "".join(f"<li>{line}</li>" for line in _free_summary(pool)) or "<li>nothing</li>"
    max_cpu = biggest["cpus"] if biggest else "1"
    max_hours = pool.get("max_hours", 168)
    return f"""
{_image_field(list(images))}
<div class="form-group mb-3 gpuhub-options">
  <label class="form-label" for="gpuhub-gpus">GPU share</label>
  <select class="form-control form-select" name="gpus" id="gpuhub-gpus"
          onchange="document.getElementById('gpuhub-gpus-custom').style.display = this.value === 'custom' ? '' : 'none'">
    {gpu_options}
    <option value="custom">custom…</option>
  </select>
  <input class="form-control" type="number" name="gpus_custom" id="gpuhub-gpus-custom"
         min="{quantum}" max="{max_gpus}" step="{quantum}" style="display: none"
         placeholder="a multiple of {quantum} below 1, or a whole number up to {max_gpus}">
  {_fraction_note(pool)}
  <p class="help-block form-text">Free right now:</p>
  <ul class="gpuhub-free">{free_lines}</ul>
</div>
{_model_field(list(pool.get("models") or []))}
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-cpu">CPU cores</label>
  <input class="form-control" type="number" name="cpu" id="gpuhub-cpu" min="0.1" step="0.1"
         max="{escape(str(max_cpu))}" value="{escape(str(defaults['cpu']))}">
</div>
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-mem">Memory</label>
  <input class="form-control" type="text" name="mem" id="gpuhub-mem" pattern="[0-9.]+[KMGT]?"
         value="{escape(str(defaults['mem']))}" placeholder="e.g. 8G">
</div>
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-hours">Expected run time (hours)</label>
  <input class="form-control" type="number" name="max_hours" id="gpuhub-hours" min="0.25" step="0.25"
         max="{max_hours}" value="{escape(str(defaults['max_hours']))}">
</div>
"""
