"""The ``gpuhub`` command line (gpuhub/cli): where it finds the hub and its token,
its help, and against the real hub (the shared ``hub`` fixture) as a subprocess,
as a user runs it: login (mode 600), create a vfolder, a 20 MB upload killed
midway and resumed by the same command, a byte-identical download (to a file and
to stdout), ``status --json``, the ``ls`` table, and errors (exit codes 1 and 2,
a message that says what to do, never a traceback)."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import requests

from gpuhub.cli import main, settings
from tests.support import REPO, cli_login as login

V = "/services/vfolders/api/v1"


# --- without a hub ----------------------------------------------------------------------


def test_url_and_token_come_from_flags_then_environment_then_login_then_session(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    session = {"JUPYTERHUB_API_URL": "http://10.0.0.1:8081/jh/hub/api", "JUPYTERHUB_API_TOKEN": "server-token",
               "GPUHUB_VFOLDERS_URL": "http://127.0.0.1:8052/services/vfolders/api/v1/"}
    # inside a session: the hub that started it, the server's token, the spawner's direct service URL
    t = settings.resolve(env={**env, **session})
    assert (t.url, t.token) == ("http://10.0.0.1:8081/jh/", "server-token")
    assert t.vfolders == session["GPUHUB_VFOLDERS_URL"]
    assert t.allocator == "http://10.0.0.1:8081/jh/services/gpu-allocator/api/v1/"
    public = settings.resolve(env={**env, **session, "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/"})
    assert public.url == "https://hub.example.org/"
    # a saved login wins over the session, the environment over the login, flags over all
    settings.save_login("https://saved.example/", "saved-token", env=env)
    assert stat.S_IMODE(os.stat(tmp_path / "gpuhub" / "config.json").st_mode) == 0o600
    t = settings.resolve(env={**env, **session})
    assert (t.url, t.token, t.vfolders) == ("https://saved.example/", "saved-token",
                                            "https://saved.example/services/vfolders/api/v1/")
    t = settings.resolve(env={**env, "GPUHUB_URL": "https://env.example", "GPUHUB_TOKEN": "env-token"})
    assert (t.url, t.token, t.url_from) == ("https://env.example/", "env-token", "$GPUHUB_URL")
    t = settings.resolve("https://flag.example/", "flag-token", env={**env, "GPUHUB_URL": "https://env.example"})
    assert (t.url, t.token) == ("https://flag.example/", "flag-token")
    with pytest.raises(settings.UsageError, match="gpuhub login"):
        settings.resolve(env={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    with pytest.raises(settings.UsageError, match="hub/token"):
        settings.resolve("https://hub.example/", env={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    with pytest.raises(settings.UsageError, match="not a hub URL"):
        settings.resolve("hub.example", "t", env={})


def test_help_on_every_level_and_usage_errors_exit_2(capsys):
    for argv in (["--help"], ["status", "--help"], ["login", "--help"], ["vfolder", "--help"],
                 *[[c, "--help"] for c in ("run", "jobs", "logs", "cancel")],
                 *[["vfolder", c, "--help"] for c in ("ls", "create", "rm", "share", "upload", "download")]):
        assert main(argv) == 0, argv
        assert "usage: gpuhub" in capsys.readouterr().out
    assert main([]) == 2 and "COMMAND" in capsys.readouterr().err
    assert main(["vfolder"]) == 2
    capsys.readouterr()
    assert main(["vfolder", "share", "data", "bob"]) == 2  # neither --ro nor --rw
    assert "one of the arguments --ro --rw is required" in capsys.readouterr().err
    assert main(["vfolder", "upload", "data", "f", "--limit-rate", "fast"]) == 2
    assert "not a size" in capsys.readouterr().err


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_tenth_elsewhere():
    from gpuhub.cli.transfer import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    total = 100 << 20
    for stream in (Terminal(), io.StringIO()):
        p = Progress("up", total, stream=stream)
        for done in range(0, total + 1, 1 << 20):
            p.update(done, final=done == total)
        text = stream.getvalue()
        if isinstance(stream, Terminal):
            assert text.startswith("\rup  [") and "100.0%  100.0 MiB of 100.0 MiB" in text and text.endswith("\n")
        else:
            assert [line.split(" (")[0] for line in text.splitlines()] == [f"up: {p}%" for p in range(0, 101, 10)]


def test_the_reference_page_shows_every_command():
    """docs/source/reference/cli.md is generated from every_command's parsers."""
    from gpuhub.cli import every_command

    paths = [" ".join(path) for path, _ in every_command()]
    assert paths == ["", "login", "logout", "status", "run", "jobs", "logs", "cancel", "vfolder", "vfolder ls",
                     "vfolder create", "vfolder rm", "vfolder share", "vfolder upload", "vfolder download"]
    assert "{gpuhub-cli}" in (REPO / "docs" / "source" / "reference" / "cli.md").read_text()


def test_no_service_imports_the_command_line():
    """The CLI reads GPUHUB_* variables (tests/test_config_layer.py excludes it as a
    client): that stays true only while no service code depends on it."""
    for package in ("gpu_allocator", "gpuhub", "spawner", "vfolder_manager"):
        for path in (REPO / package).rglob("*.py"):
            if path.is_relative_to(REPO / "gpuhub" / "cli"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n == "gpuhub.cli" or n.startswith("gpuhub.cli.") for n in names), path


