"""loop.sock_* coroutines, against asyncio."""

import asyncio
import gc
import os
import socket
import ssl
import sys
import tempfile

import pytest


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.setblocking(False)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv
    srv.close()


def registered(loop, fd):
    """Whether fd has a reader or writer (removing and re-adding them
    would change state, so probe through the private map)."""
    if hasattr(loop, "_selector"):
        try:
            loop._selector.get_key(fd)
            return True
        except KeyError:
            return False
    # cloop: remove_* answers whether something was registered.
    had_r = loop.remove_reader(fd)
    had_w = loop.remove_writer(fd)
    return had_r or had_w


def test_recv_ready_and_waiting(loop, pair):
    a, b = pair

    async def main():
        b.send(b"now")
        first = await loop.sock_recv(a, 100)
        loop.call_later(0.01, b.send, b"later")
        second = await loop.sock_recv(a, 100)
        return first, second

    assert loop.run_until_complete(main()) == (b"now", b"later")
    assert not registered(loop, a.fileno())


def test_recv_into(loop, pair):
    a, b = pair
    buf = bytearray(10)

    async def main():
        loop.call_later(0.01, b.send, b"abc")
        return await loop.sock_recv_into(a, buf)

    assert loop.run_until_complete(main()) == 3
    assert buf[:3] == b"abc"


def test_recv_eof(loop, pair):
    a, b = pair

    async def main():
        loop.call_later(0.01, b.shutdown, socket.SHUT_WR)
        return await loop.sock_recv(a, 10)

    assert loop.run_until_complete(main()) == b""


def test_udp_recvfrom_sendto(loop):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setblocking(False)
    s.setblocking(False)
    r.bind(("127.0.0.1", 0))
    buf = bytearray(16)

    async def main():
        loop.call_later(0.01, s.sendto, b"d1", r.getsockname())
        data, addr = await loop.sock_recvfrom(r, 100)
        assert await loop.sock_sendto(s, b"d2", r.getsockname()) == 2
        n, addr2 = await loop.sock_recvfrom_into(r, buf)
        assert await loop.sock_sendto(s, b"d3", r.getsockname()) == 2
        n3, _ = await loop.sock_recvfrom_into(r, buf, 1)
        return data, addr[1] == s.getsockname()[1], bytes(buf[:n]), n3

    try:
        assert loop.run_until_complete(main()) == (b"d1", True, b"d2", 1)
    finally:
        r.close()
        s.close()


def test_sendall_large_slow_reader(loop, pair):
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = os.urandom(4 * 1024 * 1024)
    received = bytearray()

    async def reader():
        while len(received) < len(data):
            chunk = await loop.sock_recv(b, 65536)
            assert chunk
            received.extend(chunk)
            await asyncio.sleep(0)

    async def main():
        rt = asyncio.ensure_future(reader())
        await loop.sock_sendall(a, data)
        await rt

    loop.run_until_complete(main())
    assert received == data
    assert not registered(loop, a.fileno())
    assert not registered(loop, b.fileno())


def test_sendall_error(loop, pair):
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main():
        loop.call_later(0.05, b.close)
        await loop.sock_sendall(a, b"x" * (8 * 1024 * 1024))

    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        loop.run_until_complete(main())
    assert not registered(loop, a.fileno())


def test_connect_accept(loop, listener):
    async def main():
        c = socket.socket()
        c.setblocking(False)
        try:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(c, listener.getsockname())
            conn, addr = await accept
            with conn:
                assert conn.gettimeout() == 0
                assert addr == c.getsockname()
                await loop.sock_sendall(conn, b"hello")
                return await loop.sock_recv(c, 10)
        finally:
            c.close()

    assert loop.run_until_complete(main()) == b"hello"
    assert not registered(loop, listener.fileno())


def test_connect_resolves_hostname(loop, listener):
    async def main():
        c = socket.socket()
        c.setblocking(False)
        with c:
            await loop.sock_connect(c, ("localhost",
                                        listener.getsockname()[1]))
            conn, _ = await loop.sock_accept(listener)
            conn.close()

    loop.run_until_complete(main())


def test_connect_refused(loop):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    async def main():
        c = socket.socket()
        c.setblocking(False)
        with c:
            await loop.sock_connect(c, ("127.0.0.1", port))

    with pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(main())


