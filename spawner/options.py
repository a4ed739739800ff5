"""The spawn options: the form a user sees, and what comes back from it.

The form is built from the allocator's ``GET pool`` answer (the wire shape);
validation is not done here but by the allocator (``POST allocations`` with
``"dry_run": true``), so the form, the hub's REST API and the allocator's API
refuse the same values with the same words.
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape

from gpu_allocator.core.validation import SPAWN_KEYS, RequestError, check_keys
from gpuhub.numbers import gpu_hours_text

from .profiles import CUSTOM, FIELDS, RECORDED, Profile, default_profile, facts

#: the GPU amounts the form offers for free choices by default
#: (GPUSpawner.gpu_choices configures them)
DEFAULT_GPU_CHOICES = ("0", "0.25", "0.5", "1", "2", "4")

#: run times (hours) the form's estimates are computed for, besides the default: the
#: script shows those of the smallest one ≥ what the user typed
FORM_RUNTIMES = (1.0, 2.0, 4.0, 8.0, 24.0, 72.0)

__all__ = [
    "DEFAULT_GPU_CHOICES", "FORM_RUNTIMES", "SPAWN_KEYS", "candidates", "check_spawn_keys", "clock",
    "estimate_text", "form_runtimes", "options_from_form", "quota_line", "render_form",
]


def check_spawn_keys(options: object, extra_keys: frozenset[str] = frozenset()) -> dict:
    """user_options must be an object with known keys (the runtime's own, like
    "image", are in ``extra_keys``; ``profile`` and ``summary``, the spawner's
    record of a spawn, come back when JupyterHub reuses the last options)."""
    if not isinstance(options, dict):
        raise RequestError("spawn options must be a JSON object")
    check_keys({k: v for k, v in options.items() if k not in RECORDED}, SPAWN_KEYS | extra_keys)
    return options


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """Form fields → user_options (strings stay strings; validation comes later).
    A picked profile sends ``{"profile": SLUG}`` and the fields of its card
    (``SLUG--FIELD``); the free choice, the form's own fields."""

    def first(key: str) -> str:
        return (formdata.get(key) or [""])[0].strip()

    profile = first("profile")
    if profile and profile != CUSTOM:
        options = {"profile": profile}
        prefix = f"{profile}--"
        for key in formdata:
            name = key[len(prefix):]
            if key.startswith(prefix) and name in FIELDS and name != "vfolders" and first(key):
                options[name] = first(key)
        return options
    gpus = first("gpus")
    if gpus == "custom":
        gpus = first("gpus_custom")
    options = {"gpus": gpus, "cpu": first("cpu"), "mem": first("mem"), "max_hours": first("max_hours")}
    if first("gpu_model"):
        options["gpu_model"] = first("gpu_model")
    if first("pool"):
        options["pool"] = first("pool")
    if first("image"):
        options["image"] = first("image")
    if profile == CUSTOM:
        options["profile"] = CUSTOM
    return options


def clock(iso_time: str | None, now: datetime | None = None) -> str | None:
    """ISO 8601 → "14:20" in the hub's local time ("Tue 01 Dec 14:20" beyond
    today); the form's script shows the browser's local time instead."""
    if not iso_time:
        return None
    t = datetime.fromisoformat(iso_time).astimezone()
    today = (now or datetime.now()).astimezone().date()
    return t.strftime("%H:%M") if t.date() == today else t.strftime("%a %d %b %H:%M")


# --- start estimates and quota (POST estimates) ----------------------------------------


def form_runtimes(default: float, max_hours: float) -> list[float]:
    """The run times estimates are asked for: the default and FORM_RUNTIMES, up to
    the allocator's longest (which is included)."""
    wanted = {float(default), float(max_hours), *FORM_RUNTIMES}
    return sorted(h for h in wanted if 0 < h <= max_hours)


def _models(pool: dict) -> list[str]:
    models = list(pool.get("models") or [])
    return [""] + models if len(models) > 1 else [""]


def candidates(pool: dict, defaults: dict, runtimes: list[float],
               choices=DEFAULT_GPU_CHOICES) -> list[dict]:
    """One request per GPU choice of the form × GPU model ("" any) × run time, with
    the default CPU and memory: the body of POST estimates."""
    return [
        {"gpus": c, "cpu": defaults["cpu"], "mem": defaults["mem"], "max_hours": h, "gpu_model": m or None}
        for c in offered(pool, choices) if c != "0"
        for m in _models(pool)
        for h in runtimes
    ]


