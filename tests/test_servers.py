"""create_server()/Server and asyncio streams, against asyncio."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile

import pytest


async def echo_handler(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def echo_once(port, payload=b"ping"):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    w.write_eof()
    got = await r.read()
    w.close()
    await w.wait_closed()
    return got


def test_start_server_echo(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        assert srv.is_serving()
        port = srv.sockets[0].getsockname()[1]
        results = await asyncio.gather(
            *(echo_once(port, b"%d" % i * 1000) for i in range(20)))
        assert results == [b"%d" % i * 1000 for i in range(20)]
        srv.close()
        assert not srv.is_serving()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_create_server_protocol(loop):
    made = []

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            made.append(tr)
            assert isinstance(tr, asyncio.Transport)
            tr.write(b"hi")
            tr.close()

    async def main():
        srv = await loop.create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.read() == b"hi"
        w.close()
        await w.wait_closed()
        assert made[0].get_extra_info("peername") == \
            w.get_extra_info("sockname")
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_start_serving_false(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                       start_serving=False)
        assert not srv.is_serving()
        port = srv.sockets[0].getsockname()[1]
        await srv.start_serving()
        assert srv.is_serving()
        await srv.start_serving()  # idempotent
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_async_with_and_sockets(loop):
    async def main():
        async with await asyncio.start_server(
                echo_handler, "127.0.0.1", 0) as srv:
            socks = srv.sockets
            assert len(socks) == 1
            assert socks[0].family == socket.AF_INET
            port = socks[0].getsockname()[1]
            assert await echo_once(port) == b"ping"
        assert not srv.is_serving()
        assert srv.sockets == ()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_serve_forever_cancel(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)
        assert await echo_once(port) == b"ping"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not srv.is_serving()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_wait_closed_waits_for_connections(loop):
    async def main():
        conns = []

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                conns.append(tr)

        srv = await loop.create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while not conns:
            await asyncio.sleep(0.01)
        srv.close()
        waiter = asyncio.ensure_future(srv.wait_closed())
        await asyncio.sleep(0.05)
        if sys.version_info >= (3, 12, 1):
            # Since 3.12.1 wait_closed() waits for the connections.
            assert not waiter.done()
        conns[0].close()
        await asyncio.wait_for(waiter, 5)
        w.close()
        await w.wait_closed()

    loop.run_until_complete(main())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13 API")
def test_close_clients(loop):
    async def main():
        srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        assert await r.readexactly(1) == b"x"
        srv.close()
        srv.close_clients()
        assert await r.read() == b""
        await srv.wait_closed()
        w.close()
        await w.wait_closed()

    loop.run_until_complete(main())


def test_unix_server_stale_file_and_cleanup(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        assert os.path.exists(path)

        async def main():
            srv = await asyncio.start_unix_server(echo_handler, path)
            r, w = await asyncio.open_unix_connection(path)
            w.write(b"abc")
            w.write_eof()
            assert await r.read() == b"abc"
            w.close()
            await w.wait_closed()
            srv.close()
            await srv.wait_closed()

        loop.run_until_complete(main())
        # 3.13 removes the socket file when the server closes.
        assert os.path.exists(path) == (sys.version_info < (3, 13))


def test_unix_server_sock_and_errors(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")

        async def main():
            with pytest.raises(ValueError):
                await loop.create_unix_server(asyncio.Protocol)
            s = socket.socket()
            try:
                with pytest.raises(ValueError):
                    await loop.create_unix_server(asyncio.Protocol, sock=s)
            finally:
                s.close()
            with pytest.raises(TypeError):
                await loop.create_unix_server(asyncio.Protocol, path,
                                              ssl=True)
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(path)
            sock.listen()
            srv = await loop.create_unix_server(echo_proto, sock=sock)
            assert srv.sockets[0].fileno() == sock.fileno()
            tr, pr = await loop.create_unix_connection(asyncio.Protocol, path)
            while not echo_proto.instances:
                await asyncio.sleep(0.01)
            tr.close()
            await echo_proto.instances.pop().lost
            srv.close()
            await srv.wait_closed()

        loop.run_until_complete(main())


class echo_proto(asyncio.Protocol):
    instances: list = []

    def connection_made(self, tr):
        self.tr = tr
        self.lost = asyncio.get_running_loop().create_future()
        self.instances.append(self)

    def connection_lost(self, exc):
        self.lost.set_result(exc)

    def data_received(self, data):
        self.tr.write(data)


def test_server_address_in_use(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(OSError):
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_accept_many_in_one_wakeup(loop):
    """Connections arriving together are all accepted."""
    made = []

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            made.append(tr)
            tr.close()

    async def main():
        srv = await loop.create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        clients = []
        for _ in range(50):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            clients.append(s)
        for _ in range(200):
            if len(made) == 50:
                break
            await asyncio.sleep(0.01)
        assert len(made) == 50
        for s in clients:
            s.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_accept_out_of_fds(loop, monkeypatch):
    """EMFILE: reported, the listener paused and retried later."""
    import errno

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    class FlakySock(socket.socket):
        fail = 1

        def accept(self):
            if FlakySock.fail:
                FlakySock.fail -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super().accept()

    async def main():
        lsock = FlakySock(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        made = loop.create_future()

        class P(asyncio.Protocol):
            def connection_made(self, tr):
                made.set_result(tr)
                tr.close()

        srv = await loop.create_server(P, sock=lsock)
        port = lsock.getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port))
        tr = await asyncio.wait_for(made, 5)
        c.close()
        srv.close()
        await srv.wait_closed()
        return tr

    loop.run_until_complete(main())
    assert [c["message"] for c in contexts] == [
        "socket.accept() out of system resource"]
