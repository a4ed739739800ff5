"""Bad input: GNU wording on stderr, non-zero exit, and the walk goes on."""
import os

import pytest

from .conftest import gnu_msg, run


@pytest.mark.parametrize("gnu,mine,args", [
    ("find", "pfind", ["MISSING"]),
    ("find", "pfind", ["MISSING", "TREE/dir1"]),
    ("du", "pdu", ["-s", "MISSING", "TREE/dir1"]),
    ("chmod", "pchmod", ["-R", "u+w", "MISSING"]),
    ("chmod", "pchmod", ["bogus", "TREE"]),
    ("chmod", "pchmod", ["755"]),
    ("chown", "pchown", ["no_such_user_x", "TREE"]),
    ("chown", "pchown", ["-R", "root", "MISSING"]),
    ("rm", "prm", []),
    ("cp", "pcp", []),
    ("find", "pfind", ["TREE", "-maxdepth"]),
    ("find", "pfind", ["TREE", "-frobnicate"]),
    ("find", "pfind", ["TREE", "-user", "no_such_user_x"]),
    ("find", "pfind", ["TREE", "-newer", "MISSING"]),
])
def test_bad_input(tree, gnu, mine, args):
    argv = [a.replace("MISSING", str(tree / "missing")).replace("TREE", str(tree)) for a in args]
    g = run(gnu, *argv)
    m = run(mine, *argv)
    assert g.returncode != 0 and m.returncode != 0
    assert sorted(m.stdout.split(b"\n")) == sorted(g.stdout.split(b"\n"))
    expected = gnu_msg(g.stderr, gnu, mine).replace(f"Try '{gnu} ".encode(), f"Try '{mine} ".encode())
    assert m.stderr == expected


def test_permission_denied_walk_goes_on(tmp_path):
    """Unreadable directories (as the unprivileged user nobody) are reported, the rest is listed."""
    import shutil
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop to nobody")
    root = tmp_path / "perm"
    (root / "open" / "x").mkdir(parents=True)
    (root / "closed" / "y").mkdir(parents=True)
    os.chmod(root / "closed", 0o700)
    for p in (tmp_path, root):
        os.chmod(p, 0o755)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    from .conftest import BIN
    probe = run(*drop, str(BIN / "python"), "-c", "import vfolder_manager.ptools")
    if probe.returncode != 0:
        pytest.skip("the venv is not readable by nobody here")
    for gnu, mine, extra in (("find", "pfind", []), ("du", "pdu", [])):
        g = run(*drop, gnu, *extra, root)
        m = run(*drop, str(BIN / mine), *extra, root)
        assert g.returncode == m.returncode == 1
        assert m.stderr == gnu_msg(g.stderr, gnu, mine)
        assert sorted(m.stdout.split(b"\n")) == sorted(g.stdout.split(b"\n"))