def estimate_key(gpus: str, model: str, hours: float) -> str:
    return f"{gpus}|{model}|{float(hours):g}"


def where_text(lands: dict | None) -> str:
    """Where a choice would land (POST estimates' ``lands``): " on node-a (A100)"
    where it starts now or only one host could hold it, else " on any of node-a,
    node-b"."""
    if not lands:
        return ""
    models = "/".join(lands.get("models") or ())
    if lands.get("host"):
        return f" on {lands['host']}" + (f" ({models})" if models else "")
    hosts = list(lands.get("hosts") or ())
    if len(hosts) == 1 and not lands.get("more_hosts"):
        return f" on {hosts[0]}" + (f" ({models})" if models else "")
    if not hosts:
        return ""
    more = f" and {lands['more_hosts']} more" if lands.get("more_hosts") else ""
    return f" on any of {', '.join(hosts)}{more}"


def estimate_text(e: dict) -> str:
    """"starts now on node-a (A100)", "expected start 14:20 (at the latest 15:05)
    on any of node-a, node-b", or why not."""
    if e.get("error"):
        return e["error"]
    quota = e.get("quota") or {}
    if quota.get("verdict") == "hard":
        return quota.get("reason") or "over your quota"
    where = where_text(e.get("lands"))
    if e.get("starts_now"):
        return "starts now" + where
    if e.get("estimated") is False:
        return "start not estimated (the pool is busy: reload the page)"
    eta, latest = clock(e.get("eta")), clock(e.get("eta_latest"))
    if not eta:
        return "cannot start with the GPUs that are up now"
    text = f"expected start {eta}"
    if latest and latest != eta:
        text += f" (at the latest {latest})"
    text += where
    if quota.get("verdict") not in (None, "ok") and quota.get("reason"):
        text += f"; {quota['reason']}"
    return text


def estimate_table(requests: list[dict], answer: dict) -> dict:
    """{estimate_key: the allocator's estimate} for the form's script."""
    table = {}
    for req, e in zip(requests, answer.get("estimates") or ()):
        keep = {k: e.get(k) for k in ("starts_now", "eta", "eta_latest", "estimated", "error", "lands")}
        keep["quota"] = e.get("quota")
        table[estimate_key(req["gpus"], req["gpu_model"] or "", req["max_hours"])] = keep
    return table


def quota_line(quota: dict | None) -> str:
    """"GPUs: 1.5 of 4 in use · GPU-hours this week: 8 used + 4 reserved of 40"
    (limits where set)."""
    if not quota:
        return ""
    limits, held = quota.get("limits") or {}, quota.get("held") or {}
    parts = [f"GPUs: {held.get('gpus', '0')}" + (f" of {limits['gpus']}" if limits.get("gpus") is not None else "")
             + " in use"]
    if limits.get("sessions") is not None:
        parts.append(f"sessions: {held.get('sessions', 0)} of {limits['sessions']}")
    limit = float(limits["gpu_hours"]) if limits.get("gpu_hours") is not None else None
    parts.append("GPU-hours this week: " + gpu_hours_text(
        float(held.get("gpu_hours_used", held.get("gpu_hours")) or 0), float(held.get("gpu_hours_reserved") or 0),
        limit))
    return " · ".join(parts)


