"""The ways in: asyncio.run/Runner with a factory, policies, cloop's API."""

import asyncio
import gc
import re
import sys
import warnings

import pytest


def loop_type(loop_name):
    if loop_name == "asyncio":
        return asyncio.SelectorEventLoop
    import cloop
    return cloop.Loop


async def running_loop():
    await asyncio.sleep(0)
    return asyncio.get_running_loop()


class restore_policy:
    """Put back the event loop policy on exit (policies warn on 3.14)."""

    def __enter__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.policy = asyncio.get_event_loop_policy()
        return self

    def __exit__(self, *exc):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(self.policy)


# --- both loops ----------------------------------------------------------

def test_is_abstract_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio.run(loop_factory=) is new in 3.12")
def test_asyncio_run_loop_factory(loop_factory, loop_name):
    lp = asyncio.run(running_loop(), loop_factory=loop_factory)
    assert type(lp) is loop_type(loop_name)
    assert lp.is_closed()


def test_asyncio_runner_loop_factory(loop_factory, loop_name):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        lp = runner.get_loop()
        assert type(lp) is loop_type(loop_name)
        assert runner.run(running_loop()) is lp
        assert runner.run(running_loop()) is lp
    assert lp.is_closed()


def test_asyncio_runner_debug(loop_factory):
    with asyncio.Runner(loop_factory=loop_factory, debug=True) as runner:
        assert runner.get_loop().get_debug() is True


def test_asyncio_runner_cancels_leftover_tasks(loop_factory):
    cancelled = []

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main():
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    assert cancelled == [True]


def test_asyncio_runner_shuts_down_asyncgens(loop_factory):
    closed = []

    async def agen():
        try:
            yield 1
        finally:
            closed.append(True)

    keep = []

    async def main():
        g = agen()
        keep.append(g)
        await g.__anext__()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    assert closed == [True]


def test_unclosed_loop_resource_warning(loop_factory):
    lp = loop_factory()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


def test_unclosed_loop_that_ran_resource_warning(loop_factory):
    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    lp.call_later(3600, print)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()


def test_closed_loop_no_resource_warning(loop_factory):
    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lp
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] \
        == []


def test_loop_repr(loop):
    r = repr(loop)
    assert r.startswith("<")
    assert "running=False" in r
    assert "closed=False" in r
    assert f"debug={loop.get_debug()}" in r
    loop.close()
    assert "closed=True" in repr(loop)


# --- cloop's own API -----------------------------------------------------

def test_cloop_new_event_loop(cloop_mod):
    lp = cloop_mod.new_event_loop()
    try:
        assert isinstance(lp, cloop_mod.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert issubclass(cloop_mod.Loop, asyncio.AbstractEventLoop)
        assert not lp.is_running()
        assert not lp.is_closed()
    finally:
        lp.close()


def test_cloop_loops_are_independent(cloop_mod):
    a = cloop_mod.new_event_loop()
    b = cloop_mod.new_event_loop()
    try:
        assert a is not b
        calls = []
        a.call_soon(calls.append, "a")
        b.call_soon(calls.append, "b")
        b.call_soon(b.stop)
        b.run_forever()
        assert calls == ["b"]
        a.call_soon(a.stop)
        a.run_forever()
        assert calls == ["b", "a"]
    finally:
        a.close()
        b.close()


def test_cloop_run(cloop_mod):
    lp = cloop_mod.run(running_loop())
    assert isinstance(lp, cloop_mod.Loop)
    assert lp.is_closed()


def test_cloop_run_returns_and_raises(cloop_mod):
    async def value():
        return 42

    async def fail():
        raise LookupError("nope")

    assert cloop_mod.run(value()) == 42
    with pytest.raises(LookupError, match="nope"):
        cloop_mod.run(fail())


def test_cloop_run_debug_kwarg(cloop_mod):
    async def debug_flag():
        return asyncio.get_running_loop().get_debug()

    assert cloop_mod.run(debug_flag(), debug=True) is True
    assert cloop_mod.run(debug_flag(), debug=False) is False


def test_cloop_run_inside_running_loop(cloop_mod):
    async def outer():
        coro = running_loop()
        try:
            with pytest.raises(RuntimeError):
                cloop_mod.run(coro)
        finally:
            coro.close()

    cloop_mod.run(outer())


def test_cloop_run_not_a_coroutine(cloop_mod):
    with pytest.raises((TypeError, ValueError)):
        cloop_mod.run(42)


def test_event_loop_policy(cloop_mod):
    with restore_policy():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = cloop_mod.EventLoopPolicy()
            assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
            asyncio.set_event_loop_policy(policy)
            lp = asyncio.new_event_loop()
        try:
            assert isinstance(lp, cloop_mod.Loop)
        finally:
            lp.close()
        assert isinstance(asyncio.run(running_loop()), cloop_mod.Loop)
        with asyncio.Runner() as runner:
            assert isinstance(runner.get_loop(), cloop_mod.Loop)


def test_event_loop_policy_new_loop(cloop_mod):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = cloop_mod.EventLoopPolicy()
        lp = policy.new_event_loop()
    try:
        assert isinstance(lp, cloop_mod.Loop)
    finally:
        lp.close()


def test_install(cloop_mod):
    with restore_policy():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cloop_mod.install()
            policy = asyncio.get_event_loop_policy()
        assert isinstance(policy, cloop_mod.EventLoopPolicy)
        assert isinstance(asyncio.run(running_loop()), cloop_mod.Loop)


def test_features(cloop_mod):
    f = cloop_mod.features()
    assert isinstance(f, dict)
    assert isinstance(f["libuv_version"], str)
    assert re.fullmatch(r"\d+\.\d+\.\d+", f["libuv_version"])
    assert isinstance(f["io_uring_available"], bool)
    assert isinstance(f["io_uring_enabled"], bool)
    assert isinstance(f["build_type"], str)
    assert f["build_type"]
    # io_uring cannot be enabled where it is unavailable.
    if not f["io_uring_available"]:
        assert not f["io_uring_enabled"]


def test_features_is_a_fresh_dict(cloop_mod):
    f = cloop_mod.features()
    f["libuv_version"] = "mutated"
    assert cloop_mod.features()["libuv_version"] != "mutated"


def test_cloop_handle_methods(cloop_mod):
    lp = cloop_mod.new_event_loop()
    try:
        h = lp.call_soon(print)
        t = lp.call_later(10, print)
        for handle in (h, t):
            for name in ("cancel", "cancelled", "get_context"):
                assert callable(getattr(handle, name))
        assert callable(t.when)
        h.cancel()
        t.cancel()
    finally:
        lp.close()
