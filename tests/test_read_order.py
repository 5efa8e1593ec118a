"""Where a stream read's callbacks fall in the loop's turn.

asyncio's turn is: poll, queue the I/O callbacks, queue the timers due,
then run exactly what was queued; whatever those callbacks schedule
(``call_soon``, a zero-delay ``call_later``, a future's callbacks) waits
for the next turn, and a transport reads at most once per turn.  cloop
delivers a read of a few KiB or more inside the poll when nothing was
queued ahead of it (``docs/design.md``), so these tests pin that order
down on both loops, with small reads and large ones.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

# cloop queues a 1-byte read like asyncio's reader callback and delivers
# an 8 KiB one inside the poll: both must give asyncio's order.
SIZES = pytest.mark.parametrize("size", [1, 8192], ids=["small", "large"])


def _protocol(kind: str, on_data, on_eof=None):
    """A Protocol or BufferedProtocol calling on_data(bytes)."""
    if kind == "plain":

        class Plain(asyncio.Protocol):
            def data_received(self, data):
                on_data(bytes(data))

            def eof_received(self):
                if on_eof is not None:
                    on_eof()

        return Plain()

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(256 * 1024)

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            on_data(bytes(self.buf[:nbytes]))

        def eof_received(self):
            if on_eof is not None:
                on_eof()

    return Buffered()


def _serve_and_kick(loop, sock, factory, kick, done) -> None:
    """Serve sock with factory's protocol; run kick() as a callback of its
    own, so the next poll starts with nothing queued; wait for done."""

    async def main():
        transport, _ = await loop.connect_accepted_socket(factory, sock)
        loop.call_soon(kick)
        await asyncio.wait_for(done, 10)
        transport.close()

    loop.run_until_complete(main())


@SIZES
@pytest.mark.parametrize("kind", ["plain", "buffered"])
def test_timer_due_with_a_read_runs_before_what_the_read_scheduled(
    loop, tcp_pair, kind, size
):
    c, s = tcp_pair
    log: list = []
    done = loop.create_future()

    def on_data(data):
        log.append(("data", data))
        loop.call_soon(log.append, "soon")
        loop.call_later(0, lambda: (log.append("later0"), done.set_result(None)))

    def kick():
        # Readable at the next poll, with a timer due by then.
        c.send(b"x" * size)
        loop.call_later(0, log.append, "timer")

    _serve_and_kick(loop, s, lambda: _protocol(kind, on_data), kick, done)
    assert log == [("data", b"x" * size), "timer", "soon", "later0"]


@SIZES
@pytest.mark.parametrize("kind", ["plain", "buffered"])
@pytest.mark.parametrize("peer", ["tcp-shutdown", "unix-close"])
def test_eof_after_data_waits_for_the_next_turn(
    loop, tcp_pair, pair, kind, size, peer
):
    # A Unix peer that closes makes the poll report a hang-up with the
    # data: libuv then reports EOF in the same poll, right after the read.
    c, s = tcp_pair if peer == "tcp-shutdown" else pair
    log: list = []
    done = loop.create_future()

    def on_data(data):
        log.append(("data", data))
        loop.call_soon(log.append, "soon")

    def on_eof():
        log.append("eof")
        done.set_result(None)

    def kick():
        c.send(b"x" * size)
        if peer == "tcp-shutdown":
            c.shutdown(socket.SHUT_WR)
        else:
            c.close()

    _serve_and_kick(loop, s, lambda: _protocol(kind, on_data, on_eof), kick, done)
    assert log == [("data", b"x" * size), "soon", "eof"]


@SIZES
def test_reader_callback_in_the_same_turn_runs_before_scheduled(
    loop, tcp_pair, pair, size
):
    c, s = tcp_pair
    ra, rb = pair
    log: list = []
    done = loop.create_future()

    def on_data(data):
        log.append("data")
        loop.call_soon(lambda: (log.append("soon"), done.set_result(None)))

    def on_readable():
        rb.recv(100)
        log.append("reader")

    def kick():
        loop.add_reader(rb.fileno(), on_readable)
        c.send(b"x" * size)
        ra.send(b"y")

    _serve_and_kick(loop, s, lambda: _protocol("plain", on_data), kick, done)
    loop.remove_reader(rb.fileno())
    # Both I/O callbacks of the turn (in the poll's order), then "soon".
    assert sorted(log[:2]) == ["data", "reader"]
    assert log[2] == "soon"


@pytest.mark.parametrize("kind", ["plain", "buffered"])
def test_one_read_per_turn_under_a_flood(loop, tcp_pair, kind):
    """A transport reads at most once per turn, even with more waiting than
    one read takes.  A zero-delay timer that re-arms itself runs once per
    turn and numbers the turns (it queues nothing ahead of the poll)."""
    c, s = tcp_pair
    total = 8 * 1024 * 1024
    got = 0
    turn = 0
    last_turn = -1
    reads = 0
    overlaps = 0
    done = loop.create_future()

    def tick():
        nonlocal turn
        turn += 1
        if not done.done():
            loop.call_later(0, tick)

    def on_data(data):
        nonlocal got, last_turn, overlaps, reads
        # Slow enough for the sender to queue more than one read takes.
        time.sleep(0.0005)
        got += len(data)
        reads += 1
        if turn == last_turn:
            overlaps += 1
        last_turn = turn

    def on_eof():
        done.set_result(None)

    def blast():
        c.setblocking(True)
        c.sendall(b"z" * total)
        c.shutdown(socket.SHUT_WR)

    async def main():
        transport, _ = await loop.connect_accepted_socket(
            lambda: _protocol(kind, on_data, on_eof), s
        )
        thread = threading.Thread(target=blast)
        loop.call_later(0, tick)
        thread.start()
        try:
            await asyncio.wait_for(done, 60)
        finally:
            await loop.run_in_executor(None, thread.join)
        transport.close()

    loop.run_until_complete(main())
    assert got == total
    assert reads >= total // (256 * 1024)
    assert overlaps == 0


@SIZES
def test_keyboard_interrupt_from_data_received(loop, tcp_pair, size):
    c, s = tcp_pair
    log: list = []
    second = loop.create_future()

    def on_data(data):
        log.append(("data", data))
        if data[:1] == b"x":
            loop.call_soon(log.append, "soon")
            raise KeyboardInterrupt
        second.set_result(None)

    async def setup():
        return await loop.connect_accepted_socket(
            lambda: _protocol("plain", on_data), s
        )

    transport, _ = loop.run_until_complete(setup())

    async def wait_forever():
        await loop.create_future()

    loop.call_soon(c.send, b"x" * size)
    task = loop.create_task(wait_forever())
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(task)
    assert log == [("data", b"x" * size)]
    # The loop and the transport go on; what the callback scheduled runs.
    c.send(b"y")
    loop.run_until_complete(asyncio.wait_for(second, 10))
    assert log == [("data", b"x" * size), "soon", ("data", b"y")]
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    transport.close()
    loop.run_until_complete(asyncio.sleep(0))
