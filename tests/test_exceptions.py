"""Exception handlers, and exceptions raised by callbacks."""

import asyncio
import logging

import pytest


class _DummyLoop:
    """A stand-in loop for building reference asyncio handles."""

    def get_debug(self):
        return False

    def _timer_handle_cancelled(self, handle):
        pass


def callback_source(cb, *args):
    """asyncio's text for a callback, e.g. ``'cb() at file.py:12'``."""
    return repr(asyncio.Handle(cb, args, _DummyLoop()))[len("<Handle "):-1]


def asyncio_records(caplog):
    return [r for r in caplog.records if r.name == "asyncio"]


# --- set/get_exception_handler -----------------------------------------

def test_exception_handler_default_none(loop):
    assert loop.get_exception_handler() is None


def test_set_get_exception_handler(loop):
    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize("bad", [1, "handler", object()])
def test_set_exception_handler_not_callable(loop, bad):
    with pytest.raises(TypeError,
                       match="A callable object or None is expected"):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is None


# --- default_exception_handler / call_exception_handler ------------------

def test_default_exception_handler_logs(loop, caplog):
    exc = ValueError("bad value")
    loop.default_exception_handler({"message": "Something broke",
                                    "exception": exc})
    records = asyncio_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage() == "Something broke"
    assert records[0].exc_info[1] is exc


def test_default_exception_handler_extra_keys(loop, caplog):
    loop.default_exception_handler({"message": "Oops", "zeta": 1,
                                    "alpha": "two"})
    records = asyncio_records(caplog)
    assert len(records) == 1
    assert records[0].getMessage() == "Oops\nalpha: 'two'\nzeta: 1"
    assert not records[0].exc_info


def test_default_exception_handler_no_message(loop, caplog):
    loop.default_exception_handler({})
    records = asyncio_records(caplog)
    assert [r.getMessage() for r in records] == [
        "Unhandled exception in event loop"
    ]


def test_call_exception_handler_default(loop, caplog):
    exc = RuntimeError("via call_exception_handler")
    loop.call_exception_handler({"message": "Custom context",
                                 "exception": exc})
    records = asyncio_records(caplog)
    assert len(records) == 1
    assert records[0].getMessage() == "Custom context"
    assert records[0].exc_info[1] is exc


def test_call_exception_handler_custom(loop, caplog):
    received = []
    loop.set_exception_handler(lambda lp, ctx: received.append((lp, ctx)))
    ctx = {"message": "hello", "exception": KeyError("k"), "extra": 1}
    loop.call_exception_handler(ctx)
    assert len(received) == 1
    assert received[0][0] is loop
    assert received[0][1] == ctx
    assert asyncio_records(caplog) == []


def test_exception_handler_that_raises_is_logged(loop, caplog):
    boom = ZeroDivisionError("handler failed")

    def handler(lp, ctx):
        raise boom

    loop.set_exception_handler(handler)
    loop.call_exception_handler({"message": "original"})  # no propagation
    records = asyncio_records(caplog)
    assert len(records) == 1
    msg = records[0].getMessage()
    assert msg.startswith("Unhandled error in exception handler")
    assert "original" in msg
    assert records[0].exc_info[1] is boom


def test_exception_handler_that_raises_for_callback(loop, caplog,
                                                    run_briefly):
    calls = []

    def handler(lp, ctx):
        raise RuntimeError("handler failed")

    def bad():
        raise ValueError("callback failed")

    loop.set_exception_handler(handler)
    loop.call_soon(bad)
    loop.call_soon(calls.append, "still running")
    run_briefly(loop)
    assert calls == ["still running"]
    records = asyncio_records(caplog)
    assert len(records) == 1
    assert records[0].getMessage().startswith(
        "Unhandled error in exception handler")
    assert isinstance(records[0].exc_info[1], RuntimeError)


# --- callbacks that raise ------------------------------------------------

def failing_callback(arg):
    raise ValueError(f"failed with {arg}")


