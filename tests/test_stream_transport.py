"""Stream transports (TCP and Unix sockets), against asyncio's."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import struct
import tempfile

import pytest


class Recorder(asyncio.Protocol):
    """A protocol that records every callback it gets."""

    def __init__(self, loop, eof_result=None):
        self.events: list = []
        self.data = bytearray()
        self.transport = None
        self.eof_result = eof_result
        self.lost = loop.create_future()
        self.made = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        return self.eof_result

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        if not self.lost.done():
            self.lost.set_result(exc)


async def connect_pair(loop, proto_factory=None, **kw):
    """A transport on one end of a socketpair and the raw peer socket."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    factory = proto_factory or (lambda: Recorder(loop, **kw))
    tr, pr = await loop.connect_accepted_socket(factory, a)
    return tr, pr, b


async def recv_all(loop, sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def test_isinstance_and_extra_info(loop, tcp_pair):
    c, s = tcp_pair

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), c)
        assert isinstance(tr, asyncio.Transport)
        assert isinstance(tr, asyncio.ReadTransport)
        assert isinstance(tr, asyncio.WriteTransport)
        assert isinstance(tr, asyncio.BaseTransport)
        assert tr.get_protocol() is pr
        assert pr.transport is tr
        assert tr.get_extra_info("sockname") == c.getsockname()
        assert tr.get_extra_info("peername") == c.getpeername()
        sock = tr.get_extra_info("socket")
        assert type(sock).__name__ == "TransportSocket"
        assert sock.fileno() == c.fileno()
        assert tr.get_extra_info("nope", 42) == 42
        assert tr.can_write_eof()
        assert tr.is_reading()
        assert not tr.is_closing()
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        assert tr.get_write_buffer_size() == 0
        assert "fd=" in repr(tr)
        tr.close()
        assert tr.is_closing()
        assert await pr.lost is None

    loop.run_until_complete(main())


