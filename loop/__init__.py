"""cloop: a drop-in replacement for the asyncio event loop, in C on libuv.

Switch a program to cloop with one of::

    cloop.run(main())
    asyncio.run(main(), loop_factory=cloop.new_event_loop)      # 3.12+
    with asyncio.Runner(loop_factory=cloop.new_event_loop) as r: # 3.11+
        r.run(main())
    asyncio.set_event_loop_policy(cloop.EventLoopPolicy())
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from asyncio import events, unix_events
from typing import Any, Coroutine, TypeVar

from . import _cloop, fs
from ._cloop import Handle, TimerHandle
from ._loop import Loop

__all__ = [
    "EventLoopPolicy",
    "Handle",
    "Loop",
    "TimerHandle",
    "features",
    "fs",
    "install",
    "new_event_loop",
    "run",
]
__version__ = "0.1.0"

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Return a new cloop event loop."""
    return Loop()


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None,
        **kwargs: Any) -> _T:
    """Run a coroutine on a new cloop loop, like asyncio.run()."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop,
                           **kwargs)
    if events._get_running_loop() is not None:
        raise RuntimeError(
            "asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop,
                        **kwargs) as runner:
        return runner.run(main)


# asyncio's Unix policy, so that get_child_watcher()/set_child_watcher()
# behave as under asyncio where Python still has them (cloop's loops reap
# their own children and never use a watcher).
_BasePolicy: Any = unix_events._UnixDefaultEventLoopPolicy


class EventLoopPolicy(_BasePolicy):  # type: ignore[misc,valid-type]
    """An asyncio event loop policy whose loops are cloop loops."""

    def _loop_factory(self) -> Loop:
        return Loop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def install() -> None:
    """Make cloop the loop of asyncio's event loop policy."""
    if sys.version_info >= (3, 14):
        warnings.warn(
            "cloop.install() relies on asyncio's event loop policies, "
            "deprecated since Python 3.14; use cloop.run() or "
            "loop_factory=cloop.new_event_loop",
            DeprecationWarning,
            stacklevel=2,
        )
    asyncio.set_event_loop_policy(EventLoopPolicy())


def _atoi(text: str) -> int:
    """C's atoi(), which libuv applies to UV_USE_IO_URING."""
    text = text.lstrip()
    end = 1 if text[:1] in ("+", "-") else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


def features() -> dict[str, Any]:
    """What this cloop runs on: the libuv in use, io_uring, build flags.

    io_uring needs libuv >= 1.45 on Linux.  libuv 1.45 to 1.48 run file
    operations on it unless UV_USE_IO_URING=0; from 1.49 it is off unless
    UV_USE_IO_URING is a positive number (CVE-2024-22017), and cloop then
    asks libuv for it on each loop.  See docs/io_uring.md.
    """
    info = _cloop.build_info()
    version = info["libuv_version_hex"]
    compiled = _hex(info["libuv_compiled_version"])
    available = sys.platform.startswith("linux") and version >= 0x012D00
    setting = os.environ.get("UV_USE_IO_URING")
    if not available:
        enabled = False
    elif version >= 0x013100:
        # Opt-in: libuv wants the loop flag (cloop sets it when built
        # with libuv >= 1.49 headers) and a positive UV_USE_IO_URING.
        enabled = (compiled >= 0x013100 and setting is not None
                   and _atoi(setting) > 0)
    else:
        enabled = setting is None or _atoi(setting) != 0
    return {
        "libuv_version": info["libuv_version"],
        "libuv_compiled_version": info["libuv_compiled_version"],
        "io_uring_available": available,
        "io_uring_enabled": enabled,
        "threadpool_size": _threadpool_size(),
        "build_type": info["build_type"],
        "sanitize": info["sanitize"],
    }


def _hex(version: str) -> int:
    major, minor, patch = (int(x) for x in version.split("."))
    return (major << 16) | (minor << 8) | patch


def _threadpool_size() -> int:
    # libuv reads UV_THREADPOOL_SIZE with atoi() into an unsigned int
    # when its pool starts: 0 means 1, anything above 1024 (a negative
    # number wraps around) means 1024; unset means 4.
    setting = os.environ.get("UV_THREADPOOL_SIZE")
    if setting is None:
        return 4
    size = _atoi(setting)
    if size == 0:
        return 1
    if size < 0 or size > 1024:
        return 1024
    return size
