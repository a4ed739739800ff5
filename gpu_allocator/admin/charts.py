"""Charts as inline SVG (no frontend build): utilisation over time per model."""

from __future__ import annotations

import time

from markupsafe import Markup, escape


def _ticks(start: float, end: float, window: str) -> list[tuple[float, str]]:
    step = 4 * 3600 if window == "24h" else 86400
    fmt = "%H:%M" if window == "24h" else "%a %d"
    first = (int(start) // step + 1) * step
    out = []
    t = first
    for _ in range(50):
        if t >= end:
            break
        out.append((t, time.strftime(fmt, time.gmtime(t))))
        t += step
    return out


def utilisation_chart(series: list[dict], start: float, end: float, window: str, title: str,
                      width: int = 560, height: int = 180) -> Markup:
    """Allocated share (filled area) and measured utilisation (line) in percent."""
    left, right, top, bottom = 40, 10, 22, 24
    w, h = width - left - right, height - top - bottom
    span = max(end - start, 1.0)

    def x(t):
        return left + w * (t - start) / span

    def y(v):
        return top + h * (1.0 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg class="gpuhub-chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">',
        f'<text x="{left}" y="14" class="gpuhub-chart-title">{escape(title)}</text>',
    ]
    for v in (0, 0.5, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">{int(v * 100)}%</text>')
    for t, label in _ticks(start, end, window):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + h}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{height - 6}" text-anchor="middle" class="axis">{label}</text>')
    # the allocated share: one filled polygon per run of buckets with samples
    runs, run = [], []
    for p in series:
        if p["allocated"] is None:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(p)
    if run:
        runs.append(run)
    for run in runs:
        pts = [(x(p["t"]), y(p["allocated"])) for p in run]
        if len(pts) == 1:
            pts = [(pts[0][0] - 2, pts[0][1]), (pts[0][0] + 2, pts[0][1])]
        poly = [f"{pts[0][0]:.1f},{y(0):.1f}"] + [f"{a:.1f},{b:.1f}" for a, b in pts] + [f"{pts[-1][0]:.1f},{y(0):.1f}"]
        parts.append(f'<polygon points="{" ".join(poly)}" class="allocated"/>')
        parts.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}" class="allocated-line"/>')
    util = [(x(p["t"]), y(p["utilisation"])) for p in series if p["utilisation"] is not None]
    if util:
        parts.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in util)}" class="utilisation"/>')
    if not runs and not util:
        parts.append(f'<text x="{left + w / 2}" y="{top + h / 2}" text-anchor="middle" class="axis">no samples yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