# --- against the real hub ---------------------------------------------------------------


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def test_upload_killed_midway_resumes_and_downloads_identical(hub, cli):
    user = login(hub, cli, "cli-alice")
    cli("vfolder", "create", "datasets")
    src = cli.tmp / "train.bin"
    src.write_bytes(os.urandom(20 * 1000 * 1000))
    size = src.stat().st_size

    # the first run, slowed to 4 MiB/s, is killed (SIGKILL: no goodbye) once it reports 20 %
    proc = subprocess.Popen([sys.executable, "-m", "gpuhub.cli", "vfolder", "upload", "datasets", str(src),
                             "data/train.bin", "--limit-rate", "4M", "--chunk-size", "4M"],
                            env=cli.env, cwd=cli.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    for raw in proc.stderr:
        lines.append(raw.decode())
        if any(f": {p}% (" in lines[-1] for p in (20, 30, 40)):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, lines
    assert any(": 0% (" in line for line in lines), lines  # the plain progress lines (stderr is no terminal)

    # the service kept what arrived; the command remembered where
    (entry,) = json.loads((cli.tmp / "cache" / "gpuhub" / "uploads.json").read_text()).values()
    head = requests.head(hub.url + V + "/" + entry["upload"],
                         headers={**user.headers, "Tus-Resumable": "1.0.0"}, timeout=10)
    kept = int(head.headers["Upload-Offset"])
    assert 0 < kept < size, kept

    t0 = time.monotonic()
    p = cli("vfolder", "upload", "datasets", str(src), "data/train.bin", "--json")
    upload_s = time.monotonic() - t0
    result = json.loads(p.stdout)
    assert result["bytes"] == size and result["resumed_from"] >= kept, result
    assert "resuming at" in p.stderr.decode() and ": 100% (" in p.stderr.decode()
    assert json.loads((cli.tmp / "cache" / "gpuhub" / "uploads.json").read_text()) == {}

    t0 = time.monotonic()
    p = cli("vfolder", "download", "datasets", "data/train.bin", "copy.bin")
    download_s = time.monotonic() - t0
    assert sha256(cli.tmp / "copy.bin") == sha256(src)
    assert not (cli.tmp / "copy.bin.part").exists()
    out = cli("vfolder", "download", "datasets", "data/train.bin", "-", "-q").stdout
    assert hashlib.sha256(out).hexdigest() == sha256(src)
    # stdin works too (spooled: tus needs the length first)
    cli("vfolder", "upload", "datasets", "-", "notes/readme.txt", input=b"hello from stdin\n")
    assert cli("vfolder", "download", "datasets", "notes/readme.txt", "-").stdout == b"hello from stdin\n"
    print(f"\nCLI through the hub: resumed upload of {(size - result['resumed_from']) / 2**20:.1f} MiB "
          f"in {upload_s:.2f} s, download of {size / 2**20:.1f} MiB in {download_s:.2f} s (process start included)")


def test_status_json_and_ls_table(hub, cli):
    login(hub, cli, "cli-bob")
    status = json.loads(cli("status", "--json").stdout)
    assert set(status) == {"hub", "user", "allocations", "queued", "quota"}
    assert status["user"] == "cli-bob" and status["allocations"] == [] and status["queued"] == []
    assert {"limits", "held", "left", "servers", "groups"} <= set(status["quota"])
    assert status["quota"]["servers"] == []
    text = cli("status").stdout.decode()
    assert "Shares\n  none held" in text and "Quota" in text and "GPU-hours" in text

    cli("vfolder", "create", "results")
    lines = cli("vfolder", "ls").stdout.decode().splitlines()
    assert lines[0].split() == ["NAME", "KIND", "ACCESS", "OWNER", "USED", "QUOTA", "HOST", "STATE"]
    row = next(line.split() for line in lines[1:] if line.startswith("results "))
    assert row[:4] == ["results", "vfolder", "owner", "cli-bob"] and row[-1] == "ready"
    listing = json.loads(cli("vfolder", "ls", "--json").stdout)
    assert [v["name"] for v in listing["vfolders"] if v["name"] == "results"] == ["results"]

    # a share is an invitation the other user sees (here: in their own `ls`)
    cli("vfolder", "share", "results", "cli-carol", "--ro")
    carol = hub.login("cli-carol")
    p = cli("vfolder", "ls", env={"GPUHUB_TOKEN": carol.token})
    assert "1 invitation(s) waiting" in p.stdout.decode() and "results from cli-bob (ro)" in p.stdout.decode()

    cli("vfolder", "rm", "results")
    assert "results" not in cli("vfolder", "ls").stdout.decode()


def test_errors_say_what_to_do(hub, cli):
    login(hub, cli, "cli-dave")
    p = cli("vfolder", "rm", "nosuch", check=False)
    assert p.returncode == 1 and "you have no vfolder 'nosuch'" in p.stderr.decode()
    p = cli("vfolder", "create", "bad/name", check=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("gpuhub: "), p.stderr
    p = cli("status", "--token", "not-a-token", check=False)
    assert p.returncode == 1 and "gpuhub login" in p.stderr.decode() and "--token" in p.stderr.decode()
    p = cli("status", "--url", "http://127.0.0.1:9/", check=False)
    assert p.returncode == 1 and "is the hub at http://127.0.0.1:9/ up" in p.stderr.decode()
    p = cli("vfolder", "upload", "datasets", "missing.bin", check=False)
    assert p.returncode == 2 and "missing.bin is not a file here" in p.stderr.decode()
    p = cli("vfolder", "download", "nosuch", "x", check=False)
    assert p.returncode == 1
    cli("vfolder", "create", "empty")
    p = cli("vfolder", "download", "empty", "absent.txt", check=False)
    assert p.returncode == 1 and "absent.txt" in p.stderr.decode()
    assert not (cli.tmp / "absent.txt").exists() and not (cli.tmp / "absent.txt.part").exists()
    p = cli("status", env={"XDG_CONFIG_HOME": str(cli.tmp / "elsewhere")}, check=False)
    assert p.returncode == 2 and "gpuhub login" in p.stderr.decode()
