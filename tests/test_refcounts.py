"""Reference counts of user objects, and memory held by cancelled timers."""

import contextvars
import gc
import signal
import sys
import tracemalloc

import pytest

SCHEDULERS = {
    "call_soon": lambda lp, delay, cb, *a, **kw: lp.call_soon(cb, *a, **kw),
    "call_soon_threadsafe":
        lambda lp, delay, cb, *a, **kw: lp.call_soon_threadsafe(cb, *a, **kw),
    "call_later": lambda lp, delay, cb, *a, **kw:
        lp.call_later(delay, cb, *a, **kw),
    "call_at": lambda lp, delay, cb, *a, **kw:
        lp.call_at(lp.time() + delay, cb, *a, **kw),
}


def refcounts(objs):
    gc.collect()
    return [sys.getrefcount(o) for o in objs]


def make_callback(raises):
    calls = []

    def callback(*args):
        calls.append(len(args))
        if raises:
            raise ValueError("callback failed")

    return callback, calls


@pytest.mark.parametrize("nargs", [0, 1, 3, 9])
@pytest.mark.parametrize("outcome", ["ran", "cancelled", "raised"])
@pytest.mark.parametrize("method", sorted(SCHEDULERS))
def test_callback_and_args_released(loop, run_briefly, method, outcome,
                                    nargs):
    loop.set_exception_handler(lambda lp, ctx: None)
    callback, calls = make_callback(raises=outcome == "raised")
    args = [object() for _ in range(nargs)]
    ctx = contextvars.copy_context()
    tracked = [callback, ctx, *args]
    before = refcounts(tracked)

    # Cancelled timers are far in the future so they stay in the heap.
    delay = 3600.0 if outcome == "cancelled" else -1.0
    h = SCHEDULERS[method](loop, delay, callback, *args, context=ctx)
    if outcome == "cancelled":
        h.cancel()
    run_briefly(loop)
    del h
    assert calls == ([] if outcome == "cancelled" else [nargs])
    assert refcounts(tracked) == before


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_cancelled_timer_releases_without_running(loop, method):
    # A cancelled timer lets go of its callback and arguments at once
    # (asyncio clears them in cancel()), even while the loop is not running
    # and the timer is still in the heap.
    callback, calls = make_callback(raises=False)
    arg = object()
    before = refcounts([callback, arg])
    h = SCHEDULERS[method](loop, 3600.0, callback, arg)
    h.cancel()
    assert refcounts([callback, arg]) == before
    assert calls == []


def test_handle_kept_alive_by_user_releases_args_after_run(loop,
                                                           run_briefly):
    callback, calls = make_callback(raises=False)
    arg = object()
    before = refcounts([callback, arg])
    h = loop.call_soon(callback, arg)
    run_briefly(loop)
    assert calls == [1]
    # asyncio's Handle keeps its callback until cancelled or collected;
    # what matters is that nothing is left once the handle is gone.
    h.cancel()
    del h
    assert refcounts([callback, arg]) == before


def test_unrun_callbacks_released_on_close(loop_factory):
    callback, calls = make_callback(raises=False)
    arg = object()
    before = refcounts([callback, arg])
    lp = loop_factory()
    lp.call_soon(callback, arg)
    lp.call_later(3600, callback, arg)
    lp.close()
    del lp
    assert refcounts([callback, arg]) == before
    assert calls == []


def test_exception_handler_released(loop):
    def handler(lp, ctx):
        pass

    before = refcounts([handler])
    loop.set_exception_handler(handler)
    loop.set_exception_handler(None)
    assert refcounts([handler]) == before


def test_task_factory_released(loop):
    def factory(lp, coro, **kw):
        raise AssertionError("not called")

    before = refcounts([factory])
    loop.set_task_factory(factory)
    loop.set_task_factory(None)
    assert refcounts([factory]) == before


def test_signal_handler_released(loop):
    callback, _ = make_callback(raises=False)
    arg = object()
    before = refcounts([callback, arg])
    loop.add_signal_handler(signal.SIGUSR1, callback, arg)
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert refcounts([callback, arg]) == before


def test_run_until_complete_result_released(loop):
    result = object()
    before = refcounts([result])
    fut = loop.create_future()
    loop.call_soon(fut.set_result, result)
    assert loop.run_until_complete(fut) is result
    del fut
    assert refcounts([result]) == before


# --- memory: cancelled timers must not pile up ---------------------------

def slow_build(loop_name):
    """Debug or sanitizer builds, where a million pairs take too long."""
    if hasattr(sys, "gettotalrefcount"):
        return True
    import cloop
    f = cloop.features()
    return f.get("sanitize", "none") != "none" or f["build_type"] == "debug"


def test_cancelled_timers_do_not_accumulate(loop, loop_name, run_briefly):
    loop.set_debug(False)  # debug mode records a traceback per handle
    # sys.getallocatedblocks() counts live pymalloc blocks; a build without
    # pymalloc (sanitizers) reports 0, so measure with tracemalloc there.
    use_tracemalloc = sys.getallocatedblocks() == 0
    if loop_name == "asyncio":
        pairs = 100_000  # asyncio is too slow for more in a quick suite
    elif use_tracemalloc or slow_build(loop_name):
        pairs = 200_000
    else:
        pairs = 1_000_000
    batch = 1000

    def cb():
        pass

    def churn(n_batches):
        call_later = loop.call_later
        for _ in range(n_batches):
            for _ in range(batch):
                call_later(3600.0, cb).cancel()
            run_briefly(loop)

    # A live timer due before the cancelled ones, so they cannot simply be
    # dropped from the top of the heap.
    keeper = loop.call_later(1800.0, print)
    if use_tracemalloc:
        tracemalloc.start()

        def measure():
            return tracemalloc.get_traced_memory()[0]

        limit = pairs  # bytes; a retained timer costs far more than one
    else:
        measure = sys.getallocatedblocks
        limit = pairs // 20  # blocks; a retained timer costs at least one
    try:
        churn(2)  # warm up free lists and the heap's storage
        gc.collect()
        before = measure()
        cb_refs = sys.getrefcount(cb)
        churn(pairs // batch)
        gc.collect()
        growth = measure() - before
    finally:
        if use_tracemalloc:
            tracemalloc.stop()
        keeper.cancel()
    assert growth < limit, f"memory grew by {growth} after {pairs} pairs"
    assert sys.getrefcount(cb) == cb_refs