def test_set_protocol(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        other = Recorder(loop)
        tr.set_protocol(other)
        assert tr.get_protocol() is other
        await loop.sock_sendall(peer, b"hello")
        for _ in range(100):
            if other.data:
                break
            await asyncio.sleep(0.01)
        assert other.data == b"hello"
        assert pr.data == b""
        tr.close()
        await other.lost
        peer.close()

    loop.run_until_complete(main())


def test_write_variants_and_snapshot(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        ba = bytearray(b"abc")
        tr.write(b"1")
        tr.write(ba)
        ba[:] = b"XYZ"
        tr.write(memoryview(b"mv"))
        tr.writelines([b"w1", bytearray(b"w2"), memoryview(b"w3")])
        tr.write(b"")
        with pytest.raises(TypeError):
            tr.write("str")
        got = await recv_all(loop, peer, 12)
        assert got == b"1abcmvw1w2w3"
        tr.close()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_write_eof(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.write(b"data")
        tr.write_eof()
        with pytest.raises(RuntimeError):
            tr.write(b"more")
        tr.write_eof()  # idempotent
        got = await recv_all(loop, peer, 100)
        assert got == b"data"  # EOF ended the read
        # The read side still works after write_eof().
        await loop.sock_sendall(peer, b"back")
        for _ in range(100):
            if pr.data:
                break
            await asyncio.sleep(0.01)
        assert pr.data == b"back"
        tr.close()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_close_flushes_queued_data(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        payload = os.urandom(4 * 1024 * 1024)
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        got = await recv_all(loop, peer, len(payload) + 1)
        assert got == payload
        assert await pr.lost is None
        assert tr.get_extra_info("socket") is not None
        peer.close()

    loop.run_until_complete(main())


def test_abort_drops_queued_data(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        payload = b"x" * (4 * 1024 * 1024)
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert await pr.lost is None
        got = await recv_all(loop, peer, len(payload))
        assert len(got) < len(payload)
        peer.close()

    loop.run_until_complete(main())


def test_write_after_close_warns_after_threshold(loop, caplog):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.close()
        await pr.lost
        for _ in range(10):
            tr.write(b"x")
        peer.close()

    loop.run_until_complete(main())
    msgs = [r.getMessage() for r in caplog.records]
    assert "socket.send() raised exception." in msgs


def test_eof_received_closes_unless_true(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        peer.shutdown(socket.SHUT_WR)
        assert await pr.lost is None
        assert pr.events[-2:] == ["eof", ("lost", None)]
        peer.close()

        tr, pr, peer = await connect_pair(loop, eof_result=True)
        peer.shutdown(socket.SHUT_WR)
        for _ in range(100):
            if "eof" in pr.events:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert pr.events == ["made", "eof"]
        assert not tr.is_closing()
        tr.write(b"still")
        assert await recv_all(loop, peer, 5) == b"still"
        tr.close()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_pause_resume_reading(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        await pr.made
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()
        await loop.sock_sendall(peer, b"held")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        for _ in range(100):
            if pr.data:
                break
            await asyncio.sleep(0.01)
        assert pr.data == b"held"
        tr.close()
        assert not tr.is_reading()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_pause_reading_in_connection_made(loop):
    class P(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.pause_reading()

    async def main():
        tr, pr, peer = await connect_pair(loop, lambda: P(loop))
        await loop.sock_sendall(peer, b"x")
        await asyncio.sleep(0.05)
        assert pr.data == b""
        tr.resume_reading()
        await asyncio.sleep(0.05)
        assert pr.data == b"x"
        tr.close()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_flow_control_with_peer_not_reading(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.set_write_buffer_limits(high=100_000, low=10_000)
        assert tr.get_write_buffer_limits() == (10_000, 100_000)
        chunk = b"y" * 65536
        for _ in range(200):
            tr.write(chunk)
            if "pause" in pr.events:
                break
        assert pr.events.count("pause") == 1
        assert tr.get_write_buffer_size() > 100_000
        total = tr.get_write_buffer_size()
        # Drain on the peer until the transport resumes the protocol.
        while "resume" not in pr.events:
            data = await loop.sock_recv(peer, 1 << 20)
            assert data
        assert tr.get_write_buffer_size() <= 10_000
        tr.abort()
        await pr.lost
        peer.close()
        assert total > 0

    loop.run_until_complete(main())


def test_set_write_buffer_limits_validation(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits(high=800)
        assert tr.get_write_buffer_limits() == (200, 800)
        tr.close()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())


def test_peer_reset_connection_lost_exc(loop, tcp_pair):
    c, s = tcp_pair

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), c)
        await pr.made
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, ConnectionResetError)
        assert tr.is_closing()

    loop.run_until_complete(main())


def test_write_to_reset_peer(loop, tcp_pair):
    c, s = tcp_pair

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), c)
        await pr.made
        tr.pause_reading()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
        await asyncio.sleep(0.05)
        for _ in range(10):
            tr.write(b"z" * 1000)
            await asyncio.sleep(0.01)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))

    loop.run_until_complete(main())


def test_protocol_raising_in_data_received(loop):
    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError("boom")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        tr, pr, peer = await connect_pair(loop, lambda: Bad(loop))
        await loop.sock_sendall(peer, b"x")
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, ZeroDivisionError)
        assert tr.is_closing()
        peer.close()
        return tr, pr

    tr, pr = loop.run_until_complete(main())
    assert len(contexts) == 1
    ctx = contexts[0]
    assert ctx["message"] == (
        "Fatal error: protocol.data_received() call failed.")
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["transport"] is tr
    assert ctx["protocol"] is pr


def test_protocol_raising_in_eof_received(loop):
    class Bad(Recorder):
        def eof_received(self):
            raise ValueError("eof")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        tr, pr, peer = await connect_pair(loop, lambda: Bad(loop))
        peer.shutdown(socket.SHUT_WR)
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, ValueError)
        peer.close()

    loop.run_until_complete(main())
    assert [c["message"] for c in contexts] == [
        "Fatal error: protocol.eof_received() call failed."]


def test_pause_writing_raising_goes_to_handler(loop):
    class Bad(Recorder):
        def pause_writing(self):
            raise ValueError("pause")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        tr, pr, peer = await connect_pair(loop, lambda: Bad(loop))
        tr.set_write_buffer_limits(high=0)
        tr.write(b"q" * (8 * 1024 * 1024))
        tr.abort()
        await pr.lost
        peer.close()

    loop.run_until_complete(main())
    assert [c["message"] for c in contexts] == [
        "protocol.pause_writing() failed"]


def test_buffered_protocol(loop):
    class BP(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1000)
            self.got = bytearray()
            self.sizes = []
            self.lost = loop.create_future()

        def connection_made(self, tr):
            self.tr = tr

        def get_buffer(self, sizehint):
            self.sizes.append(sizehint)
            return self.buf

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]

        def eof_received(self):
            return None

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        tr, pr, peer = await connect_pair(loop, BP)
        payload = os.urandom(300_000)
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        assert await pr.lost is None
        assert bytes(pr.got) == payload
        assert set(pr.sizes) == {-1}
        peer.close()

    loop.run_until_complete(main())


