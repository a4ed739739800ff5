"""``gpuhub``: the hub's GPU shares and vfolders from a shell, without a session.

    gpuhub login                          # saves the hub's URL and a token (mode 600)
    gpuhub status                         # your shares, queued requests and quota
    gpuhub vfolder ls | create NAME | rm NAME | share NAME USER --ro|--rw
    gpuhub vfolder upload NAME FILE [DEST]    # resumable: run it again after an interruption
    gpuhub vfolder download NAME PATH [OUT]   # '-' is stdin / stdout

Every command calls the services' REST APIs through the hub's proxy with a hub
token, one client per service (gpuhub.client.ServiceClient). Output is tables by
default and the services' JSON with ``--json``. Exit codes: 0 done, 1 the hub or a
service refused or failed (the message says what to do), 2 a usage error (the
command line, a missing URL or token, a local file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from tornado.httpclient import AsyncHTTPClient

from gpuhub.client import HubClient, ServiceClient, ServiceError
from gpuhub.numbers import human_bytes

from . import jobs, output, settings, transfer
from .settings import Target, UsageError

PROG = "gpuhub"


class AllocatorAPI(ServiceClient):
    what = "the GPU allocator"


class VFolderAPI(ServiceClient):
    what = "the vfolder service"


class Context:
    """What one run of the command knows: its arguments and, once resolved, where it goes."""

    def __init__(self, args):
        self.args = args
        self.target: Target | None = None
        self.hint = ""

    @property
    def json(self) -> bool:
        return getattr(self.args, "json", False)

    @property
    def quiet(self) -> bool:
        return getattr(self.args, "quiet", False)

    def resolve(self) -> Target:
        self.target = settings.resolve(getattr(self.args, "url", None), getattr(self.args, "token", None))
        return self.target

    def allocator(self) -> AllocatorAPI:
        t = self.target or self.resolve()
        return AllocatorAPI(t.allocator, t.token)

    def vfolders(self) -> VFolderAPI:
        t = self.target or self.resolve()
        return VFolderAPI(t.vfolders, t.token)


# --- login -----------------------------------------------------------------------------


async def cmd_login(ctx: Context) -> int:
    a = ctx.args
    url = getattr(a, "url", None) or os.environ.get("GPUHUB_URL") or settings.load_login().get("url") \
        or settings.session_hub_url()
    if not url:
        raise UsageError("give the hub's URL: gpuhub login --url https://HUB/")
    url = settings.normalize_url(url)
    token = getattr(a, "token", None) or os.environ.get("GPUHUB_TOKEN")
    if not token:
        if sys.stdin.isatty():
            token = getpass.getpass(f"Token (create one at {url}hub/token): ")
        else:
            token = sys.stdin.readline()
        token = token.strip()
    if not token:
        raise UsageError(f"no token given: create one at {url}hub/token and paste it")
    ctx.target = Target(url, token, "", "", "--url", "the token given")
    me = await HubClient(url + "hub/api/", token).call("GET", "user")
    path = settings.save_login(url, token)
    if ctx.json:
        output.dump({"url": url, "user": me.get("name"), "saved": str(path)})
    else:
        print(f"Logged in to {url} as {me.get('name')}; saved in {path} (mode 600).")
    return 0


async def cmd_logout(ctx: Context) -> int:
    path = settings.config_file()
    try:
        path.unlink()
        print(f"Removed {path}.")
    except FileNotFoundError:
        print(f"Not logged in ({path} does not exist).")
    return 0


# --- status ----------------------------------------------------------------------------


async def cmd_status(ctx: Context) -> int:
    alloc = ctx.allocator()
    shares, quota = await asyncio.gather(alloc.call("GET", "allocations"), alloc.call("GET", "quota"))
    data = {"hub": ctx.target.url, "user": quota.get("user"), "allocations": shares.get("allocations", []),
            "queued": shares.get("queued", []), "quota": quota}
    if ctx.json:
        output.dump(data)
        return 0
    print(f"{data['user']} on {ctx.target.url}")
    print("\nShares")
    if data["allocations"]:
        output.table(["SERVER", "GPUS", "HOST", "DEVICES", "CPU", "MEM", "STATE", "ENDS"], [
            [a.get("server") or "(default)", a.get("gpus"), a.get("host"),
             ", ".join(f"{d.get('index')} {d.get('model') or ''}".strip() for d in a.get("devices", [])),
             a.get("cpu"), a.get("mem"), a.get("state"), output.clock(a.get("ends_at"))]
            for a in data["allocations"]])
    else:
        print("  none held")
    print("\nQueue")
    if data["queued"]:
        output.table(["SERVER", "GPUS", "POSITION", "EXPECTED", "AT THE LATEST", "WAITING FOR"], [
            [q.get("server") or "(default)", q.get("gpus"), q.get("position"), output.clock(q.get("eta")),
             output.clock(q.get("eta_latest")), q.get("reason")] for q in data["queued"]])
    else:
        print("  nothing waiting")
    lim, held, left = quota.get("limits", {}), quota.get("held", {}), quota.get("left", {})
    groups = ", ".join(quota.get("groups") or []) or "none"
    print(f"\nQuota (groups: {groups})")
    window = quota.get("window_hours", 168)
    output.table(["", "LIMIT", "HELD", "LEFT"], [
        ["GPUs", lim.get("gpus"), held.get("gpus"), left.get("gpus")],
        ["sessions", lim.get("sessions"), held.get("sessions"), left.get("sessions")],
        [f"GPU-hours ({window / 24:g} days)", lim.get("gpu_hours"), held.get("gpu_hours"), left.get("gpu_hours")],
    ])
    servers = quota.get("servers") or []
    if servers:
        print("\nPer server")
        output.table(["SERVER", "GPUS", "HOST", "MAX HOURS", "ENDS"], [
            [s.get("server") or "(default)", s.get("gpus"), s.get("host"), s.get("max_hours"),
             output.clock(s.get("ends_at"))] for s in servers])
    return 0


# --- vfolders --------------------------------------------------------------------------


async def find_vfolder(api: VFolderAPI, name: str) -> dict:
    """The caller's vfolder called ``name`` (its name, its mount name NAME@OWNER, or its id)."""
    items = (await api.call("GET", "vfolders"))["vfolders"]
    for match in (lambda v: v["id"] == name or v.get("mount_name") == name, lambda v: v["name"] == name):
        found = [v for v in items if match(v)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(sorted(v.get("mount_name") or v["id"] for v in found))
            raise ServiceError(409, f"{name!r} names several vfolders ({names}); say which with NAME@OWNER")
    raise ServiceError(404, f"you have no vfolder {name!r} (gpuhub vfolder ls lists yours; "
                       "a shared one appears once you accept its invitation on the Data page)")


def _quota(v: dict) -> str | None:
    q = (v.get("quota") or {}).get("bytes")
    return human_bytes(q) if q is not None else None


async def cmd_vfolder_ls(ctx: Context) -> int:
    api = ctx.vfolders()
    listing, invitations = await asyncio.gather(api.call("GET", "vfolders"), api.call("GET", "invitations"))
    if ctx.json:
        output.dump({"vfolders": listing["vfolders"], "invitations": invitations["invitations"]})
        return 0
    rows = [[v.get("mount_name") or v["name"], v.get("kind"), v.get("access"),
             f"{v['owner']}" + (" (group)" if v.get("owner_kind") == "group" else ""),
             human_bytes(v["usage"]["bytes"]), _quota(v), v.get("host"),
             v.get("state") + (" (over quota)" if v.get("over_quota") else "")]
            for v in listing["vfolders"]]
    if rows:
        output.table(["NAME", "KIND", "ACCESS", "OWNER", "USED", "QUOTA", "HOST", "STATE"], rows)
    else:
        print("No vfolders yet: gpuhub vfolder create NAME")
    pending = invitations["invitations"]
    if pending:
        print(f"\n{len(pending)} invitation(s) waiting (accept them on the Data page, "
              f"{ctx.target.url}services/vfolders/data/):")
        for i in pending:
            print(f"  {i['vfolder']['name']} from {i['inviter']} ({i['permission']})")
    return 0


async def cmd_vfolder_create(ctx: Context) -> int:
    a = ctx.args
    body = {"name": a.name}
    if a.group:
        body["group"] = a.group
    if a.host:
        body["host"] = a.host
    if a.auto_mount:
        body["auto_mount"] = True
    v = await ctx.vfolders().call("POST", "vfolders", body)
    if ctx.json:
        output.dump(v)
    else:
        print(f"Created vfolder {v['name']} on {v['host']} (id {v['id']}).")
    return 0


async def cmd_vfolder_rm(ctx: Context) -> int:
    api = ctx.vfolders()
    v = await find_vfolder(api, ctx.args.name)
    await api.call("DELETE", f"vfolders/{v['id']}")
    if ctx.json:
        output.dump({"id": v["id"], "name": v["name"], "state": "trashed"})
    else:
        print(f"Moved vfolder {v['name']} to the trash (an administrator can restore it).")
    return 0


async def cmd_vfolder_share(ctx: Context) -> int:
    a = ctx.args
    api = ctx.vfolders()
    v = await find_vfolder(api, a.name)
    share = await api.call("POST", f"vfolders/{v['id']}/shares",
                           {"user": a.user, "permission": "rw" if a.rw else "ro"})
    if ctx.json:
        output.dump(share)
    else:
        print(f"Shared {v['name']} with {a.user} ({share['permission']}); "
              f"{a.user} sees the invitation on the Data page ({share['state']}).")
    return 0


async def cmd_vfolder_upload(ctx: Context) -> int:
    a = ctx.args
    if a.file != "-" and not os.path.isfile(a.file):
        raise UsageError(f"{a.file} is not a file here (give a file, or - for stdin)")
    dest = a.dest
    if dest is None:
        if a.file == "-":
            raise UsageError("name the file in the vfolder: gpuhub vfolder upload NAME - DEST")
        dest = os.path.basename(a.file)
    elif dest.endswith("/"):
        if a.file == "-":
            raise UsageError("DEST ends in /: give a file name for stdin")
        dest += os.path.basename(a.file)
    api = ctx.vfolders()
    v = await find_vfolder(api, a.name)
    ctx.hint = "run the same command again to resume the upload where it stopped"
    cache = transfer.UploadCache(settings.cache_dir())
    result = await transfer.upload(api, v["id"], a.file, dest.lstrip("/"), cache,
                                   f"{a.file} → {v['name']}/{dest.lstrip('/')}", ctx.quiet,
                                   chunk=a.chunk_size, rate=a.limit_rate)
    result.update(vfolder=v["name"], path=dest.lstrip("/"))
    if ctx.json:
        output.dump(result)
    elif not ctx.quiet:
        secs = result["seconds"] or 1e-9
        print(f"Uploaded {human_bytes(result['bytes'])} to {v['name']}/{result['path']}"
              + (f" (resumed at {human_bytes(result['resumed_from'])})" if result["resumed_from"] else "")
              + f" in {result['seconds']:.1f} s, "
              f"{human_bytes((result['bytes'] - result['resumed_from']) / secs)}/s.", file=sys.stderr)
    return 0


async def cmd_vfolder_download(ctx: Context) -> int:
    a = ctx.args
    api = ctx.vfolders()
    v = await find_vfolder(api, a.name)
    result = await transfer.download(api, v["id"], a.path, a.out, f"{v['name']}/{a.path.lstrip('/')}",
                                     ctx.quiet)
    result.update(vfolder=v["name"])
    if ctx.json and a.out != "-":
        output.dump(result)
    elif not ctx.quiet:
        print(f"Downloaded {human_bytes(result['bytes'])} to {result['path']} in {result['seconds']:.1f} s.",
              file=sys.stderr)
    return 0


# --- the parser ------------------------------------------------------------------------


def size(text: str) -> int:
    """A byte count: 1048576, 512K, 4M, 1G (binary units)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        n = float(t[: len(t) - len(unit)] if unit else t) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 4M, 512K, 1G)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size above 0")
    return int(n)


VFOLDER_HELP = "a vfolder: its name, NAME@OWNER for one shared with you, or its id"


class Formatter(argparse.HelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=88)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("where and how")
    g.add_argument("--url", default=argparse.SUPPRESS, metavar="URL",
                   help="the hub, e.g. https://hub.example.org/ (default: $GPUHUB_URL, the saved login, "
                        "or the session's hub)")
    g.add_argument("--token", default=argparse.SUPPRESS, metavar="TOKEN",
                   help="a hub API token (default: $GPUHUB_TOKEN, the saved login, or the session's "
                        "$JUPYTERHUB_API_TOKEN)")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print JSON for scripts instead of tables")

    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=Formatter, parents=[common],
        description="GPU shares and vfolders of a gpuhub JupyterHub, without a session.",
        epilog="Run 'gpuhub COMMAND --help' for a command's options. Exit codes: 0 done; 1 the hub "
               "or a service refused or failed; 2 usage (command line, URL, token, local file); "
               "130 interrupted.")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    def command(parent, name, func, help_, description=None):
        c = parent.add_parser(name, help=help_, description=description or help_, parents=[common],
                              formatter_class=Formatter)
        c.set_defaults(func=func)
        return c

    c = command(sub, "login", cmd_login, "save the hub's URL and a token (mode 600)",
                "Check a token with the hub and save it with the hub's URL in "
                "~/.config/gpuhub/config.json (mode 600). Without --token (or $GPUHUB_TOKEN) it asks "
                "for one without echo, or reads one line from stdin when that is not a terminal. "
                "Create a token on the hub's Token page (HUB/hub/token).")
    c = command(sub, "logout", cmd_logout, "forget the saved login")
    command(sub, "status", cmd_status, "your GPU shares, queued requests and quota",
            "Your GPU shares (allocations), the requests of yours waiting in the queue with their "
            "expected start, and your quota: limits, what you hold, what is left, one line per server.")
    jobs.add_commands(sub, command)

    vf = sub.add_parser("vfolder", help="list, create, share, trash, upload to and download from vfolders",
                        description="vfolders: named folders on the hub's storage that outlive sessions.",
                        parents=[common], formatter_class=Formatter)
    vsub = vf.add_subparsers(title="vfolder commands", metavar="COMMAND")
    vf.set_defaults(func=None, parser=vf)
    command(vsub, "ls", cmd_vfolder_ls, "your vfolders (and those shared with you), and invitations waiting")
    c = command(vsub, "create", cmd_vfolder_create, "create a vfolder")
    c.add_argument("name", metavar="NAME", help="its name (letters, digits, - _ .)")
    c.add_argument("--group", metavar="GROUP", help="owned by this JupyterHub group (you must be in it)")
    c.add_argument("--host", metavar="HOST", help="on this storage host (default: the default one)")
    c.add_argument("--auto-mount", action="store_true", help="mounted in new sessions by default")
    c = command(vsub, "rm", cmd_vfolder_rm, "move a vfolder to the trash",
                "Move a vfolder to the trash (refused while a running session has it mounted); "
                "an administrator can restore it.")
    c.add_argument("name", metavar="NAME", help=VFOLDER_HELP)
    c = command(vsub, "share", cmd_vfolder_share, "share a vfolder with a user (an invitation)",
                "Invite USER to vfolder NAME, read-only or read-write; they accept on the Data page.")
    c.add_argument("name", metavar="NAME", help=VFOLDER_HELP)
    c.add_argument("user", metavar="USER", help="a JupyterHub user name")
    mode = c.add_mutually_exclusive_group(required=True)
    mode.add_argument("--ro", action="store_true", help="read-only")
    mode.add_argument("--rw", action="store_true", help="read-write")
    transfer_opts = argparse.ArgumentParser(add_help=False)
    transfer_opts.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    c = vsub.add_parser("upload", help="upload a file (resumable)", parents=[common, transfer_opts],
                        formatter_class=Formatter,
                        description="Upload FILE ('-': stdin) to DEST in vfolder NAME (default: the "
                                    "file's name; DEST ending in / is a folder) with tus. If it is "
                                    "interrupted, the same command run again resumes where the service "
                                    "stopped receiving (not for stdin). Progress on stderr: a bar on a "
                                    "terminal, a line per 10% elsewhere.")
    c.set_defaults(func=cmd_vfolder_upload)
    c.add_argument("name", metavar="NAME", help=VFOLDER_HELP)
    c.add_argument("file", metavar="FILE", help="a file here, or - for stdin")
    c.add_argument("dest", metavar="DEST", nargs="?", help="its path in the vfolder")
    c.add_argument("--chunk-size", type=size, default=16 << 20, metavar="SIZE",
                   help="bytes per request (default 16M)")
    c.add_argument("--limit-rate", type=size, default=None, metavar="SIZE",
                   help="at most SIZE bytes per second, e.g. 10M")
    c = vsub.add_parser("download", help="download a file (a folder as a tar archive)",
                        parents=[common, transfer_opts], formatter_class=Formatter,
                        description="Download PATH of vfolder NAME to OUT (default: its name here; a "
                                    "folder comes as NAME.tar; '-': stdout), through OUT.part, so that "
                                    "OUT is complete or absent.")
    c.set_defaults(func=cmd_vfolder_download)
    c.add_argument("name", metavar="NAME", help=VFOLDER_HELP)
    c.add_argument("path", metavar="PATH", help="a file or folder in the vfolder")
    c.add_argument("out", metavar="OUT", nargs="?", help="where to write it here, or - for stdout")
    return p


def _hint(ctx: Context, e: ServiceError) -> str:
    t = ctx.target
    if t is None:
        return ""
    if e.status in (401, 403):
        return (f"check the token (from {t.token_from}): create one at {t.url}hub/token, "
                "then run gpuhub login")
    if e.status in (502, 503, 599):
        return f"is the hub at {t.url} up (the URL came from {t.url_from})?"
    if e.status == 404 and e.message.startswith("HTTP 404"):
        return f"is {t.url} a gpuhub hub (the URL came from {t.url_from})?"
    return ctx.hint if e.status >= 500 else ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, argparse said why)
        return int(e.code or 0)
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "parser", None) or parser).print_help(sys.stderr)
        return 2
    # downloads stream: no response is held in memory, whatever its size
    AsyncHTTPClient.configure(None, max_body_size=1 << 50)
    ctx = Context(args)
    try:
        return asyncio.run(func(ctx)) or 0
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except ServiceError as e:
        hint = _hint(ctx, e)
        print(f"{PROG}: {e.message}" + (f"\n{PROG}: {hint}" if hint else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted" + (f"; {ctx.hint}" if ctx.hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as e:
        print(f"{PROG}: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1


def every_command(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()):
    """(words after ``gpuhub``, parser) of the command and every subcommand, in
    order: the CLI reference (docs/source/_ext/cli_reference.py) prints each one's
    ``--help``."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_command(sub, path + (name,))
