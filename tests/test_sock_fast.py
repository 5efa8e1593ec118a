"""sock_recv(), sock_recv_into() and sock_sendall() on plain sockets.

cloop serves exact socket.socket objects from C (csrc/sock.c) and every
other case from Python; these tests pin the C path's behaviour to
asyncio's, edge by edge, each against both loops.
"""

import array
import asyncio
import gc
import signal
import socket
import struct
import sys

import pytest


def reader_registered(loop, fd):
    """Remove fd's reader, answering whether there was one (the same on
    both loops: remove_reader() is public API)."""
    return loop.remove_reader(fd)


def writer_registered(loop, fd):
    return loop.remove_writer(fd)


def _method_error(call):
    try:
        call()
    except Exception as exc:
        return type(exc)
    raise AssertionError("no error")


# --- results -------------------------------------------------------------


def test_echo_many_round_trips(loop, pair):
    a, b = pair

    async def echo():
        while data := await loop.sock_recv(a, 65536):
            await loop.sock_sendall(a, data)

    async def client():
        got = []
        for i in range(200):
            msg = b"%d:" % i + b"x" * (i % 50)
            await loop.sock_sendall(b, msg)
            buf = bytearray(len(msg))
            view = memoryview(buf)
            n = 0
            while n < len(msg):
                n += await loop.sock_recv_into(b, view[n:])
            got.append(bytes(buf) == msg)
        b.shutdown(socket.SHUT_WR)
        return got

    async def main():
        server = asyncio.ensure_future(echo())
        got = await client()
        await server
        return got

    assert loop.run_until_complete(main()) == [True] * 200
    assert not reader_registered(loop, a.fileno())
    assert not reader_registered(loop, b.fileno())


@pytest.mark.parametrize("waiting", [False, True])
def test_recv_sizes(loop, pair, waiting):
    a, b = pair
    payload = bytes(range(256)) * 1024  # 256 KiB

    async def main():
        if waiting:
            loop.call_later(0.01, b.send, b"")
        out = [await loop.sock_recv(a, 0)]
        if waiting:
            loop.call_later(0.01, b.send, b"abc")
        else:
            b.send(b"abc")
        out.append(await loop.sock_recv(a, 2))
        out.append(await loop.sock_recv(a, 100_000))
        sent = b.send(payload)
        got = b""
        while len(got) < sent:
            got += await loop.sock_recv(a, 200_000)
        out.append(got == payload[:sent])
        return out

    assert loop.run_until_complete(main()) == [b"", b"ab", b"c", True]


def test_recv_alternating_long_and_short_reads(loop, pair):
    """Long reads switch cloop to reading straight into the result, short
    ones back to its scratch buffer: either way the bytes are the peer's."""
    a, b = pair
    sizes = [40_000, 3, 20_000, 1, 16_384, 16_383, 500, 65_536, 7]
    chunks = [bytes([i + 1]) * n for i, n in enumerate(sizes)]

    async def main():
        out = []
        for chunk in chunks:
            b.send(chunk)
            got = b""
            while len(got) < len(chunk):
                got += await loop.sock_recv(a, 65_536)
            out.append(got)
        return out

    assert loop.run_until_complete(main()) == chunks


@pytest.mark.parametrize("n,exc", [(-1, ValueError), (1.5, TypeError),
                                   ("3", TypeError),
                                   (1 << 70, OverflowError)])
def test_recv_bad_size(loop, pair, n, exc):
    a, b = pair
    b.send(b"x")
    with pytest.raises(exc):
        loop.run_until_complete(loop.sock_recv(a, n))
    assert a.recv(10) == b"x"


def test_recv_index_size(loop, pair):
    class Index:
        def __index__(self):
            return 2

    a, b = pair
    b.send(b"xyz")
    assert loop.run_until_complete(loop.sock_recv(a, Index())) == b"xy"
    assert loop.run_until_complete(loop.sock_recv(a, True)) == b"z"


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "slice",
                                  "array", "empty"])
