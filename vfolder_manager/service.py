"""``python -m vfolder_manager``: the vfolder service, a JupyterHub managed
service (tornado, HubAuth) under ``/services/vfolders/api/v1/``, and the hub's
Data page under ``/services/vfolders/data/`` (vfolder_manager.data; HubOAuth).

Background work (never on a request's hot path): usage scans with the ptools
``du`` engine, storage statistics, cleanup of expired uploads, clones (``pcp``
engine) and purges (``prm`` engine)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

from traitlets import CaselessStrEnum, Dict, Float, Int, Unicode, default

from gpuhub.service import HubService

from . import data
from .api import routes
from .manager import Manager, Refused
from .ptools import api as ptools
from .storage import fsops, stats
from .storage.hosts import parse_hosts
from .storage.quota import choose_backend, project_id
from .store import open_db
from .store.schema import VFolder, VFolderState


class VFolderService(HubService):
    name = "vfolders"
    description = "gpuhub's vfolder service: named folders on storage hosts, shared and mounted into sessions."
    service_name = "vfolders"
    default_url = "http://127.0.0.1:8052"

    db_url = Unicode(
        help="""SQLAlchemy URL of the service's database (SQLite or PostgreSQL; its
        Alembic version table is vfolders_version), e.g.
        ``postgresql+psycopg://gpuhub@db.example/gpuhub``: it may share the
        allocator's database.

        Default: SQLite in data_dir (``vfolders.sqlite``), the embedded default
        that needs no server.
        """,
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self):
        return f"sqlite:///{os.path.abspath(self.data_dir)}/vfolders.sqlite"

    storage_hosts = Dict(
        help="""Storage hosts by name, e.g. ``{"nas1": {"path": "/mnt/nas1", "default":
        true, "groups": ["ml-team"], "quota_backend": "scan"}}``.

        ``path`` is a directory (an NFS mount of the NAS in production);
        ``groups`` (optional) limits who may create vfolders there;
        ``quota_backend`` (optional) overrides quota_backend for that host;
        exactly one host is the default.

        Default: one host ``local`` at data_dir/vfolders, so that the demo has
        vfolders without a NAS.
        """,
    ).tag(config=True)

    @default("storage_hosts")
    def _default_hosts(self):
        path = os.path.join(os.path.abspath(self.data_dir), "vfolders")
        return {"local": {"path": path, "default": True}}

    quota_backend = CaselessStrEnum(
        ["scan", "project", "auto"], "scan",
        help="""How vfolder quotas are measured and enforced on storage hosts whose
        ``quota_backend`` is not set (see storage/quota.py):

        - ``scan``: usage from background pdu scans, limits enforced by the service;
        - ``project``: XFS/ext4 project quotas: one project id per vfolder, usage
          from the quota report, limits enforced by the kernel; the service refuses
          to start when the filesystem cannot;
        - ``auto``: project where the filesystem is XFS or ext4 and a probe of the
          quota tools works, else scan.

        Default ``scan``: it works on any filesystem (NFS included) without root.
        """,
    ).tag(config=True)

    vfolder_gid_base = Int(
        1_900_000_000,
        help="""Each vfolder gets its own group id, this plus 20 bits of its id
        (storage/ownership.py): its directory is SERVICE:GID 2770 with a default
        ACL that keeps files group-writable, and sessions that mount it get GID as
        a supplementary group. 0: the old model, vfolders are mode 0777 (also when
        the service does not run as root and so cannot give files away).

        Default 1,900,000,000: far above the ids that useradd, LDAP and
        systemd hand out, and below 2^31, so no group of the system collides.
        """,
    ).tag(config=True)

    group_managers = Dict(
        help="""Group name → the users who may create and manage that group's
        vfolders, e.g. ``{"ml-team": ["alice", "bob"]}``.

        Default: empty: in any group, any member may create a vfolder (and manages
        what they created).
        """,
    ).tag(config=True)

    max_upload_bytes = Int(
        1 << 40,
        help="""The largest upload accepted (tus Tus-Max-Size), in bytes, e.g.
        ``100 * 2**30`` for 100 GiB.

        Default 1 TiB: datasets fit, while a runaway client still stops somewhere.
        """,
    ).tag(config=True)

    upload_expiry = Float(
        86400.0,
        help="""Seconds after which an unfinished upload expires and its bytes are
        removed, e.g. 3600.

        Default 86400 (a day): a resumable upload survives a night's interruption.
        """,
    ).tag(config=True)

    usage_scan_interval = Float(
        60.0,
        help="""Seconds between background usage scans of every vfolder (pdu engine);
        quotas of the ``scan`` backend are as current as this.

        Default 60 seconds: a scan of a large NAS takes a while, and one a minute
        keeps it a small part of the storage's load.
        """,
    ).tag(config=True)

    stats_interval = Float(
        5.0,
        help="""Seconds between samples of the storage hosts' capacity and I/O
        counters (the admin panel's Storage tab, the metrics).

        Default 5 seconds: I/O rates stay readable, at a statvfs and a counter read
        per host.
        """,
    ).tag(config=True)

    cleanup_interval = Float(
        60.0,
        help="""Seconds between sweeps for expired uploads (upload_expiry).

        Default 60 seconds: expired bytes go within a minute, by a cheap query.
        """,
    ).tag(config=True)

    clone_progress_interval = Float(
        1.0,
        help="""Seconds between progress updates of a running clone (its bytes and
        files copied, shown to the user).

        Default 1 second: a progress bar moves, at one small write per second.
        """,
    ).tag(config=True)

    scan_threads = Int(
        0,
        help="""Threads of one usage scan (the pdu engine's ``--threads``), e.g. 8.

        Default 0: chosen by the filesystem type as the p-commands do (64 on
        NFS/FUSE/Lustre, where latency dominates; the core count on local disks).
        benchmarks/vfolders_bench.py ``scan`` compares the choices on a simulated
        NAS.
        """,
    ).tag(config=True)

    allocator_url = Unicode(
        "",
        help="""Base URL of the GPU allocator's REST API as the vfolder service reaches
        it directly, e.g. ``http://127.0.0.1:8051/services/gpu-allocator/api/v1/``:
        the Data page lists the signed-in user's batch jobs there, with their
        logs and a Cancel button. The page calls it with the user's own OAuth
        token, so the service's OAuth client needs
        ``access:services!service=gpu-allocator`` in its
        ``oauth_client_allowed_scopes`` (and users that scope), and each user
        sees and cancels only their own jobs, as the allocator decides.

        Default: empty, no allocator; the Data page's Jobs section says so.
        """,
    ).tag(config=True)

    aliases = {
        "config": "VFolderService.config_file",
        "db-url": "VFolderService.db_url",
        "port": "VFolderService.port",
        "ip": "VFolderService.ip",
    }

    def initialize(self, argv=None):
        super().initialize(argv)
        self.setup()

    def setup(self):
        self.hosts = parse_hosts(self.storage_hosts, self.quota_backend)
        self.manager = Manager(open_db(self.db_url), self.hosts, self.group_managers, self.upload_expiry)
        if self.vfolder_gid_base and os.geteuid() == 0:
            self.manager.gid_base = self.vfolder_gid_base
        elif self.vfolder_gid_base:
            self.log.warning("not root: vfolders are mode 0777 (no vfolder groups)")
        self.quota_why: dict[str, str] = {}
        for h in self.hosts.values():
            backend, why = choose_backend(h.quota_backend, h.path, scan_threads=self.scan_threads or None)
            self.manager.quotas[h.name] = backend
            self.quota_why[h.name] = why
            self.log.info("storage host %s (%s): quotas %s", h.name, h.path, why)
        self._scan_wanted: set[str] = set()
        self._scan_event: asyncio.Event | None = None
        self._stats: dict[str, dict] = {}
        self._prev: dict[str, stats.Counters] = {}
        self._tasks: list[asyncio.Task] = []

    def make_app(self):
        if not self.under_hub:  # the Data page signs in with the hub's OAuth
            return self.web_app(routes(self))
        data.attach(self)
        return self.web_app(routes(self) + data.routes(self), **data.settings(self))

    # --- background ------------------------------------------------------------------

    def start_background(self):
        self._scan_event = asyncio.Event()
        self._tasks = [
            asyncio.ensure_future(self._scan_loop()),
            asyncio.ensure_future(self._stats_loop()),
            asyncio.ensure_future(self._cleanup_loop()),
        ]

    def stop_background(self):
        for t in self._tasks:
            t.cancel()

    def schedule_scan(self, vid: str) -> None:
        self._scan_wanted.add(vid)
        if self._scan_event is not None:
            self._scan_event.set()

    async def scan(self, vid: str) -> None:
        target = await self.manager.store.run(self.manager.scan_target, vid)
        if target is None:
            return
        path, backend = target
        loop = asyncio.get_running_loop()

        def measure():
            if backend is not None and backend.enforced_by_filesystem:
                u = backend.usage(path, project_id(vid))  # the quota report: no walk
                return u.bytes, u.files
            du = ptools.du(path, threads=self.scan_threads or None)
            # the vfolder's own directory entry is not the user's data
            return du.bytes - os.lstat(path).st_size, du.files

        try:
            usage_bytes, usage_files = await loop.run_in_executor(None, measure)
        except FileNotFoundError:
            return
        await self.manager.store.run(self.manager.record_usage, vid, usage_bytes, usage_files)

    async def scan_all(self) -> None:
        for vid in await self.manager.store.run(self.manager.vfolder_ids):
            await self.scan(vid)

    async def _scan_loop(self):
        next_full = 0.0
        while True:
            try:
                if time.monotonic() >= next_full:
                    next_full = time.monotonic() + self.usage_scan_interval
                    await self.scan_all()
                while self._scan_wanted:
                    await self.scan(self._scan_wanted.pop())
            except Exception:
                self.log.exception("usage scan failed")
            self._scan_event.clear()
            try:
                await asyncio.wait_for(self._scan_event.wait(), max(next_full - time.monotonic(), 0.05))
            except asyncio.TimeoutError:
                pass

    def sample_stats(self) -> None:
        for h in self.hosts.values():
            try:
                cur = stats.sample(h.path)
                model = {**stats.capacity(h.path), "source": cur.source,
                         "read_ops": cur.read_ops, "write_ops": cur.write_ops,
                         "read_bytes": cur.read_bytes, "write_bytes": cur.write_bytes,
                         "sampled": datetime.utcnow().isoformat() + "Z"}
                prev = self._prev.get(h.name)
                model.update(stats.rates(prev, cur) if prev else stats.rates(cur, cur))
                self._prev[h.name] = cur
                self._stats[h.name] = model
            except OSError as e:
                self._stats[h.name] = {"error": str(e)}

    def host_stats(self, name: str) -> dict | None:
        return self._stats.get(name)

    async def _stats_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.sample_stats)
            except Exception:
                self.log.exception("storage stats failed")
            await asyncio.sleep(self.stats_interval)

    def cleanup_uploads(self) -> int:
        """Remove the expired uploads now (from a thread: a test); how many."""
        return self.manager.store.transaction(self.manager.expire_uploads)

    async def _cleanup_loop(self):
        while True:
            try:
                n = await self.manager.store.run(self.manager.expire_uploads)
                if n:
                    self.log.info("removed %i expired uploads", n)
            except Exception:
                self.log.exception("upload cleanup failed")
            await asyncio.sleep(self.cleanup_interval)

    # --- work the handlers start ------------------------------------------------------

    async def finish_upload(self, uid: str) -> None:
        target = await self.manager.store.run(self.manager.upload_target, uid)
        if target is None:
            return
        vid, base, staging, parts = target
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, fsops.place_file, base, parts, staging)
        except fsops.PathRefused:
            await self.drop_upload(uid)
            raise
        await self.manager.store.run(self.manager.drop_upload, uid, True)
        self.schedule_scan(vid)

    async def drop_upload(self, uid: str) -> None:
        await self.manager.store.run(self.manager.drop_upload, uid)

    async def remove_tree(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: ptools.rmtree(path))

    def start_clone(self, vid: str, src: str, dst: str) -> None:
        asyncio.ensure_future(self._clone(vid, src, dst))

    async def _clone(self, vid: str, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` (the pcp engine) while ``progress`` says how far
        it got: "copying N entries, B bytes", then "P% (n of N entries)" about once
        a second (a du of the copy so far), then "100%" (state ready) or
        "clone failed: …" (state failed; what was copied stays until a purge)."""
        loop = asyncio.get_running_loop()
        try:
            total = await loop.run_in_executor(None, lambda: ptools.du(src))
            await self.manager.store.run(self.manager.set_progress, vid,
                                         f"copying {total.files} entries, {total.bytes} bytes")
            copying = loop.run_in_executor(None, lambda: ptools.copytree(src, dst))
            while not copying.done():
                await asyncio.wait([copying], timeout=self.clone_progress_interval)
                if copying.done():
                    break
                done = await loop.run_in_executor(None, lambda: ptools.du(dst) if os.path.isdir(dst) else None)
                if done is not None:
                    pct = 100.0 * done.bytes / total.bytes if total.bytes else 100.0
                    await self.manager.store.run(self.manager.set_progress, vid,
                                                 f"{min(pct, 99.9):.1f}% ({done.files} of {total.files} entries)")
            errors = copying.result()
            failure = None
            if errors:
                e = errors[0]
                where = os.path.relpath(os.fsdecode(e.path), dst if os.fsdecode(e.path).startswith(dst) else src)
                failure = f"{len(errors)} errors, first: {where}: {os.strerror(e.errno)}"
        except Exception as e:  # the copy could not run at all
            self.log.exception("clone into %s failed", vid)
            failure = str(e)
        if not failure:
            errors = await loop.run_in_executor(None, self.manager.adopt, vid, dst)
            if errors:
                self.log.warning("clone %s: %i paths kept their ownership, first: %s", vid, len(errors), errors[0])

        def settle(db) -> bool:
            vf = db.get(VFolder, vid)
            if vf is None:
                return False
            if failure:
                vf.state = VFolderState.FAILED.value
                vf.progress = f"clone failed: {failure}"
            else:
                try:  # the copy's files join the clone's project (a no-op for scan)
                    self.manager.apply_quota(vf)
                except Exception as e:
                    self.log.error("clone %s: could not set its project quota: %s", vid, e)
                vf.state = VFolderState.READY.value
                vf.progress = "100%"
            return True

        if await self.manager.store.run(settle):
            self.schedule_scan(vid)

    # --- main ----------------------------------------------------------------------------

    async def start_async(self) -> None:
        self.listen(self.make_app())
        self.start_background()
        await self.wait_for_signal()
        self.stop_background()


main = VFolderService.launch_instance
