"""run_in_executor, default executor shutdown and async generator hooks."""

import asyncio
import concurrent.futures
import gc
import sys
import threading

import pytest


# --- run_in_executor -----------------------------------------------------

def test_run_in_executor_default(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident()

    result, tid = loop.run_until_complete(loop.run_in_executor(None, work,
                                                               2, 3))
    assert result == 5
    assert tid != main_thread
    loop.run_until_complete(loop.shutdown_default_executor())


def test_run_in_executor_returns_asyncio_future(loop):
    fut = loop.run_in_executor(None, lambda: "x")
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert loop.run_until_complete(fut) == "x"
    loop.run_until_complete(loop.shutdown_default_executor())


def test_run_in_executor_exception(loop):
    def fail():
        raise KeyError("in thread")

    with pytest.raises(KeyError, match="in thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail))
    loop.run_until_complete(loop.shutdown_default_executor())


def test_run_in_executor_custom(loop):
    names = []
    with concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="custom-pool") as pool:
        def work():
            names.append(threading.current_thread().name)
            return "custom"

        assert loop.run_until_complete(
            loop.run_in_executor(pool, work)) == "custom"
    assert names[0].startswith("custom-pool")


def test_run_in_executor_wakes_idle_loop(loop, watchdog):
    # The loop blocks with nothing scheduled; only the executor's result
    # can wake it.
    fut = loop.run_in_executor(None, lambda: "woke")
    fut.add_done_callback(lambda f: loop.stop())
    dog = watchdog(loop)
    loop.run_forever()
    dog["handle"].cancel()
    assert not dog["fired"]
    assert fut.result() == "woke"
    loop.run_until_complete(loop.shutdown_default_executor())


def test_set_default_executor(loop):
    names = []
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="default-pool")
    loop.set_default_executor(pool)

    def work():
        names.append(threading.current_thread().name)

    loop.run_until_complete(loop.run_in_executor(None, work))
    assert names[0].startswith("default-pool")
    loop.run_until_complete(loop.shutdown_default_executor())


def test_set_default_executor_wrong_type(loop):
    class NotAThreadPool(concurrent.futures.Executor):
        pass

    with pytest.raises(TypeError,
                       match="executor must be ThreadPoolExecutor"):
        loop.set_default_executor(NotAThreadPool())


def test_shutdown_default_executor_then_run_in_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, lambda: None))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError,
                       match="^Executor shutdown has been called$"):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_without_executor(loop):
    # Nothing was ever submitted: shutting down is a no-op, and later use
    # of the default executor is refused.
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError,
                       match="^Executor shutdown has been called$"):
        loop.run_in_executor(None, print)


def test_shutdown_default_executor_custom_still_usable(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        assert loop.run_until_complete(
            loop.run_in_executor(pool, lambda: "ok")) == "ok"


def test_shutdown_default_executor_waits_for_work(loop):
    done = []

    def work():
        threading.Event().wait(0.02)
        done.append(True)

    loop.run_in_executor(None, work)
    loop.run_until_complete(loop.shutdown_default_executor())
    assert done == [True]


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="shutdown_default_executor(timeout=) is new in "
                           "3.12")
def test_shutdown_default_executor_timeout_not_reached(loop):
    loop.run_in_executor(None, threading.Event().wait, 0.01)
    loop.run_until_complete(loop.shutdown_default_executor(timeout=30))
    with pytest.raises(RuntimeError, match="Executor shutdown has been"):
        loop.run_in_executor(None, print)


@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="3.12's asyncio waits for the executor before "
                           "applying the timeout")
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()
    loop.run_in_executor(None, release.wait, 30)
    try:
        with pytest.warns(RuntimeWarning,
                          match="did not finish(ing)? joining its threads "
                                "within 0.05 seconds"):
            loop.run_until_complete(
                loop.shutdown_default_executor(timeout=0.05))
    finally:
        release.set()
    with pytest.raises(RuntimeError, match="Executor shutdown has been"):
        loop.run_in_executor(None, print)


# --- async generators -----------------------------------------------------

def test_asyncgen_hooks_installed_while_running(loop):
    def firstiter(agen):
        pass

    def finalizer(agen):
        pass

    old = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        seen = []
        loop.call_soon(lambda: seen.append(sys.get_asyncgen_hooks()))
        loop.call_soon(loop.stop)
        loop.run_forever()
        inside = seen[0]
        assert inside.firstiter is not None
        assert inside.finalizer is not None
        assert inside.firstiter is not firstiter
        assert inside.finalizer is not finalizer
        # Restored after the loop stops.
        after = sys.get_asyncgen_hooks()
        assert after.firstiter is firstiter
        assert after.finalizer is finalizer
    finally:
        sys.set_asyncgen_hooks(*old)


def test_asyncgen_hooks_restored_after_exception(loop):
    old = sys.get_asyncgen_hooks()

    def fatal():
        raise KeyboardInterrupt

    loop.call_soon(fatal)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == old


def test_shutdown_asyncgens_finalizes(loop):
    events = []

    async def agen():
        try:
            events.append("start")
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)
            events.append("finalized")

    gens = []

    async def main():
        g = agen()
        gens.append(g)
        assert await g.__anext__() == 1

    loop.run_until_complete(main())
    assert events == ["start"]
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert events == ["start", "finalized"]
    assert gens[0].ag_frame is None  # closed


def test_shutdown_asyncgens_several(loop):
    closed = []

    async def agen(i):
        try:
            yield i
        finally:
            closed.append(i)

    keep = []

    async def main():
        for i in range(5):
            g = agen(i)
            keep.append(g)
            await g.__anext__()

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(closed) == list(range(5))


def test_shutdown_asyncgens_error_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def agen():
        try:
            yield 1
        finally:
            raise ValueError("in aclose")

    keep = []

    async def main():
        g = agen()
        keep.append(g)
        await g.__anext__()

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(contexts) == 1
    assert contexts[0]["message"].startswith(
        "an error occurred during closing of asynchronous generator")
    assert isinstance(contexts[0]["exception"], ValueError)
    assert contexts[0]["asyncgen"] is keep[0]


def test_asyncgen_after_shutdown_warns(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())

    async def agen():
        yield 1

    async def main():
        g = agen()
        with pytest.warns(ResourceWarning,
                          match="scheduled after loop.shutdown_asyncgens"):
            assert await g.__anext__() == 1
        await g.aclose()

    loop.run_until_complete(main())


def test_asyncgen_garbage_collected_while_running(loop):
    events = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("finalized")

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        del g
        gc.collect()
        # The finalizer hook schedules aclose() on the loop.
        for _ in range(5):
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert events == ["finalized"]


def test_asyncgen_fully_consumed_not_tracked(loop):
    async def agen():
        yield 1

    async def main():
        return [x async for x in agen()]

    assert loop.run_until_complete(main()) == [1]
    loop.run_until_complete(loop.shutdown_asyncgens())
