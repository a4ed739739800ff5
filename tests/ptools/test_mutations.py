"""pchmod, pchown, prm, pcp on one copy, GNU on an identical copy: same end state."""
import os
import stat
import subprocess

import pytest

from .conftest import gnu_msg, run, snapshot


@pytest.mark.parametrize("mode", ["755", "u+x,go-w", "a=rX", "2750", "o=u", "-w", "+t", "a-x,u+X", "00644"])
def test_pchmod_recursive(twin, mode):
    a, b = twin
    os.chmod(a / "dir1", 0o2775)
    os.chmod(b / "dir1", 0o2775)
    gnu = run("chmod", "-R", mode, a)
    mine = run("pchmod", "-R", mode, b)
    assert mine.returncode == gnu.returncode, (mine.stderr, gnu.stderr)
    assert snapshot(b, content=False) == snapshot(a, content=False)


def test_pchmod_symlink_argument_and_non_recursive(twin):
    a, b = twin
    for root, cmd in ((a, "chmod"), (b, "pchmod")):
        run(cmd, "600", root / "ln_file", root / "dir1")
        run(cmd, "-R", "g+w", root / "ln_dir")
    assert snapshot(b, content=False) == snapshot(a, content=False)


@pytest.mark.parametrize("spec,flags", [("nobody:nogroup", ["-R"]), (":nogroup", ["-R"]), ("nobody", []),
                                        ("nobody:", ["-R"]), ("65534:65534", ["-R", "-h"])])
def test_pchown(twin, spec, flags):
    a, b = twin
    os.chmod(a / "dir1" / "hl_a", 0o6755)
    os.chmod(b / "dir1" / "hl_a", 0o6755)
    for root, cmd in ((a, "chown"), (b, "pchown")):
        cp = run(cmd, *flags, spec, root, root / "ln_file")
        assert cp.returncode == 0, cp.stderr
    assert snapshot(b, content=False) == snapshot(a, content=False)


def test_prm_recursive_and_verbose(tree, tmp_path):
    """On the full tree, with its directory of thousands of entries."""
    a, b = tmp_path / "gnu", tmp_path / "p"
    for dst in (a, b):
        subprocess.run(["cp", "-a", str(tree), str(dst)], check=True)
    gnu = run("rm", "-rv", a)
    mine = run("prm", "-rv", b)
    assert mine.returncode == gnu.returncode == 0, mine.stderr
    assert not a.exists() and not b.exists()
    strip = lambda out, root: sorted(out.replace(os.fsencode(root), b"ROOT").split(b"\n"))  # noqa: E731
    assert strip(mine.stdout, b) == strip(gnu.stdout, a)


def test_prm_files_links_and_errors(twin):
    a, b = twin
    for root, cmd in ((a, "rm"), (b, "prm")):
        cp = run(cmd, root / "ln_dir", root / "loop_a", root / "plain.txt", root / "dir1", root / "missing")
        assert cp.returncode == 1
        msg = cp.stderr if cmd == "prm" else gnu_msg(cp.stderr, "rm", "prm")
        assert msg.replace(os.fsencode(root), b"R") == (
            b"prm: cannot remove 'R/dir1': Is a directory\nprm: cannot remove 'R/missing': No such file or directory\n")
        assert run(cmd, "-f", root / "missing").returncode == 0
    assert snapshot(b) == snapshot(a)


def test_prm_refuses_dot(twin):
    a, b = twin
    gnu = run("rm", "-rf", ".", cwd=a / "dir1")
    mine = run("prm", "-rf", ".", cwd=b / "dir1")
    assert mine.returncode == gnu.returncode == 1
    assert mine.stderr == gnu_msg(gnu.stderr, "rm", "prm")
    assert snapshot(b) == snapshot(a)


@pytest.mark.parametrize("flags", [["-r"], ["-rp"]])
def test_pcp_recursive(twin, tmp_path, flags):
    src, _ = twin
    os.chmod(src / "dir1" / "sub", 0o555)      # copies must still be populated
    os.chmod(src / "emptydir", 0o1777)
    ga, pa = tmp_path / "gcopy", tmp_path / "pcopy"
    gnu = run("cp", *flags, src, ga)
    mine = run("pcp", *flags, src, pa)
    assert mine.returncode == gnu.returncode == 0, mine.stderr
    times = "-rp" in flags
    assert snapshot(pa, times=times) == snapshot(ga, times=times)
    # sparse files stay sparse
    assert os.stat(pa / "sparse.img").st_blocks <= os.stat(ga / "sparse.img").st_blocks + 8
    # into an existing directory, and several sources
    (tmp_path / "into_g").mkdir()
    (tmp_path / "into_p").mkdir()
    run("cp", *flags, src / "dir1", src / "plain.txt", src / "ln_file", tmp_path / "into_g", check=True)
    run("pcp", *flags, src / "dir1", src / "plain.txt", src / "ln_file", tmp_path / "into_p", check=True)
    assert snapshot(tmp_path / "into_p", times=times) == snapshot(tmp_path / "into_g", times=times)


def test_pcp_errors(twin, tmp_path):
    src, _ = twin
    cases = [[src / "dir1", tmp_path / "x"], [src / "missing", tmp_path / "y"], [src, src / "dir1" / "inside"],
             [src / "plain.txt", src / "Upper.TXT", src / "empty"], [src / "plain.txt"]]
    for args in cases:
        gnu = run("cp", *args)
        mine = run("pcp", *args)
        assert mine.returncode == gnu.returncode, args
        assert mine.stderr == gnu_msg(gnu.stderr, "cp", "pcp").replace(b"Try 'cp", b"Try 'pcp"), args


def test_non_recursive_pcp_dereferences_file_link(twin, tmp_path):
    src, _ = twin
    run("cp", src / "ln_file", tmp_path / "g_copy", check=True)
    run("pcp", src / "ln_file", tmp_path / "p_copy", check=True)
    assert stat.S_ISREG(os.lstat(tmp_path / "p_copy").st_mode)
    assert (tmp_path / "p_copy").read_bytes() == (tmp_path / "g_copy").read_bytes()
