"""run_forever, run_until_complete, stop, close, is_running/closed, time."""

import asyncio
import time

import pytest


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 42)
    assert loop.run_until_complete(fut) == 42
    assert not loop.is_running()


def test_run_until_complete_coroutine(loop):
    async def main(x):
        await asyncio.sleep(0)
        assert asyncio.get_running_loop() is loop
        assert loop.is_running()
        return x * 2

    assert loop.run_until_complete(main(21)) == 42
    assert not loop.is_running()


def test_run_until_complete_task(loop):
    async def main():
        return "done"

    task = loop.create_task(main())
    assert loop.run_until_complete(task) == "done"
    assert task.done()


def test_run_until_complete_raises_future_exception(loop):
    async def main():
        await asyncio.sleep(0)
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        loop.run_until_complete(main())


def test_run_until_complete_cancelled(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)


def test_run_until_complete_already_done_future(loop):
    fut = loop.create_future()
    fut.set_result("ready")
    assert loop.run_until_complete(fut) == "ready"


def test_run_until_complete_non_awaitable(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)


def test_run_until_complete_future_of_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError, match="different loop"):
            loop.run_until_complete(fut)
        assert not loop.is_running()
        # The loop is still usable.
        assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        other.close()


def test_run_until_complete_stopped_before_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(
        RuntimeError, match=r"^Event loop stopped before Future completed\.$"
    ):
        loop.run_until_complete(fut)
    assert not fut.done()
    # The loop can be run again and the future completed.
    loop.call_soon(fut.set_result, 1)
    assert loop.run_until_complete(fut) == 1


def test_run_until_complete_stopped_task_is_resumable(loop):
    steps = []

    async def main():
        steps.append(1)
        loop.stop()
        await asyncio.sleep(0)
        steps.append(2)
        return "finished"

    task = loop.create_task(main())
    with pytest.raises(RuntimeError, match="stopped before Future completed"):
        loop.run_until_complete(task)
    assert steps == [1]
    assert loop.run_until_complete(task) == "finished"
    assert steps == [1, 2]


def test_run_forever_stop_from_callback(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [1]
    assert not loop.is_running()


def test_run_forever_returns_none(loop):
    loop.call_soon(loop.stop)
    assert loop.run_forever() is None


def test_stop_before_run_runs_one_iteration(loop):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "next-iteration")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    loop.stop()
    loop.run_forever()
    assert calls == ["first", "second"]
    # The callback queued during that iteration runs on the next run.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["first", "second", "next-iteration"]


def test_stop_before_run_with_nothing_scheduled(loop):
    loop.stop()
    loop.run_forever()  # returns after a single (empty) iteration
    assert not loop.is_running()


def test_stop_inside_batch_finishes_batch(loop):
    calls = []

    def stopper():
        calls.append("stop")
        loop.stop()
        loop.call_soon(calls.append, "queued-during-batch")

    loop.call_soon(calls.append, "a")
    loop.call_soon(stopper)
    loop.call_soon(calls.append, "b")
    loop.call_soon(calls.append, "c")
    loop.run_forever()
    assert calls == ["a", "stop", "b", "c"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["a", "stop", "b", "c", "queued-during-batch"]


def test_stop_twice_in_batch(loop):
    calls = []
    loop.call_soon(loop.stop)
    loop.call_soon(loop.stop)
    loop.call_soon(calls.append, 1)
    loop.run_forever()
    assert calls == [1]
    # The stop flag does not leak into the next run.
    loop.call_soon(calls.append, 2)
    loop.call_soon(loop.stop)
    loop.call_soon(calls.append, 3)
    loop.run_forever()
    assert calls == [1, 2, 3]


def test_stop_flag_reset_after_run(loop, watchdog):
    loop.stop()
    loop.run_forever()
    # A fresh run must not stop immediately: it waits for the timer.
    fired = []
    loop.call_later(0.01, lambda: (fired.append(1), loop.stop()))
    dog = watchdog(loop)
    loop.run_forever()
    dog["handle"].cancel()
    assert fired == [1]
    assert not dog["fired"]


def test_is_running(loop):
    seen = []
    assert not loop.is_running()
    loop.call_soon(lambda: seen.append(loop.is_running()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [True]
    assert not loop.is_running()


def test_is_closed(loop_factory):
    lp = loop_factory()
    assert not lp.is_closed()
    lp.close()
    assert lp.is_closed()


def test_close_twice(loop_factory):
    lp = loop_factory()
    lp.close()
    lp.close()
    assert lp.is_closed()


def test_close_running_loop(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))

    loop.call_soon(try_close)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]
    assert not loop.is_closed()


def test_close_with_pending_callbacks_and_timers(loop_factory):
    lp = loop_factory()
    calls = []
    lp.call_soon(calls.append, 1)
    lp.call_later(3600, calls.append, 2)
    lp.close()
    assert lp.is_closed()
    assert calls == []


CLOSED = "^Event loop is closed$"


@pytest.mark.parametrize(
    "method, args",
    [
        ("call_soon", (print,)),
        ("call_later", (1, print)),
        ("call_at", (1, print)),
        ("call_soon_threadsafe", (print,)),
        ("run_forever", ()),
        ("run_in_executor", (None, print)),
    ],
)
def test_closed_loop_methods_raise(loop, method, args):
    loop.close()
    with pytest.raises(RuntimeError, match=CLOSED):
        getattr(loop, method)(*args)


def test_closed_loop_run_until_complete(loop):
    loop.close()
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(RuntimeError, match=CLOSED):
            loop.run_until_complete(coro)
    finally:
        coro.close()


def test_closed_loop_create_task(loop):
    loop.close()
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(RuntimeError, match=CLOSED):
            loop.create_task(coro)
    finally:
        coro.close()


def test_closed_loop_still_answers_queries(loop):
    loop.close()
    assert loop.is_closed()
    assert not loop.is_running()
    assert isinstance(loop.time(), float)
    assert loop.get_debug() in (True, False)
    loop.stop()  # allowed, a no-op


def test_time_is_monotonic_clock(loop):
    for _ in range(100):
        t1 = time.monotonic()
        now = loop.time()
        t2 = time.monotonic()
        assert isinstance(now, float)
        assert t1 <= now <= t2


def test_time_inside_running_loop(loop):
    samples = []

    def sample():
        t1 = time.monotonic()
        now = loop.time()
        t2 = time.monotonic()
        samples.append((t1, now, t2))

    loop.call_soon(sample)
    loop.call_later(0.001, sample)
    loop.call_later(0.002, loop.stop)
    loop.run_forever()
    assert len(samples) == 2
    for t1, now, t2 in samples:
        assert t1 <= now <= t2


def test_run_forever_while_running(loop):
    errors = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))

    loop.call_soon(nested)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


