"""The tests' own layout: shared helpers come from tests/support.py and fixtures
from the conftest files; no test module imports another test module, and none
puts a directory on sys.path to do so."""

from __future__ import annotations

import ast
from pathlib import Path

from tests import support
from tests.support import TESTS


def imported_modules(tree: ast.AST) -> list[str]:
    """The dotted names a module imports (``from . import x`` counts as ``.x``)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.append(base)
            names += [f"{base}.{a.name}" if node.module else f"{base}{a.name}" for a in node.names]
    return names


def imports_of_tests(source: str) -> list[str]:
    """What ``source`` imports of test modules."""
    return [name for name in imported_modules(ast.parse(source))
            if any(part.startswith("test_") for part in name.split("."))]


def test_no_test_module_imports_another():
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        found = imports_of_tests(path.read_text())
        if found:
            offenders[str(path.relative_to(TESTS))] = found
        assert "sys.path.insert" not in path.read_text() or path == Path(__file__), path
    assert offenders == {}, "move what they share to tests/support.py (helpers) or a conftest (fixtures)"


def test_the_check_sees_every_form_of_import():
    assert imports_of_tests("from test_pool import box\nimport tests.test_queue\nfrom tests import test_e2e\n"
                            "from .test_api import x\n") == [
        "test_pool", "test_pool.box", "tests.test_queue", "tests.test_e2e", ".test_api", ".test_api.x"]
    assert imports_of_tests("from tests.support import box\nimport pytest\n"
                            "from gpu_allocator.pool import LivePool\n") == []


def test_modules_with_the_same_hub_options_share_one_hub_until_the_last_is_done(monkeypatch, tmp_path):
    events = []

    class FakeHub:
        def __init__(self, work, **options):
            self.work, self.options = work, options

        def start(self):
            events.append(("start", self.options))

        def stop(self):
            events.append(("stop", self.options))

    monkeypatch.setattr(support, "Hub", FakeHub)
    made = iter(range(100))
    hubs = support.Hubs(lambda name: tmp_path / f"{name}{next(made)}")
    hubs.expect([{}, {"A": "1"}, {}])
    first = hubs.get()
    docker = hubs.get(A="1")
    assert hubs.get() is first and docker is not first
    hubs.done(A="1")
    hubs.done()
    assert events == [("start", {}), ("start", {"A": "1"}), ("stop", {"A": "1"})]  # the default one is still used
    hubs.done()
    assert events[-1] == ("stop", {})
    # an option may be a path in the hub's work directory
    def nas(work):
        return str(work / "nas")

    hubs.expect([{"DIR": nas}, {"DIR": nas}])
    h = hubs.get(DIR=nas)
    assert h.options == {"DIR": str(h.work / "nas")}
    hubs.done(DIR=nas)
    assert hubs.get(DIR=nas) is h
    hubs.stop_all()  # the session's end: whatever still runs
    assert events[-1] == ("stop", h.options)
