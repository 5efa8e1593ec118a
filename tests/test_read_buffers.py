"""The bytes a Protocol receives are its own, whatever cloop does to make them.

cloop keeps a few bytes objects whose last reference it dropped (a read
nobody kept, a write that was sent) and copies later reads into them
(csrc/stream.c, "spare bytes"), and after a big read it reads straight
into a new bytes object sized by FIONREAD.  These tests hold stock asyncio and cloop
to what a protocol must be able to rely on: a chunk it keeps never
changes, and every chunk has the length, content and hash of a fresh
bytes object, across sizes that reuse a larger object for a smaller read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

# Reads below cloop's spare range, in it (twice: a smaller read may reuse
# a larger spare) and at its edges; then reads big enough that cloop reads
# the next ones straight into bytes of their own, big and small.
SIZES = [100, 513, 1024, 700, 4096, 3000, 65536, 40000, 600, 1024,
         100_000, 200_000, 5000, 70_000, 1000, 300_000, 65536]


class Checker(asyncio.Protocol):
    """Checks each chunk as it arrives, keeps every other one, echoes all."""

    def __init__(self, loop):
        self.kept = []
        self.received = bytearray()
        self.bad = []
        self.seen = set()
        self.eof = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        fresh = bytes(bytearray(data))
        if type(data) is not bytes or data != fresh or \
                hash(data) != hash(fresh) or len(data) != len(fresh):
            self.bad.append(len(data))
        self.seen.add(data)         # caches the hash in the object
        self.seen.clear()
        self.received += data
        if len(self.kept) % 2 == 0:
            self.kept.append((data, fresh))
        else:
            self.kept.append((None, fresh))
        self.transport.write(data)

    def eof_received(self):
        self.eof.set_result(None)


@pytest.mark.parametrize("rounds", [3])
def test_chunks_stay_intact_and_hash_like_fresh_bytes(loop, rounds):
    payloads = [os.urandom(n) for n in SIZES * rounds]

    async def main():
        proto = Checker(loop)
        server = await loop.create_server(lambda: proto, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for p in payloads:
            # One message at a time: each arrives as its own reads.
            writer.write(p)
            assert await reader.readexactly(len(p)) == p
        writer.write_eof()
        await proto.eof
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return proto

    proto = loop.run_until_complete(main())
    assert proto.bad == []
    assert bytes(proto.received) == b"".join(payloads)
    for kept, fresh in proto.kept:
        if kept is not None:
            assert kept == fresh
            assert hash(kept) == hash(fresh)


def test_many_connections_share_nothing(loop):
    """32 connections echoing at once: every reply is the client's own."""
    n_conns, n_msgs = 32, 20

    async def client(port, seed):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        digest = hashlib.sha256()
        for i in range(n_msgs):
            msg = os.urandom(600 + (seed * 131 + i * 977) % 3000)
            digest.update(msg)
            writer.write(msg)
            got = await reader.readexactly(len(msg))
            assert got == msg
        writer.close()
        await writer.wait_closed()
        return digest.hexdigest()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        digests = await asyncio.gather(
            *(client(port, seed) for seed in range(n_conns)))
        server.close()
        await server.wait_closed()
        return digests

    digests = loop.run_until_complete(main())
    assert len(set(digests)) == n_conns
