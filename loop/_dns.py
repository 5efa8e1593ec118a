"""getaddrinfo() and getnameinfo() on libuv's worker pool.

The C core (csrc/dns.c) checks the arguments exactly as the socket module
does, answers address literals at once where the answer is provably
socket.getaddrinfo()'s, and otherwise runs the libc call on libuv's worker
pool, completing a future.  This module adds what asyncio does around the
call: the debug-mode log lines, and taking a lookup off the pool when its
caller is cancelled or the loop closes.
"""

from __future__ import annotations

import socket
from asyncio import exceptions
from asyncio.log import logger
from typing import Any

# socket.getaddrinfo() turns family and type into enum members where the
# enum has one (socket._intenum_converter); these hold exactly those.
_FAMILIES = {int(m): m for m in socket.AddressFamily}
_KINDS = {int(m): m for m in socket.SocketKind}

_AddrInfo = list[tuple[Any, Any, int, str, Any]]


class DNSMixin:
    """getaddrinfo() and getnameinfo() for cloop.Loop."""

    _debug: bool
    slow_callback_duration: float

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> _AddrInfo:
        if self._debug:
            return await self._cl_getaddrinfo_debug(
                host, port, family, type, proto, flags
            )
        res = self._cl_getaddrinfo(
            host, port, family, type, proto, flags, _FAMILIES, _KINDS
        )
        if res.__class__ is list:
            return res  # type: ignore[no-any-return]
        return await self._cl_dns_wait(res)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
        fut = self._cl_getnameinfo(sockaddr, flags)
        return await self._cl_dns_wait(fut)  # type: ignore[no-any-return]

    async def _cl_dns_wait(self, fut: Any) -> Any:
        try:
            return await fut
        except exceptions.CancelledError:
            # Take the lookup off the pool if it has not started.
            if fut.cancelled():
                self._cl_dns_cancel(fut)
            raise

    async def _cl_getaddrinfo_debug(
        self, host: Any, port: Any, family: int, type: int, proto: int, flags: int
    ) -> _AddrInfo:
        # What BaseEventLoop._getaddrinfo_debug() logs, around the lookup;
        # asyncio checks for a closed loop before it logs anything.
        self._check_closed()
        msg = [f"{host}:{port!r}"]
        if family:
            msg.append(f"family={family!r}")
        if type:
            msg.append(f"type={type!r}")
        if proto:
            msg.append(f"proto={proto!r}")
        if flags:
            msg.append(f"flags={flags!r}")
        text = ", ".join(msg)
        logger.debug("Get address info %s", text)

        t0 = self.time()
        res = self._cl_getaddrinfo(
            host, port, family, type, proto, flags, _FAMILIES, _KINDS
        )
        if res.__class__ is not list:
            res = await self._cl_dns_wait(res)
        dt = self.time() - t0

        text = f"Getting address info {text} took {dt * 1e3:.3f}ms: {res!r}"
        if dt >= self.slow_callback_duration:
            logger.info(text)
        else:
            logger.debug(text)
        return res  # type: ignore[no-any-return]

    def close(self) -> None:
        # Lookups not yet started never will; close() then waits only for
        # those already running on the pool.
        if not self.is_running() and not self.is_closed():
            self._cl_dns_cancel_all()
        super().close()  # type: ignore[misc]