@pytest.mark.parametrize("waiting", [False, True])
def test_recv_into_buffers(loop, pair, kind, waiting):
    a, b = pair
    store = bytearray(8)
    buf = {
        "bytearray": store,
        "memoryview": memoryview(store),
        "slice": memoryview(store)[2:6],
        "array": array.array("h", [0] * 4),
        "empty": bytearray(),
    }[kind]

    async def main():
        if waiting:
            loop.call_later(0.01, b.send, b"abcdefghij")
        else:
            b.send(b"abcdefghij")
        return await loop.sock_recv_into(a, buf)

    n = loop.run_until_complete(main())
    assert n == {"slice": 4, "empty": 0}.get(kind, 8)
    if kind == "array":
        assert buf.tobytes() == b"abcdefgh"
    elif kind == "slice":
        assert store == b"\0\0abcd\0\0"
    elif kind != "empty":
        assert store == b"abcdefgh"


@pytest.mark.parametrize("kind", ["bytes", "noncontiguous", "readonly_mv",
                                  "str"])
def test_recv_into_bad_buffer(loop, pair, kind):
    a, b = pair
    buf = {
        "bytes": b"12345678",
        "noncontiguous": memoryview(bytearray(8))[::2],
        "readonly_mv": memoryview(b"12345678"),
        "str": "12345678",
    }[kind]
    want = _method_error(lambda: b.recv_into(buf))
    b.send(b"x")
    with pytest.raises(want):
        loop.run_until_complete(loop.sock_recv_into(a, buf))
    assert a.recv(10) == b"x"


def test_recv_into_keeps_no_export(loop, pair):
    """While sock_recv_into() waits, the buffer can still be resized: the
    buffer is taken per try, as asyncio's sock.recv_into(buf) does."""
    a, b = pair
    buf = bytearray(4)

    async def main():
        t = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.01)
        buf.extend(b"\0" * 4)  # BufferError if an export were held
        b.send(b"abcdef")
        return await t

    assert loop.run_until_complete(main()) == 6
    assert buf == b"abcdef\0\0"


# --- sendall -------------------------------------------------------------


# Not an array of multi-byte items: asyncio compares send()'s byte count
# with len(data), an item count, and never completes.
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview",
                                  "slice", "cast", "empty"])
def test_sendall_types(loop, pair, kind):
    a, b = pair
    raw = bytes(range(200)) * 5
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "slice": memoryview(raw)[10:510],
        "cast": memoryview(array.array("i", range(250))).cast("B"),
        "empty": b"",
    }[kind]
    want = bytes(data)

    async def main():
        assert await loop.sock_sendall(a, data) is None
        got = b""
        while len(got) < len(want):
            got += await loop.sock_recv(b, 65536)
        return got

    assert loop.run_until_complete(main()) == want


@pytest.mark.parametrize("kind", ["str", "noncontiguous", "int"])
def test_sendall_bad_data(loop, pair, kind):
    """The error socket.send() itself gives (asyncio's first try)."""
    a, b = pair
    data = {
        "str": "abc",
        "noncontiguous": memoryview(b"abcdef")[::2],
        "int": 3,
    }[kind]
    want = _method_error(lambda: b.send(data))
    with pytest.raises(want):
        loop.run_until_complete(loop.sock_sendall(a, data))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_sendall_partial_continues(loop, pair, kind):
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    raw = bytes(range(256)) * 4096  # 1 MiB
    data = {"bytes": raw, "bytearray": bytearray(raw),
            "memoryview": memoryview(raw)}[kind]

    async def reader():
        got = bytearray()
        while len(got) < len(raw):
            await asyncio.sleep(0)
            got += await loop.sock_recv(b, 7000)
        return bytes(got)

    async def main():
        r = asyncio.ensure_future(reader())
        await loop.sock_sendall(a, data)
        return await r

    assert loop.run_until_complete(main()) == raw
    assert not writer_registered(loop, a.fileno())


