"""Time each p-command against its GNU twin in one run and print the ratios.

    python benchmarks/ptools_bench.py nas   [--files 20000] [--delay-ms 1] [--server native|python] [--no-gnu]
    python benchmarks/ptools_bench.py local [--files 200000] [--repeat 3]

nas:   a tree behind the FUSE latency filesystem (every request delayed,
       attribute/entry caching off), remounted cold before every single run.
       The server is the native multithreaded one (latencyfs.c, compiled here
       with gcc on first use; --server python for the pyfuse3 one).
       Each p-command runs beside its GNU twin and beside the limit: the most
       parallel client this project could write for that server
       (benchmarks/limitwalk.c: every directory and every file operation a job
       of its own for 512 threads, all relative to open directory fds, no
       output), doing the same work on the same tree. "% of limit" is the limit's
       time over the p-command's. The p-command also runs at delay 0 (its CPU
       floor on this machine) to tell what bounded it. --no-gnu skips GNU (on
       big trees it takes an hour per command).
local: the same pairs on the local disk with a warm page cache (best of N).

Not a test: nothing is asserted.  Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def p(name: str) -> str:
    return str(BIN / name)


def make_tree(root: Path, files: int) -> int:
    """files spread over 2 levels of directories (~100 files per leaf), a little data each."""
    per_leaf, fanout = 100, 10
    leaves = max(1, files // per_leaf)
    made = 0
    for i in range(leaves):
        d = root / f"d{i // fanout:04d}" / f"e{i % fanout:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_leaf):
            if made >= files:
                break
            with open(d / f"f{j:03d}", "wb") as f:
                f.write(b"x" * (j * 7))
            made += 1
    return made


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    cp = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if cp.returncode != 0:
        print(f"  ! {' '.join(cmd)} -> {cp.returncode}: {cp.stderr[:200]!r}", file=sys.stderr)
    return dt


#: the limit client's operation for each row (None: no limit measured)
LIMIT_OP = {"find": "walk", "find -size +0 (stat)": "stat", "du -s": "stat", "ls -lR": "stat",
            "chmod -R": "chmod", "cp -r": "cp", "rm -r": "rm"}


def build_limitwalk() -> str:
    """benchmarks/limitwalk.c compiled (once per source version) into a cache folder."""
    import hashlib
    src = Path(__file__).with_name("limitwalk.c")
    exe = Path(tempfile.gettempdir()) / f"limitwalk-{hashlib.sha256(src.read_bytes()).hexdigest()[:12]}"
    if not exe.exists():
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", f"{exe}.tmp", str(src)], check=True)
        os.replace(f"{exe}.tmp", exe)
    return str(exe)


def pairs(t: str, copy_src: str, copy_dst: str, victim: str, empty: str) -> list[tuple[str, list[str], list[str], str | None]]:
    """(label, GNU command, p-command, setup needed) for a tree at t."""
    return [
        ("start-up (empty dir)", ["find", empty], [p("pfind"), empty], None),
        ("find", ["find", t], [p("pfind"), t], None),
        ("find -size +0 (stat)", ["find", t, "-type", "f", "-size", "+0"], [p("pfind"), t, "-type", "f", "-size", "+0"], None),
        ("du -s", ["du", "-s", t], [p("pdu"), "-s", t], None),
        ("ls -lR", ["ls", "-lR", t], [p("pls"), "-lR", t], None),
        ("chmod -R", ["chmod", "-R", "g+w", t], [p("pchmod"), "-R", "g+w", t], "chmod"),
        ("chown -R", ["chown", "-R", "nobody", t], [p("pchown"), "-R", "nobody", t], "chown"),
        ("cp -r", ["cp", "-r", copy_src, copy_dst], [p("pcp"), "-r", copy_src, copy_dst], "cp"),
        ("rm -r", ["rm", "-r", victim], [p("prm"), "-r", victim], "rm"),
    ]


def selected(a: argparse.Namespace, rows: list) -> list:
    if not a.only:
        return rows
    want = {x.strip() for x in a.only.split(",")}
    return [r for r in rows if r[0] in want]


def reset(kind: str | None, src: Path) -> None:
    """Put the source tree back in the state a run expects (done on the backing dir)."""
    if kind == "chmod":
        subprocess.run(["chmod", "-R", "g-w", str(src / "tree")], check=True)
    elif kind == "chown":
        subprocess.run(["chown", "-R", "root", str(src / "tree")], check=True)
    elif kind == "cp":
        shutil.rmtree(src / "copy", ignore_errors=True)
    elif kind == "rm":
        if not (src / "victim").exists():
            subprocess.run(["cp", "-r", str(src / "tree"), str(src / "victim")], check=True)


def drop_caches() -> None:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def bench_nas(a: argparse.Namespace) -> None:
    from vfolder_manager.ptools.testing.mount import Mount
    work = Path(tempfile.mkdtemp(prefix="ptools-nas-"))
    src, mnt = work / "src", work / "mnt"
    n = make_tree(src / "tree", a.files)
    (src / "empty").mkdir()
    print(f"tree: {n} files, {sum(1 for _ in (src / 'tree').rglob('*')) - n} directories; "
          f"delay {a.delay_ms} ms per FUSE request; attr/entry cache off; cold mount per run\n")

    def one(cmd: list[str], delay: float) -> tuple[float, dict]:
        stats = str(work / "stats.json")
        with Mount(str(src), str(mnt), delay, stats, impl=a.server) as m:
            dt = timed([x.replace("@", str(mnt)) for x in cmd])
        return dt, m.stats()

    limitwalk = build_limitwalk()
    print(f"server: {a.server}; {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}\n")
    print("| command | GNU s | p-cmd s | limit s | GNU/p | p: % of limit | GNU req | p req | limit req "
          "| p max in flight | limit max in flight | p s at 0 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [r for r in pairs("@/tree", "@/tree", "@/copy", "@/victim", "@/empty") if r[0] in LIMIT_OP]
    for label, gnu, mine, kind in selected(a, rows):
        targets = {"cp": ["@/tree", "@/copy"], "rm": ["@/victim"]}.get(kind, ["@/tree"])
        limit = [limitwalk, LIMIT_OP[label], *targets]
        tg = sg = None
        if not a.no_gnu:
            reset(kind, src)
            tg, sg = one(gnu, a.delay_ms)
        reset(kind, src)
        tp, sp = one(mine, a.delay_ms)
        reset(kind, src)
        tl, sl = one(limit, a.delay_ms)
        reset(kind, src)
        # the same command against a server that answers at once: what its requests
        # cost in CPU (client, kernel and simulated server share this machine's
        # cores) plus its start-up -- no latency hides below this
        t0, _ = one(mine, 0)
        reset(kind, src)
        gnu_s = "not run" if tg is None else f"{tg:.2f}"
        ratio = "—" if tg is None else f"{tg / tp:.1f}x"
        print(f"| {label} | {gnu_s} | {tp:.2f} | {tl:.2f} | {ratio} | {100 * tl / tp:.0f}% | "
              f"{'—' if sg is None else sg['ops']} | {sp['ops']} | {sl['ops']} | {sp['max_inflight']} | "
              f"{sl['max_inflight']} | {t0:.3f} |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    shutil.rmtree(work, ignore_errors=True)


def bench_local(a: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ptools-local-", dir=a.dir))
    src = work
    n = make_tree(src / "tree", a.files)
    (src / "empty").mkdir()
    t = str(src / "tree")
    print(f"tree: {n} files on {a.dir or tempfile.gettempdir()}, warm page cache, best of {a.repeat}, "
          f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}\n")
    print("| command | GNU s | p-cmd s | ratio (GNU/p) |")
    print("|---|---:|---:|---:|")
    for label, gnu, mine, kind in selected(a, pairs(t, t, str(src / "copy"), str(src / "victim"), str(src / "empty"))):
        best_g = best_p = float("inf")
        for rep in range(a.repeat):
            for which in ("g", "p"):
                if kind == "cp":
                    # a fresh destination each run, all deleted at the end: ext4's inode
                    # allocator skips recently deleted inodes (recently_deleted() in
                    # ext4_new_inode), and after rm -r of the last 200,000-file copy that
                    # scan was >60% of cp's time (perf) -- whoever ran next paid for it
                    dst = str(src / f"copy-{rep}-{which}")
                    gnu, mine = gnu[:-1] + [dst], mine[:-1] + [dst]
                else:
                    reset(kind, src)
                if kind in ("cp", "rm"):
                    os.sync()    # do not make the next run pay for the last one's writeback
                subprocess.run(["find", t], stdout=subprocess.DEVNULL)   # warm
                dt = timed(gnu if which == "g" else mine)
                if which == "g":
                    best_g = min(best_g, dt)
                else:
                    best_p = min(best_p, dt)
        if kind != "cp":
            reset(kind, src)
        print(f"| {label} | {best_g:.3f} | {best_p:.3f} | {best_g / best_p:.2f}x |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("where", choices=["nas", "local"])
    ap.add_argument("--files", type=int)
    ap.add_argument("--delay-ms", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", help="where to build the local tree (default: $TMPDIR)")
    ap.add_argument("--server", choices=["auto", "native", "python"], default="auto",
                    help="nas: which latency filesystem (auto = native if it builds)")
    ap.add_argument("--only", help="comma-separated labels to run, e.g. 'find,du -s'")
    ap.add_argument("--no-gnu", action="store_true", help="nas: skip the GNU commands (big trees)")
    a = ap.parse_args()
    if a.files is None:
        a.files = 20000 if a.where == "nas" else 200000
    (bench_nas if a.where == "nas" else bench_local)(a)


if __name__ == "__main__":
    main()