ESTIMATES_SCRIPT = """
<script>
(function () {
  var blob = document.getElementById('gpuhub-estimates');
  if (!blob) return;
  var data = JSON.parse(blob.textContent);
  var gpus = document.getElementById('gpuhub-gpus'), hours = document.getElementById('gpuhub-hours');
  var model = document.getElementById('gpuhub-model');
  function clock(iso) {
    var t = new Date(iso), now = new Date();
    var hm = t.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
    if (t.toDateString() === now.toDateString()) return hm;
    return t.toLocaleDateString([], {weekday: 'short', day: 'numeric', month: 'short'}) + ' ' + hm;
  }
  function where(l) {
    if (!l) return '';
    var models = (l.models || []).join('/'), hosts = l.hosts || [];
    if (l.host) return ' on ' + l.host + (models ? ' (' + models + ')' : '');
    if (hosts.length === 1 && !l.more_hosts) return ' on ' + hosts[0] + (models ? ' (' + models + ')' : '');
    if (!hosts.length) return '';
    return ' on any of ' + hosts.join(', ') + (l.more_hosts ? ' and ' + l.more_hosts + ' more' : '');
  }
  function text(e) {
    if (e.error) return e.error;
    var q = e.quota || {};
    if (q.verdict === 'hard') return q.reason || 'over your quota';
    if (e.starts_now) return 'starts now' + where(e.lands);
    if (e.estimated === false) return 'start not estimated (the pool is busy: reload the page)';
    if (!e.eta) return 'cannot start with the GPUs that are up now';
    var s = 'expected start ' + clock(e.eta);
    if (e.eta_latest && clock(e.eta_latest) !== clock(e.eta)) s += ' (at the latest ' + clock(e.eta_latest) + ')';
    s += where(e.lands);
    if (q.verdict && q.verdict !== 'ok' && q.reason) s += '; ' + q.reason;
    return s;
  }
  function runtime() {
    var v = parseFloat(hours.value), rs = data.runtimes;
    for (var i = 0; i < rs.length; i++) if (!(rs[i] < v)) return rs[i];
    return rs[rs.length - 1];
  }
  function refresh() {
    var m = model ? model.value : '', h = runtime();
    function find(gpus) { return data.table[gpus + '|' + m + '|' + String(h)]; }
    for (var i = 0; i < gpus.options.length; i++) {
      var o = gpus.options[i], e = find(o.value);
      if (o.value !== '0' && o.value !== 'custom') o.textContent = o.value + ' GPU' + (e ? ' \u2014 ' + text(e) : '');
    }
    document.querySelectorAll('#gpuhub-starts li').forEach(function (li) {
      var e = find(li.dataset.gpus);
      li.querySelector('.gpuhub-start').textContent = e ? text(e) : '';
    });
  }
  hours.addEventListener('input', refresh);
  if (model) model.addEventListener('change', refresh);
  // CPU and memory change where a share fits: the estimates are asked again for
  // them (the allocator, as the user: the hub's sign-in), every choice at once
  var cpu = document.getElementById('gpuhub-cpu'), mem = document.getElementById('gpuhub-mem');
  var timer = null, asked = 0;
  function reask() {
    if (!data.url || !cpu.checkValidity() || !mem.checkValidity() || !cpu.value || !mem.value) return;
    var keys = Object.keys(data.table), seq = ++asked;
    var requests = keys.map(function (k) {
      var p = k.split('|');
      return {gpus: p[0], gpu_model: p[1] || null, max_hours: parseFloat(p[2]), cpu: cpu.value, mem: mem.value};
    });
    document.getElementById('gpuhub-gpus').dataset.estimating = '1';
    fetch(data.url + '?requests=' + encodeURIComponent(JSON.stringify(requests)), {credentials: 'same-origin'})
      .then(function (r) { return r.json().then(function (b) { if (!r.ok) throw new Error(b.error || r.status); return b; }); })
      .then(function (answer) {
        if (seq !== asked) return;  // an older answer than the fields now say
        keys.forEach(function (k, i) { data.table[k] = answer.estimates[i]; });
        refresh();
      })
      .catch(function (e) {
        if (seq !== asked) return;
        keys.forEach(function (k) { data.table[k] = {error: 'start not estimated (' + e.message + ')'}; });
        refresh();
      })
      .then(function () { if (seq === asked) delete document.getElementById('gpuhub-gpus').dataset.estimating; });
  }
  function later() { clearTimeout(timer); timer = setTimeout(reask, 400); }
  cpu.addEventListener('input', later);
  mem.addEventListener('input', later);
  refresh();
})();
</script>"""


def _estimates_block(estimates: dict | None, defaults: dict) -> tuple[dict, str]:
    """(initial option suffixes by choice, the data + script) for the form."""
    if not estimates or not estimates.get("answer"):
        return {}, ""
    table = estimate_table(estimates["requests"], estimates["answer"])
    runtimes = estimates["runtimes"]
    default_h = next((h for h in runtimes if h >= float(defaults["max_hours"])), runtimes[-1])
    suffix = {}
    for key, e in table.items():
        gpus, model, hours = key.split("|")
        if model == "" and hours == f"{default_h:g}":
            suffix[gpus] = estimate_text(e)
    blob = json.dumps({"runtimes": runtimes, "table": table, "url": estimates.get("url")}).replace("</", "<\\/")
    return suffix, (f'<script type="application/json" id="gpuhub-estimates">{blob}</script>'
                    + ESTIMATES_SCRIPT)


def _up(pool: dict) -> list[dict]:
    return [h for h in pool.get("hosts", []) if h["state"] != "lost"]