def test_connect_unix(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen()
        srv.setblocking(False)

        async def main():
            c = socket.socket(socket.AF_UNIX)
            c.setblocking(False)
            with c:
                await loop.sock_connect(c, path)
                conn, _ = await loop.sock_accept(srv)
                conn.close()

        try:
            loop.run_until_complete(main())
        finally:
            srv.close()


@pytest.mark.parametrize("op", ["recv", "recv_into", "accept", "recvfrom"])
def test_cancel_removes_reader(loop, pair, listener, op):
    a, _ = pair
    buf = bytearray(4)
    sock = listener if op == "accept" else a
    coro = {
        "recv": lambda: loop.sock_recv(a, 10),
        "recv_into": lambda: loop.sock_recv_into(a, buf),
        "recvfrom": lambda: loop.sock_recvfrom(a, 10),
        "accept": lambda: loop.sock_accept(listener),
    }[op]

    async def main():
        t = asyncio.ensure_future(coro())
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert not registered(loop, sock.fileno())


def test_cancel_connect_removes_writer(loop):
    # A listener with a full backlog never completes the handshake on some
    # systems; a non-routable address is not allowed (no network), so
    # cancel at once, before the connection can finish.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    c = socket.socket()
    c.setblocking(False)

    async def main():
        t = asyncio.ensure_future(loop.sock_connect(c, srv.getsockname()))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
        assert not registered(loop, c.fileno())
    finally:
        c.close()
        srv.close()


def test_cancel_sendall_removes_writer(loop, pair):
    a, _ = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main():
        t = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (1 << 22)))
        await asyncio.sleep(0.01)
        assert not t.done()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert not registered(loop, a.fileno())


@pytest.mark.parametrize("op", ["recv", "recv_into", "sendall", "connect",
                                "accept", "recvfrom", "recvfrom_into",
                                "sendto"])
def test_blocking_socket_rejected_in_debug(loop, op):
    loop.set_debug(True)
    s = socket.socket()
    buf = bytearray(4)
    coro = {
        "recv": lambda: loop.sock_recv(s, 1),
        "recv_into": lambda: loop.sock_recv_into(s, buf),
        "sendall": lambda: loop.sock_sendall(s, b"x"),
        "connect": lambda: loop.sock_connect(s, ("127.0.0.1", 1)),
        "accept": lambda: loop.sock_accept(s),
        "recvfrom": lambda: loop.sock_recvfrom(s, 1),
        "recvfrom_into": lambda: loop.sock_recvfrom_into(s, buf),
        "sendto": lambda: loop.sock_sendto(s, b"x", ("127.0.0.1", 1)),
    }[op]
    with s:
        with pytest.raises(ValueError, match="must be non-blocking"):
            loop.run_until_complete(coro())


def test_ssl_socket_rejected(loop):
    ctx = ssl.create_default_context()
    s = ctx.wrap_socket(socket.socket(), server_hostname="x",
                        do_handshake_on_connect=False)
    with s:
        with pytest.raises(TypeError):
            loop.run_until_complete(loop.sock_recv(s, 1))
        with pytest.raises(TypeError):
            loop.run_until_complete(loop.sock_sendall(s, b"x"))


def test_recv_error_propagates(loop, pair):
    a, b = pair
    a.close()
    with pytest.raises(OSError):
        loop.run_until_complete(loop.sock_recv(a, 1))


def test_sock_sendfile_fallback(loop, pair):
    a, b = pair
    data = os.urandom(300_000)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        received = bytearray()

        async def reader():
            while len(received) < len(data):
                chunk = await loop.sock_recv(b, 65536)
                assert chunk
                received.extend(chunk)

        async def main():
            rt = asyncio.ensure_future(reader())
            sent = await loop.sock_sendfile(a, f)
            await rt
            return sent

        assert loop.run_until_complete(main()) == len(data)
    assert received == data


def test_recv_releases_buffers(loop, pair):
    a, b = pair
    buf = bytearray(8)
    gc.collect()
    before = sys.getrefcount(buf)

    async def main():
        loop.call_later(0.01, b.send, b"x")
        await loop.sock_recv_into(a, buf)
        t = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)

    loop.run_until_complete(main())
    gc.collect()
    assert sys.getrefcount(buf) == before


# --- sock_sendfile: the native (os.sendfile) path -----------------------


@pytest.fixture
def data_file():
    data = os.urandom(600_000)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        yield f, data


def _drain(loop, sock, want, received):
    async def reader():
        while len(received) < want:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            received.extend(chunk)
    return asyncio.ensure_future(reader())


@pytest.mark.parametrize("offset,count", [(0, None), (1000, 300_000),
                                          (599_990, None), (10, 5)])
