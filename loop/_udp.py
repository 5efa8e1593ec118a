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

import operator
import socket
import weakref
from asyncio import futures, selector_events, transports
from typing import Any

from . import _cloop

_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# The range of a C int (the socket module parses ports with PyArg "i").
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1

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
    (host names are resolved); raises what ``socket.sendto()`` raises,
    message included.  Called by the C transport for anything but a
    numeric tuple.

    The checks follow the socket module's getsockaddrarg() in its order:
    the tuple's shape and types, then the host's resolution, then the port
    and flowinfo ranges.  flowinfo and scope_id are C unsigned ints taken
    without overflow checks (PyArg "I"), and scope_id replaces any scope
    the host names.
    """
    if family == socket.AF_INET:
        name, shape = "AF_INET", "a pair (host, port)"
        sizes: tuple[int, ...] = (2,)
    else:
        name = "AF_INET6"
        shape = "a tuple (host, port[, flowinfo[, scopeid]])"
        sizes = (2, 3, 4)
    if not isinstance(addr, tuple):
        raise TypeError(f"sendto(): {name} address must be tuple, not "
                        f"{type(addr).__name__}")
    if len(addr) not in sizes:
        raise TypeError(f"{name} address must be {shape}")
    host = addr[0]
    if isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii")
    elif not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not "
                        f"{type(host).__name__}")
    if "\0" in host:
        raise TypeError("host name must not contain null character")
    try:
        port = operator.index(addr[1])
        if not _INT_MIN <= port <= _INT_MAX:
            raise OverflowError
    except OverflowError:
        raise OverflowError("sendto(): port must be 0-65535.") from None
    extra = [operator.index(x) & 0xFFFFFFFF for x in addr[2:]]
    ip = _resolve_host(family, host)
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("sendto(): port must be 0-65535.")
    if family == socket.AF_INET:
        return (ip, port)
    flowinfo, scope_id = (extra + [0, 0])[:2]
    if flowinfo > 0xFFFFF:
        raise OverflowError("sendto(): flowinfo must be 0-1048575.")
    return (ip, port, flowinfo, scope_id)


def _resolve_host(family: int, host: str) -> str:
    """The numeric address socket.sendto() would send to for host."""
    if host == "":
        return "0.0.0.0" if family == socket.AF_INET else "::"
    if host == "<broadcast>":
        if family != socket.AF_INET:
            raise OSError("address family mismatched")
        return "255.255.255.255"
    # socket.sendto() hands an ASCII host to the resolver as it is (no
    # IDNA encoding, which refuses labels over 63 characters).
    query: str | bytes = host.encode("ascii") if host.isascii() else host
    infos = socket.getaddrinfo(query, None, family, socket.SOCK_DGRAM)
    # The scope comes from the address tuple, never from the host.
    return str(infos[0][4][0]).partition("%")[0]


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


