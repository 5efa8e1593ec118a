"""Datagram transports for cloop.Loop.

``BaseEventLoop.create_datagram_endpoint()`` does the orchestration (options,
address resolution, ``reuse_port``, ``allow_broadcast``, AF_UNIX paths) and
calls ``_make_datagram_transport()``, defined here.

* AF_INET and AF_INET6 sockets get ``_cloop.UDPTransport``, the C transport
  over libuv's ``uv_udp_t`` (csrc/udp.c): receiving, sending and flow
  control run in C.
* AF_UNIX datagram sockets, which libuv cannot open as UDP handles, get
  asyncio's own readiness-driven datagram transport running on cloop's C
  ``_add_reader``/``_add_writer``: per-datagram cost there is Python, as it
  is in asyncio.  Only its ``repr`` is replaced (asyncio's asks a
  selector, which cloop does not have), and on 3.11, where asyncio's class
  does not derive from ``DatagramTransport``, that base is added so
  ``isinstance(t, asyncio.DatagramTransport)`` holds as with the C type.
"""

from __future__ import annotations

import socket
import weakref
from asyncio import futures, selector_events, transports
from typing import Any

from . import _cloop

_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)

if issubclass(selector_events._SelectorDatagramTransport,
              transports.DatagramTransport):
    _UnixBases: tuple[type, ...] = (selector_events._SelectorDatagramTransport,)
else:  # 3.11
    _UnixBases = (selector_events._SelectorDatagramTransport,
                  transports.DatagramTransport)


class _UnixDatagramTransport(*_UnixBases):  # type: ignore[misc]
    """asyncio's datagram transport, for AF_UNIX sockets on cloop."""

    def __repr__(self) -> str:
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        info.append(f"bufsize={self.get_write_buffer_size()}")
        return "<{}>".format(" ".join(info))


def _cl_resolve_addr(family: int, addr: Any) -> tuple:
    """A numeric address tuple for what ``socket.sendto()`` would accept
    (host names are resolved); raises as ``socket.sendto()`` does.  Called
    by the C transport for anything but a numeric tuple."""
    name = "AF_INET" if family == socket.AF_INET else "AF_INET6"
    if not isinstance(addr, tuple):
        raise TypeError(
            f"{name} address must be tuple, not {type(addr).__name__}")
    if len(addr) < 2 or (family == socket.AF_INET and len(addr) != 2) \
            or len(addr) > 4:
        raise TypeError(
            f"{name} address must be a pair (host, port)"
            if family == socket.AF_INET else
            f"{name} address must be a tuple (host, port[, flowinfo[, "
            f"scopeid]])")
    host, port = addr[0], addr[1]
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be "
                        f"interpreted as an integer")
    if not 0 <= port <= 65535:
        raise OverflowError(f"{name.lower()[3:]}: port must be 0-65535.")
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    sockaddr = infos[0][4]
    if family == socket.AF_INET6 and len(addr) > 2:
        rest = list(sockaddr)
        rest[2:2 + len(addr) - 2] = addr[2:]
        sockaddr = tuple(rest)
    return sockaddr


class DatagramMixin:
    """BaseEventLoop's datagram hook on cloop's C transport."""

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        # The loop's close freed the uv handles of transports still open;
        # a reading transport is referenced by its handle, so let go.
        live = self.__dict__.get("_cl_udp_transports")
        if live is not None and self.is_closed():
            for transport in list(live):
                transport._cl_detach()

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any,
                                 address: Any = None, waiter: Any = None,
                                 extra: dict | None = None) -> Any:
        if sock.family not in _INET_FAMILIES:
            if not hasattr(self, "_transports"):
                # asyncio's transport registers itself here by fd.
                self._transports = weakref.WeakValueDictionary()
            return _UnixDatagramTransport(self, sock, protocol, address,
                                          waiter, extra)
        if extra is None:
            extra = {}
        # What asyncio's _SelectorTransport.__init__ records.
        extra["socket"] = _trsock(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        transport = _cloop.UDPTransport(self, sock, protocol, address, extra)
        try:
            live = self._cl_udp_transports
        except AttributeError:
            live = self._cl_udp_transports = weakref.WeakSet()
        live.add(transport)
        self.call_soon(protocol.connection_made, transport)
        # Reading starts only once connection_made() has run.
        self.call_soon(transport._cl_start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport


def _trsock(sock: socket.socket) -> Any:
    from asyncio import trsock
    return trsock.TransportSocket(sock)


