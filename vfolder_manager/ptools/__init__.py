"""Parallel file toolkit: GNU-compatible p-commands and the engine behind them.

The CLIs live in :mod:`.cli`; other code should use the blocking API below.
"""
from .api import DiskUsage, chmod_tree, chown_tree, copytree, du, rmtree, walk
from .concurrency import Plan, fs_type, plan_for
from .engine import PathError, Record, Stat

__all__ = ["DiskUsage", "PathError", "Plan", "Record", "Stat", "chmod_tree", "chown_tree", "copytree",
           "du", "fs_type", "plan_for", "rmtree", "walk"]
