"""Pipe transports for cloop.Loop: connect_read_pipe()/connect_write_pipe().

The byte path is the C stream transport (csrc/stream.c) over a uv_pipe_t:
``_cloop.ReadPipeTransport`` and ``_cloop.WritePipeTransport``.  This module
holds what asyncio's _UnixReadPipeTransport and _UnixWritePipeTransport do
per pipe: the file-type check, extra info, repr, error reporting and the
finaliser, and the write pipe's watch for its reader going away.  Stock
asyncio's Unix loop is the oracle for every behaviour and message here.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import warnings
from asyncio import futures
from asyncio.log import logger
from typing import Any

from . import _cloop
from ._stream import _TransportMixin


def _pipe_fd(pipe: Any, message: str) -> tuple[int, int]:
    """(fileno, st_mode) of a pipe, socket or character device; any other
    file is refused with asyncio's ValueError."""
    fileno = pipe.fileno()
    mode = os.fstat(fileno).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
            or stat.S_ISCHR(mode)):
        raise ValueError(message)
    os.set_blocking(fileno, False)
    return fileno, mode


def _check_pollable(fileno: int) -> None:
    """Raise what epoll raises for a character device it cannot watch
    (/dev/null, /dev/zero): libuv would abort the process on it."""
    ep = select.epoll()
    try:
        ep.register(fileno, select.EPOLLIN)
    finally:
        ep.close()


class _PipeTransportMixin(_TransportMixin):
    """What the two pipe transports share."""

    _loop: Any
    _sock: Any
    _closing: bool
    _force_close: Any
    _cl_watching = False

    def _cl_setup(self, loop: Any, pipe: Any, protocol: Any, waiter: Any,
                  extra: Any) -> None:
        if extra:
            self._extra.update(extra)  # type: ignore[attr-defined]
        self._extra["pipe"] = pipe  # type: ignore[attr-defined]
        self.set_protocol(protocol)
        loop._cl_transports().add(self)
        loop.call_soon(protocol.connection_made, self)

    @property
    def _pipe(self) -> Any:
        return self._sock

    @_pipe.setter
    def _pipe(self, value: Any) -> None:
        # asyncio's transports keep the pipe in a plain attribute, and
        # code (CPython's tests) sets it to None to drop a transport
        # without closing it or being warned.
        if value is not None:
            raise ValueError("only None can be assigned to _pipe")
        self._cl_unwatch()
        self._cl_forget()  # type: ignore[attr-defined]

    def _cl_info(self) -> list[str]:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")  # type: ignore[attr-defined]
        return info

    def __del__(self, _warn: Any = warnings.warn) -> None:
        pipe = self._sock
        if pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._cl_unwatch()
            self._cl_detach()  # type: ignore[attr-defined]
            pipe.close()

    def _cl_unwatch(self) -> None:
        pass

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=exc)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._force_close(exc)


class _ReadPipeTransport(_PipeTransportMixin,  # type: ignore[misc]
                         _cloop.ReadPipeTransport):
    """asyncio's _UnixReadPipeTransport on a uv_pipe_t."""

    def __init__(self, loop: Any, pipe: Any, protocol: Any,
                 waiter: Any = None, extra: Any = None) -> None:
        fileno, mode = _pipe_fd(pipe,
                                "Pipe transport is for pipes/sockets only.")
        if stat.S_ISCHR(mode):
            _check_pollable(fileno)
        super().__init__(loop, pipe, protocol)
        self._cl_setup(loop, pipe, protocol, waiter, extra)
        # Reading starts only after connection_made(), as in asyncio.
        loop.call_soon(self._cl_start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = self._cl_info()
        if self._sock is not None and self._loop.is_closed():
            info.append("open")
        elif self._sock is not None:
            info.append("polling" if self.is_reading() else "idle")
        return "<{}>".format(" ".join(info))

    def _cl_callback_error(self, exc: BaseException) -> None:
        # asyncio's data_received() runs in the reader callback, so an
        # error in it is that callback's, and the pipe keeps reading.
        self._loop.call_exception_handler({
            "message": f"Exception in callback {type(self).__name__}"
                       f"._read_ready()",
            "exception": exc,
            "transport": self,
            "protocol": self._protocol,
        })


class _WritePipeTransport(_PipeTransportMixin,  # type: ignore[misc]
                          _cloop.WritePipeTransport):
    """asyncio's _UnixWritePipeTransport on a uv_pipe_t."""

    def __init__(self, loop: Any, pipe: Any, protocol: Any,
                 waiter: Any = None, extra: Any = None) -> None:
        fileno, mode = _pipe_fd(
            pipe,
            "Pipe transport is only for pipes, sockets and character devices")
        super().__init__(loop, pipe, protocol)
        self._cl_setup(loop, pipe, protocol, waiter, extra)
        # The write end of a pipe or socket turns readable (or errors) when
        # the other end is closed: that is how asyncio notices it.
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            loop.call_soon(self._cl_watch, fileno)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = self._cl_info()
        if self._sock is not None and self._loop.is_closed():
            info.append("open")
        elif self._sock is not None:
            size = self.get_write_buffer_size()
            info.append("polling" if size else "idle")
            info.append(f"bufsize={size}")
        return "<{}>".format(" ".join(info))

    def _cl_watch(self, fileno: int) -> None:
        if self._sock is not None and not self._closing:
            self._loop._add_reader(fileno, self._read_ready)
            self._cl_watching = True

    def _cl_unwatch(self) -> None:
        if self._cl_watching:
            self._cl_watching = False
            if not self._loop.is_closed():
                self._loop._remove_reader(
                    self._sock_fd)  # type: ignore[attr-defined]

    def _read_ready(self) -> None:
        # The reading end went away.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._cl_unwatch()
        if self.get_write_buffer_size():  # type: ignore[attr-defined]
            self._force_close(BrokenPipeError())
        else:
            self._force_close(None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        self._cl_unwatch()
        super()._call_connection_lost(exc)  # type: ignore[misc]

    def _cl_warn_send(self) -> None:
        logger.warning("pipe closed by peer or "
                       "os.write(pipe, data) raised exception.")


class PipeMixin:
    """BaseEventLoop's pipe hooks on cloop's C transports."""

    def _make_read_pipe_transport(self, pipe: Any, protocol: Any,
                                  waiter: Any = None,
                                  extra: Any = None) -> Any:
        return _ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe: Any, protocol: Any,
                                   waiter: Any = None,
                                   extra: Any = None) -> Any:
        return _WritePipeTransport(self, pipe, protocol, waiter, extra)
