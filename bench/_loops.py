"""The loops under test, created by name.

``asyncio`` is the stock loop the default policy creates (``SelectorEventLoop``
on POSIX), built directly so an installed policy cannot substitute another.
``uvloop`` and ``cloop`` are optional: when one cannot be imported, or cloop
has no ``new_event_loop`` yet, ``factory`` raises ``NotInstalled``. Any other
import error (a broken build) propagates and is reported as a failure.
"""

from __future__ import annotations

import asyncio
import importlib
import platform
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["LOOP_NAMES", "NotInstalled", "describe", "factory"]

LOOP_NAMES = ("asyncio", "uvloop", "cloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class NotInstalled(Exception):
    """The named loop is not available in this interpreter."""


def _stock_loop() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop()


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise NotInstalled(f"{name} is not importable") from exc
        raise


def factory(name: str) -> LoopFactory:
    """Return a callable creating a new loop of the given kind."""
    if name == "asyncio":
        return _stock_loop
    if name not in LOOP_NAMES:
        raise ValueError(f"unknown loop {name!r}")
    module = _import(name)
    new_event_loop = getattr(module, "new_event_loop", None)
    if new_event_loop is None:
        raise NotInstalled(f"{name}.new_event_loop does not exist (not built?)")
    return new_event_loop  # type: ignore[no-any-return]


def describe(name: str) -> dict[str, Any]:
    """Version (and for cloop, ``features()``) of an importable loop."""
    if name == "asyncio":
        return {"version": platform.python_version()}
    module = _import(name)
    info: dict[str, Any] = {"version": getattr(module, "__version__", None)}
    features = getattr(module, "features", None)
    if callable(features):
        info["features"] = features()
    return info
