"""Nothing lost: random payloads echoed over many concurrent connections.

64 connections carry a few MiB each through an echo server and back,
checked by hash, with flow control engaged on both sides (the server stops
reading while its peer does not keep up, clients and server toggle
pause_reading()/resume_reading() at random) and write_eof() ending each
direction.  Runs on stock asyncio and cloop alike; both must deliver every
byte, in order, to the right connection.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import random
import socket
import tempfile

import pytest

N_CONN = 64
MIN_SIZE = 256 * 1024
MAX_SIZE = 4 * 1024 * 1024
TIMEOUT = 60
SOCK_BUF = 32 * 1024


@functools.lru_cache(maxsize=1)
def pool() -> bytes:
    """Random bytes; each connection sends its own slice of them."""
    return os.urandom(8 * 1024 * 1024)


def payload_for(i: int, max_size: int = MAX_SIZE) -> tuple[bytes, random.Random]:
    rnd = random.Random(1000 + i)
    size = rnd.randint(MIN_SIZE, max_size)
    start = rnd.randrange(0, len(pool()) - size)
    # A per-connection prefix, so two connections never send equal data.
    head = i.to_bytes(4, "big") * 4
    return head + pool()[start:start + size], rnd


def digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


# --- echo servers --------------------------------------------------------


class EchoServer(asyncio.Protocol):
    """Echoes; stops reading while its own writes are paused (a proxy's
    flow control), pauses reading at random now and then, and answers EOF
    with write_eof() after the echoed data."""

    stats = {"pause_writing": 0, "random_pauses": 0}

    def __init__(self, loop, seed):
        self.loop = loop
        self.rnd = random.Random(seed)
        self.write_paused = False
        self.random_paused = False

    def connection_made(self, tr):
        self.tr = tr
        # Small kernel buffers, so the transport's own buffering and flow
        # control do the work.
        tr.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)

    def _update_reading(self):
        if self.tr.is_closing():
            return
        want = not (self.write_paused or self.random_paused)
        if want and not self.tr.is_reading():
            self.tr.resume_reading()
        elif not want and self.tr.is_reading():
            self.tr.pause_reading()

    def _end_random_pause(self):
        self.random_paused = False
        self._update_reading()

    def data_received(self, data):
        self.tr.write(data)
        if not self.random_paused and self.rnd.random() < 0.05:
            self.random_paused = True
            EchoServer.stats["random_pauses"] += 1
            self._update_reading()
            self.loop.call_later(self.rnd.random() * 0.002,
                                 self._end_random_pause)

    def pause_writing(self):
        EchoServer.stats["pause_writing"] += 1
        self.write_paused = True
        self._update_reading()

    def resume_writing(self):
        self.write_paused = False
        self._update_reading()

    def eof_received(self):
        # The EOF goes after the echoed data still queued; close() then
        # waits for that data to be flushed.
        self.tr.write_eof()
        self.tr.close()
        return True


class BufferedEchoServer(EchoServer, asyncio.BufferedProtocol):
    """The same over BufferedProtocol, with a small odd-sized buffer."""

    def __init__(self, loop, seed):
        super().__init__(loop, seed)
        self.buf = bytearray(7919)

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data_received(bytes(self.buf[:nbytes]))


# --- protocol clients ----------------------------------------------------


class Client(asyncio.Protocol):
    """Sends its payload in random chunks honouring pause_writing(), then
    write_eof(); hashes what comes back, toggling pause_reading()."""

    def __init__(self, loop, payload, rnd):
        self.loop = loop
        self.payload = memoryview(payload)
        self.rnd = rnd
        self.pos = 0
        self.paused = False
        self.hash = hashlib.blake2b(digest_size=32)
        self.received = 0
        self.eof = False
        self.eof_written = False
        self.read_pauses = 0
        self.done = loop.create_future()

    def connection_made(self, tr):
        self.tr = tr
        tr.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUF)
        self.loop.call_soon(self.send_more)

    def send_more(self):
        while not self.paused and self.pos < len(self.payload):
            step = self.rnd.randint(1, 300_000)
            self.tr.write(self.payload[self.pos:self.pos + step])
            self.pos += step
            if self.rnd.random() < 0.2:
                # Yield to the loop now and then.
                self.loop.call_soon(self.send_more)
                return
        if self.pos >= len(self.payload) and not self.eof_written:
            self.eof_written = True
            self.tr.write_eof()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.loop.call_soon(self.send_more)

    def data_received(self, data):
        self.hash.update(data)
        self.received += len(data)
        if not self.read_pauses:
            # One long pause per connection: the server's writes back up
            # and its flow control (pause_writing) engages.
            self.read_pauses += 1
            self.tr.pause_reading()
            self.loop.call_later(0.02, self._resume)
        elif self.rnd.random() < 0.05:
            self.read_pauses += 1
            self.tr.pause_reading()
            self.loop.call_later(self.rnd.random() * 0.002,
                                 self._resume)

    def _resume(self):
        if not self.tr.is_closing():
            self.tr.resume_reading()

    def eof_received(self):
        self.eof = True
        return None  # close

    def connection_lost(self, exc):
        if exc is not None:
            self.done.set_exception(exc)
        else:
            self.done.set_result(None)


async def run_protocol_clients(loop, connect, n, max_size):
    clients = []

    async def one(i):
        data, rnd = payload_for(i, max_size)
        tr, pr = await connect(lambda: Client(loop, data, rnd))
        clients.append(pr)
        await pr.done
        assert pr.eof
        assert pr.received == len(data), (i, pr.received, len(data))
        assert pr.hash.digest() == digest(data), i

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))),
                           TIMEOUT)
    return clients


@pytest.mark.parametrize("server_kind", ["protocol", "buffered"])
def test_echo_protocols_tcp(loop, server_kind):
    EchoServer.stats = {"pause_writing": 0, "random_pauses": 0}
    cls = EchoServer if server_kind == "protocol" else BufferedEchoServer
    seeds = iter(range(10**6))

    async def main():
        srv = await loop.create_server(lambda: cls(loop, next(seeds)),
                                       "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()

        def connect(factory):
            return loop.create_connection(factory, *addr)

        clients = await run_protocol_clients(loop, connect, N_CONN, MAX_SIZE)
        srv.close()
        await srv.wait_closed()
        return clients

    clients = loop.run_until_complete(main())
    assert len(clients) == N_CONN
    # Flow control and the toggles were really exercised.
    if server_kind == "protocol":
        assert EchoServer.stats["pause_writing"] > 0
    assert EchoServer.stats["random_pauses"] > 0
    assert sum(c.read_pauses for c in clients) > 0


def test_echo_protocols_unix(loop):
    EchoServer.stats = {"pause_writing": 0, "random_pauses": 0}
    seeds = iter(range(10**6))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo")

        async def main():
            srv = await loop.create_unix_server(
                lambda: EchoServer(loop, next(seeds)), path)

            def connect(factory):
                return loop.create_unix_connection(factory, path)

            await run_protocol_clients(loop, connect, 16, MAX_SIZE)
            srv.close()
            await srv.wait_closed()

        loop.run_until_complete(main())
    assert EchoServer.stats["random_pauses"] > 0


# --- streams -------------------------------------------------------------


async def stream_echo(reader, writer):
    rnd = random.Random(id(writer))
    try:
        while True:
            data = await reader.read(rnd.randint(1, 256 * 1024))
            if not data:
                break
            writer.write(data)
            if rnd.random() < 0.5:
                await writer.drain()
            if rnd.random() < 0.02:
                # Hold the reader a moment: its buffer fills, the
                # transport pauses reading, then resumes.
                await asyncio.sleep(0.001)
        writer.write_eof()
        await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def stream_client(i, host, port, max_size):
    data, rnd = payload_for(i, max_size)
    r, w = await asyncio.open_connection(host, port, limit=64 * 1024)

    async def send():
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            step = rnd.randint(1, 300_000)
            w.write(view[pos:pos + step])
            pos += step
            await w.drain()
        w.write_eof()

    async def receive():
        h = hashlib.blake2b(digest_size=32)
        n = 0
        while True:
            chunk = await r.read(rnd.randint(1, 200_000))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            if rnd.random() < 0.01:
                await asyncio.sleep(0.001)
        return n, h.digest()

    _, (n, got) = await asyncio.gather(send(), receive())
    w.close()
    await w.wait_closed()
    assert n == len(data), (i, n, len(data))
    assert got == digest(data), i


def test_echo_streams_tcp(loop):
    async def main():
        srv = await asyncio.start_server(stream_echo, "127.0.0.1", 0,
                                         limit=64 * 1024)
        host, port = srv.sockets[0].getsockname()
        await asyncio.wait_for(asyncio.gather(
            *(stream_client(i, host, port, MAX_SIZE // 2)
              for i in range(N_CONN))), TIMEOUT)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_one_way_large_with_half_close(loop):
    """One direction only: 32 MiB to a server that hashes and answers with
    its digest after EOF (write_eof() from the client, the response on
    the half-closed connection)."""
    data = pool() * 4

    class Hasher(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr
            self.h = hashlib.blake2b(digest_size=32)
            self.n = 0

        def data_received(self, chunk):
            self.h.update(chunk)
            self.n += len(chunk)

        def eof_received(self):
            self.tr.write(self.n.to_bytes(8, "big") + self.h.digest())
            self.tr.close()
            return True

    async def main():
        srv = await loop.create_server(Hasher, "127.0.0.1", 0)
        addr = srv.sockets[0].getsockname()
        r, w = await asyncio.open_connection(*addr)
        w.write(data)
        w.write_eof()
        await w.drain()
        answer = await asyncio.wait_for(r.read(), TIMEOUT)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
        return answer

    answer = loop.run_until_complete(main())
    assert int.from_bytes(answer[:8], "big") == len(data)
    assert answer[8:] == digest(data)


def test_sock_api_roundtrip_many(loop):
    """The same integrity over loop.sock_*() on plain sockets."""

    async def serve(conn):
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                break
            await loop.sock_sendall(conn, data)
        conn.shutdown(socket.SHUT_WR)
        conn.close()

    async def client(i, addr):
        data, rnd = payload_for(i, 1024 * 1024)
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, addr)

        async def send():
            view = memoryview(data)
            pos = 0
            while pos < len(view):
                step = rnd.randint(1, 200_000)
                await loop.sock_sendall(s, view[pos:pos + step])
                pos += step
            s.shutdown(socket.SHUT_WR)

        async def receive():
            h = hashlib.blake2b(digest_size=32)
            n = 0
            while True:
                chunk = await loop.sock_recv(s, rnd.randint(1, 100_000))
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            return n, h.digest()

        _, (n, got) = await asyncio.gather(send(), receive())
        s.close()
        assert n == len(data)
        assert got == digest(data)

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        lsock.setblocking(False)
        addr = lsock.getsockname()
        servers = []

        async def acceptor(n):
            for _ in range(n):
                conn, _ = await loop.sock_accept(lsock)
                servers.append(asyncio.ensure_future(serve(conn)))

        n = 16
        acc = asyncio.ensure_future(acceptor(n))
        await asyncio.wait_for(asyncio.gather(
            *(client(i, addr) for i in range(n))), TIMEOUT)
        await acc
        await asyncio.gather(*servers)
        lsock.close()

    loop.run_until_complete(main())