def test_sendall_holds_the_buffer(loop, pair):
    """As asyncio's memoryview(data): a bytearray being sent cannot be
    resized until sock_sendall() is done."""
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytearray(1 << 20)

    async def main():
        t = asyncio.ensure_future(loop.sock_sendall(a, data))
        await asyncio.sleep(0.01)
        assert not t.done()
        with pytest.raises(BufferError):
            data.extend(b"x")
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        data.extend(b"x")

    loop.run_until_complete(main())
    assert not writer_registered(loop, a.fileno())


# --- errors --------------------------------------------------------------


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("waiting", [False, True])
def test_recv_connection_reset(loop, tcp_pair, waiting):
    c, s = tcp_pair

    async def main():
        if waiting:
            loop.call_later(0.01, _reset, s)
        else:
            _reset(s)
            await asyncio.sleep(0.01)
        return await loop.sock_recv(c, 10)

    with pytest.raises(ConnectionResetError):
        loop.run_until_complete(main())
    assert not reader_registered(loop, c.fileno())


def test_recv_into_connection_reset(loop, tcp_pair):
    c, s = tcp_pair
    loop.call_later(0.01, _reset, s)
    with pytest.raises(ConnectionResetError):
        loop.run_until_complete(loop.sock_recv_into(c, bytearray(4)))


def test_sendall_to_closed_peer(loop, tcp_pair):
    c, s = tcp_pair
    _reset(s)

    async def main():
        await asyncio.sleep(0.01)
        await loop.sock_sendall(c, b"x" * 100)

    with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
        loop.run_until_complete(main())
    first = type(info.value)
    with pytest.raises(BrokenPipeError):
        loop.run_until_complete(main())
    assert first in (ConnectionResetError, BrokenPipeError)


def test_sendall_error_while_waiting(loop, tcp_pair):
    c, s = tcp_pair
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main():
        t = asyncio.ensure_future(loop.sock_sendall(c, b"x" * (1 << 24)))
        await asyncio.sleep(0.01)
        assert not t.done()
        _reset(s)
        return await t

    with pytest.raises(ConnectionResetError):
        loop.run_until_complete(main())
    assert not writer_registered(loop, c.fileno())


def test_empty_reads_make_no_call(loop):
    """recv(0) and recv_into() of an empty buffer answer at once, without
    a system call, even on a closed socket (as the socket methods do)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    a.close()
    b.close()
    assert loop.run_until_complete(loop.sock_recv(a, 0)) == b""
    assert loop.run_until_complete(loop.sock_recv_into(a, bytearray())) == 0


@pytest.mark.parametrize("op", ["recv", "recv_into", "sendall"])
def test_closed_socket(loop, op):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    a.close()
    coro = {
        "recv": lambda: loop.sock_recv(a, 1),
        "recv_into": lambda: loop.sock_recv_into(a, bytearray(1)),
        "sendall": lambda: loop.sock_sendall(a, b"x"),
    }[op]
    with pytest.raises(OSError) as info:
        loop.run_until_complete(coro())
    assert type(info.value) is OSError
    assert info.value.errno == 9


def test_closed_while_waiting_then_cancelled(loop, pair):
    a, b = pair
    fd = a.fileno()

    async def main():
        t = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        a.close()
        await asyncio.sleep(0.01)
        assert not t.done()
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        return t.cancelled()

    assert loop.run_until_complete(main())
    assert not reader_registered(loop, fd)


# --- socket modes --------------------------------------------------------


def test_timeout_socket_times_out_as_asyncio(loop):
    """Not debug mode, a socket with a timeout: asyncio's sock.recv()
    blocks for the timeout and raises; cloop gives the same."""
    loop.set_debug(False)  # -X dev turns it on; debug mode rejects this
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        with pytest.raises(TimeoutError):
            loop.run_until_complete(loop.sock_recv(a, 1))
        with pytest.raises(TimeoutError):
            loop.run_until_complete(loop.sock_recv_into(a, bytearray(1)))
        b.send(b"ok")
        assert loop.run_until_complete(loop.sock_recv(a, 10)) == b"ok"


def test_blocking_socket_with_data(loop):
    loop.set_debug(False)
    a, b = socket.socketpair()
    with a, b:
        b.send(b"data")
        assert loop.run_until_complete(loop.sock_recv(a, 10)) == b"data"
        loop.run_until_complete(loop.sock_sendall(a, b"back"))
        assert b.recv(10) == b"back"


def test_blocking_socket_sendall_more_than_fits(loop):
    """asyncio's send() on a blocking socket blocks until all is sent (a
    thread reads meanwhile); cloop's sock_sendall() completes the same."""
    import threading

    loop.set_debug(False)
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 4096
    got = bytearray()

    def read():
        while len(got) < len(data):
            chunk = b.recv(65536)
            if not chunk:
                break
            got.extend(chunk)

    with a, b:
        t = threading.Thread(target=read)
        t.start()
        try:
            loop.run_until_complete(loop.sock_sendall(a, data))
        finally:
            t.join(10)
    assert bytes(got) == data


