"""call_soon, call_soon_threadsafe and the Handle type."""

import asyncio
import contextvars
import functools
import gc
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VAR = contextvars.ContextVar("VAR", default="default")


def has_get_context(loop_name):
    """asyncio's Handle.get_context() is new in 3.12; cloop has it."""
    return loop_name == "cloop" or sys.version_info >= (3, 12)


def test_call_soon_order(loop, run_briefly):
    calls = []
    for i in range(20):
        loop.call_soon(calls.append, i)
    run_briefly(loop)
    assert calls == list(range(20))


def test_call_soon_args(loop, run_briefly):
    calls = []

    def cb(*args):
        calls.append(args)

    loop.call_soon(cb)
    loop.call_soon(cb, 1)
    loop.call_soon(cb, 1, "two", 3.0)
    loop.call_soon(cb, *range(12))
    run_briefly(loop)
    assert calls == [(), (1,), (1, "two", 3.0), tuple(range(12))]


def test_call_soon_keyword_args_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, end="")


def test_call_soon_callables(loop, run_briefly):
    calls = []

    class Obj:
        def method(self, x):
            calls.append(("method", x))

        def __call__(self, x):
            calls.append(("call", x))

    loop.call_soon(Obj().method, 1)
    loop.call_soon(Obj(), 2)
    loop.call_soon(functools.partial(calls.append, ("partial", 3)))
    loop.call_soon(lambda: calls.append(("lambda", 4)))
    run_briefly(loop)
    assert calls == [("method", 1), ("call", 2), ("partial", 3),
                     ("lambda", 4)]


def test_call_soon_return_value_ignored(loop, run_briefly):
    loop.call_soon(lambda: "ignored")
    run_briefly(loop)


def test_call_soon_returns_handle(loop):
    h = loop.call_soon(print)
    assert callable(h.cancel)
    assert h.cancelled() is False
    h.cancel()


def test_call_soon_from_callback_runs_next_iteration(loop, run_briefly):
    calls = []

    def first():
        calls.append("first")
        loop.call_soon(calls.append, "nested")

    loop.call_soon(first)
    loop.call_soon(calls.append, "second")
    run_briefly(loop)
    assert calls == ["first", "second"]
    run_briefly(loop)
    assert calls == ["first", "second", "nested"]


def test_call_soon_chain_does_not_block_timers(loop, watchdog):
    # A callback that keeps re-scheduling itself must not starve timers.
    count = [0]

    def spin():
        count[0] += 1
        loop.call_soon(spin)

    loop.call_soon(spin)
    loop.call_later(0.01, loop.stop)
    dog = watchdog(loop)
    loop.run_forever()
    dog["handle"].cancel()
    assert not dog["fired"]
    assert count[0] > 1


def test_call_soon_context(loop, loop_name, run_briefly):
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "in-ctx")

    def cb(tag):
        seen.append((tag, VAR.get()))

    h = loop.call_soon(cb, "explicit", context=ctx)
    loop.call_soon(cb, "implicit")
    run_briefly(loop)
    assert seen == [("explicit", "in-ctx"), ("implicit", "default")]
    if has_get_context(loop_name):
        assert h.get_context() is ctx


def test_call_soon_context_changes_stay_in_context(loop, run_briefly):
    ctx = contextvars.copy_context()

    def setter():
        VAR.set("changed")

    loop.call_soon(setter, context=ctx)
    loop.call_soon(setter)
    run_briefly(loop)
    assert ctx[VAR] == "changed"
    assert VAR.get() == "default"


def test_call_soon_copies_current_context(loop, loop_name, run_briefly):
    seen = []
    token = VAR.set("at-schedule-time")
    try:
        h = loop.call_soon(lambda: seen.append(VAR.get()))
    finally:
        VAR.reset(token)
    if has_get_context(loop_name):
        ctx = h.get_context()
        assert isinstance(ctx, contextvars.Context)
        assert ctx[VAR] == "at-schedule-time"
    run_briefly(loop)
    assert seen == ["at-schedule-time"]


def test_call_soon_context_none(loop, loop_name, run_briefly):
    seen = []
    h = loop.call_soon(lambda: seen.append(VAR.get()), context=None)
    if has_get_context(loop_name):
        assert isinstance(h.get_context(), contextvars.Context)
    run_briefly(loop)
    assert seen == ["default"]


def test_cancel_before_run(loop, run_briefly):
    calls = []
    h = loop.call_soon(calls.append, 1)
    loop.call_soon(calls.append, 2)
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert calls == [2]


