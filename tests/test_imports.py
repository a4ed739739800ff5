"""The import graph of the project's Python packages has no cycle, and the admin
panel (gpu_allocator.admin) does not reach the REST handlers (gpu_allocator.api).

The graph is read from the sources with ``ast`` (nothing is imported): one node
per module (a package is its ``__init__``), one edge per import of a project
module wherever it is written — at the top of a module or inside a function, so
an import moved into a function to dodge a cycle is still a cycle. Importing
``a.b.c`` also runs the ``__init__`` of ``a.b`` (and ``a``): those count as
edges too, except to the importer's own packages, which are being imported
already. A cycle is a strongly connected component of more than one module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gpuhub", "gpu_allocator", "spawner", "vfolder_manager")
SKIP_DIRS = {"node_modules", "__pycache__", "build", "dist"}


def modules_of(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Module name → source file, for every module of ``packages`` under ``root``."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            if SKIP_DIRS & set(rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _known(name: str, modules) -> str | None:
    """``name`` if it is a project module, else its longest prefix that is one."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, source: str, modules, is_package: bool) -> set[str]:
    """The project modules that importing ``name`` (whose code is ``source``)
    imports, directly or through the ``__init__`` of their packages."""
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                t = _known(alias.name, modules)
                if t:
                    targets.add(t)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                t = _known(f"{base}.{alias.name}", modules) if alias.name != "*" else None
                t = t or _known(base, modules)
                if t:
                    targets.add(t)
    own = set(_ancestors(name)) | {name}
    out = set()
    for t in targets:
        out |= {t, *_ancestors(t)} - own
    return {t for t in out if t in modules}


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    modules = modules_of(root, packages)
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py")
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's, without
    recursion), each sorted; sorted by their first node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        n = stack.pop()
                        on_stack.discard(n)
                        component.append(n)
                        if n == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, as a path a → … → a."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError(f"{component} is not strongly connected")


def reachable(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- the project -------------------------------------------------------------------------


def test_the_project_has_no_import_cycle():
    graph = import_graph()
    assert {"gpuhub", "gpu_allocator.api", "gpu_allocator.admin.pages", "spawner.gpuspawner",
            "vfolder_manager.api"} <= set(graph)  # the walk found the packages
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"{' → '.join(cycle_path(graph, c))}  (all of {', '.join(c)})" for c in found)


def test_the_admin_panel_does_not_reach_the_rest_handlers():
    """The admin pages call the pool, core and the shared shapes; the REST
    handlers (gpu_allocator.api) are another door to the same actions."""
    graph = import_graph()
    admin = {m for m in graph if m == "gpu_allocator.admin" or m.startswith("gpu_allocator.admin.")}
    bad = sorted(m for m in reachable(graph, admin)
                 if m == "gpu_allocator.api" or m.startswith("gpu_allocator.api."))
    assert not bad, f"gpu_allocator.admin imports (directly or not) {bad}"


# --- the checker itself ------------------------------------------------------------------


def test_cycles_finds_each_strongly_connected_component_and_only_those():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}, "g": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycle_path(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    assert reachable(graph, {"d"}) == {"d", "e"}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_hidden_in_a_function_or_a_package_init_is_found(tmp_path):
    _write(tmp_path, {
        "p/__init__.py": "",
        "p/x.py": "from . import y\n",
        # inside a function, relative to the parent package: still an edge
        "p/y.py": "def f():\n    from ..p.x import thing\n",
        "p/sub/__init__.py": "from ..z import Z\n",
        "p/sub/leaf.py": "import os\n",
        # importing p.sub.leaf runs p/sub/__init__, which imports p.z back
        "p/z.py": "from .sub.leaf import nothing\nZ = 1\n",
        "p/ok.py": "from .sub import leaf\nfrom p import x\n",
    })
    graph = import_graph(tmp_path, ("p",))
    assert graph["p.x"] == {"p.y"}
    assert graph["p.y"] == {"p.x"}
    assert graph["p.z"] == {"p.sub", "p.sub.leaf"}
    assert graph["p.ok"] == {"p.sub", "p.sub.leaf", "p.x"}
    assert graph["p.sub.leaf"] == set()  # its own packages are not edges
    assert cycles(graph) == [["p.sub", "p.z"], ["p.x", "p.y"]]
