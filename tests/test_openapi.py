"""The OpenAPI specs in docs/source/reference/ describe exactly what the services
serve: every REST route of the allocator (``gpu_allocator.api.routes``) and of
the vfolder service (``vfolder_manager.api.routes``) is in its spec with the
same path and the methods its handler implements, and the spec has no path or
method the service does not serve. The route tables are built over a dummy
service object; nothing is started.

A route's regex maps to an OpenAPI path by its groups: each capture group is a
path parameter (in order), a group of literal alternatives such as
``(drain|undrain)`` a parameter whose ``enum`` lists exactly them; an optional
``/?`` is dropped (before a group it is the separator). Only routes under ``api/v1`` are REST API (the
admin panel's pages and ``/metrics`` are documented elsewhere)."""

from __future__ import annotations

import inspect
import os
import re
from types import SimpleNamespace

import pytest
import yaml
from tornado.web import RequestHandler

import gpu_allocator.api
import vfolder_manager.api

SPECS = os.path.join(os.path.dirname(__file__), "..", "docs", "source", "reference")
ALLOCATOR_PREFIX = "/services/gpu-allocator/"
VFOLDERS_PREFIX = "/services/vfolders/"
GROUP = re.compile(r"\((?!\?)((?:[^()\\]|\\.)*)\)")
LITERALS = re.compile(r"^[a-z_]+(\|[a-z_]+)*$")
PARAM = re.compile(r"\{([^}/]+)\}")


def dummy_service(prefix: str):
    """What a route table needs of a service, and nothing that serves."""
    return SimpleNamespace(service_prefix=prefix, metrics=None, hub_auth=None, service_name="dummy")


def route_table(fn, prefix: str) -> list:
    """A service's public route-table function, called as it is declared:
    ``routes(service)`` or ``routes(prefix, service)``."""
    service = dummy_service(prefix)
    if len(inspect.signature(fn).parameters) == 1:
        return fn(service)
    return fn(prefix, service)


def implemented(cls) -> set[str]:
    """The HTTP methods a handler class implements (overrides of RequestHandler's)."""
    return {
        m.lower() for m in cls.SUPPORTED_METHODS
        if getattr(cls, m.lower(), None) is not getattr(RequestHandler, m.lower(), None)
    }


def skeleton_of_route(pattern: str, base: str) -> tuple[str, list[str | None]]:
    """``/vfolders/([^/]+)/(restore|purge)`` → (``/vfolders/{}/{}``, [None, "purge|restore"])."""
    # an optional slash before a group (``files/?(.*)``) is the path's separator
    path = pattern[len(base):].rstrip("$").replace("/?(", "/(")
    groups: list[str | None] = []

    def group(m):
        inner = m.group(1)
        groups.append("|".join(sorted(inner.split("|"))) if LITERALS.match(inner) else None)
        return "{}"

    path = GROUP.sub(group, path).replace("/?", "").replace("\\.", ".")
    return path or "/", groups


def skeleton_of_spec(path: str, item: dict) -> tuple[str, list[str | None]]:
    params = {}
    for op in [item] + [v for v in item.values() if isinstance(v, dict)]:
        for p in op.get("parameters", []):
            params[p["name"]] = p
    enums = []
    for name in PARAM.findall(path):
        enum = params.get(name, {}).get("schema", {}).get("enum")
        enums.append("|".join(sorted(enum)) if enum else None)
    return PARAM.sub("{}", path), enums


def resolve(spec: dict, obj: dict) -> dict:
    ref = obj.get("$ref")
    if not ref:
        return obj
    out = spec
    for part in ref.lstrip("#/").split("/"):
        out = out[part]
    return out


def served(routes_fn, prefix: str) -> dict[str, tuple[list, set[str], str]]:
    base = prefix.rstrip("/") + "/api/v1"
    out = {}
    for route in route_table(routes_fn, prefix):
        pattern, handler = route[0], route[1]
        if not pattern.startswith(base + "/"):
            continue
        skel, groups = skeleton_of_route(pattern, base)
        assert skel not in out, f"two routes serve {skel}: {out[skel][2]} and {pattern}"
        out[skel] = (groups, implemented(handler), pattern)
    return out


def documented(name: str) -> dict[str, tuple[list, set[str], str]]:
    with open(os.path.join(SPECS, name)) as f:
        spec = yaml.safe_load(f)
    out = {}
    for path, item in spec["paths"].items():
        item = {k: resolve(spec, v) if isinstance(v, dict) else v for k, v in item.items()}
        for k in ("parameters",):
            item[k] = [resolve(spec, p) for p in item.get(k, [])]
        for method, op in item.items():
            if isinstance(op, dict):
                op["parameters"] = [resolve(spec, p) for p in op.get("parameters", [])]
        skel, enums = skeleton_of_spec(path, item)
        methods = {m for m in item if m in {"get", "put", "post", "delete", "patch", "head", "options"}}
        assert skel not in out, f"{name}: two paths are {skel}"
        out[skel] = (enums, methods, path)
    return out


CASES = [
    pytest.param(gpu_allocator.api.routes, ALLOCATOR_PREFIX, "rest-api-allocator.yaml", id="allocator"),
    pytest.param(vfolder_manager.api.routes, VFOLDERS_PREFIX, "rest-api-vfolders.yaml", id="vfolders"),
]


@pytest.mark.parametrize("routes_fn, prefix, spec", CASES)
def test_every_route_is_in_the_spec_with_its_methods(routes_fn, prefix, spec):
    routes, paths = served(routes_fn, prefix), documented(spec)
    for skel, (groups, methods, pattern) in routes.items():
        assert skel in paths, f"{pattern} is served but not in {spec}"
        enums, documented_methods, path = paths[skel]
        assert documented_methods == methods, (
            f"{path}: {spec} documents {sorted(documented_methods)}, the handler implements {sorted(methods)}")
        assert len(enums) == len(groups), f"{path}: {len(enums)} parameters in {spec}, {len(groups)} in {pattern}"
        for enum, group in zip(enums, groups):
            if group is not None:
                assert enum == group, f"{path}: a parameter of {spec} must be one of {group} (as {pattern})"


@pytest.mark.parametrize("routes_fn, prefix, spec", CASES)
def test_the_spec_has_no_path_the_service_does_not_serve(routes_fn, prefix, spec):
    routes, paths = served(routes_fn, prefix), documented(spec)
    extra = sorted(path for skel, (_, _, path) in paths.items() if skel not in routes)
    assert not extra, f"{spec} documents paths the service does not serve: {extra}"


def test_route_regexes_map_to_paths():
    """The mapping the two tests above rely on."""
    base = "/p/api/v1"
    assert skeleton_of_route(base + r"/vfolders/([^/]+)/(restore|purge)", base) == ("/vfolders/{}/{}", [None, "purge|restore"])
    assert skeleton_of_route(base + r"/vfolders/([^/]+)/uploads/([0-9a-f]{32})", base) == ("/vfolders/{}/uploads/{}", [None, None])
    assert skeleton_of_route(base + r"/vfolders/([^/]+)/files/?(.*)", base) == ("/vfolders/{}/files/{}", [None, None])
    assert skeleton_of_route(base + r"/vfolders/([^/]+)/uploads/?", base) == ("/vfolders/{}/uploads", [None])
    item = {"parameters": [{"name": "kind", "schema": {"enum": ["user", "group"]}}]}
    assert skeleton_of_spec("/quotas/{kind}/{name}", item) == ("/quotas/{}/{}", ["group|user", None])
