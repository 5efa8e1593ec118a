"""Datagram endpoints: UDP (cloop's C transport) and AF_UNIX datagrams.

Every test runs on stock asyncio (the oracle) and on cloop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import tempfile

import pytest

HAS_IPV6 = socket.has_ipv6
try:
    _s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    _s.bind(("::1", 0))
    _s.close()
except OSError:
    HAS_IPV6 = False


class Proto(asyncio.DatagramProtocol):
    def __init__(self, loop, echo=False):
        self.loop = loop
        self.echo = echo
        self.transport = None
        self.got: list = []
        self.errors: list = []
        self.made = 0
        self.lost = loop.create_future()
        self.event = asyncio.Event()

    def connection_made(self, transport):
        self.made += 1
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)
        self.event.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.event.set()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def wait_for(pred, timeout=2.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.001)



def test_echo_many(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop, echo=True), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr)
        assert sp.made == 1 and cp.made == 1
        n = 500
        for i in range(n):
            ct.sendto(b"msg%d" % i)
            if i % 50 == 49:
                await wait_for(lambda: len(cp.got) >= i + 1)
        await wait_for(lambda: len(cp.got) >= n)
        assert [d for d, _ in sp.got] == [b"msg%d" % i for i in range(n)]
        assert [d for d, _ in cp.got] == [b"msg%d" % i for i in range(n)]
        caddr = ct.get_extra_info("sockname")
        assert all(a == caddr for _, a in sp.got)
        assert all(a == addr for _, a in cp.got)
        assert all(type(d) is bytes for d, _ in sp.got)
        assert ct.get_write_buffer_size() == 0
        st.close()
        ct.close()
        assert st.is_closing() and ct.is_closing()
        assert await sp.lost is None
        assert await cp.lost is None

    loop.run_until_complete(main())


def test_isinstance_and_extra_info(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr)
        if type(loop) is not asyncio.SelectorEventLoop or \
                sys.version_info >= (3, 12):
            assert isinstance(st, asyncio.DatagramTransport)
        assert isinstance(st, asyncio.BaseTransport)
        # asyncio's datagram transport is a Transport as well.
        assert isinstance(st, asyncio.Transport)
        assert st.get_extra_info("peername") is None
        assert ct.get_extra_info("peername") == addr
        assert ct.get_extra_info("nope", 42) == 42
        sock = st.get_extra_info("socket")
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_DGRAM
        assert sock.getsockname() == addr
        assert sock.fileno() >= 0
        assert st.get_protocol() is sp
        assert not st.is_closing()
        assert "fd=" in repr(st)
        # asyncio never sets SO_REUSEADDR on a UDP socket.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        st.close()
        ct.close()
        await sp.lost
        await cp.lost
        assert "closed" in repr(st)

    loop.run_until_complete(main())


def test_sock_argument(loop):
    async def main():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                   sock=s)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        try:
            peer.sendto(b"hello", s.getsockname())
            await wait_for(lambda: p.got)
            assert p.got == [(b"hello", peer.getsockname())]
            t.sendto(b"back", peer.getsockname())
            peer.settimeout(2)
            assert peer.recvfrom(100) == (b"back", s.getsockname())
        finally:
            peer.close()
        t.close()
        await p.lost
        assert s.fileno() == -1

    loop.run_until_complete(main())


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")
def test_ipv6(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("::1", 0),
            family=socket.AF_INET6)
        addr = st.get_extra_info("sockname")
        assert len(addr) == 4
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr[:2])
        ct.sendto(b"six")
        await wait_for(lambda: sp.got)
        data, src = sp.got[0]
        assert data == b"six"
        assert src == ct.get_extra_info("sockname")
        st.sendto(b"back", src)
        await wait_for(lambda: cp.got)
        assert cp.got == [(b"back", addr)]
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"),
                    reason="no SO_REUSEPORT")
def test_reuse_port_and_broadcast(loop):
    async def main():
        t1, p1 = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0),
            reuse_port=True, allow_broadcast=True)
        addr = t1.get_extra_info("sockname")
        t2, p2 = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=addr, reuse_port=True)
        for t in (t1, t2):
            s = t.get_extra_info("socket")
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        s1 = t1.get_extra_info("socket")
        assert s1.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        t1.close()
        t2.close()
        await p1.lost
        await p2.lost

    loop.run_until_complete(main())


def test_unix_datagram(loop):
    async def main():
        with tempfile.TemporaryDirectory() as d:
            spath = os.path.join(d, "s")
            cpath = os.path.join(d, "c")
            st, sp = await loop.create_datagram_endpoint(
                lambda: Proto(loop, echo=True), local_addr=spath,
                family=socket.AF_UNIX)
            ct, cp = await loop.create_datagram_endpoint(
                lambda: Proto(loop), local_addr=cpath, remote_addr=spath,
                family=socket.AF_UNIX)
            if type(loop) is not asyncio.SelectorEventLoop or \
                    sys.version_info >= (3, 12):
                assert isinstance(ct, asyncio.DatagramTransport)
            assert st.get_extra_info("sockname") == spath
            assert ct.get_extra_info("peername") == spath
            for i in range(50):
                ct.sendto(b"u%d" % i)
            await wait_for(lambda: len(cp.got) >= 50)
            assert [x for x, _ in sp.got] == [b"u%d" % i for i in range(50)]
            assert [x for x, _ in cp.got] == [b"u%d" % i for i in range(50)]
            assert all(a == cpath for _, a in sp.got)
            assert "fd=" in repr(ct)
            st.close()
            ct.close()
            await sp.lost
            await cp.lost

    loop.run_until_complete(main())


def test_sendto_errors(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr)
        with pytest.raises(ValueError, match="Invalid address"):
            ct.sendto(b"x", ("127.0.0.1", addr[1] + 1 or 1))
        with pytest.raises(TypeError, match="bytes-like"):
            ct.sendto("text")
        # The connected address itself is accepted.
        ct.sendto(b"same", addr)
        await wait_for(lambda: sp.got)
        assert sp.got[0][0] == b"same"
        ct.close()
        await cp.lost
        # Writes after close are dropped silently.
        for _ in range(3):
            ct.sendto(b"late")
        await asyncio.sleep(0.01)
        assert len(sp.got) == 1
        st.close()
        await sp.lost

    loop.run_until_complete(main())


def test_snapshot_and_buffer_types(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        ba = bytearray(b"abc")
        ct.sendto(ba, addr)
        ba[:] = b"zzz"
        ct.sendto(memoryview(b"memview"), addr)
        ct.sendto(b"", addr)
        ct.sendto(b"last", addr)
        await wait_for(lambda: sp.got and sp.got[-1][0] == b"last")
        got = [d for d, _ in sp.got]
        if sys.version_info >= (3, 13):
            assert got == [b"abc", b"memview", b"", b"last"]
        else:
            assert got == [b"abc", b"memview", b"last"]
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())


def test_error_received_connection_refused(loop):
    async def main():
        # A port nobody listens on: bind, note, close.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
        s.close()
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=dead)
        for _ in range(3):
            ct.sendto(b"ping")
            await asyncio.sleep(0.02)
            if cp.errors:
                break
        assert cp.errors
        assert all(isinstance(e, ConnectionRefusedError) for e in cp.errors)
        assert not ct.is_closing()
        ct.close()
        await cp.lost

    loop.run_until_complete(main())


def test_write_buffer_limits(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        assert t.get_write_buffer_size() == 0
        assert t.get_write_buffer_limits() == (16384, 65536)
        t.set_write_buffer_limits(high=100)
        assert t.get_write_buffer_limits() == (25, 100)
        t.set_write_buffer_limits(low=10)
        assert t.get_write_buffer_limits() == (10, 40)
        t.set_write_buffer_limits(high=7, low=3)
        assert t.get_write_buffer_limits() == (3, 7)
        with pytest.raises(ValueError, match="must be >="):
            t.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            t.set_write_buffer_limits(high=-1)
        addr = t.get_extra_info("sockname")
        for _ in range(20):
            t.sendto(b"x" * 1000, addr)
        await wait_for(lambda: len(p.got) == 20)
        assert t.get_write_buffer_size() == 0
        t.close()
        await p.lost

    loop.run_until_complete(main())


def test_abort(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        t.abort()
        assert t.is_closing()
        assert await p.lost is None
        t.abort()
        t.close()

    loop.run_until_complete(main())


def test_protocol_raises(loop):
    errors = []

    class Bad(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise ZeroDivisionError("boom")

    async def main():
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        st, sp = await loop.create_datagram_endpoint(
            lambda: Bad(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr)
        ct.sendto(b"1")
        await wait_for(lambda: errors)
        assert isinstance(errors[0]["exception"], ZeroDivisionError)
        # As in asyncio, the transport stays open.
        assert not st.is_closing()
        ct.sendto(b"2")
        await wait_for(lambda: len(sp.got) == 2)
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())


def test_close_loop_with_transport_open(loop_factory):
    loop = loop_factory()
    holder = {}

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        holder["t"] = t
        t.sendto(b"x", t.get_extra_info("sockname"))

    loop.run_until_complete(main())
    loop.close()
    t = holder.pop("t")
    with pytest.raises(RuntimeError):
        t.close()
    with pytest.warns(ResourceWarning):
        del t
        gc.collect()


def test_unclosed_transport_warns(loop):
    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: asyncio.DatagramProtocol(), local_addr=("127.0.0.1", 0))
        return t

    t = loop.run_until_complete(main())
    sock = t.get_extra_info("socket")
    # A reading transport is kept alive by the loop, as in asyncio.
    t.pause_reading()
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del t
        gc.collect()
    assert sock.fileno() == -1
    # The loop closes cleanly afterwards.
    loop.run_until_complete(asyncio.sleep(0))


def test_many_endpoints_close(loop):
    async def main():
        pairs = [await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
            for _ in range(20)]
        for t, _ in pairs:
            t.close()
        for _, p in pairs:
            assert await p.lost is None

    loop.run_until_complete(main())


# --- cloop's send queue ----------------------------------------------------
#
# Sends to localhost practically never block, so these turn off cloop's
# immediate send attempt (a test hook) to drive the uv_udp_send() queue.

HEADER = 8 if sys.version_info >= (3, 13) else 0


class FlowProto(Proto):
    def __init__(self, loop):
        super().__init__(loop)
        self.flow: list = []

    def pause_writing(self):
        self.flow.append("pause")

    def resume_writing(self):
        self.flow.append("resume")


def test_queue_flow_control(cloop_mod):
    loop = cloop_mod.new_event_loop()

    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: FlowProto(loop), remote_addr=addr)
        ct._cl_set_try_send(False)
        ct.set_write_buffer_limits(high=2500, low=1000)
        data = bytearray(b"a" * 1000)
        for i in range(5):
            ct.sendto(data)
            data[:] = b"b" * 1000
        assert ct.get_write_buffer_size() == 5 * (1000 + HEADER)
        assert cp.flow == ["pause"]
        await wait_for(lambda: len(sp.got) == 5)
        await wait_for(lambda: ct.get_write_buffer_size() == 0)
        assert cp.flow == ["pause", "resume"]
        # The queued datagram is a snapshot of the bytearray.
        assert sp.got[0][0] == b"a" * 1000
        assert [d for d, _ in sp.got[1:]] == [b"b" * 1000] * 4
        # close() flushes the queue first.
        for i in range(10):
            ct.sendto(b"%d" % i)
        ct.close()
        assert ct.get_write_buffer_size() > 0
        assert await cp.lost is None
        await wait_for(lambda: len(sp.got) == 15)
        assert [d for d, _ in sp.got[5:]] == [b"%d" % i for i in range(10)]
        assert ct.get_write_buffer_size() == 0
        st.close()
        await sp.lost

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_queue_abort_drops(cloop_mod):
    loop = cloop_mod.new_event_loop()

    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=addr)
        ct._cl_set_try_send(False)
        for i in range(10):
            ct.sendto(b"%d" % i)
        ct.abort()
        assert await cp.lost is None
        await asyncio.sleep(0.02)
        # libuv writes the first queued datagram at once; the rest is
        # dropped.
        assert [d for d, _ in sp.got] in ([], [b"0"])
        assert ct.get_write_buffer_size() == 0
        st.close()
        await sp.lost

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_queue_open_at_loop_close(cloop_mod):
    loop = cloop_mod.new_event_loop()
    holder = {}

    async def main():
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=("127.0.0.1", 9))
        ct._cl_set_try_send(False)
        for i in range(10):
            ct.sendto(b"%d" % i)
        holder["t"] = ct

    loop.run_until_complete(main())
    loop.close()
    t = holder.pop("t")
    assert t.get_write_buffer_size() == 0
    with pytest.warns(ResourceWarning):
        del t
        gc.collect()


def test_refcounts(cloop_mod):
    loop = cloop_mod.new_event_loop()
    payload = b"refcounted payload"
    addr_holder = {}

    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        addr_holder["a"] = addr
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        before = (sys.getrefcount(payload), sys.getrefcount(addr),
                  sys.getrefcount(sp))
        for i in range(100):
            ct.sendto(payload, addr)
        ct._cl_set_try_send(False)
        for i in range(100):
            ct.sendto(payload, addr)
        await wait_for(lambda: len(sp.got) == 200)
        await wait_for(lambda: ct.get_write_buffer_size() == 0)
        sp.got.clear()
        after = (sys.getrefcount(payload), sys.getrefcount(addr),
                 sys.getrefcount(sp))
        assert before == after
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_sendto_bad_address_is_fatal(loop):
    """A non-tuple address fails socket.sendto() with TypeError, which
    asyncio treats as fatal for the transport."""
    errors = []

    async def main():
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        t.sendto(b"x", "not an address")
        assert t.is_closing()
        exc = await p.lost
        assert isinstance(exc, TypeError)
        assert errors and errors[0]["exception"] is exc
        assert errors[0]["message"] == "Fatal write error on datagram " \
                                       "transport"

    loop.run_until_complete(main())


def test_sendto_hostname(loop):
    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        port = st.get_extra_info("sockname")[1]
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0))
        ct.sendto(b"by name", ("localhost", port))
        await wait_for(lambda: sp.got)
        assert sp.got[0] == (b"by name", ct.get_extra_info("sockname"))
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())


def test_callbacks_after_ready_handles(loop):
    """Received datagrams are delivered after the callbacks that were
    already queued, as asyncio's reader handles are."""
    order = []

    class P(Proto):
        def datagram_received(self, data, addr):
            order.append("datagram")
            super().datagram_received(data, addr)

    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: P(loop), local_addr=("127.0.0.1", 0))
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=st.get_extra_info("sockname"))
        ct.sendto(b"x")
        await asyncio.sleep(0.01)
        ct.sendto(b"y")
        loop.call_soon(order.append, "soon")
        await wait_for(lambda: len(sp.got) == 2)
        assert order == ["datagram", "soon", "datagram"]
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())


