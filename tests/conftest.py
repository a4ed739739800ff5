import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

# the proxy and the venv's scripts, also when pytest is run without `make`
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), str(REPO / "hub_config/proxy/node_modules/.bin"), os.environ["PATH"]]
)


import secrets  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

#: set by `make test` (.ci/postgres starts Debian's PostgreSQL)
POSTGRES_URL = os.environ.get("GPUHUB_TEST_POSTGRES_URL", "")


def _postgres_database() -> tuple[str, object]:
    """A new, empty PostgreSQL database for one test; returns (url, drop())."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"gpuhub_t_{secrets.token_hex(4)}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on a SQLite file and on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gpuhub.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip("GPUHUB_TEST_POSTGRES_URL is not set (make test starts PostgreSQL and sets it)")
    url, drop = _postgres_database()
    yield url
    drop()


FAKE_MPS = """\
#!/bin/sh
# records each call: arguments, stdin, the pipe and log directories
input=""
if [ "$#" -eq 0 ]; then input=$(cat); fi
echo "args=$* stdin=$input pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY" >> "$FAKE_MPS_CALLS"
if [ "$1" = "-d" ]; then
  [ -n "$FAKE_MPS_FAIL" ] && { echo "cannot start" ; exit 3; }
  sleep 300 >/dev/null 2>&1 </dev/null &
  echo $! > "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid"
  : > "$CUDA_MPS_PIPE_DIRECTORY/control"
elif [ "$input" = "quit" ]; then
  kill "$(cat "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid")"
  rm -f "$CUDA_MPS_PIPE_DIRECTORY/control" "$CUDA_MPS_PIPE_DIRECTORY/nvidia-cuda-mps-control.pid"
fi
"""


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-cuda-mps-control"
    script.write_text(FAKE_MPS)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "mps-calls"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_CALLS", str(calls))
    yield types.SimpleNamespace(bin=bin_dir, calls=lambda: calls.read_text().splitlines())
    for pidfile in tmp_path.rglob("nvidia-cuda-mps-control.pid"):
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
