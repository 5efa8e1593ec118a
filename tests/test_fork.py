"""A cloop loop in a child made by os.fork() (cloop only: asyncio's loop
shares its epoll set with the child and has no answer to this).

The child may close or drop the parent's loop, which must not disturb the
parent's loop (they share the kernel's epoll instance); running it or
giving it work in the child raises RuntimeError."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import warnings

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")


def run_child(body) -> int:
    """Fork; run body() in the child, exit 0 if it returns, 1 if it raises;
    return the child's exit status."""
    with warnings.catch_warnings():
        # 3.12+ warns about fork() in a process with threads (the test
        # suite's pools); the child here only runs body() and _exit()s.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            body()
            code = 0
        except BaseException as exc:
            try:
                sys.stderr.write(f"child: {exc!r}\n")
            except BaseException:
                pass
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def echo_round(loop, port):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"ping")
    data = await r.readexactly(4)
    w.close()
    await w.wait_closed()
    return data


class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, d):
        self.t.write(d)


@pytest.mark.parametrize("how", ["close", "gc", "run", "add_reader"])
def test_child_cannot_disturb_parent_loop(cloop_mod, how):
    loop = cloop_mod.new_event_loop()
    a, b = socket.socketpair()
    try:
        server = loop.run_until_complete(
            loop.create_server(Echo, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        readable = []
        loop.add_reader(a.fileno(), lambda: readable.append(a.recv(10)))
        assert loop.run_until_complete(echo_round(loop, port)) == b"ping"

        def child():
            nonlocal loop
            if how == "close":
                loop.close()
            elif how == "gc":
                loop = None
                gc.collect()
            elif how == "run":
                with pytest.raises(RuntimeError, match="os.fork"):
                    loop.run_until_complete(asyncio.sleep(0))
                loop.close()
            else:
                c, d = socket.socketpair()
                with pytest.raises(RuntimeError, match="os.fork"):
                    loop.add_reader(c.fileno(), print)
                # Removing the parent's registration in the child only
                # touches the child's copy.
                loop.remove_reader(a.fileno())
                loop.close()

        assert run_child(child) == 0
        # The parent's loop still has its server and its reader.
        assert loop.run_until_complete(echo_round(loop, port)) == b"ping"
        b.send(b"x")

        async def wait_readable():
            while not readable:
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(wait_readable(), 10))
        assert readable == [b"x"]
        loop.remove_reader(a.fileno())
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
        a.close()
        b.close()


def test_new_loop_in_child_works(cloop_mod):
    parent = cloop_mod.new_event_loop()
    try:
        def child():
            loop = cloop_mod.new_event_loop()
            try:
                assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
            finally:
                loop.close()
            parent.close()

        assert run_child(child) == 0
        assert parent.run_until_complete(asyncio.sleep(0, 1)) == 1
    finally:
        parent.close()
