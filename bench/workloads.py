"""The core workloads: the scheduling primitives of an event loop.

Callbacks (``call_soon``, with arguments, from another thread), timers
(scheduled then cancelled, scheduled and fired), and the coroutine machinery
(``sleep(0)``, futures, tasks). Each one checks what it computed; see
``_registry`` for the contract. Full sizes give roughly 0.2-0.5 s per timed
pass on stock asyncio (CPython 3.11, 2-core AMD EPYC VM).
"""

from __future__ import annotations

import asyncio
import collections
import threading

from ._registry import Timer, check, workload


@workload(full=150_000, quick=30_000)
def call_soon(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """A chain of n callbacks, each scheduling the next with call_soon(cb)."""
    count = 0

    def cb() -> None:
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(cb)
        else:
            loop.stop()

    with timer:
        loop.call_soon(cb)
        loop.run_forever()
    check(count == n, f"{count} of {n} callbacks ran")


@workload(full=150_000, quick=30_000)
def call_soon_args(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The call_soon chain, passing three arguments: call_soon(cb, i, i+1, i+2)."""
    count = 0
    total = 0

    def cb(a: int, b: int, c: int) -> None:
        nonlocal count, total
        # Weighted, so arguments arriving swapped change the sum.
        total += a + 2 * b + 3 * c
        count += 1
        if count < n:
            loop.call_soon(cb, count, count + 1, count + 2)
        else:
            loop.stop()

    with timer:
        loop.call_soon(cb, 0, 1, 2)
        loop.run_forever()
    check(count == n, f"{count} of {n} callbacks ran")
    # The sum over i < n of i + 2(i+1) + 3(i+2), that is of 6i + 8.
    expected = 3 * n * (n - 1) + 8 * n
    check(total == expected, f"argument checksum {total}, expected {expected}")


@workload(full=50_000, quick=10_000)
def call_soon_threadsafe(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """Another thread calls call_soon_threadsafe(cb, i) n times; all arrive in order."""
    received = 0
    misordered = 0
    producer_error: list[BaseException] = []

    def cb(i: int) -> None:
        nonlocal received, misordered
        if i != received:
            misordered += 1
        received += 1
        if received == n:
            loop.stop()

    def produce() -> None:
        call = loop.call_soon_threadsafe
        try:
            for i in range(n):
                call(cb, i)
        except BaseException as exc:  # reported below; the loop must not hang
            producer_error.append(exc)
            loop.call_soon_threadsafe(loop.stop)

    producer = threading.Thread(target=produce, name="bench-producer")
    with timer:
        producer.start()
        loop.run_forever()
        producer.join()
    check(not producer_error, f"producer thread failed: {producer_error[:1]!r}")
    check(received == n, f"{received} of {n} callbacks arrived")
    check(misordered == 0, f"{misordered} of {n} callbacks arrived out of order")


# Timers kept pending by timer_cancel; the loop also gets a turn this often.
_CANCEL_WINDOW = 1000


@workload(full=125_000, quick=25_000)
def timer_cancel(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n call_later(1-10 s) timers, each cancelled while 1000 newer ones are pending."""
    fired = 0

    def cb() -> None:
        nonlocal fired
        fired += 1

    async def main() -> None:
        call_later = loop.call_later
        pending: collections.deque[asyncio.TimerHandle] = collections.deque()
        for i in range(n):
            # 7919 is prime to 9000, so delays walk [1, 10) s in scattered
            # order and the oldest timer is rarely the earliest one.
            pending.append(call_later(1.0 + i * 7919 % 9000 / 1000, cb))
            if len(pending) > _CANCEL_WINDOW:
                pending.popleft().cancel()
            if i % _CANCEL_WINDOW == 0:
                # Let the loop run a turn, so it can purge cancelled timers.
                await asyncio.sleep(0)
        while pending:
            pending.popleft().cancel()
        await asyncio.sleep(0)

    with timer:
        loop.run_until_complete(main())
    check(fired == 0, f"{fired} cancelled timers ran")


# Timers per round in timers_fire; n is the total over all rounds.
_FIRE_ROUND = 5000
# How much earlier than its deadline a timer may run and still count as on
# time: float rounding only. uvloop's when() is ms / 1000 + delay, which can
# land one ulp above its time(); a really early timer is off by milliseconds.
_EARLY_SLACK = 1e-6


def _deadline(handle: asyncio.Handle, requested: float) -> float:
    """The earliest time a timer may run: its when(), and not before the
    delay asked for has passed (a loop shortening delays could keep when()
    consistent with itself). uvloop returns a plain Handle, without when(),
    for a zero delay."""
    when = getattr(handle, "when", None)
    return requested if when is None else max(when(), requested)


@workload(full=100_000, quick=20_000)
def timers_fire(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """Rounds of 5000 call_later(0-9 ms) timers, all waited for; none may fire early."""
    fired = 0
    early = 0
    target = 0
    deadlines: list[float] = []

    def cb(index: int) -> None:
        nonlocal fired, early
        if loop.time() + _EARLY_SLACK < deadlines[index]:
            early += 1
        fired += 1
        if fired == target:
            loop.stop()

    rounds = max(1, n // _FIRE_ROUND)
    delays = [i % 10 / 1000 for i in range(_FIRE_ROUND)]
    time, call_later = loop.time, loop.call_later
    with timer:
        for _ in range(rounds):
            # Read the clock as each timer is scheduled: the requested
            # deadline is then exact, not blurred by the rest of the round.
            scheduled = [
                (time() + d, call_later(d, cb, i)) for i, d in enumerate(delays)
            ]
            deadlines = [_deadline(h, requested) for requested, h in scheduled]
            target += _FIRE_ROUND
            loop.run_forever()
    check(fired == target, f"{fired} of {target} timers fired")
    check(early == 0, f"{early} of {target} timers fired before their deadline")


@workload(full=120_000, quick=24_000)
def sleep0(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """One task awaiting asyncio.sleep(0) n times."""

    async def main() -> int:
        count = 0
        for _ in range(n):
            await asyncio.sleep(0)
            count += 1
        return count

    with timer:
        count = loop.run_until_complete(main())
    check(count == n, f"{count} of {n} sleeps completed")


@workload(full=60_000, quick=12_000)
def futures(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n times: create_future(), call_soon(fut.set_result, i), await it."""

    async def main() -> int:
        create_future = loop.create_future
        call_soon = loop.call_soon
        total = 0
        for i in range(n):
            fut = create_future()
            call_soon(fut.set_result, i)
            total += await fut
        return total

    with timer:
        total = loop.run_until_complete(main())
    expected = n * (n - 1) // 2
    check(total == expected, f"sum of results {total}, expected {expected}")


@workload(full=40_000, quick=8_000)
def tasks(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n tasks of a trivial coroutine, made with create_task and gathered."""

    async def identity(x: int) -> int:
        return x

    async def main() -> list[int]:
        spawned = [loop.create_task(identity(i)) for i in range(n)]
        return await asyncio.gather(*spawned)

    with timer:
        results = loop.run_until_complete(main())
    expected = n * (n - 1) // 2
    check(len(results) == n, f"{len(results)} of {n} results")
    check(sum(results) == expected, f"sum {sum(results)}, expected {expected}")
    check(results == list(range(n)), "gather returned results out of order")
