"""Parallel file toolkit: GNU-compatible p-commands and the engine behind them.

The CLIs live in :mod:`.cli`; other code should use the blocking API re-exported
here (loaded lazily, so that the command-line tools start fast).
"""
from __future__ import annotations

TYPE_CHECKING = False   # typing is not imported at run time: it costs the CLIs ~10 ms of start-up
if TYPE_CHECKING:
    from typing import Any

_EXPORTS = {
    "DiskUsage": "api", "chmod_tree": "api", "chown_tree": "api", "copytree": "api", "du": "api",
    "rmtree": "api", "walk": "api",
    "Plan": "concurrency", "fs_type": "concurrency", "plan_for": "concurrency",
    "PathError": "engine", "Record": "engine", "Stat": "engine",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)