@pytest.mark.parametrize("op", ["recv", "recv_into", "sendall"])
def test_debug_checks_plain_socket(loop, pair, op):
    a, b = pair
    loop.set_debug(True)
    b.send(b"x")
    coro = {
        "recv": lambda: loop.sock_recv(a, 1),
        "recv_into": lambda: loop.sock_recv_into(a, bytearray(1)),
        "sendall": lambda: loop.sock_sendall(a, b"x"),
    }[op]
    loop.run_until_complete(coro())  # non-blocking: fine
    a.settimeout(1.0)
    with pytest.raises(ValueError, match="must be non-blocking"):
        loop.run_until_complete(coro())


def test_subclass_methods_are_used(loop, pair):
    a, b = pair

    class Sock(socket.socket):
        calls = 0

        def recv(self, n):
            Sock.calls += 1
            return super().recv(n).upper()

    s = Sock(fileno=a.detach())
    s.setblocking(False)
    with s:
        async def main():
            loop.call_later(0.01, b.send, b"abc")
            return await loop.sock_recv(s, 10)

        assert loop.run_until_complete(main()) == b"ABC"
        assert Sock.calls >= 1


# --- registration, cancellation ------------------------------------------


@pytest.mark.parametrize("op", ["recv", "recv_into"])
def test_reader_gone_when_await_returns(loop, pair, op):
    a, b = pair
    seen = []

    async def main():
        loop.call_later(0.01, b.send, b"x")
        if op == "recv":
            await loop.sock_recv(a, 10)
        else:
            await loop.sock_recv_into(a, bytearray(4))
        seen.append(reader_registered(loop, a.fileno()))

    loop.run_until_complete(main())
    assert seen == [False]


@pytest.mark.parametrize("op", ["recv", "recv_into", "sendall"])
def test_cancel_mid_wait_leaves_no_registration(loop, pair, op):
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    coro = {
        "recv": lambda: loop.sock_recv(a, 10),
        "recv_into": lambda: loop.sock_recv_into(a, bytearray(4)),
        "sendall": lambda: loop.sock_sendall(a, b"x" * (1 << 22)),
    }[op]
    calls = []

    async def main():
        t = asyncio.ensure_future(coro())
        await asyncio.sleep(0.01)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        await asyncio.sleep(0)
        assert t.cancelled()
        # The fd is free for someone else's reader and writer.
        loop.add_reader(a.fileno(), calls.append, "r")
        loop.add_writer(a.fileno(), calls.append, "w")
        b.send(b"x")
        await asyncio.sleep(0.01)
        assert loop.remove_reader(a.fileno())
        loop.remove_writer(a.fileno())

    loop.run_until_complete(main())
    assert "r" in calls
    assert not reader_registered(loop, a.fileno())
    assert not writer_registered(loop, a.fileno())


