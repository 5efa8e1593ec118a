"""Stream transports and servers for cloop.Loop.

The per-byte work of a TCP or Unix socket transport (write, reads, close,
flow-control accounting) is C: ``_cloop.StreamTransport`` in
csrc/stream.c.  This module holds the per-connection and per-server half:
the transport's construction bookkeeping, extra info, error reporting and
finaliser (``_SocketTransport``), and the loop hooks BaseEventLoop's
create_connection()/create_server() call, plus the Unix-socket methods
asyncio keeps in its Unix loop.  Stock asyncio's selector loop is the
oracle for every behaviour and message here.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import warnings
import weakref
from asyncio import base_events, constants, futures, protocols, tasks, trsock
from asyncio.log import logger
from typing import Any

from . import _cloop

_PY313 = sys.version_info >= (3, 13)
_ACCEPT_RESOURCE_ERRNOS = (
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _TransportMixin:
    """The Python half shared by cloop's C stream and pipe transports."""

    _protocol: Any
    _cl_buffered: bool
    _protocol_connected: bool
    write: Any

    def set_protocol(self, protocol: Any) -> None:
        self._cl_buffered = isinstance(protocol, protocols.BufferedProtocol)
        self._protocol = protocol
        self._protocol_connected = True

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _cl_log(self, level: int, fmt: str) -> None:
        logger.log(level, fmt, self)


