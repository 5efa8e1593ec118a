"""TLS transports for cloop.Loop: asyncio's SSLProtocol over cloop's own.

BaseEventLoop implements create_connection(ssl=...), create_server(ssl=...),
create_unix_connection/create_unix_server, connect_accepted_socket and
start_tls; all of them but start_tls end in the loop hook
``_make_ssl_transport()``, which asyncio leaves to each loop.  Here, as in
asyncio's selector loop, the hook stacks ``asyncio.sslproto.SSLProtocol``
(the TLS state machine over a memory BIO: handshake, timeouts, shutdown,
flow control, get_extra_info of 'sslcontext', 'ssl_object', 'peercert',
'cipher', 'compression') on a plain C socket transport and returns its
application-side transport.  Reusing SSLProtocol keeps every message,
exception and timeout identical to stock asyncio on each Python version;
only the raw socket I/O beneath it is cloop's.
"""

from __future__ import annotations

import socket
import sys
from asyncio import constants, sslproto
from typing import Any

# asyncio checks from 3.12 on that no transport owns the socket yet.
_CHECK_FD_OWNER = sys.version_info >= (3, 12)


class TLSMixin:
    """BaseEventLoop's TLS hook for cloop.Loop."""

    # Provided by StreamMixin and the C core.
    _make_socket_transport: Any
    _ensure_fd_no_transport: Any

    def _make_ssl_transport(
            self, rawsock: socket.socket, protocol: Any, sslcontext: Any,
            waiter: Any = None, *, server_side: bool = False,
            server_hostname: str | None = None, extra: Any = None,
            server: Any = None,
            ssl_handshake_timeout: Any = constants.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout: Any = constants.SSL_SHUTDOWN_TIMEOUT,
            call_connection_made: bool = True) -> Any:
        if _CHECK_FD_OWNER:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter,
            server_side, server_hostname,
            call_connection_made=call_connection_made,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra,
                                    server=server)
        return ssl_protocol._app_transport
