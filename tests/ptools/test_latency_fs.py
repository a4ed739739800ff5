"""On a simulated NAS (FUSE, every request delayed) the p-commands keep many
requests in flight: the server's own counter must see it.  No timing is asserted."""
import os
import shutil
import sys

import pytest

from .conftest import run

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                                reason="needs /dev/fuse and fusermount3")


@pytest.fixture(params=["native", "python"])
def nas(request, tmp_path):
    from vfolder_manager.ptools.testing.mount import Mount, build_native
    impl = request.param
    if impl == "python":
        pytest.importorskip("pyfuse3")
    elif build_native() is None:
        pytest.skip("native latencyfs needs gcc, pkg-config and libfuse3-dev")
    src = tmp_path / "src"
    for d in range(8):
        for e in range(4):
            p = src / f"d{d}" / f"e{e}"
            p.mkdir(parents=True)
            for f in range(8):
                (p / f"f{f}").write_bytes(b"x" * (f * 100))

    def mount(name: str, delay_ms: float = 5):
        return Mount(str(src), str(tmp_path / name), delay_ms, str(tmp_path / f"{name}.json"), impl=impl)
    return src, mount


def test_parallel_requests_and_same_results(nas):
    src, mount = nas
    with mount("m1") as m:
        from vfolder_manager.ptools import fs_type, plan_for
        assert fs_type(os.fsencode(m.mountpoint))[1] == "fuse"
        assert plan_for([os.fsencode(m.mountpoint)]).network
        mine = run("pfind", m.mountpoint, "-type", "f", "-size", "-2", "-print0", "--threads", "32")
        gnu = run("find", m.mountpoint, "-type", "f", "-size", "-2", "-print0")
        du_mine = run("pdu", "-s", m.mountpoint)
    assert mine.returncode == 0, mine.stderr
    assert sorted(mine.stdout.split(b"\0")) == sorted(gnu.stdout.split(b"\0"))
    assert du_mine.stdout.split(b"\t")[0] == run("du", "-s", src).stdout.split(b"\t")[0]
    assert m.stats()["max_inflight"] >= 8, m.stats()


def test_max_inflight_throttles(nas):
    src, mount = nas
    with mount("m2") as m:
        cp = run("pdu", "-s", "--threads", "32", "--max-inflight", "2", m.mountpoint)
    assert cp.returncode == 0, cp.stderr
    # the kernel adds asynchronous requests of its own (releases, forgets) beside ours
    assert m.stats()["max_inflight"] <= 4, m.stats()


def test_mutations_through_fuse(nas, tmp_path):
    src, mount = nas
    with mount("m3", delay_ms=1) as m:
        mp = m.mountpoint
        assert run("pcp", "-rp", f"{mp}/d0", f"{mp}/copy").returncode == 0
        assert run("pchmod", "-R", "g+w", f"{mp}/copy").returncode == 0
        assert run("pchown", "-R", "nobody", f"{mp}/copy").returncode == 0
        listing = run("pfind", f"{mp}/copy", "-user", "nobody", "-print0").stdout.split(b"\0")[:-1]
        assert len(listing) == 1 + 4 + 32
        assert run("prm", "-r", f"{mp}/copy").returncode == 0
        assert not os.path.exists(f"{mp}/copy")
    assert m.stats()["max_inflight"] >= 2
