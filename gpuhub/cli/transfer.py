"""Uploads (tus 1.0, resumable across runs) and downloads of the ``gpuhub``
command, with their progress on stderr.

An upload's URL is remembered per (service, vfolder, destination, size, mtime)
in ``uploads.json`` of the cache directory as soon as the service created it;
the same command run again asks the service how far it got (``HEAD``: tus'
``Upload-Offset``) and sends only the rest. What the service did not keep
(expired, finished, gone) starts over. Bytes stream from the file in pieces
(nothing is held in memory), ``chunk`` bytes per ``PATCH``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlparse

from tornado.httputil import HTTPHeaders, parse_response_start_line

from gpuhub.client import ServiceClient, ServiceError
from gpuhub.numbers import human_bytes

TUS = {"Tus-Resumable": "1.0.0"}
PIECE = 256 * 1024
#: one request of a transfer may take this long (a chunk on a slow line, a large download)
LONG = 24 * 3600.0


class Progress:
    """A progress bar on a terminal (redrawn in place); elsewhere one plain line
    per tenth ("upload x: 30% (6.0 MiB of 20.0 MiB, 12.0 MiB/s)"); nothing when quiet."""

    def __init__(self, label: str, total: int | None, stream=None, quiet: bool = False):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.done = 0
        self.start_done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_step = -1

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"{self.label}: {text}", file=self.stream, flush=True)

    def resume_at(self, offset: int) -> None:
        self.done = self.start_done = offset

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, final: bool = False) -> None:
        self.done = done
        if self.quiet:
            return
        total = self.total
        pct = 100.0 * done / total if total else (100.0 if final else None)
        if self.tty:
            now = time.monotonic()
            if not final and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            width = 30
            if pct is None:
                bar = f"{human_bytes(done)}"
            else:
                fill = int(width * pct / 100)
                bar = f"[{'#' * fill}{'.' * (width - fill)}] {pct:5.1f}%  {human_bytes(done)} of {human_bytes(total)}"
            line = f"\r{self.label}  {bar}  {human_bytes(self.rate())}/s"
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write(line[: cols + 1].ljust(min(cols, 100)) + ("\n" if final else ""))
            self.stream.flush()
            return
        step = 100 if final else (int(pct // 10) * 10 if pct is not None else self._last_step)
        if step != self._last_step and (pct is not None or final):
            self._last_step = step
            of = f" of {human_bytes(total)}" if total is not None else ""
            print(f"{self.label}: {step}% ({human_bytes(done)}{of}, {human_bytes(self.rate())}/s)",
                  file=self.stream, flush=True)


# --- the remembered uploads ---------------------------------------------------------


class UploadCache:
    """key → upload path (relative to the vfolder service's API URL)."""

    def __init__(self, directory: Path):
        self.path = directory / "uploads.json"

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        entry = self._load().get(key)
        return entry.get("upload") if isinstance(entry, dict) else None

    def put(self, key: str, upload: str) -> None:
        data = self._load()
        data[key] = {"upload": upload, "saved": time.time()}
        # uploads expire on the service after a day by default: forget week-old ones
        data = {k: v for k, v in data.items() if isinstance(v, dict) and v.get("saved", 0) > time.time() - 7 * 86400}
        self._write(data)

    def forget(self, key: str) -> None:
        data = self._load()
        if data.pop(key, None) is not None:
            self._write(data)

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)


def upload_key(service_url: str, vid: str, dest: str, st: os.stat_result) -> str:
    return json.dumps([service_url, vid, dest, st.st_size, st.st_mtime_ns])


def relative_to_service(client: ServiceClient, location: str) -> str:
    """The path of an upload (tus ``Location``, an absolute path or URL) under
    the client's API URL."""
    path = urlparse(location).path
    base = urlparse(client.url).path
    if not path.startswith(base):
        raise ServiceError(502, f"the vfolder service answered an upload at {location}, outside {client.url}")
    return path[len(base):]


def tus_metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def _raise_for(resp, what: str, body: bytes | None = None) -> None:
    message = f"HTTP {resp.code}: {resp.reason}"
    body = resp.body if body is None else body
    try:
        data = json.loads(body) if body else {}
        message = data.get("error", message) if isinstance(data, dict) else message
    except (ValueError, AttributeError):
        pass
    raise ServiceError(resp.code, f"{what}: {message}")


async def upload(client: ServiceClient, vid: str, source: str, dest: str, cache: UploadCache,
                 progress_label: str, quiet: bool = False, chunk: int = 16 << 20,
                 rate: float | None = None) -> dict:
    """Upload ``source`` (a file, or ``-`` for stdin) to ``dest`` in vfolder ``vid``;
    returns {"bytes", "resumed_from", "seconds"}."""
    spooled = None
    if source == "-":  # tus needs the length first: stdin goes to a temporary file
        spooled = tempfile.NamedTemporaryFile(prefix="gpuhub-stdin-", delete=False)
        with spooled:
            shutil.copyfileobj(sys.stdin.buffer, spooled, 1 << 20)
        source = spooled.name
    try:
        with open(source, "rb") as f:
            st = os.fstat(f.fileno())
            key = upload_key(client.url, vid, dest, st) if spooled is None else None
            return await _upload_open(client, vid, f, st.st_size, dest, key, cache,
                                      Progress(progress_label, st.st_size, quiet=quiet), chunk, rate)
    finally:
        if spooled is not None:
            os.unlink(spooled.name)