def test_run_until_complete_while_running(loop):
    errors = []

    def nested():
        fut = loop.create_future()
        try:
            loop.run_until_complete(fut)
        except RuntimeError as exc:
            errors.append(str(exc))

    loop.call_soon(nested)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert errors == ["This event loop is already running"]


def test_run_until_complete_in_coroutine(loop):
    async def main():
        fut = loop.create_future()
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_until_complete(fut)
        return "ok"

    assert loop.run_until_complete(main()) == "ok"


@pytest.mark.parametrize("how", ["run_forever", "run_until_complete"])
def test_run_other_loop_while_one_runs(loop, loop_factory, how):
    # One attempt per outer run: CPython 3.13.0's run_forever clears the
    # running loop when its own setup fails, which would skew a second try.
    other = loop_factory()
    errors = []

    def nested():
        try:
            if how == "run_forever":
                other.run_forever()
            else:
                other.run_until_complete(other.create_future())
        except RuntimeError as exc:
            errors.append(str(exc))

    try:
        loop.call_soon(loop.stop)
        loop.call_soon(nested)
        loop.run_forever()
        assert errors == [
            "Cannot run the event loop while another loop is running"
        ]
        assert not other.is_running()
        # Once the first loop has returned, the other one runs fine.
        assert other.run_until_complete(asyncio.sleep(0, "ok")) == "ok"
    finally:
        other.close()


def test_running_loop_is_set_and_cleared(loop):
    seen = []
    loop.call_soon(lambda: seen.append(asyncio.get_running_loop()))
    loop.call_soon(lambda: seen.append(asyncio._get_running_loop()))
    loop.call_soon(loop.stop)
    assert asyncio._get_running_loop() is None
    loop.run_forever()
    assert seen == [loop, loop]
    assert asyncio._get_running_loop() is None


def test_run_many_times(loop):
    for i in range(50):
        assert loop.run_until_complete(asyncio.sleep(0, i)) == i


def test_loops_run_one_after_another(loop_factory):
    loops = [loop_factory() for _ in range(3)]
    try:
        for i, lp in enumerate(loops):
            assert lp.run_until_complete(asyncio.sleep(0.001, i)) == i
        for i, lp in enumerate(loops):
            assert lp.run_until_complete(asyncio.sleep(0, i)) == i
    finally:
        for lp in loops:
            lp.close()


def test_run_until_complete_done_callback_removed(loop):
    # After run_until_complete returns, the loop's internal done callback
    # is detached: completing the future later must not stop a later run.
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError):
        loop.run_until_complete(fut)
    calls = []

    def third():
        calls.append("third")
        loop.stop()

    def finish():
        fut.set_result(None)
        # A stale done callback would stop the loop in the next iteration,
        # before third() runs two iterations later.
        loop.call_soon(loop.call_soon, third)

    loop.call_soon(finish)
    loop.run_forever()
    assert calls == ["third"]
