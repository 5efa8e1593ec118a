"""connect_read_pipe()/connect_write_pipe(), against asyncio's Unix loop."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import pty
import socket
import tempfile

import pytest


class Recorder(asyncio.Protocol):
    """Records every callback a pipe protocol gets."""

    def __init__(self, loop):
        self.events: list = []
        self.data = bytearray()
        self.transport = None
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert type(data) is bytes
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        if not self.lost.done():
            self.lost.set_result(exc)


class Pipe:
    """An os.pipe() whose ends are closed after the test unless the test
    handed them to a transport (rfile()/wfile()) or closed them (close_r()/
    close_w()): a second close could hit a reused descriptor."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self._open = {self.r, self.w}

    def rfile(self):
        self._open.discard(self.r)
        return os.fdopen(self.r, "rb", 0)

    def wfile(self):
        self._open.discard(self.w)
        return os.fdopen(self.w, "wb", 0)

    def close_r(self):
        self._open.discard(self.r)
        os.close(self.r)

    def close_w(self):
        self._open.discard(self.w)
        os.close(self.w)

    def cleanup(self):
        for fd in self._open:
            os.close(fd)


@pytest.fixture
def pipe():
    p = Pipe()
    yield p
    p.cleanup()


def test_read_pipe_data_then_eof(loop, pipe):
    payload = os.urandom(300_000)

    async def main():
        f = pipe.rfile()
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), f)
        assert isinstance(tr, asyncio.ReadTransport)
        assert tr.get_extra_info("pipe") is f
        assert tr.get_protocol() is pr
        assert tr.is_reading() and not tr.is_closing()
        os.set_blocking(pipe.w, False)
        written = 0
        while written < len(payload):
            try:
                written += os.write(pipe.w, payload[written:written + 65536])
            except BlockingIOError:
                pass
            await asyncio.sleep(0)
        pipe.close_w()
        exc = await pr.lost
        assert exc is None
        assert bytes(pr.data) == payload
        assert pr.events == ["made", "data", "eof", ("lost", None)]
        assert tr.is_closing()
        assert f.closed
        assert tr.get_extra_info("pipe") is f

    loop.run_until_complete(main())


def test_read_pipe_close(loop, pipe):

    async def main():
        f = pipe.rfile()
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), f)
        os.write(pipe.w, b"abc")
        while not pr.data:
            await asyncio.sleep(0)
        tr.close()
        assert tr.is_closing() and not tr.is_reading()
        tr.close()  # idempotent
        assert await pr.lost is None
        assert pr.events == ["made", "data", ("lost", None)]
        assert f.closed
        # The writer now sees the reader gone.
        with pytest.raises(BrokenPipeError):
            os.write(pipe.w, b"x")

    loop.run_until_complete(main())


def test_read_pipe_pause_resume(loop, pipe):

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), pipe.rfile())
        tr.pause_reading()
        tr.pause_reading()
        assert not tr.is_reading()
        os.write(pipe.w, b"hello")
        for _ in range(5):
            await asyncio.sleep(0)
        assert pr.data == b""
        tr.resume_reading()
        tr.resume_reading()
        assert tr.is_reading()
        while pr.data != b"hello":
            await asyncio.sleep(0)
        tr.close()
        await pr.lost

    loop.run_until_complete(main())


def test_read_pipe_protocol_error_keeps_reading(loop, pipe):
    """An exception from data_received() goes to the exception handler;
    asyncio's read pipe keeps reading."""
    errors = []

    class Failing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) == 1:
                raise ZeroDivisionError("boom")

    async def main():
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        tr, pr = await loop.connect_read_pipe(lambda: Failing(loop), pipe.rfile())
        os.write(pipe.w, b"1")
        while not errors:
            await asyncio.sleep(0)
        assert isinstance(errors[0]["exception"], ZeroDivisionError)
        assert not tr.is_closing()
        os.write(pipe.w, b"23")
        pipe.close_w()
        assert await pr.lost is None
        assert pr.data == b"123"

    loop.run_until_complete(main())


def test_write_pipe_close_flushes(loop, pipe):
    payload = os.urandom(2_000_000)
    got = bytearray()

    async def main():
        f = pipe.wfile()
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), f)
        assert isinstance(tr, asyncio.WriteTransport)
        assert tr.get_extra_info("pipe") is f
        assert tr.can_write_eof()
        tr.write(payload[:1000])
        tr.write(bytearray(payload[1000:5000]))
        tr.writelines([memoryview(payload[5000:100_000]), payload[100_000:]])
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        reader, rpr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                   pipe.rfile())
        await rpr.lost
        got.extend(rpr.data)
        assert await pr.lost is None
        assert f.closed
        assert pr.events[0] == "made"
        assert pr.events[-1] == ("lost", None)

    loop.run_until_complete(main())
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_write_pipe_write_eof(loop, pipe):

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        tr.write(b"data")
        tr.write_eof()
        assert tr.is_closing()
        assert await pr.lost is None
        assert os.read(pipe.r, 100) == b"data"
        assert os.read(pipe.r, 100) == b""

    loop.run_until_complete(main())