def _no_fractions(pool: dict) -> list[str]:
    """Hosts with GPUs that cannot enforce fractional shares (no CUDA MPS)."""
    return [h["name"] for h in _up(pool) if h["devices"] and h.get("fractions") is False]


def offered(pool: dict, choices=DEFAULT_GPU_CHOICES) -> list[str]:
    """Of the preset GPU amounts ``choices`` (GPUSpawner.gpu_choices), those some
    host of this pool could ever hold."""
    biggest = max((len(h["devices"]) for h in _up(pool)), default=0)
    fractions = any(h["devices"] and h.get("fractions", True) for h in _up(pool))
    out = []
    for choice in choices:
        amount = float(choice)
        if 0 < amount < 1 and ((amount * pool["units_per_gpu"]) % 1 or not fractions):
            continue  # not a multiple of this pool's quantum, or no host enforces fractions
        if amount <= biggest:
            out.append(choice)
    return out


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
    drained = [h for h in pool.get("hosts", []) if h["state"] == "drained" and h["devices"]]
    for h in drained[:12]:
        model = h["devices"][0]["model"]
        lines.append(f"{escape(h['name'])}: {len(h['devices'])} × {escape(model)} "
                     '<span class="gpuhub-maintenance">under maintenance</span> (takes no new sessions)')
    if len(drained) > 12:
        lines.append(f"and {len(drained) - 12} more hosts under maintenance")
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


def _pool_field(pools: list[dict]) -> str:
    """A choice of host pool, only for a user with more than one open to them
    (POST estimates' ``pools``); "any" lets the allocator choose among them."""
    if len(pools) < 2:
        return ""
    options = "".join(
        f'<option value="{escape(p["name"])}">{escape(p["name"])}'
        f'{" — " + escape(p["description"]) if p.get("description") else ""}</option>'
        for p in pools
    )
    return f"""
<div class="form-group mb-3">
  <label class="form-label" for="gpuhub-pool">Host pool</label>
  <select class="form-control form-select" name="pool" id="gpuhub-pool">
    <option value="">any open to you</option>{options}
  </select>
</div>"""


def render_form(pool: dict, defaults: dict, images: list[str] = (), estimates: dict | None = None,
                profiles: list[Profile] = (), allow_custom: bool = True,
                choices=DEFAULT_GPU_CHOICES) -> str:
    """The spawn page's form, built from what the pool can hold and has free now
    (and the images an admin configured, where the runtime has images). With
    ``estimates`` (``{"runtimes", "requests", "answer"}``: POST estimates' body
    and answer), each GPU choice says when it would start and the user's quota is
    shown; the script redoes both for the run time and model the user picks. A
    user with more than one host pool open to them (the estimates' ``pools``)
    picks one or "any".

    ``profiles`` (those the user's groups see) come first, as radio cards, each
    with the fields its ``overrides`` let the user change and when it would
    start (the estimates' ``profiles``); the free choice (``choices``: the GPU
    amounts offered) is the card "custom" where ``allow_custom``."""
    if not profiles:
        if not allow_custom:
            return ('<div class="alert alert-warning" role="alert" id="gpuhub-no-profile">No profile is '
                    "offered to you, and free choices are not allowed here: ask an admin to offer one "
                    "to your groups.</div>")
        return _custom_form(pool, defaults, images, estimates, choices)
    return _profiles_form(pool, defaults, images, estimates, list(profiles), allow_custom, choices)


def _custom_form(pool: dict, defaults: dict, images: list[str], estimates: dict | None, choices,
                 summary: bool = True) -> str:
    """The free choice: GPU share, model, pool, CPU, memory, run time (and the
    quota and what is free now, unless ``summary`` is False)."""
    choices = offered(pool, choices)
    up = _up(pool)
    biggest = max(up, key=lambda h: (len(h["devices"]), float(h["cpus"])), default=None)
    max_gpus = len(biggest["devices"]) if biggest else 0
    quantum = pool.get("quantum", "0.05")
    default_gpus = str(defaults.get("gpus", "0"))
    suffix, script = _estimates_block(estimates, defaults)

    def option(c: str) -> str:
        label = "none" if c == "0" else c + " GPU"
        shown = f"{label} — {suffix[c]}" if c in suffix else label
        selected = " selected" if c == default_gpus else ""
        return f'<option value="{c}"{selected}>{escape(shown)}</option>'

    gpu_options = "\n".join(option(c) for c in choices)
    starts = "".join(
        f'<li data-gpus="{c}">{c} GPU: <span class="gpuhub-start">{escape(suffix[c])}</span></li>'
        for c in choices if c in suffix
    )
    starts_html = (
        '<p class="help-block form-text">When each share would start (with the model and run time below):</p>'
        f'<ul class="gpuhub-starts" id="gpuhub-starts">{starts}</ul>'
    ) if starts else ""
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
  {starts_html}
  {_summary_html(pool, estimates) if summary else ""}