def test_cancel_before_the_ready_read_keeps_the_data(loop, pair):
    """The read happens in the reader callback's turn, as in asyncio: a
    cancellation queued before it leaves the data in the socket."""
    a, b = pair

    async def main():
        t = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)

        def send_and_cancel():
            b.send(b"kept")
            loop.call_soon(t.cancel)

        loop.call_soon(send_and_cancel)
        await asyncio.gather(t, return_exceptions=True)
        return t.cancelled()

    assert loop.run_until_complete(main())
    assert a.recv(10) == b"kept"


def test_replaced_reader_is_not_removed(loop, pair):
    """Someone else's add_reader() replaces a waiting sock_recv()'s reader;
    cancelling the sock_recv() then leaves that reader alone."""
    a, b = pair
    calls = []

    async def main():
        t = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0.01)
        loop.add_reader(a.fileno(), calls.append, 1)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        await asyncio.sleep(0)
        b.send(b"x")
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    assert calls
    assert reader_registered(loop, a.fileno())


def test_two_concurrent_recvs(loop, pair):
    """The second sock_recv() replaces the first's reader: the data goes
    to the second and the first keeps waiting until cancelled."""
    a, b = pair

    async def main():
        t1 = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        t2 = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b"one")
        r2 = await asyncio.wait_for(t2, 5)
        b.send(b"two")
        await asyncio.sleep(0.01)
        pending = not t1.done()
        t1.cancel()
        await asyncio.gather(t1, return_exceptions=True)
        r3 = await loop.sock_recv(a, 10)
        return r2, pending, r3

    assert loop.run_until_complete(main()) == (b"one", True, b"two")
    assert not reader_registered(loop, a.fileno())


def test_closed_loop(loop, pair):
    a, b = pair
    loop.close()
    b.send(b"x")
    coro = loop.sock_recv(a, 10)
    with pytest.raises(StopIteration) as info:
        coro.send(None)
    assert info.value.value == b"x"
    coro = loop.sock_recv(a, 10)
    with pytest.raises(RuntimeError, match="closed"):
        coro.send(None)
    coro = loop.sock_sendall(a, b"y")
    with pytest.raises(StopIteration):
        coro.send(None)
    assert b.recv(10) == b"y"