def test_buffered_protocol_get_buffer_raising(loop):
    class BP(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            raise RuntimeError("no buffer")

        def buffer_updated(self, nbytes):
            raise AssertionError

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        tr, pr, peer = await connect_pair(loop, BP)
        await loop.sock_sendall(peer, b"abc")
        exc = await asyncio.wait_for(pr.lost, 5)
        assert isinstance(exc, RuntimeError)
        peer.close()

    loop.run_until_complete(main())
    assert [c["message"] for c in contexts] == [
        "Fatal error: protocol.get_buffer() call failed."]


def test_connection_refused(loop):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, *addr)

    loop.run_until_complete(main())


def test_unix_connection_and_server(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sock")

        async def handler(r, w):
            w.write((await r.readline()).upper())
            await w.drain()
            w.close()

        async def main():
            srv = await asyncio.start_unix_server(handler, path)
            r, w = await asyncio.open_unix_connection(path)
            tr = w.transport
            assert isinstance(tr, asyncio.Transport)
            assert tr.get_extra_info("peername") == path
            w.write(b"hello\n")
            assert await r.read() == b"HELLO\n"
            w.close()
            await w.wait_closed()
            srv.close()
            await srv.wait_closed()

        loop.run_until_complete(main())


def test_create_unix_connection_arg_errors(loop):
    async def main():
        with pytest.raises(ValueError):
            await loop.create_unix_connection(asyncio.Protocol)
        with pytest.raises(ValueError):
            await loop.create_unix_connection(asyncio.Protocol, "/x",
                                              server_hostname="h")
        s = socket.socket()
        try:
            with pytest.raises(ValueError):
                await loop.create_unix_connection(asyncio.Protocol, sock=s)
        finally:
            s.close()

    loop.run_until_complete(main())


def test_closing_loop_with_open_transport(loop_factory):
    loop = loop_factory()
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        await pr.made
        tr.close()
        await pr.lost

    loop.run_until_complete(main())
    loop.close()
    b.close()


def test_unclosed_transport_warns(loop_factory):
    """asyncio warns for a transport never closed once it is collected."""
    import gc
    import warnings

    loop = loop_factory()
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        await pr.made

    loop.run_until_complete(main())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop.close()
        gc.collect()
    b.close()
    msgs = [str(w.message) for w in caught
            if issubclass(w.category, ResourceWarning)]
    assert any("unclosed transport" in m for m in msgs), msgs
    assert a.fileno() == -1


N_CONN = 16


def test_nothing_lost(loop):
    """Random payloads echoed over many connections, checked by hash."""

    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr
            self.n = 0

        def data_received(self, data):
            self.tr.write(data)
            # Exercise pause/resume on the echo side now and then.
            self.n += 1
            if self.n % 7 == 0:
                self.tr.pause_reading()
                loop.call_later(0.001, self.tr.resume_reading)

        def eof_received(self):
            # Half-close: our write side ends after the echoed data; the
            # transport then closes once that data is flushed.
            self.tr.write_eof()
            self.tr.close()
            return True

    async def client(port, seed):
        rnd = random.Random(seed)
        size = rnd.randint(1, 3 * 1024 * 1024)
        payload = rnd.randbytes(size)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        pos = 0
        while pos < size:
            step = rnd.randint(1, 200_000)
            w.write(payload[pos:pos + step])
            pos += step
            if rnd.random() < 0.3:
                await w.drain()
        w.write_eof()
        h = hashlib.sha256()
        n = 0
        while True:
            chunk = await r.read(rnd.randint(1, 100_000))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        w.close()
        await w.wait_closed()
        assert n == size
        assert h.digest() == hashlib.sha256(payload).digest()

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        await asyncio.wait_for(
            asyncio.gather(*(client(port, i) for i in range(N_CONN))), 120)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_transport_freed_after_close(loop, loop_name):
    """Neither transport nor protocol outlives close() (no stray pin)."""
    import gc
    import weakref

    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.write(b"x" * (2 * 1024 * 1024))
        await loop.sock_sendall(peer, b"abc")
        await asyncio.sleep(0.01)
        tr.close()
        await recv_all(loop, peer, 2 * 1024 * 1024)
        await pr.lost
        peer.close()
        return weakref.ref(tr), weakref.ref(pr)

    wtr, wpr = loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert wtr() is None
    assert wpr() is None


def test_debug_mode_roundtrip(loop):
    loop.set_debug(True)

    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.write(b"dbg")
        assert await recv_all(loop, peer, 3) == b"dbg"
        peer.close()
        assert await pr.lost is None

    loop.run_until_complete(main())


def test_create_connection_echo(loop):
    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, data):
            self.tr.write(data)

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        host, port = srv.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop),
                                              host, port)
        assert isinstance(tr, asyncio.Transport)
        assert tr.get_extra_info("peername") == (host, port)
        tr.write(b"round trip")
        for _ in range(100):
            if len(pr.data) == 10:
                break
            await asyncio.sleep(0.01)
        assert pr.data == b"round trip"
        tr.close()
        assert await pr.lost is None
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_write_after_abort_does_not_crash(loop):
    async def main():
        tr, pr, peer = await connect_pair(loop)
        tr.write(b"a" * (1 << 20))
        tr.abort()
        tr.abort()
        tr.close()
        for _ in range(3):
            tr.write(b"late")
        await pr.lost
        assert pr.events.count(("lost", None)) == 1
        peer.close()

    loop.run_until_complete(main())


