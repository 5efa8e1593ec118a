"""Loops and threads: the GIL, loops in other threads, cross-thread calls."""

import asyncio
import concurrent.futures
import threading
import time


class Counter(threading.Thread):
    """A pure-Python busy loop that counts while it holds the GIL."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.started = threading.Event()
        self.stop = False

    def run(self):
        self.started.set()
        while not self.stop:
            self.count += 1


def test_gil_released_while_loop_sleeps(loop):
    counter = Counter()
    counter.start()
    try:
        counter.started.wait()
        # Calibrate: what the thread does in 0.1 s while the main thread
        # blocks in a call that releases the GIL.
        c0 = counter.count
        time.sleep(0.1)
        calibrated = counter.count - c0

        async def main():
            start = counter.count
            await asyncio.sleep(0.3)
            return counter.count - start

        during_sleep = loop.run_until_complete(main())
    finally:
        counter.stop = True
        counter.join()
    assert calibrated > 0
    # Had the loop held the GIL while it waited, the thread would have
    # made (almost) no progress.  It had 0.3 s; ask for a third of what it
    # managed in 0.1 s.
    assert during_sleep >= calibrated // 3, (during_sleep, calibrated)


def test_loop_in_non_main_thread(loop_factory):
    results = {}

    def in_thread():
        lp = loop_factory()
        try:
            async def main():
                await asyncio.sleep(0.001)
                return (asyncio.get_running_loop() is lp,
                        threading.current_thread().name)

            results["value"] = lp.run_until_complete(main())
        except BaseException as exc:  # pragma: no cover - reported below
            results["error"] = exc
        finally:
            lp.close()

    t = threading.Thread(target=in_thread, name="loop-thread")
    t.start()
    t.join()
    assert results == {"value": (True, "loop-thread")}


def test_loops_in_parallel_threads(loop_factory):
    n = 4
    results = [None] * n
    barrier = threading.Barrier(n)

    def in_thread(i):
        lp = loop_factory()
        try:
            async def main():
                await asyncio.sleep(0)
                barrier.wait(timeout=10)  # all loops are running at once
                total = 0
                for j in range(20):
                    await asyncio.sleep(0.0005)
                    total += j
                return total

            results[i] = lp.run_until_complete(main())
        finally:
            lp.close()

    threads = [threading.Thread(target=in_thread, args=(i,))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sum(range(20))] * n


def test_run_coroutine_threadsafe(loop):
    async def add(a, b):
        await asyncio.sleep(0.001)
        return a + b

    results = []

    def worker():
        fut = asyncio.run_coroutine_threadsafe(add(1, 2), loop)
        results.append(fut.result(timeout=10))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(threading.Thread(target=worker).start)
    loop.run_forever()
    assert results == [3]


def test_call_soon_threadsafe_while_loop_busy_with_timers(loop, watchdog):
    # Cross-thread callbacks arrive while the loop is waiting on a timer.
    calls = []
    n = 200

    def worker():
        for i in range(n):
            loop.call_soon_threadsafe(calls.append, i)
        loop.call_soon_threadsafe(loop.stop)

    loop.call_later(3600, calls.append, "never")
    loop.call_soon(threading.Thread(target=worker).start)
    dog = watchdog(loop)
    loop.run_forever()
    dog["handle"].cancel()
    assert not dog["fired"]
    assert calls == list(range(n))


def test_call_soon_threadsafe_to_stopped_loop_runs_next_time(loop):
    calls = []
    t = threading.Thread(target=loop.call_soon_threadsafe,
                         args=(calls.append, "queued"))
    loop.run_until_complete(asyncio.sleep(0))
    t.start()
    t.join()
    assert calls == []
    loop.run_until_complete(asyncio.sleep(0))
    assert calls == ["queued"]


def test_call_soon_threadsafe_after_close_from_thread(loop_factory):
    lp = loop_factory()
    lp.close()
    errors = []

    def worker():
        try:
            lp.call_soon_threadsafe(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert errors == ["Event loop is closed"]


def test_wrap_future_from_thread(loop):
    cf = concurrent.futures.Future()

    def complete():
        time.sleep(0.01)
        cf.set_result("from-thread")

    async def main():
        threading.Thread(target=complete).start()
        return await asyncio.wrap_future(cf)

    assert loop.run_until_complete(main()) == "from-thread"


def test_stress_threadsafe_wakeups(loop, watchdog):
    n_threads = 8
    # Many threads each wait for the loop to answer before sending again:
    # every wake-up must be delivered or the test hangs (caught by the
    # watchdog).
    rounds = 50
    done = [0]

    def ping(reply):
        reply.set()

    def worker():
        for _ in range(rounds):
            ev = threading.Event()
            loop.call_soon_threadsafe(ping, ev)
            if not ev.wait(10):
                return
        loop.call_soon_threadsafe(finished)

    def finished():
        done[0] += 1
        if done[0] == n_threads:
            loop.stop()

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        loop.call_soon(t.start)
    dog = watchdog(loop, 30)
    try:
        loop.run_forever()
    finally:
        for t in threads:
            t.join()
    dog["handle"].cancel()
    assert not dog["fired"]
    assert done[0] == n_threads