def test_write_pipe_abort_drops_data(loop, pipe):

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        tr.write(b"x" * 1_000_000)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert await pr.lost is None
        got = 0
        while True:
            chunk = os.read(pipe.r, 1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got < 1_000_000

    loop.run_until_complete(main())


def test_write_pipe_reader_closed_idle(loop, pipe):
    """The reading end closing ends an idle write pipe with no error."""

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        await asyncio.sleep(0)
        pipe.close_r()
        assert await asyncio.wait_for(pr.lost, 10) is None
        assert tr.is_closing()

    loop.run_until_complete(main())


def test_write_pipe_reader_closed_with_data(loop, pipe):
    """With data still queued it ends with BrokenPipeError."""

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        tr.write(b"x" * 1_000_000)
        assert tr.get_write_buffer_size() > 0
        await asyncio.sleep(0)
        pipe.close_r()
        exc = await asyncio.wait_for(pr.lost, 10)
        assert isinstance(exc, BrokenPipeError)

    loop.run_until_complete(main())


def test_write_pipe_flow_control(loop, pipe):

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        tr.set_write_buffer_limits(high=1000, low=100)
        assert tr.get_write_buffer_limits() == (100, 1000)
        tr.write(b"y" * 200_000)  # more than the pipe holds
        assert pr.events == ["made", "pause"]
        reader, rpr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                                   pipe.rfile())
        while "resume" not in pr.events:
            await asyncio.sleep(0)
        assert tr.get_write_buffer_size() <= 100
        tr.close()
        await pr.lost
        await rpr.lost
        assert len(rpr.data) == 200_000
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)

    loop.run_until_complete(main())


def test_write_after_close_is_counted_and_logged(loop, pipe, caplog):

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop),
                                               pipe.wfile())
        tr.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                tr.write(b"late")
        await pr.lost
        tr.write(b"later")
        assert os.read(pipe.r, 100) == b""

    loop.run_until_complete(main())
    assert any("pipe closed by peer" in rec.getMessage()
               for rec in caplog.records)


def test_socketpair_as_pipes(loop):
    a, b = socket.socketpair()

    async def main():
        rt, rp = await loop.connect_read_pipe(lambda: Recorder(loop), a)
        wt, wp = await loop.connect_write_pipe(lambda: Recorder(loop), b)
        wt.write(b"over a socket")
        wt.close()
        await rp.lost
        assert rp.data == b"over a socket"
        await wp.lost

    loop.run_until_complete(main())
    assert a.fileno() == -1 and b.fileno() == -1


def test_pty_read_pipe(loop):
    master, slave = pty.openpty()

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop),
                                              os.fdopen(master, "rb", 0))
        os.write(slave, b"tty line\n")
        while b"tty line" not in pr.data:
            await asyncio.sleep(0.01)
        tr.close()
        await pr.lost

    try:
        loop.run_until_complete(main())
    finally:
        os.close(slave)


@pytest.mark.parametrize("direction", ["read", "write"])
def test_regular_file_refused(loop, direction):
    with tempfile.TemporaryFile() as f:
        async def main():
            connect = (loop.connect_read_pipe if direction == "read"
                       else loop.connect_write_pipe)
            with pytest.raises(ValueError, match="Pipe transport is"):
                await connect(asyncio.Protocol, f)

        loop.run_until_complete(main())
        assert not f.closed


def test_write_pipe_on_dev_null(loop):
    with open(os.devnull, "wb", 0) as f:
        async def main():
            tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), f)
            tr.write(b"z" * 100_000)
            tr.close()
            assert await pr.lost is None

        loop.run_until_complete(main())


def test_read_pipe_on_dev_null(loop, loop_name):
    """epoll refuses /dev/null: asyncio reports the PermissionError to the
    exception handler from its reader registration; cloop raises it from
    connect_read_pipe() (libuv cannot watch the fd at all)."""
    errors = []
    with open(os.devnull, "rb", 0) as f:
        async def main():
            loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
            if loop_name == "cloop":
                with pytest.raises(PermissionError):
                    await loop.connect_read_pipe(asyncio.Protocol, f)
                return
            tr, _ = await loop.connect_read_pipe(asyncio.Protocol, f)
            await asyncio.sleep(0)
            assert isinstance(errors[0]["exception"], PermissionError)
            tr.close()
            await asyncio.sleep(0)

        loop.run_until_complete(main())


def test_unclosed_pipe_transport_warns(loop_factory, pipe):
    loop = loop_factory()

    async def main():
        await loop.connect_read_pipe(asyncio.Protocol, pipe.rfile())
        await loop.connect_write_pipe(asyncio.Protocol, pipe.wfile())

    with pytest.warns(ResourceWarning, match="unclosed transport"):
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
        gc.collect()


def test_close_loop_with_open_pipes(loop_factory, pipe):
    """Closing the loop leaves the transports open, as asyncio's; they warn
    and close their pipes when collected."""
    loop = loop_factory()
    made = []

    async def main():
        made.append(await loop.connect_read_pipe(asyncio.Protocol,
                                                 pipe.rfile()))
        made.append(await loop.connect_write_pipe(asyncio.Protocol,
                                                  pipe.wfile()))
        made[1][0].write(b"queued")

    loop.run_until_complete(main())
    loop.close()
    files = [tr.get_extra_info("pipe") for tr, _ in made]
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del made
        gc.collect()
    assert all(f.closed for f in files)


def test_connect_read_pipe_waiter_cancelled(loop, pipe):
    """connect_read_pipe() cancelled while waiting for connection_made()
    closes the transport."""

    async def main():
        f = pipe.rfile()
        task = asyncio.ensure_future(
            loop.connect_read_pipe(lambda: Recorder(loop), f))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(3):
            await asyncio.sleep(0)
        assert f.closed

    loop.run_until_complete(main())
