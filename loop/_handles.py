"""Python halves of cloop's C handles: repr, error reporting, debug help.

The C engine calls these per error, per repr and per debug-mode callback,
never on the normal path.  They reuse asyncio's own formatting helpers so
messages read exactly as asyncio's do on the running Python.
"""

from __future__ import annotations

import inspect
import sys
from asyncio import base_events, events, format_helpers, protocols
from typing import Any

from . import _cloop

_SOURCE_TAKES_DEBUG = (
    "debug" in inspect.signature(format_helpers._format_callback_source).parameters
)


def _callback_source(handle: _cloop.Handle) -> str:
    if _SOURCE_TAKES_DEBUG:
        return format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug()
        )
    return format_helpers._format_callback_source(handle._callback, handle._args)


def handle_repr(handle: _cloop.Handle) -> str:
    # asyncio.Handle._repr_info only reads attributes cloop's handles have.
    info = events.Handle._repr_info(handle)  # type: ignore[arg-type]
    if isinstance(handle, _cloop.TimerHandle):
        info.insert(2 if handle._cancelled else 1, f"when={handle._when}")
    return "<{}>".format(" ".join(info))


def callback_error(handle: _cloop.Handle, exc: BaseException) -> None:
    context: dict[str, Any] = {
        "message": f"Exception in callback {_callback_source(handle)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def log_slow_callback(loop: Any, handle: _cloop.Handle, dt: float) -> None:
    base_events.logger.warning(
        "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
    )


def extract_stack() -> Any:
    # Called from C, which has no frame: frame 1 is whoever called
    # call_soon() & co., where asyncio's tracebacks end too.
    return format_helpers.extract_stack(sys._getframe(1))


def feed_buffered(protocol: Any, data: bytes) -> None:
    """Hand bytes read for a plain protocol to the BufferedProtocol that
    set_protocol() put in its place before the read was delivered."""
    protocols._feed_data_to_buffered_proto(protocol, data)
