"""Modules imported on first use, for commands that start fast.

    audit = lazy_module("pipeline.audit")   # imported when `audit.run_audit` is first read

The run's children (`capaudit serve`, `capaudit simulate`) parse the same command line as
`capaudit run` but need none of its modules (duckdb, polars, pyarrow, the steps): importing them
took 1.6 s of CPU a process, 4.5 s of wall time on a loaded machine, before the run could send.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module `name`, executed when an attribute is first read (importlib's LazyLoader);
    the module itself if it is imported already."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