def test_signal_during_wait(loop, pair):
    """A signal handler that raises while sock_recv() waits: the loop's
    own business; the operation still completes afterwards."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer")
    a, b = pair

    async def main():
        loop.call_later(0.05, b.send, b"after")
        return await loop.sock_recv(a, 10)

    old = signal.signal(signal.SIGALRM, lambda *args: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        assert loop.run_until_complete(main()) == b"after"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- references ----------------------------------------------------------


def test_references_released(loop, pair):
    a, b = pair
    buf = bytearray(16)
    data = bytearray(b"payload")
    gc.collect()
    before = (sys.getrefcount(a), sys.getrefcount(buf),
              sys.getrefcount(data))

    async def main():
        for _ in range(3):
            b.send(b"ready")
            await loop.sock_recv(a, 10)
            loop.call_later(0.005, b.send, b"wait")
            await loop.sock_recv(a, 10)
            loop.call_later(0.005, b.send, b"wait")
            await loop.sock_recv_into(a, buf)
            await loop.sock_sendall(a, data)
            await loop.sock_recv(b, 100)
        t = asyncio.ensure_future(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0.005)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        t = None
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    after = (sys.getrefcount(a), sys.getrefcount(buf),
             sys.getrefcount(data))
    assert after == before


# --- the fd's poll kept between waits (cloop) ------------------------------
#
# cloop keeps a connection's uv_poll_t from the end of one wait to the next
# one in the same turn; whatever else happens to the fd in that turn must
# look as after asyncio's remove_reader().


def _recv_then(loop, a, b, then):
    async def main():
        loop.call_later(0.005, b.send, b"1")
        assert await loop.sock_recv(a, 10) == b"1"
        return await then()

    return loop.run_until_complete(main())


def test_add_reader_right_after_a_wait(loop, pair):
    a, b = pair
    calls = []

    async def then():
        loop.add_reader(a.fileno(), calls.append, "r")
        b.send(b"2")
        await asyncio.sleep(0.01)
        return loop.remove_reader(a.fileno())

    assert _recv_then(loop, a, b, then)
    assert calls


@pytest.mark.parametrize("reuse", ["add_reader", "sock_recv", "transport"])
def test_fd_reused_right_after_a_wait(loop, pair, reuse):
    """The socket closes and its fd number goes to a new socket in the turn
    the wait ended: the new socket is watched for real."""
    a, b = pair
    got = []

    class Proto(asyncio.Protocol):
        def data_received(self, data):
            got.append(data)

    async def then():
        fd = a.fileno()
        a.close()
        c, d = socket.socketpair()
        if c.fileno() != fd:
            c, d = d, c
        with c, d:
            c.setblocking(False)
            if c.fileno() != fd:
                pytest.skip("the fd number was not reused")
            if reuse == "add_reader":
                loop.add_reader(c.fileno(), lambda: got.append(c.recv(10)))
                loop.call_later(0.005, d.send, b"new")
                await asyncio.sleep(0.05)
                loop.remove_reader(c.fileno())
            elif reuse == "sock_recv":
                loop.call_later(0.005, d.send, b"new")
                got.append(await asyncio.wait_for(loop.sock_recv(c, 10), 5))
            else:
                tr, _ = await loop.create_connection(Proto, sock=c)
                loop.call_later(0.005, d.send, b"new")
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.005)
                tr.close()
                await asyncio.sleep(0)
        return got

    assert _recv_then(loop, a, b, then) == [b"new"]


def test_waits_on_two_sockets_alternating(loop):
    pairs = [socket.socketpair() for _ in range(3)]
    for p in pairs:
        for s in p:
            s.setblocking(False)

    async def echo(s):
        while data := await loop.sock_recv(s, 100):
            await loop.sock_sendall(s, data)

    async def main():
        servers = [asyncio.ensure_future(echo(p[0])) for p in pairs]
        out = []
        for i in range(30):
            c = pairs[i % 3][1]
            await loop.sock_sendall(c, b"%d" % i)
            out.append(await loop.sock_recv(c, 100))
        for p in pairs:
            p[1].shutdown(socket.SHUT_WR)
        await asyncio.gather(*servers)
        return out

    try:
        assert loop.run_until_complete(main()) == [b"%d" % i
                                                   for i in range(30)]
        for p in pairs:
            assert not reader_registered(loop, p[0].fileno())
    finally:
        for p in pairs:
            for s in p:
                s.close()


def test_close_loop_right_after_a_wait(loop_factory):
    loop = loop_factory()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)

        async def main():
            loop.call_later(0.005, b.send, b"x")
            await loop.sock_recv(a, 10)
            loop.stop()

        loop.create_task(main())
        loop.run_forever()
        loop.close()
    assert loop.is_closed()


def test_references_released_on_errors(loop, tcp_pair):
    c, s = tcp_pair
    buf = bytearray(8)
    data = bytearray(b"x" * 100)
    gc.collect()
    before = (sys.getrefcount(c), sys.getrefcount(buf),
              sys.getrefcount(data))

    async def main():
        loop.call_later(0.005, _reset, s)
        with pytest.raises(ConnectionResetError):
            await loop.sock_recv_into(c, buf)
        with pytest.raises(OSError):
            for _ in range(3):
                await loop.sock_sendall(c, data)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    after = (sys.getrefcount(c), sys.getrefcount(buf),
             sys.getrefcount(data))
    assert after == before
