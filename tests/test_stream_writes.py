"""Stream transport writes: per-turn coalescing, ordering, sendfile and the
fd a transport owns, against asyncio's."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile

import pytest


class Sink(asyncio.Protocol):
    def __init__(self, loop):
        self.data = bytearray()
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof.set_result(None)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def accepted_pair(loop):
    """A transport over one end of a socketpair, and the raw peer."""
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, pr = await loop.connect_accepted_socket(lambda: Sink(loop), a)
    return tr, pr, b


async def read_until_eof(loop, sock):
    buf = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            return bytes(buf)
        buf += chunk


def test_writes_in_one_turn_go_out_together(loop, loop_name):
    """On a SOCK_SEQPACKET socket each send is one record: asyncio sends
    each write() at once, cloop sends one turn's writes as one."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setblocking(False)

    async def main():
        tr, _ = await loop.connect_write_pipe(asyncio.Protocol, a)
        tr.write(b"head")
        tr.write(bytearray(b"er"))
        tr.write(memoryview(b"body"))
        await asyncio.sleep(0)
        records = []
        while True:
            try:
                records.append(b.recv(100))
            except BlockingIOError:
                break
        tr.close()
        await asyncio.sleep(0)
        return records

    records = loop.run_until_complete(main())
    b.close()
    if loop_name == "cloop":
        assert records == [b"headerbody"]
    else:
        assert records == [b"head", b"er", b"body"]


def test_write_outside_running_loop_is_sent_at_once(loop):
    async def setup():
        return await accepted_pair(loop)

    tr, pr, peer = loop.run_until_complete(setup())
    tr.write(b"sent now")
    peer.setblocking(True)
    peer.settimeout(10)
    assert peer.recv(100) == b"sent now"
    tr.close()
    loop.run_until_complete(pr.lost)
    peer.close()


@pytest.mark.parametrize("how", ["close", "write_eof", "abort"])
def test_write_then_end_in_one_turn(loop, how):
    async def main():
        tr, pr, peer = await accepted_pair(loop)
        tr.write(b"last ")
        tr.write(b"words")
        getattr(tr, how)()
        got = await read_until_eof(loop, peer)
        if how != "write_eof":
            assert await pr.lost is None
        else:
            tr.close()
            await pr.lost
        peer.close()
        return got

    # abort() drops only what could not be sent at once: the kernel takes
    # these few bytes, in asyncio's write() as in cloop's.
    assert loop.run_until_complete(main()) == b"last words"


def test_many_small_and_large_writes_keep_order(loop):
    chunks = []
    for i in range(2000):
        size = 70_000 if i % 500 == 7 else (i % 37) + 1
        chunks.append(os.urandom(size))
    expected = b"".join(chunks)

    async def main():
        tr, pr, peer = await accepted_pair(loop)
        reader = asyncio.ensure_future(read_until_eof(loop, peer))
        for i, c in enumerate(chunks):
            tr.write(bytearray(c) if i % 3 else c)
            if i % 400 == 0:
                await asyncio.sleep(0)
        tr.close()
        got = await reader
        await pr.lost
        peer.close()
        return got

    got = loop.run_until_complete(main())
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()


def test_mutable_buffer_snapshotted(loop):
    async def main():
        tr, pr, peer = await accepted_pair(loop)
        buf = bytearray(b"original")
        tr.write(buf)
        buf[:] = b"mutated!"
        view = memoryview(bytearray(b"second"))
        tr.write(view)
        view[:] = b"XXXXXX"
        tr.close()
        got = await read_until_eof(loop, peer)
        peer.close()
        return got

    assert loop.run_until_complete(main()) == b"originalsecond"


