"""The allocator's route table: one module per REST resource, and no two
handler classes with one name (api.routes and admin.routes, as the app joins
them)."""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict
from types import SimpleNamespace

import gpu_allocator.api
from gpu_allocator import admin
from gpu_allocator.api import RESOURCES, routes

PREFIX = "/services/gpu-allocator/"


def table() -> list:
    service = SimpleNamespace(metrics=None)
    return routes(PREFIX, service) + admin.routes(PREFIX, service)


def test_each_rest_resource_is_served_by_one_module():
    modules = defaultdict(set)
    for path, handler, *_ in routes(PREFIX, None):
        resource = path.removeprefix(PREFIX + "api/v1/").split("/")[0]
        modules[resource.rstrip("s")].add(handler.__module__)  # quota and quotas: one resource
    assert {r: m for r, m in modules.items() if len(m) > 1} == {}
    assert modules["allocation"] == {"gpu_allocator.api.allocations"}
    assert modules["usage"] == {"gpu_allocator.api.usage"}
    assert modules["quota"] == {"gpu_allocator.api.quotas"}


def test_every_resource_module_is_routed():
    """A module of gpu_allocator.api with handlers is in api.RESOURCES."""
    found = set()
    for info in pkgutil.iter_modules(gpu_allocator.api.__path__):
        module = importlib.import_module(f"gpu_allocator.api.{info.name}")
        if hasattr(module, "default_handlers"):
            found.add(module)
    assert found == set(RESOURCES)


def test_no_two_handler_classes_share_a_name():
    names = defaultdict(set)
    for _, handler, *_ in table():
        names[handler.__name__].add(f"{handler.__module__}.{handler.__qualname__}")
    assert {n: c for n, c in names.items() if len(c) > 1} == {}


def test_the_admin_panel_routes_only_its_pages():
    for path, handler, *_ in admin.routes(PREFIX, SimpleNamespace(metrics=None)):
        assert "/api/" not in path
        assert not handler.__module__.startswith("gpu_allocator.api")
