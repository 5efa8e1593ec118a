"""Subprocess pipes that fill up grow (cloop), and nothing else changes.

cloop grows a pipe it made for a child to 1 MiB the first time a bulk
transfer fills it, for at most 16 such pipes of the process at a time
(docs/subprocess.md).  Stock asyncio never resizes a pipe: each test
states both expectations, and the data must arrive intact either way.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys

import pytest

PIPE = subprocess.PIPE
DEFAULT = 64 * 1024
GROWN = 1024 * 1024
BUDGET = 16

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"),
                                reason="needs F_GETPIPE_SZ (Linux)")


def pipe_size(proc, fd: int) -> int:
    pipe = proc._transport.get_pipe_transport(fd).get_extra_info("pipe")
    return fcntl.fcntl(pipe.fileno(), fcntl.F_GETPIPE_SZ)


def run(loop, coro, timeout=60.0):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def test_bulk_transfer_grows_both_pipes(loop, loop_name):
    payload = os.urandom(4 * 1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE)
        got = bytearray()

        async def feed():
            proc.stdin.write(payload)
            await proc.stdin.drain()

        async def drain():
            while len(got) < len(payload):
                got.extend(await proc.stdout.read(1 << 20))

        await asyncio.gather(feed(), drain())
        sizes = pipe_size(proc, 0), pipe_size(proc, 1)
        proc.stdin.close()
        assert await proc.stdout.read() == b""
        assert await proc.wait() == 0
        return bytes(got), sizes

    got, sizes = run(loop, main())
    assert got == payload
    expected = GROWN if loop_name == "cloop" else DEFAULT
    # The stdin write cannot fit a 64 KiB pipe: it grows for certain.
    assert sizes[0] == expected
    assert sizes[1] in (DEFAULT, expected)


def test_quiet_pipes_keep_their_size(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; print(sys.stdin.read())",
            stdin=PIPE, stdout=PIPE)
        proc.stdin.write(b"hello")
        await proc.stdin.drain()
        sizes = pipe_size(proc, 0), pipe_size(proc, 1)
        proc.stdin.close()
        out = await proc.stdout.read()
        await proc.wait()
        return out, sizes

    out, sizes = run(loop, main())
    assert out == b"hello\n"
    assert sizes == (DEFAULT, DEFAULT)


def test_pipesize_argument_is_kept(loop):
    payload = os.urandom(1024 * 1024)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE, pipesize=2 * DEFAULT)
        proc.stdin.write(payload)
        reader = asyncio.ensure_future(proc.stdout.readexactly(len(payload)))
        await proc.stdin.drain()
        got = await reader
        sizes = pipe_size(proc, 0), pipe_size(proc, 1)
        proc.stdin.close()
        await proc.wait()
        return got, sizes

    got, sizes = run(loop, main())
    assert got == payload
    assert sizes == (2 * DEFAULT, 2 * DEFAULT)


def test_user_pipe_is_never_grown(loop):
    r, w = os.pipe()
    os.set_blocking(w, False)
    filled = 0
    try:
        while True:
            filled += os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.close(w)

    class Collect(asyncio.Protocol):
        def __init__(self):
            self.n = 0
            self.done = loop.create_future()

        def data_received(self, data):
            self.n += len(data)

        def eof_received(self):
            self.done.set_result(self.n)

    async def main():
        proto = Collect()
        transport, _ = await loop.connect_read_pipe(lambda: proto,
                                                    os.fdopen(r, "rb", 0))
        size = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        n = await proto.done
        transport.close()
        return n, size

    n, size = run(loop, main())
    assert n == filled == DEFAULT
    assert size == DEFAULT


def test_growth_budget_is_bounded_and_returned(loop, loop_name):
    """Writing more than a pipe holds to children that never read: the
    first BUDGET stdin pipes grow, the rest keep 64 KiB, and closing them
    gives the budget back."""
    chunk = b"x" * (2 * DEFAULT)
    n = BUDGET + 4

    async def spawn_and_fill():
        procs = []
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                "sleep", "30", stdin=PIPE)
            proc.stdin.write(chunk)
            procs.append(proc)
        return procs, [pipe_size(p, 0) for p in procs]

    async def finish(procs):
        for proc in procs:
            proc.kill()
            proc._transport.close()
            await proc.wait()

    async def main():
        procs, sizes = await spawn_and_fill()
        await finish(procs)
        # The budget is back: a new pipe grows again.
        again, again_sizes = await spawn_and_fill()
        await finish(again)
        return sizes, again_sizes

    sizes, again_sizes = run(loop, main())
    if loop_name == "cloop":
        assert sizes.count(GROWN) == BUDGET
        assert sizes.count(DEFAULT) == n - BUDGET
        assert again_sizes.count(GROWN) == BUDGET
    else:
        assert sizes == again_sizes == [DEFAULT] * n