async def _upload_open(client, vid, f, size, dest, key, cache, progress, chunk, rate) -> dict:
    started = time.monotonic()
    path = cache.get(key) if key else None
    offset = None
    if path:
        resp = await client.fetch("HEAD", path, headers=TUS)
        if resp.code == 200 and int(resp.headers.get("Upload-Length", -1)) == size:
            offset = int(resp.headers["Upload-Offset"])
        else:  # finished, expired or gone: start over
            cache.forget(key)
            path = None
    resumed_from = offset or 0
    if offset is None:
        resp = await client.fetch("POST", f"vfolders/{vid}/uploads/", headers={
            **TUS, "Upload-Length": str(size), "Upload-Metadata": tus_metadata(filename=dest)}, body=b"")
        if resp.code != 201:
            _raise_for(resp, "the vfolder service refused the upload")
        path = relative_to_service(client, resp.headers["Location"])
        if key:
            cache.put(key, path)
        offset = 0
    elif offset:
        progress.note(f"resuming at {human_bytes(offset)} of {human_bytes(size)} "
                      f"({100.0 * offset / size:.0f}%), where the last run stopped")
    progress.resume_at(offset)
    progress.update(offset)
    while offset < size:
        n = min(chunk, size - offset)
        sent = [offset]

        async def body(write, start=offset, n=n):
            left, pos = n, start
            while left:
                piece = os.pread(f.fileno(), min(PIECE, left), pos)
                if not piece:
                    raise OSError(f"the file got shorter while uploading (at byte {pos})")
                await write(piece)
                pos += len(piece)
                left -= len(piece)
                sent[0] = pos
                progress.update(pos)
                if rate:  # --limit-rate: never faster than rate bytes per second
                    ahead = (pos - resumed_from) / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)

        resp = await client.fetch("PATCH", path, headers={
            **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(n)}, body_producer=body, timeout=LONG)
        if resp.code == 409:  # the service has another offset: ask it, go on from there
            head = await client.fetch("HEAD", path, headers=TUS)
            if head.code != 200:
                _raise_for(head, "the upload is gone from the vfolder service")
            offset = int(head.headers["Upload-Offset"])
            continue
        if resp.code != 204:
            _raise_for(resp, "the vfolder service stopped the upload")
        offset = int(resp.headers["Upload-Offset"])
    progress.update(size, final=True)
    if key:
        cache.forget(key)
    return {"bytes": size, "resumed_from": resumed_from, "seconds": round(time.monotonic() - started, 3)}


async def download(client: ServiceClient, vid: str, path: str, out: str | None,
                   progress_label: str, quiet: bool = False) -> dict:
    """Download ``path`` of vfolder ``vid`` (a directory comes as a tar archive)
    to ``out`` (default: its name here; ``-``: stdout), through ``OUT.part``."""
    started = time.monotonic()
    state = {"code": None, "headers": HTTPHeaders(), "error": bytearray(), "file": None, "done": 0,
             "target": None, "progress": None}

    def on_header(line: str) -> None:
        if line.startswith("HTTP/"):
            state["code"] = parse_response_start_line(line.strip()).code
            state["headers"] = HTTPHeaders()
        elif line.strip():
            state["headers"].parse_line(line)

    def open_target():
        headers = state["headers"]
        total = headers.get("Content-Length")
        state["progress"] = Progress(progress_label, int(total) if total else None, quiet=quiet)
        if out == "-":
            state["file"] = sys.stdout.buffer
            return
        name = out or (path.rstrip("/").rsplit("/", 1)[-1] or "download")
        if out is None and headers.get("Content-Type") == "application/x-tar":
            name += ".tar"
        target = Path(name)
        if target.is_dir():
            target = target / (path.rstrip("/").rsplit("/", 1)[-1] or "download")
        state["target"] = target
        state["file"] = open(str(target) + ".part", "wb")

    def on_chunk(data: bytes) -> None:
        if state["code"] is None or state["code"] >= 400:
            state["error"] += data[:65536]
            return
        if state["file"] is None:
            open_target()
        state["file"].write(data)
        state["done"] += len(data)
        state["progress"].update(state["done"])

    rel = "/".join(quote(p) for p in path.strip("/").split("/") if p)
    try:
        resp = await client.fetch("GET", f"vfolders/{vid}/files/{rel}", header_callback=on_header,
                                  streaming_callback=on_chunk, timeout=LONG)
        if resp.code >= 400:
            _raise_for(resp, f"the vfolder service did not send {path}", bytes(state["error"]))
        if state["file"] is None:  # an empty file
            open_target()
        state["progress"].update(state["done"], final=True)
    except BaseException:
        if state["file"] is not None and out != "-":
            state["file"].close()
            os.unlink(str(state["target"]) + ".part")
        raise
    if out == "-":
        sys.stdout.buffer.flush()
    else:
        state["file"].close()
        os.replace(str(state["target"]) + ".part", state["target"])
    return {"bytes": state["done"], "path": "-" if out == "-" else str(state["target"]),
            "seconds": round(time.monotonic() - started, 3)}
