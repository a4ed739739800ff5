"""Pure decisions: names, paths, permissions, quotas, mount names (no I/O)."""

import pytest

from vfolder_manager.core.mounts import mount_mode, mount_names, select_mounts
from vfolder_manager.core.names import InvalidName, check_vfolder_name, split_relpath
from vfolder_manager.core.paths import vfolder_relpath
from vfolder_manager.core.permissions import (
    Action, Caller, Role, ShareView, VFolderView, can_create_for_group, denial, role_of,
)
from vfolder_manager.core.quota import Limit, Usage, over_quota, refuse_upload
from vfolder_manager.storage.hosts import HostConfigError, parse_hosts


@pytest.mark.parametrize("name", ["datasets", "models v2", "データ", "a" * 64, "x.y", "a..b"])
def test_good_names(name):
    assert check_vfolder_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\\b", "a\nb", "a\x00b", "a" * 65,
                                  " lead", "trail ", None, 3, "a\u202eb"])
def test_bad_names(name):
    with pytest.raises(InvalidName):
        check_vfolder_name(name)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b", "a\\..\\b",
                                  "a\x00", "..", "a/..", "x\n"])
def test_bad_paths(path):
    with pytest.raises(InvalidName):
        split_relpath(path)


def test_good_paths():
    assert split_relpath("a/b/c.txt") == ("a", "b", "c.txt")
    assert split_relpath("") == ()
    assert split_relpath("dir/") == ("dir",)
    assert split_relpath("..a/b..") == ("..a", "b..")


def test_path_from_id_only():
    vid = "0123456789abcdef0123456789abcdef"
    assert str(vfolder_relpath(vid)) == "01/" + vid
    with pytest.raises(ValueError):
        vfolder_relpath("../etc")


def _vf(kind="user", owner="alice", creator="alice", shares=()):
    return VFolderView(kind, owner, creator, tuple(shares))


def test_roles():
    alice, bob, dave = Caller("alice", frozenset({"ml"})), Caller("bob", frozenset({"ml"})), Caller("dave")
    vf = _vf(shares=[ShareView("user", "bob", "ro"), ShareView("user", "dave", "rw", "pending")])
    assert role_of(vf, alice) == Role.OWNER
    assert role_of(vf, bob) == Role.RO
    assert role_of(vf, dave) == Role.NONE  # an invitation is no access until accepted
    assert role_of(vf, Caller("x", admin=True)) == Role.ADMIN
    gvf = _vf("group", "ml", "alice", [ShareView("group", "bio", "ro")])
    assert role_of(gvf, alice) == Role.OWNER and role_of(gvf, bob) == Role.RW
    assert role_of(gvf, Caller("carol", frozenset({"bio"}))) == Role.RO
    assert role_of(gvf, bob, {"ml": ["bob"]}) == Role.OWNER
    assert denial(Action.READ, Role.NONE)[0] == 404
    assert denial(Action.WRITE, Role.RO)[0] == 403
    assert denial(Action.WRITE, Role.RW) is None
    assert can_create_for_group(dave, "ml", {}) is not None
    assert can_create_for_group(bob, "ml", {"ml": ["alice"]}) is not None
    assert can_create_for_group(alice, "ml", {"ml": ["alice"]}) is None


def test_quota_decisions():
    lim = [Limit(100, 10)]
    assert refuse_upload(Usage(50, 1), lim, 50) is None
    assert "exceed" in refuse_upload(Usage(50, 1), lim, 51)
    assert refuse_upload(Usage(0, 10), lim, 1)
    assert over_quota(Usage(100, 0), lim) and over_quota(Usage(99, 0), lim) is None
    assert over_quota(Usage(10**12, 10**9), [Limit()]) is None


def test_mount_names_and_modes():
    entries = [("1", "data", "user", "alice"), ("2", "data", "user", "bob"), ("3", "models", "group", "ml")]
    assert mount_names(entries, "alice") == {"1": "data", "2": "data@bob", "3": "models"}
    assert select_mounts(None, {"1": "data", "3": "models"}, {"models"}) == ["models"]
    with pytest.raises(ValueError, match="unknown"):
        select_mounts(["nope"], {"1": "data"}, set())
    assert mount_mode(Role.RO, None) == (True, "shared read-only")
    assert mount_mode(Role.RW, "quota reached")[0] is True
    assert mount_mode(Role.OWNER, None) == (False, None)


def test_hosts_config():
    hosts = parse_hosts({"a": {"path": "/x"}})
    assert hosts["a"].default
    with pytest.raises(HostConfigError):
        parse_hosts({"a": {"path": "/x"}, "b": {"path": "/y"}})
    with pytest.raises(HostConfigError):
        parse_hosts({"a": {"path": "relative"}})
    with pytest.raises(HostConfigError):
        parse_hosts({"../a": {"path": "/x"}})