</div>
{_model_field(list(pool.get("models") or []))}
{_pool_field(list(((estimates or {}).get("answer") or {}).get("pools") or []))}
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
{script}
"""


def _summary_html(pool: dict, estimates: dict | None) -> str:
    """The user's quota, the fraction note and what is free now."""
    quota = quota_line(((estimates or {}).get("answer") or {}).get("quota"))
    quota_html = f'<p class="help-block form-text gpuhub-quota" id="gpuhub-quota">{escape(quota)}</p>' if quota else ""
    free_lines = "".join(f"<li>{line}</li>" for line in _free_summary(pool)) or "<li>nothing</li>"
    return f"""{quota_html}
  {_fraction_note(pool)}
  <p class="help-block form-text">Free right now:</p>
  <ul class="gpuhub-free">{free_lines}</ul>"""


# --- profiles ----------------------------------------------------------------------------

PROFILES_STYLE = """
<style>
  .gpuhub-profile { cursor: pointer; margin-bottom: .5rem; display: block; }
  .gpuhub-profile .card-body { padding: .75rem 1rem; }
  .gpuhub-profile.gpuhub-picked { border-color: #f37626; box-shadow: 0 0 0 1px #f37626; }
  .gpuhub-profile-name { font-weight: 600; margin-left: .25rem; }
  .gpuhub-profile-facts, .gpuhub-profile .gpuhub-start { color: #6c757d; font-size: .9em; margin: .15rem 0 0; }
  .gpuhub-profile-description { margin: .25rem 0 0; }
  .gpuhub-profile-fields { display: flex; flex-wrap: wrap; gap: .5rem 1rem; margin-top: .5rem; }
  .gpuhub-profile-fields label { font-size: .9em; }
  .gpuhub-profile-fields .form-control { width: auto; display: inline-block; }
</style>"""

#: shows the picked card's fields and the free choice's only with it; the vfolder
#: checkboxes (spawner.vfolders) only where the pick lets the user choose them
PROFILES_SCRIPT = """
<script>
(function () {
  function sync() {
    var picked = document.querySelector('input[name=profile]:checked');
    var slug = picked ? picked.value : 'custom';
    var card = picked ? picked.closest('.gpuhub-profile') : null;
    document.querySelectorAll('.gpuhub-profile').forEach(function (c) {
      var on = c.dataset.slug === slug;
      c.classList.toggle('gpuhub-picked', on);
      c.querySelectorAll('.gpuhub-profile-fields input, .gpuhub-profile-fields select').forEach(
        function (el) { el.disabled = !on; });
    });
    var custom = document.getElementById('gpuhub-custom');
    if (custom) {
      custom.style.display = slug === 'custom' ? '' : 'none';
      custom.querySelectorAll('input, select').forEach(function (el) { el.disabled = slug !== 'custom'; });
    }
    var open = slug === 'custom' || (card && card.dataset.vfoldersOverride === '1');
    document.querySelectorAll('.gpuhub-vfolders').forEach(function (block) {
      block.style.display = open ? '' : 'none';
      block.querySelectorAll('input').forEach(function (el) { el.disabled = !open; });
      if (open && card && card.dataset.vfolders) {
        var names = JSON.parse(card.dataset.vfolders);
        block.querySelectorAll('input[type=checkbox]').forEach(function (el) {
          el.checked = names.indexOf(el.value) >= 0; });
      }
    });
  }
  document.addEventListener('change', function (e) { if (e.target.name === 'profile') sync(); });
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', sync); else sync();
})();
</script>"""


