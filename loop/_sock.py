"""sock_recv(), sock_sendall() and the rest, over add_reader()/add_writer().

Each operation first tries the system call; only if the socket is not
ready does it register a reader or writer (the C core in csrc/poll.c) and
wait on a future.  The registration is removed when the future is done,
whether by result, exception or cancellation, unless another registration
has replaced it meanwhile (its handle is then cancelled): the semantics of
asyncio's selector loop, which is the oracle for every message and
exception type here.

sock_sendfile() itself is BaseEventLoop's (argument checks, and the
fallback to reading the file and sock_sendall() when the native path
raises SendfileNotAvailableError); the native path here is os.sendfile()
from the file straight into the socket, as asyncio's Unix loop does.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
from asyncio import base_events, exceptions, futures
from typing import Any

_RETRY = (BlockingIOError, InterruptedError)


class SockMixin:
    """sock_* coroutines for cloop.Loop."""

    # Provided by the C core and BaseEventLoop.
    _debug: bool
    _add_reader: Any
    _add_writer: Any
    _ensure_fd_no_transport: Any
    remove_reader: Any
    remove_writer: Any
    create_future: Any
    _ensure_resolved: Any
    _cl_sock_recv: Any
    _cl_sock_recv_into: Any
    _cl_sock_sendall: Any

    def _cl_check_sock(self, sock: socket.socket) -> None:
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _cl_wait_readable(self, sock: socket.socket, fut: futures.Future,
                          callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        # As asyncio, only an operation that has to wait checks that no
        # transport owns the socket (RuntimeError).
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, callback, fut, *args)
        fut.add_done_callback(
            functools.partial(self._cl_read_done, fd, handle))

    def _cl_wait_writable(self, sock: socket.socket, fut: futures.Future,
                          callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, callback, fut, *args)
        fut.add_done_callback(
            functools.partial(self._cl_write_done, fd, handle))

    def _cl_read_done(self, fd: int, handle: Any, fut: Any) -> None:
        # A cancelled handle was replaced by someone else's reader.
        if not handle.cancelled():
            self.remove_reader(fd)

    def _cl_write_done(self, fd: int, handle: Any, fut: Any) -> None:
        if not handle.cancelled():
            self.remove_writer(fd)

    # --- receiving --------------------------------------------------

    @staticmethod
    def _cl_retry(fut: futures.Future, sock: socket.socket, op: str,
                  *args: Any) -> None:
        """Reader/writer callback: run sock.<op>(*args) into fut, or wait
        again.  The method is looked up on each try, as asyncio does (a
        test may swap it on a mock socket meanwhile)."""
        if fut.done():
            return
        try:
            result = getattr(sock, op)(*args)
        except _RETRY:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    async def _cl_read_op(self, sock: socket.socket, op: str,
                          *args: Any) -> Any:
        self._cl_check_sock(sock)
        try:
            return getattr(sock, op)(*args)
        except _RETRY:
            pass
        fut = self.create_future()
        self._cl_wait_readable(sock, fut, self._cl_retry, sock, op, *args)
        return await fut

    # sock_recv(), sock_recv_into() and sock_sendall() ask the C side
    # first (csrc/sock.c): it answers with the result, a future to await,
    # or NotImplemented for what only the Python below serves (another
    # socket type, unusual arguments, a socket in blocking or timeout
    # mode that is not ready).

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to n bytes from sock."""
        r = self._cl_sock_recv(sock, n)
        if r.__class__ is bytes:
            return r  # type: ignore[no-any-return]
        if r is NotImplemented:
            return await self._cl_read_op(sock, "recv", n)
        return await r  # type: ignore[no-any-return]

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into buf; return the number of bytes written."""
        r = self._cl_sock_recv_into(sock, buf)
        if r.__class__ is int:
            return r  # type: ignore[no-any-return]
        if r is NotImplemented:
            return await self._cl_read_op(sock, "recv_into", buf)
        return await r  # type: ignore[no-any-return]

    async def sock_recvfrom(self, sock: socket.socket,
                            bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram: (data, address)."""
        return await self._cl_read_op(sock, "recvfrom", bufsize)

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any,
                                 nbytes: int = 0) -> tuple[int, Any]:
        """Receive a datagram into buf: (nbytes, address)."""
        self._cl_check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        return await self._cl_read_op(sock, "recvfrom_into", buf,
                                     nbytes)

    # --- sending ----------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of data, waiting for the socket as needed."""
        r = self._cl_sock_sendall(sock, data)
        if r is None:
            return
        if r is not NotImplemented:
            return await r  # type: ignore[no-any-return]
        self._cl_check_sock(sock)
        try:
            n = sock.send(data)
        except _RETRY:
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        # The position lives in a list the callback updates.
        self._cl_wait_writable(sock, fut, self._cl_sendall_ready, sock,
                               memoryview(data), [n])
        return await fut

    @staticmethod
    def _cl_sendall_ready(fut: futures.Future, sock: socket.socket,
                          view: memoryview, pos: list[int]) -> None:
        if fut.done():
            return
        try:
            n = sock.send(view[pos[0]:])
        except _RETRY:
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        pos[0] += n
        if pos[0] == len(view):
            fut.set_result(None)

    async def sock_sendto(self, sock: socket.socket, data: Any,
                          address: Any) -> int:
        """Send a datagram to address; return the number of bytes sent."""
        self._cl_check_sock(sock)
        try:
            return sock.sendto(data, address)
        except _RETRY:
            pass
        fut = self.create_future()
        self._cl_wait_writable(sock, fut, self._cl_retry, sock, "sendto",
                               data, 0, address)
        return await fut

    # --- connecting and accepting -----------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect sock to address (resolved first for IP families)."""
        self._cl_check_sock(sock)
        if sock.family == socket.AF_INET or (
                base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type,
                proto=sock.proto, loop=self)
            address = resolved[0][4]
        fut = self.create_future()
        try:
            sock.connect(address)
        except _RETRY:
            # EINPROGRESS (or EINTR, where the connection goes on in the
            # background): writable means connected or failed.
            self._cl_wait_writable(sock, fut, self._cl_connect_ready, sock,
                                   address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut
        finally:
            # The exception's traceback would keep fut alive in a cycle.
            fut = None

    @staticmethod
    def _cl_connect_ready(fut: futures.Future, sock: socket.socket,
                          address: Any) -> None:
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except _RETRY:
            pass
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            fut = None  # type: ignore[assignment]

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket,
                                                               Any]:
        """Accept a connection: (conn, address), conn non-blocking."""
        self._cl_check_sock(sock)
        fut = self.create_future()
        self._cl_accept(fut, sock, False)
        return await fut

    def _cl_accept(self, fut: futures.Future, sock: socket.socket,
                   registered: bool) -> None:
        if fut.done():
            return
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except _RETRY:
            if not registered:
                self._cl_wait_readable(sock, fut, self._cl_accept_ready,
                                       sock)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result((conn, address))

    def _cl_accept_ready(self, fut: futures.Future,
                         sock: socket.socket) -> None:
        self._cl_accept(fut, sock, True)

    # --- sendfile ---------------------------------------------------

    async def _sock_sendfile_native(self, sock: socket.socket, file: Any,
                                    offset: int, count: int | None) -> int:
        """Zero-copy sock_sendfile(): os.sendfile() until count bytes (or
        the whole file) went, waiting for the socket to be writable
        between calls.  SendfileNotAvailableError (before any byte was
        sent) makes BaseEventLoop fall back to plain sends."""
        if not hasattr(os, "sendfile"):
            raise exceptions.SendfileNotAvailableError(
                "os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # an empty file
        state = _Sendfile(sock, fileno, offset, count, blocksize)
        fut = self.create_future()
        # As in asyncio, a cancelled send leaves the file position where
        # it was, whatever was sent.
        self._cl_sendfile_step(fut, state, False)
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            fut = None  # the exception's traceback would keep it alive

    def _cl_sendfile_step(self, fut: futures.Future, st: _Sendfile,
                          from_writer: bool) -> None:
        """One os.sendfile() call; on the first wait, register a writer
        that calls this again until fut is done."""
        if fut.done():
            return
        if st.count:
            st.blocksize = st.count - st.total_sent
            if st.blocksize <= 0:
                st.finish(fut, st.total_sent)
                return
        try:
            sent = os.sendfile(st.sock.fileno(), st.fileno, st.offset,
                               st.blocksize)
        except _RETRY:
            sent = -1
        except OSError as exc:
            if (from_writer and exc.errno == errno.ENOTCONN
                    and type(exc) is not ConnectionError):
                # The peer went away mid-transfer: one exception type on
                # every POSIX system, as asyncio says.
                new_exc = ConnectionError(
                    "socket is not connected", errno.ENOTCONN)
                new_exc.__cause__ = exc
                exc = new_exc
            if st.total_sent == 0:
                # Not a file os.sendfile() can read (or a socket it cannot
                # write): plain sends may still work.
                st.finish(fut, exc=exceptions.SendfileNotAvailableError(
                    "os.sendfile call failed"))
            else:
                st.finish(fut, exc=exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            st.finish(fut, exc=exc)
            return
        if sent == 0:
            st.finish(fut, st.total_sent)  # end of file
            return
        if sent > 0:
            st.offset += sent
            st.total_sent += sent
        # As asyncio, wait for writability before each next call, so that
        # one big file does not keep the loop from other work.
        if not st.waiting:
            st.waiting = True
            self._cl_wait_writable(st.sock, fut, self._cl_sendfile_ready, st)

    def _cl_sendfile_ready(self, fut: futures.Future, st: _Sendfile) -> None:
        self._cl_sendfile_step(fut, st, True)


class _Sendfile:
    """Where one native sock_sendfile() stands."""

    __slots__ = ("sock", "fileno", "offset", "count", "blocksize",
                 "total_sent", "waiting")

    def __init__(self, sock: socket.socket, fileno: int, offset: int,
                 count: int | None, blocksize: int) -> None:
        self.sock = sock
        self.fileno = fileno
        self.offset = offset
        self.count = count
        self.blocksize = blocksize
        self.total_sent = 0
        self.waiting = False

    def update_filepos(self) -> None:
        """Leave the file position after the bytes sent, as a read would."""
        if self.total_sent > 0:
            os.lseek(self.fileno, self.offset, os.SEEK_SET)

    def finish(self, fut: futures.Future, result: Any = None,
               exc: BaseException | None = None) -> None:
        self.update_filepos()
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
