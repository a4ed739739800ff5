"""Write a benchmark's ``--json`` output into benchmarks/RESULTS.md as a dated section.

    python benchmarks/packing.py --trace … --json > /tmp/packing.json
    python benchmarks/results.py packing /tmp/packing.json \\
        --command "python benchmarks/packing.py --trace … --json" [--date 2026-12-01] [--note "…"]

The section ``### NAME, DATE`` (under ``## NAME``, newest first) says when, on
what machine and with which command, and shows the results: a list of records
(or a ``rows`` list) as a table, other values as a list, nested values as JSON.
A second run on the same date replaces that date's section, so re-running a
benchmark updates its figures instead of piling them up. Sections written by
hand (older figures) are left as they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
BEGIN = "<!-- results: {name} {date} -->"
END = "<!-- /results -->"


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v, separators=(",", ":")) + "`"
    return str(v).replace("|", "\\|")


def table(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out


def render(data) -> list[str]:
    """The results as Markdown: records as a table, the rest as a list."""
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return table(data)
    if not isinstance(data, dict):
        return ["```json", json.dumps(data, indent=1), "```"]
    out: list[str] = []
    rest = {}
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            out += [f"`{k}`:", ""] + table(v) + [""]
        elif isinstance(v, dict):
            out += [f"`{k}`:", "", "```json", json.dumps(v, indent=1), "```", ""]
        else:
            rest[k] = v
    return [f"- `{k}`: {cell(v)}" for k, v in rest.items()] + ([""] if rest else []) + out


def section(name: str, date: str, data, command: str, note: str) -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    lines = [BEGIN.format(name=name, date=date), f"### {name}, {date}", "",
             f"Measured {date} on {machine}" + (f": {note}" if note else "."), ""]
    if command:
        lines += ["    " + command, ""]
    lines += render(data)
    return "\n".join(lines).rstrip() + "\n\n" + END + "\n"


def update(text: str, name: str, date: str, body: str) -> str:
    """``text`` with ``body`` as NAME's section for DATE: replacing it, or newest
    first under ``## NAME`` (added at the end when missing)."""
    pattern = re.compile(re.escape(BEGIN.format(name=name, date=date)) + r".*?" + re.escape(END) + r"\n", re.S)
    if pattern.search(text):
        return pattern.sub(lambda m: body, text, count=1)
    head = re.search(rf"^## {re.escape(name)}\n\n?", text, re.M)
    if head is None:
        return text.rstrip() + f"\n\n## {name}\n\n" + body
    return text[:head.end()] + body + "\n" + text[head.end():]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", help="the benchmark, e.g. packing (the section's title)")
    ap.add_argument("json_file", help="what the benchmark printed with --json ('-': stdin)")
    ap.add_argument("--date", default=dt.date.today().isoformat())
    ap.add_argument("--command", default="", help="the command that produced it")
    ap.add_argument("--note", default="", help="anything the reader should know (load, commit)")
    ap.add_argument("--results", default=RESULTS, help="the file to update")
    a = ap.parse_args(argv)
    with (sys.stdin if a.json_file == "-" else open(a.json_file)) as f:
        data = json.load(f)
    with open(a.results) as f:
        text = f.read()
    text = update(text, a.name, a.date, section(a.name, a.date, data, a.command, a.note))
    with open(a.results, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