def test_sock_sendfile_native(loop, pair, data_file, monkeypatch, offset,
                              count):
    a, b = pair
    f, data = data_file
    expected = data[offset:offset + count if count else None]
    calls = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args):
        calls.append(args[1:])
        return real_sendfile(*args)

    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    received = bytearray()

    async def main():
        rt = _drain(loop, b, len(expected), received)
        sent = await loop.sock_sendfile(a, f, offset, count, fallback=False)
        await rt
        return sent

    assert loop.run_until_complete(main()) == len(expected)
    assert received == expected
    # Zero-copy, from the file's descriptor, on both loops; the file
    # position ends after the bytes sent.
    assert calls and all(c[0] == f.fileno() for c in calls)
    assert f.tell() == offset + len(expected)
    assert not registered(loop, a.fileno())


def test_sock_sendfile_empty_file(loop, pair):
    a, b = pair
    with tempfile.TemporaryFile() as f:
        assert loop.run_until_complete(
            loop.sock_sendfile(a, f, fallback=False)) == 0


def test_sock_sendfile_not_a_regular_file(loop, pair):
    """A file without a descriptor: SendfileNotAvailableError without
    fallback, plain sends with it."""
    import io
    a, b = pair
    f = io.BytesIO(b"in memory")
    with pytest.raises(asyncio.SendfileNotAvailableError,
                       match="not a regular file"):
        loop.run_until_complete(loop.sock_sendfile(a, f, fallback=False))
    assert loop.run_until_complete(loop.sock_sendfile(a, f)) == 9
    assert b.recv(100) == b"in memory"


def test_sock_sendfile_os_error_before_first_byte(loop, pair):
    """os.sendfile() failing at once (a file it cannot read) is
    SendfileNotAvailableError, so that the fallback can take over."""
    a, b = pair
    r, w = os.pipe()
    try:
        with open(r, "rb", closefd=False) as f:
            with pytest.raises(asyncio.SendfileNotAvailableError):
                loop.run_until_complete(
                    loop.sock_sendfile(a, f, 0, 10, fallback=False))
    finally:
        os.close(r)
        os.close(w)


def test_sock_sendfile_peer_closed(loop, data_file):
    f, data = data_file
    a, b = socket.socketpair()
    a.setblocking(False)
    big = data * 10
    with tempfile.TemporaryFile() as g, a:
        g.write(big)
        g.flush()
        g.seek(0)

        async def main():
            loop.call_later(0.01, b.close)
            await loop.sock_sendfile(a, g, fallback=False)

        with pytest.raises(ConnectionError):
            loop.run_until_complete(main())
        assert not registered(loop, a.fileno())
        # Whatever was sent before the error moved the file position.
        assert 0 < g.tell() < len(big)


def test_sock_sendfile_cancelled(loop, pair, data_file):
    a, b = pair
    f, data = data_file

    async def main():
        task = asyncio.ensure_future(
            loop.sock_sendfile(a, f, fallback=False))
        # Nobody reads b: the send fills the socket buffers and waits.
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(main())
    assert not registered(loop, a.fileno())
    # asyncio leaves the file position alone on cancellation, whatever
    # went out; what went out is a prefix of the file.
    assert f.tell() == 0
    received = bytearray()
    while True:
        try:
            chunk = b.recv(65536)
        except BlockingIOError:
            break
        received += chunk
    assert 0 < len(received) < len(data)
    assert received == data[:len(received)]


def test_retry_looks_the_method_up_again(loop, pair):
    """A waiting sock_recv()/sock_sendto() calls sock.<method> afresh on
    each try, as asyncio does (CPython's test_sock_lowlevel swaps the
    method of a mock socket while it waits)."""
    from unittest import mock

    a, b = pair
    fake = mock.Mock()
    fake.fileno = a.fileno
    fake.gettimeout.return_value = 0  # debug mode (-X dev) checks it
    fake.recv = mock.Mock(side_effect=BlockingIOError)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(fake, 10))
        await asyncio.sleep(0)
        fake.recv = a.recv
        b.send(b"fresh")
        return await asyncio.wait_for(task, 5)

    assert loop.run_until_complete(main()) == b"fresh"
    assert not registered(loop, a.fileno())


@pytest.mark.parametrize("op", ["recv", "recv_into", "recvfrom",
                                "sendall"])
def test_socket_a_transport_owns(loop, op):
    """An operation that has to wait on a socket a transport owns raises
    RuntimeError, as asyncio's selector loop does; one that completes at
    once does not check."""
    a, b = socket.socketpair()
    b.setblocking(False)

    async def main():
        tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        try:
            if op == "sendall":
                # Completes at once: no check.
                await loop.sock_sendall(a, b"x")
                return
            with pytest.raises(RuntimeError, match="is used by transport"):
                if op == "recv":
                    await loop.sock_recv(a, 1)
                elif op == "recv_into":
                    await loop.sock_recv_into(a, bytearray(1))
                else:
                    await loop.sock_recvfrom(a, 1)
        finally:
            tr.close()
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        b.close()