def test_callback_exception_goes_to_handler(loop, run_briefly):
    loop.set_debug(False)  # debug mode formats the callback differently
    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    h = loop.call_soon(failing_callback, 1)
    loop.call_soon(calls.append, "next")
    run_briefly(loop)
    assert calls == ["next"]
    assert len(contexts) == 1
    ctx = contexts[0]
    assert {"message", "exception", "handle"} <= set(ctx)
    assert ctx["message"] == (
        "Exception in callback " + callback_source(failing_callback, 1)
    )
    assert ctx["message"].startswith("Exception in callback ")
    assert "failing_callback" in ctx["message"]
    assert isinstance(ctx["exception"], ValueError)
    assert str(ctx["exception"]) == "failed with 1"
    assert ctx["exception"].__traceback__ is not None
    assert ctx["handle"] is h


def test_timer_callback_exception_goes_to_handler(loop, run_briefly):
    loop.set_debug(False)  # debug mode formats the callback differently
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    h = loop.call_later(-1, failing_callback, 2)
    run_briefly(loop)
    assert len(contexts) == 1
    assert contexts[0]["handle"] is h
    assert contexts[0]["message"] == (
        "Exception in callback " + callback_source(failing_callback, 2)
    )
    assert isinstance(contexts[0]["exception"], ValueError)


def test_threadsafe_callback_exception_goes_to_handler(loop, run_briefly):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    h = loop.call_soon_threadsafe(failing_callback, 3)
    run_briefly(loop)
    assert len(contexts) == 1
    assert contexts[0]["handle"] is h
    assert isinstance(contexts[0]["exception"], ValueError)


def test_callback_exception_default_handler_logs(loop, caplog,
                                                 run_briefly):
    calls = []
    loop.call_soon(failing_callback, 3)
    loop.call_soon(calls.append, "next")
    run_briefly(loop)
    assert calls == ["next"]
    records = asyncio_records(caplog)
    assert len(records) == 1
    msg = records[0].getMessage()
    assert msg.startswith("Exception in callback ")
    assert "failing_callback" in msg
    assert "\nhandle: <Handle " in msg
    exc = records[0].exc_info[1]
    assert isinstance(exc, ValueError)
    assert str(exc) == "failed with 3"


def test_callback_base_exception_goes_to_handler(loop, run_briefly):
    class CustomBase(BaseException):
        pass

    def raise_custom():
        raise CustomBase()

    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    loop.call_soon(raise_custom)
    loop.call_soon(calls.append, "next")
    run_briefly(loop)
    assert calls == ["next"]
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], CustomBase)


def test_many_failing_callbacks(loop, run_briefly):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    for i in range(100):
        loop.call_soon(failing_callback, i)
    run_briefly(loop)
    assert [str(c["exception"]) for c in contexts] == [
        f"failed with {i}" for i in range(100)
    ]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_propagates_from_run_forever(loop, exc_type):
    contexts = []
    calls = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def fatal():
        raise exc_type()

    loop.call_soon(calls.append, "before")
    loop.call_soon(fatal)
    loop.call_soon(calls.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    assert calls == ["before"]
    assert contexts == []
    # The loop can run again; the rest of the interrupted batch runs then,
    # exactly once.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["before", "after"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["before", "after"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_propagates_from_timer(loop, exc_type):
    def fatal():
        raise exc_type()

    loop.call_later(0.001, fatal)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0.001, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_propagates_from_run_until_complete(loop, exc_type):
    def fatal():
        raise exc_type()

    fut = loop.create_future()
    loop.call_soon(fatal)
    with pytest.raises(exc_type):
        loop.run_until_complete(fut)
    assert not loop.is_running()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_from_coroutine(loop, exc_type):
    async def main():
        await asyncio.sleep(0)
        raise exc_type()

    with pytest.raises(exc_type):
        loop.run_until_complete(main())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_from_exception_handler(loop, exc_type):
    def handler(lp, ctx):
        raise exc_type()

    loop.set_exception_handler(handler)
    with pytest.raises(exc_type):
        loop.call_exception_handler({"message": "x"})
    loop.call_soon(failing_callback, 0)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_fatal_exception_keeps_rest_of_due_timers(loop, exc_type):
    calls = []
    past = loop.time() - 1

    def fatal():
        calls.append("fatal")
        raise exc_type()

    loop.call_at(past, fatal)
    loop.call_at(past + 0.1, calls.append, "timer")
    loop.call_at(past + 0.2, calls.append, "timer2")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert calls == ["fatal"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["fatal", "timer", "timer2"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ["fatal", "timer", "timer2"]