class _SocketTransport(_TransportMixin, _cloop.StreamTransport):  # type: ignore[misc]
    """A TCP or Unix socket transport (asyncio's _SelectorSocketTransport)."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any,
                 waiter: Any = None, extra: Any = None,
                 server: Any = None) -> None:
        super().__init__(loop, sock, protocol, server)
        if extra:
            self._extra.update(extra)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self.set_protocol(protocol)
        if server is not None:
            if _PY313:
                server._attach(self)
            else:
                server._attach()
        loop._cl_transports().add(self)
        base_events._set_nodelay(sock)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made(), as in asyncio.
        loop.call_soon(self._cl_start_reading)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._closing or self._sock is None:
            pass
        elif self._cl_polling:
            info.append("read=polling")
        else:
            info.append("read=idle")
        size = self.get_write_buffer_size()
        info.append(f"write=<{'polling' if size else 'idle'}, bufsize={size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        sock = self._sock
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._cl_detach()
            sock.close()
            server = self._server
            if server is not None:
                if _PY313:
                    server._detach(self)
                else:
                    server._detach()

    def _cl_warn_send(self) -> None:
        logger.warning("socket.send() raised exception.")

    if sys.version_info >= (3, 12):
        def writelines(self, list_of_data: Any) -> None:
            # 3.12's socket transport has its own writelines(), with its
            # own messages.
            if self._eof:
                raise RuntimeError(
                    "Cannot call writelines() after write_eof()")
            if self._empty_waiter is not None:
                raise RuntimeError(
                    "unable to writelines; sendfile is in progress")
            if not list_of_data:
                return
            views = [memoryview(data) for data in list_of_data]
            self.write(b"".join(views))

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
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


class StreamMixin:
    """BaseEventLoop's stream hooks on cloop's C transports."""

    # Provided by the C core and BaseEventLoop.
    _debug: bool
    _add_reader: Any
    _remove_reader: Any
    call_soon: Any
    call_later: Any
    create_task: Any
    create_future: Any
    call_exception_handler: Any
    sock_connect: Any
    _create_connection_transport: Any

    def _cl_transports(self) -> weakref.WeakSet[Any]:
        """The loop's live stream transports, detached from libuv when
        the loop closes (a set, not asyncio's map by fd: a transport
        whose fd was closed under it and reused must still be found)."""
        try:
            return self._cl_stream_transports  # type: ignore[no-any-return]
        except AttributeError:
            self._cl_stream_transports: weakref.WeakSet[Any] = (
                weakref.WeakSet())
            return self._cl_stream_transports

    def _cl_unix_sockets(self) -> dict[socket.socket, int]:
        try:
            return self._cl_unix_server_sockets  # type: ignore[no-any-return]
        except AttributeError:
            self._cl_unix_server_sockets: dict[socket.socket, int] = {}
            return self._cl_unix_server_sockets

    def close(self) -> None:
        # libuv's handles go with the loop; the transports themselves stay
        # open, as asyncio's do when its selector closes.
        running = self.is_running()  # type: ignore[attr-defined]
        if not running and not self.is_closed():  # type: ignore[attr-defined]
            for tr in list(self._cl_transports()):
                tr._cl_detach()
        super().close()  # type: ignore[misc]

    def _make_socket_transport(self, sock: socket.socket, protocol: Any,
                               waiter: Any = None, *, extra: Any = None,
                               server: Any = None) -> Any:
        if sys.version_info >= (3, 12):
            self._ensure_fd_no_transport(sock)  # type: ignore[attr-defined]
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    async def _sendfile_native(self, transp: Any, file: Any, offset: int,
                               count: int | None) -> int:
        # As asyncio's selector loop: wait for the transport's buffer to
        # drain, then send from the file straight to its socket.
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        transp._cl_own_fd(False)
        try:
            sent: int = await self.sock_sendfile(  # type: ignore[attr-defined]
                transp._sock, file, offset, count, fallback=False)
            return sent
        finally:
            transp._cl_own_fd(True)
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()

    # --- servers -----------------------------------------------------

    def _start_serving(
            self, protocol_factory: Any, sock: socket.socket,
            sslcontext: Any = None, server: Any = None, backlog: int = 100,
            ssl_handshake_timeout: Any = constants.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout: Any = constants.SSL_SHUTDOWN_TIMEOUT,
    ) -> None:
        self._add_reader(sock.fileno(), self._cl_accept_connections,
                         protocol_factory, sock, sslcontext, server, backlog,
                         ssl_handshake_timeout, ssl_shutdown_timeout)

    def _cl_accept_connections(
            self, protocol_factory: Any, sock: socket.socket,
            sslcontext: Any, server: Any, backlog: int,
            ssl_handshake_timeout: Any, ssl_shutdown_timeout: Any) -> None:
        # Called once per wake-up of the listening socket; take what is
        # waiting, up to backlog connections, so one busy listener cannot
        # starve the rest of the loop.
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                if self._debug:
                    logger.debug("%r got a new connection from %r: %r",
                                 server, addr, conn)
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RESOURCE_ERRNOS:
                    raise
                # Out of descriptors or memory: the socket stays readable,
                # so stop watching it for a while instead of spinning.
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())
                self.call_later(constants.ACCEPT_RETRY_DELAY,
                                self._start_serving, protocol_factory, sock,
                                sslcontext, server, backlog,
                                ssl_handshake_timeout, ssl_shutdown_timeout)
                return
            else:
                self.create_task(self._cl_accepted(
                    protocol_factory, conn, {"peername": addr}, sslcontext,
                    server, ssl_handshake_timeout, ssl_shutdown_timeout))

    async def _cl_accepted(self, protocol_factory: Any, conn: socket.socket,
                           extra: dict[str, Any], sslcontext: Any,
                           server: Any, ssl_handshake_timeout: Any,
                           ssl_shutdown_timeout: Any) -> None:
        protocol = None
        transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            if sslcontext:
                make_ssl = self._make_ssl_transport  # type: ignore[attr-defined]
                transport = make_ssl(
                    conn, protocol, sslcontext, waiter=waiter,
                    server_side=True, extra=extra, server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
            else:
                transport = self._make_socket_transport(
                    conn, protocol, waiter=waiter, extra=extra, server=server)
            try:
                await waiter
            except BaseException:
                transport.close()
                waiter = None
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context: dict[str, Any] = {
                    "message":
                        "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)

    def _stop_serving(self, sock: socket.socket) -> None:
        unix = self._cl_unix_sockets()
        path = sock.getsockname() if sock in unix else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            ino = unix.pop(sock)
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r",
                             path, err)

    # --- Unix sockets ------------------------------------------------

    async def create_unix_connection(
            self, protocol_factory: Any, path: Any = None, *, ssl: Any = None,
            sock: socket.socket | None = None,
            server_hostname: str | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        if ssl:
            if server_hostname is None:
                raise ValueError(
                    "you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError(
                    "ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError(
                    "ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError(
                    "path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if (sock.family != socket.AF_UNIX
                    or sock.type != socket.SOCK_STREAM):
                raise ValueError(
                    f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        pair: tuple[Any, Any] = await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        return pair

    async def create_unix_server(
            self, protocol_factory: Any, path: Any = None, *,
            sock: socket.socket | None = None, backlog: int = 100,
            ssl: Any = None, ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True,
            **kwargs: Any) -> base_events.Server:
        # cleanup_socket= exists from 3.13 on, as in asyncio.
        allowed = {"cleanup_socket"} if _PY313 else set()
        for name in kwargs:
            if name not in allowed:
                raise TypeError(
                    f"create_unix_server() got an unexpected keyword "
                    f"argument {name!r}")
        cleanup_socket = kwargs.get("cleanup_socket", True)
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError(
                "ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError(
                "ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError(
                    "path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # A socket file left by a previous server is removed; abstract
            # addresses (leading NUL) have no file.
            if path[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX "
                                 "socket %r: %r", path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    msg = f"Address {path!r} is already in use"
                    raise OSError(errno.EADDRINUSE, msg) from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError(
                    "path was not specified, and no sock specified")
            if (sock.family != socket.AF_UNIX
                    or sock.type != socket.SOCK_STREAM):
                raise ValueError(
                    f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        # Only 3.13's asyncio removes the socket file when the server closes.
        if _PY313 and cleanup_socket:
            name = sock.getsockname()
            if name and name[0] not in (0, "\x00"):
                try:
                    self._cl_unix_sockets()[sock] = os.stat(name).st_ino
                except FileNotFoundError:
                    pass
        sock.setblocking(False)
        server = base_events.Server(
            self, [sock], protocol_factory, ssl,  # type: ignore[arg-type]
            backlog, ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # One iteration so the reader registration is in place.
            await tasks.sleep(0)
        return server