def test_cancel_twice(loop, run_briefly):
    calls = []
    h = loop.call_soon(calls.append, 1)
    h.cancel()
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert calls == []


def test_cancel_from_callback_in_same_batch(loop, run_briefly):
    calls = []
    handles = {}

    def canceller():
        calls.append("canceller")
        handles["victim"].cancel()

    loop.call_soon(canceller)
    handles["victim"] = loop.call_soon(calls.append, "victim")
    loop.call_soon(calls.append, "after")
    run_briefly(loop)
    assert calls == ["canceller", "after"]
    assert handles["victim"].cancelled()


def test_cancel_after_run(loop, run_briefly):
    calls = []
    h = loop.call_soon(calls.append, 1)
    run_briefly(loop)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    assert calls == [1]


def test_cancel_self_while_running(loop, run_briefly):
    handles = []
    seen = []

    def cb():
        handles[0].cancel()
        seen.append(handles[0].cancelled())

    handles.append(loop.call_soon(cb))
    run_briefly(loop)
    assert seen == [True]


def test_handle_repr_matches_asyncio(loop, run_briefly):
    loop.set_debug(False)  # debug reprs add the creation site
    def my_callback(*args):
        pass

    class Dummy:
        """A stand-in loop for building reference asyncio handles."""

        def get_debug(self):
            return False

        def _timer_handle_cancelled(self, handle):
            pass

    cases = [
        (my_callback, ()),
        (my_callback, (1, "x")),
        (functools.partial(my_callback, 1), (2,)),
        (print, ("hello",)),
    ]
    for cb, args in cases:
        h = loop.call_soon(cb, *args)
        ref = asyncio.Handle(cb, args, Dummy())
        assert repr(h) == repr(ref)
        assert repr(h).startswith("<Handle ")
        assert "my_callback" in repr(h) or "print" in repr(h)
        h.cancel()
        ref.cancel()
        assert repr(h) == repr(ref)
        assert "cancelled" in repr(h)


def test_handle_repr_after_run(loop, run_briefly):
    def my_callback():
        pass

    h = loop.call_soon(my_callback)
    run_briefly(loop)
    r = repr(h)
    assert r.startswith("<Handle ")
    assert "cancelled" not in r


def test_call_soon_non_callable_in_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="a callable object was expected"):
        loop.call_soon(1)


def test_call_soon_threadsafe_from_thread_wakes_idle_loop(loop, watchdog):
    calls = []
    ready = threading.Event()

    def worker():
        ready.wait()
        loop.call_soon_threadsafe(calls.append, "from-thread")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=worker)
    t.start()
    loop.call_soon(ready.set)
    dog = watchdog(loop)
    try:
        loop.run_forever()
    finally:
        t.join()
    dog["handle"].cancel()
    assert not dog["fired"], "the loop did not wake up"
    assert calls == ["from-thread"]


def test_call_soon_threadsafe_before_run(loop, run_briefly):
    calls = []
    t = threading.Thread(
        target=lambda: loop.call_soon_threadsafe(calls.append, 1)
    )
    t.start()
    t.join()
    run_briefly(loop)
    assert calls == [1]


def test_call_soon_threadsafe_order_with_call_soon(loop, run_briefly):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.call_soon_threadsafe(calls.append, 2)
    loop.call_soon(calls.append, 3)
    loop.call_soon_threadsafe(calls.append, 4)

    def inside():
        loop.call_soon(calls.append, 5)
        loop.call_soon_threadsafe(calls.append, 6)
        loop.call_soon(calls.append, 7)

    loop.call_soon(inside)
    run_briefly(loop)
    assert calls == [1, 2, 3, 4]
    run_briefly(loop)
    assert calls == [1, 2, 3, 4, 5, 6, 7]


def test_call_soon_threadsafe_from_thread_happens_before_call_soon(
        loop, run_briefly):
    # A thread's call_soon_threadsafe that completed before the loop's own
    # call_soon is queued before it.
    calls = []

    def from_thread():
        t = threading.Thread(target=loop.call_soon_threadsafe,
                             args=(calls.append, "thread"))
        t.start()
        t.join()
        loop.call_soon(calls.append, "loop")

    loop.call_soon(from_thread)
    run_briefly(loop)
    assert calls == []
    run_briefly(loop)
    assert calls == ["thread", "loop"]