def test_buffer_limits_count_coalesced_writes(loop):
    """pause_writing() comes from write() itself once the buffered data
    passes the high-water mark, as in asyncio, so a writer that never
    yields cannot grow the buffer without bound."""
    events = []

    class P(Sink):
        def pause_writing(self):
            events.append("pause")

        def resume_writing(self):
            events.append("resume")

    async def main():
        a, b = socket.socketpair()
        b.setblocking(False)
        tr, pr = await loop.connect_accepted_socket(lambda: P(loop), a)
        tr.set_write_buffer_limits(high=4096, low=1024)
        n = 0
        while not events:
            tr.write(b"z" * 1000)
            n += 1
            assert n < 100_000
        assert tr.get_write_buffer_size() > 4096
        got = bytearray()
        while "resume" not in events:
            try:
                got += b.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0)
        tr.close()
        got += await read_until_eof(loop, b)
        await pr.lost
        b.close()
        assert len(got) == n * 1000

    loop.run_until_complete(main())


def test_sendfile_over_transport(loop):
    data = os.urandom(1_500_000)

    async def main():
        with tempfile.TemporaryFile() as f:
            f.write(data)
            f.flush()
            tr, pr, peer = await accepted_pair(loop)
            reader = asyncio.ensure_future(read_until_eof(loop, peer))
            tr.write(b"<")
            sent = await loop.sendfile(tr, f, 1000, 1_000_000)
            assert sent == 1_000_000
            assert f.tell() == 1_001_000
            tr.write(b">")
            tr.write_eof()
            got = await reader
            tr.close()
            await pr.lost
            peer.close()
            return got

    got = loop.run_until_complete(main())
    assert got == b"<" + data[1000:1_001_000] + b">"


def test_sendfile_on_pipe_transport_unsupported(loop):
    r, w = os.pipe()

    async def main():
        tr, _ = await loop.connect_write_pipe(asyncio.Protocol,
                                              os.fdopen(w, "wb", 0))
        with tempfile.TemporaryFile() as f:
            with pytest.raises(RuntimeError, match="not supported"):
                await loop.sendfile(tr, f)
        tr.close()
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        os.close(r)


@pytest.mark.parametrize("kind", ["stream", "udp", "unix-datagram"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer",
                                    "remove_reader", "remove_writer"])
def test_fd_used_by_transport(loop, method, kind, tmp_path):
    """A socket or datagram transport owns its fd: the readiness methods
    refuse it until the transport is closing."""
    async def open_transport():
        if kind == "stream":
            tr, pr, peer = await accepted_pair(loop)
            return tr, pr.lost, peer.close
        if kind == "udp":
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        else:
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, family=socket.AF_UNIX,
                local_addr=str(tmp_path / "d.sock"))
        return tr, asyncio.sleep(0), lambda: None

    async def main():
        tr, lost, cleanup = await open_transport()
        fd = tr.get_extra_info("socket").fileno()
        args = (fd, lambda: None) if method.startswith("add") else (fd,)
        with pytest.raises(RuntimeError, match="is used by transport"):
            getattr(loop, method)(*args)
        tr.close()
        # A closing transport no longer claims its fd.
        if method.startswith("add"):
            getattr(loop, method)(*args)
            getattr(loop, method.replace("add", "remove"))(fd)
        else:
            assert getattr(loop, method)(fd) is False
        await lost
        cleanup()

    loop.run_until_complete(main())


def test_invalid_file_object(loop):
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(object(), lambda: None)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.remove_writer("not a file")


class LateWriter(asyncio.Protocol):
    """Writes once more from resume_writing() after close(), as asyncio's
    SSLProtocol does to flush its backlog and close_notify."""

    def __init__(self, loop):
        self.lost = loop.create_future()
        self.late = False

    def connection_made(self, transport):
        self.transport = transport

    def resume_writing(self):
        if self.transport.is_closing() and not self.late:
            self.late = True
            self.transport.write(b"L" * 1000)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_write_from_resume_writing_after_close_is_sent(loop):
    a, b = socket.socketpair()
    b.setblocking(False)
    size = 4 * 1024 * 1024

    async def main():
        tr, proto = await loop.connect_accepted_socket(
            lambda: LateWriter(loop), a)
        tr.write(b"x" * size)
        tr.close()
        got = await read_until_eof(loop, b)
        await proto.lost
        return got, proto.late

    try:
        got, late = loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        b.close()
    assert late
    assert len(got) == size + 1000