def test_transport_freed_after_protocol_error(loop):
    """The error path releases the transport and protocol too."""
    import gc
    import weakref

    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError

    loop.set_exception_handler(lambda lp, ctx: None)

    async def main():
        tr, pr, peer = await connect_pair(loop, lambda: Bad(loop))
        tr.write(b"w" * (2 * 1024 * 1024))  # queued: dropped by the error
        await loop.sock_sendall(peer, b"x")
        await asyncio.wait_for(pr.lost, 5)
        peer.close()
        return weakref.ref(tr), weakref.ref(pr)

    wtr, wpr = loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0.01))
    gc.collect()
    assert wtr() is None
    assert wpr() is None


def test_debug_logs(loop, caplog):
    import logging

    loop.set_debug(True)
    caplog.set_level(logging.DEBUG, logger="asyncio")

    async def main():
        tr, pr, peer = await connect_pair(loop)
        await pr.made
        tr.pause_reading()
        tr.resume_reading()
        peer.shutdown(socket.SHUT_WR)
        await pr.lost
        peer.close()

    loop.run_until_complete(main())
    text = caplog.text
    for what in ("pauses reading", "resumes reading", "received EOF"):
        assert what in text


class _Scheduling(asyncio.Protocol):
    def __init__(self, loop, ran):
        self.loop, self.ran = loop, ran

    def data_received(self, data):
        self.ran.append("data_received")
        self.loop.call_soon(self.ran.append, "scheduled by data_received")


def test_data_received_runs_in_the_callback_pass(loop):
    """A read is delivered in the loop's pass after the callbacks already
    queued, and what data_received() schedules waits for the next pass,
    as asyncio's reader callback (SSLProtocol relies on this order)."""
    a, b = socket.socketpair()
    ran = []
    tr, _ = loop.run_until_complete(
        loop.create_connection(lambda: _Scheduling(loop, ran), sock=a))

    def first():
        b.send(b"x")
        loop.call_soon(second)

    def second():
        ran.append("stop")
        loop.stop()

    try:
        loop.call_soon(first)
        loop.run_forever()
        seen = list(ran)
    finally:
        tr.close()
        loop.run_until_complete(asyncio.sleep(0))
        b.close()
    assert seen == ["stop", "data_received"]


def test_set_protocol_between_read_and_delivery(loop):
    """Data read for one protocol reaches the one set_protocol() put in
    its place, plain or buffered."""
    got = []

    class Plain(asyncio.Protocol):
        def data_received(self, data):
            got.append(("plain", bytes(data)))

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(3)

        def get_buffer(self, n):
            return self.buf

        def buffer_updated(self, n):
            got.append(("buffered", bytes(self.buf[:n])))

    a, b = socket.socketpair()

    async def main():
        tr, _ = await loop.create_connection(Plain, sock=a)
        b.send(b"hello")
        while not got:
            await asyncio.sleep(0)
        tr.pause_reading()
        b.send(b"world")
        await asyncio.sleep(0.05)
        tr.set_protocol(Buffered())
        tr.resume_reading()
        while sum(len(d) for _, d in got) < 10:
            await asyncio.sleep(0)
        tr.close()
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        b.close()
    assert got[0] == ("plain", b"hello")
    assert all(kind == "buffered" for kind, _ in got[1:])
    assert b"".join(d for _, d in got[1:]) == b"world"