def _socket_error(family, addr):
    """What socket.sendto() raises for addr: the message asyncio reports."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"", addr)
        except (TypeError, OverflowError, ValueError) as exc:
            return type(exc), str(exc)
    raise AssertionError(f"{addr!r} is a valid address")


@pytest.mark.parametrize("family,addr", [
    (socket.AF_INET, None),
    (socket.AF_INET, "127.0.0.1"),
    (socket.AF_INET, ("127.0.0.1",)),
    (socket.AF_INET, ("127.0.0.1", 1, 2)),
    (socket.AF_INET, ("127.0.0.1", "x")),
    (socket.AF_INET, ("127.0.0.1", 70000)),
    (socket.AF_INET, ("127.0.0.1", -1)),
    (socket.AF_INET, (1, 1)),
    (socket.AF_INET6, None),
    (socket.AF_INET6, ("::1",)),
    (socket.AF_INET6, ("::1", 1, 2, 3, 4)),
    (socket.AF_INET6, ("::1", 70000)),
    (socket.AF_INET6, ("::1", 1, 1 << 21)),
    (socket.AF_INET6, ("::1", 1, -1)),
    (socket.AF_INET6, ("::1", 1, 1.5)),
    (socket.AF_INET6, ("::1", "1")),
    (socket.AF_INET, ("127.0.0.1", 1 << 40)),
    (socket.AF_INET, ("localhost", -1)),
    (socket.AF_INET, ("localhost", 70000)),
    (socket.AF_INET, ("127.0.0.1\0", 1)),
    (socket.AF_INET, ("127.0.0.1", 1.5)),
    (socket.AF_INET, (None, 1)),
])
def test_sendto_bad_address_message(loop, family, addr):
    """The fatal error is the exception socket.sendto() raises, message
    included."""
    if family == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6")
    expected = _socket_error(family, addr)
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    loop.set_exception_handler(lambda lp, ctx: None)

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=(host, 0))
        t.sendto(b"x", addr)
        try:
            return await asyncio.wait_for(p.lost, 5)
        finally:
            t.close()

    exc = loop.run_until_complete(main())
    assert (type(exc), str(exc)) == expected


@pytest.mark.parametrize("family,addr", [
    (socket.AF_INET, ("no.such.host.invalid", 70000)),
    (socket.AF_INET, ("::1", 9)),
    (socket.AF_INET6, ("127.0.0.1", 9)),
    (socket.AF_INET6, ("<broadcast>", 9)),
])
def test_sendto_unresolvable_address(loop, family, addr):
    """An address socket.sendto() cannot resolve is an OSError, which
    asyncio passes to error_received(), the transport staying open."""
    if family == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6")
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        with pytest.raises(OSError) as info:
            s.sendto(b"", addr)
    expected = info.value
    host = "127.0.0.1" if family == socket.AF_INET else "::1"

    async def main():
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=(host, 0))
        t.sendto(b"x", addr)
        await wait_for(lambda: p.errors)
        assert not t.is_closing()
        t.close()
        await p.lost
        return p.errors

    errors = loop.run_until_complete(main())
    assert [(type(e), e.args) for e in errors] == [
        (type(expected), expected.args)]


@pytest.mark.parametrize("family,addr", [
    (socket.AF_INET, ("", None)),
    (socket.AF_INET, (b"127.0.0.1", None)),
    (socket.AF_INET, (bytearray(b"localhost"), None)),
    (socket.AF_INET, ("127.0.0.1", True)),
    (socket.AF_INET6, ("::1", None, (1 << 32) + 5)),
    (socket.AF_INET6, ("::1", None, 0, 0)),
    (socket.AF_INET6, ("", None)),
])
def test_sendto_unusual_valid_address(loop, family, addr):
    """Addresses socket.sendto() accepts in unusual forms: an empty host
    (the wildcard address), bytes, a bool port, a flowinfo that wraps."""
    if family == socket.AF_INET6 and not HAS_IPV6:
        pytest.skip("no IPv6")
    host = "127.0.0.1" if family == socket.AF_INET else "::1"

    async def main():
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=(host, 0))
        port = st.get_extra_info("sockname")[1]
        if addr[1] is True:
            # A bool port is port 1: only check that it is accepted.
            target = addr
        else:
            target = (addr[0], port) + addr[2:]
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=(host, 0))
        ct.sendto(b"odd", target)
        if addr[1] is not True:
            await wait_for(lambda: sp.got)
            assert sp.got[0][0] == b"odd"
        assert not ct.is_closing()
        st.close()
        ct.close()
        await sp.lost
        await cp.lost

    loop.run_until_complete(main())

