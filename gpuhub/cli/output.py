"""Readable output of the ``gpuhub`` command: aligned tables (``--json`` prints
the services' own JSON instead)."""

from __future__ import annotations

import json
import sys

NONE = "—"


def cell(value) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or NONE
    return str(value)


def table(headers: list[str], rows: list[list], out=None) -> None:
    """Columns as wide as their widest cell, two spaces apart; right-aligned
    where every cell is a number-like figure."""
    out = out or sys.stdout
    text = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]
    numeric = [bool(text) and all(_numeric(r[i]) for r in text) for i in range(len(headers))]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    for r in text:
        print(line(r), file=out)


def _numeric(s: str) -> bool:
    head = s.split(" ")[0].rstrip("%")
    try:
        float(head)
        return True
    except ValueError:
        return s == NONE


def clock(iso: str | None) -> str | None:
    """An ISO time from a service as this terminal's local time, to the minute
    ("2026-12-07 21:02 CET"); None stays None (a table shows —)."""
    if not iso:
        return None
    from datetime import datetime

    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    return t.strftime("%Y-%m-%d %H:%M %Z").strip()


def dump(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