def test_call_soon_threadsafe_returns_handle(loop, run_briefly):
    calls = []
    h = loop.call_soon_threadsafe(calls.append, 1)
    assert h.cancelled() is False
    h.cancel()
    assert h.cancelled()
    run_briefly(loop)
    assert calls == []


def test_call_soon_threadsafe_context(loop, loop_name, run_briefly):
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "ts")
    seen = []
    h = loop.call_soon_threadsafe(lambda: seen.append(VAR.get()),
                                  context=ctx)
    if has_get_context(loop_name):
        assert h.get_context() is ctx
    run_briefly(loop)
    assert seen == ["ts"]


def test_call_soon_threadsafe_many_threads(loop, watchdog):
    n_threads, per_thread = 4, 250
    results = {i: [] for i in range(n_threads)}
    remaining = [n_threads * per_thread]

    def record(tid, i):
        results[tid].append(i)
        remaining[0] -= 1
        if remaining[0] == 0:
            loop.stop()

    def worker(tid):
        for i in range(per_thread):
            loop.call_soon_threadsafe(record, tid, i)

    threads = [threading.Thread(target=worker, args=(i,))
               for i in range(n_threads)]
    for t in threads:
        t.start()
    dog = watchdog(loop)
    try:
        loop.run_forever()
    finally:
        for t in threads:
            t.join()
    dog["handle"].cancel()
    assert not dog["fired"]
    for tid in range(n_threads):
        assert results[tid] == list(range(per_thread))


def test_call_soon_threadsafe_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon_threadsafe(print)


def test_handle_outlives_its_loop(loop_factory):
    lp = loop_factory()
    h = lp.call_soon(print)
    t = lp.call_later(3600, print)
    lp.close()
    del lp
    gc.collect()
    # The handles still work after their loop is closed and dropped.
    assert not h.cancelled()
    h.cancel()
    t.cancel()
    assert h.cancelled() and t.cancelled()
    assert "cancelled" in repr(h) and "cancelled" in repr(t)
    assert isinstance(t.when(), float)


# ---------------------------------------------------------------------------
# Property test: the ready queue against a model of asyncio's semantics.
# ---------------------------------------------------------------------------

@st.composite
def callback_trees(draw):
    n_roots = draw(st.integers(min_value=1, max_value=150))
    n_spawned = draw(st.integers(min_value=0, max_value=250))
    n = n_roots + n_spawned
    # Node n_roots + k is scheduled by a node before it, picked by the
    # fraction, with call_soon_threadsafe when the flag says so.
    spawns = draw(st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.booleans()),
        min_size=n_spawned, max_size=n_spawned,
    ))
    children = [[] for _ in range(n)]
    for k, (frac, threadsafe) in enumerate(spawns):
        node = n_roots + k
        children[int(frac * node)].append((node, threadsafe))
    cancels = [[] for _ in range(n)]
    for canceller, victim in draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
            max_size=n // 4)):
        cancels[canceller].append(victim)
    early = draw(st.sets(st.integers(0, n_roots - 1), max_size=5))
    return n_roots, children, cancels, early


def ready_queue_model(n_roots, children, cancels, early):
    """asyncio's semantics: a pass runs what was queued when it started."""
    queue = list(range(n_roots))
    scheduled = set(queue)
    cancelled = set(early)
    log = []
    iteration = 0
    while queue:
        batch, queue = queue, []
        for node in batch:
            if node in cancelled:
                continue
            log.append((iteration, node))
            cancelled.update(c for c in cancels[node] if c in scheduled)
            for child, _ in children[node]:
                queue.append(child)
                scheduled.add(child)
        iteration += 1
    return log


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(tree=callback_trees())
def test_ready_queue_matches_model(loop_factory, tree):
    n_roots, children, cancels, early = tree
    lp = loop_factory()
    try:
        handles = {}
        log = []
        iteration = [0]

        def cb(node):
            log.append((iteration[0], node))
            for victim in cancels[node]:
                if victim in handles:
                    handles[victim].cancel()
            for child, threadsafe in children[node]:
                schedule = (lp.call_soon_threadsafe if threadsafe
                            else lp.call_soon)
                handles[child] = schedule(cb, child)

        for node in range(n_roots):
            handles[node] = lp.call_soon(cb, node)
        for node in early:
            handles[node].cancel()
        expected = ready_queue_model(n_roots, children, cancels, early)
        last = expected[-1][0] if expected else 0
        while iteration[0] <= last:
            lp.call_soon(lp.stop)
            lp.run_forever()
            iteration[0] += 1
        assert log == expected
    finally:
        lp.close()