def _field(profile: Profile, name: str, pool: dict, images: list[str], value) -> str:
    """An input for a field the profile lets the user change (``SLUG--FIELD``)."""
    fid = f"gpuhub-{profile.slug}--{name}"
    attrs = f'name="{escape(profile.slug)}--{name}" id="{escape(fid)}"'
    shown = "" if value is None else str(value)
    label = {"gpus": "GPU share", "gpu_model": "GPU model", "cpu": "CPU cores", "mem": "Memory",
             "max_hours": "Run time (hours)", "pool": "Host pool", "image": "Image"}[name]

    def select(options: list[tuple[str, str]]) -> str:
        opts = "".join(f'<option value="{escape(v)}"{" selected" if v == shown else ""}>{escape(t)}</option>'
                       for v, t in options)
        return f'<select class="form-control form-select form-select-sm" {attrs}>{opts}</select>'

    if name == "gpus" and profile.choices and "gpus" not in profile.overrides:
        control = select([(c, "none" if c == "0" else f"{c} GPU") for c in profile.choices])
    elif name == "gpu_model":
        control = select([("", "any")] + [(m, m) for m in pool.get("models") or ()])
    elif name == "image" and images:
        control = select([(i, i) for i in images] if shown in images else [(shown, shown)] + [(i, i) for i in images])
    elif name in ("gpus", "cpu", "max_hours"):
        step = {"gpus": pool.get("quantum", "0.05"), "cpu": "0.1", "max_hours": "0.25"}[name]
        control = (f'<input class="form-control form-control-sm" type="number" min="0" step="{step}" '
                   f'{attrs} value="{escape(shown)}">')
    else:
        control = f'<input class="form-control form-control-sm" type="text" {attrs} value="{escape(shown)}">'
    return f'<label for="{escape(fid)}">{label} {control}</label>'


def _profile_card(profile: Profile, pool: dict, defaults: dict, images: list[str], checked: bool,
                  start: str | None) -> str:
    s = {**defaults, **profile.settings}
    fields = [name for name in FIELDS if name != "vfolders" and profile.may_change(name)]
    inputs = "".join(_field(profile, name, pool, images, s.get(name)) for name in fields)
    extra = []
    if profile.settings.get("image"):
        extra.append(f"image {profile.settings['image']}")
    if profile.settings.get("vfolders"):
        extra.append("vfolders: " + ", ".join(profile.settings["vfolders"]))
    data = ""
    if profile.may_change("vfolders"):
        data += ' data-vfolders-override="1"'
        if "vfolders" in profile.settings:
            data += f' data-vfolders="{escape(json.dumps(profile.settings["vfolders"]))}"'
    rid = f"gpuhub-profile-{profile.slug}"
    return f"""
<label class="card gpuhub-profile{' gpuhub-picked' if checked else ''}" for="{rid}" data-slug="{escape(profile.slug)}"{data}>
  <div class="card-body">
    <input class="form-check-input" type="radio" name="profile" id="{rid}" value="{escape(profile.slug)}"{' checked' if checked else ''}>
    <span class="gpuhub-profile-name">{escape(profile.display_name)}</span>
    {f'<p class="gpuhub-profile-description">{escape(profile.description)}</p>' if profile.description else ''}
    <p class="gpuhub-profile-facts">{escape(" · ".join([facts(profile, defaults), *extra]))}</p>
    {f'<p class="gpuhub-start">{escape(start)}</p>' if start else ''}
    {f'<div class="gpuhub-profile-fields">{inputs}</div>' if inputs else ''}
  </div>
</label>"""


def _profiles_form(pool: dict, defaults: dict, images: list[str], estimates: dict | None,
                   profiles: list[Profile], allow_custom: bool, choices) -> str:
    picked = default_profile(profiles)
    starts = (estimates or {}).get("profiles") or {}
    cards = "".join(
        _profile_card(p, pool, defaults, list(images), p is picked,
                      estimate_text(starts[p.slug]) if p.slug in starts else None)
        for p in profiles)
    custom = ""
    if allow_custom:
        cards += f"""
<label class="card gpuhub-profile" for="gpuhub-profile-custom" data-slug="{CUSTOM}" data-vfolders-override="1">
  <div class="card-body">
    <input class="form-check-input" type="radio" name="profile" id="gpuhub-profile-custom" value="{CUSTOM}">
    <span class="gpuhub-profile-name">Custom</span>
    <p class="gpuhub-profile-facts">Pick the GPU share, CPU, memory and run time yourself.</p>
  </div>
</label>"""
        custom = (f'<div class="gpuhub-custom" id="gpuhub-custom" style="display: none">'
                  f'{_custom_form(pool, defaults, images, estimates, choices, summary=False)}</div>')
    return f"""{PROFILES_STYLE}
<fieldset class="form-group mb-3 gpuhub-profiles" id="gpuhub-profiles">
  <legend class="form-label fs-6">Profile</legend>
  {cards}
  {_summary_html(pool, estimates)}
</fieldset>
{custom}
{PROFILES_SCRIPT}
"""
