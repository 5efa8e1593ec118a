"""Debug mode: set_debug, slow callbacks, thread checks, environment."""

import asyncio
import inspect
import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

NON_THREADSAFE = (
    "^Non-thread-safe operation invoked on an event loop other than the "
    "current one$"
)


def default_debug():
    """asyncio's default debug flag for this interpreter."""
    return bool(sys.flags.dev_mode or (
        not sys.flags.ignore_environment
        and os.environ.get("PYTHONASYNCIODEBUG")
    ))


def lineno():
    """The line number of the caller."""
    return inspect.currentframe().f_back.f_lineno


def test_default_debug(loop):
    assert loop.get_debug() is default_debug()


def test_set_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_slow_callback_duration_default(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


def slow_callback():
    time.sleep(0.03)


SLOW_RE = re.compile(
    r"^Executing <(?P<kind>Handle|TimerHandle) .*slow_callback.*> "
    r"took (?P<secs>\d+\.\d{3}) seconds$"
)


def warnings_about_slow(caplog):
    return [r for r in caplog.records
            if r.name == "asyncio" and r.getMessage().startswith("Executing")]


def test_slow_callback_warning(loop, caplog, run_briefly):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(slow_callback)
    run_briefly(loop)
    records = warnings_about_slow(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    m = SLOW_RE.match(records[0].getMessage())
    assert m, records[0].getMessage()
    assert m["kind"] == "Handle"
    assert float(m["secs"]) >= 0.029


def test_slow_timer_callback_warning(loop, caplog, run_briefly):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_later(-1, slow_callback)
    run_briefly(loop)
    records = warnings_about_slow(caplog)
    assert len(records) == 1
    m = SLOW_RE.match(records[0].getMessage())
    assert m, records[0].getMessage()
    assert m["kind"] == "TimerHandle"


def test_slow_task_step_warning_names_the_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_coroutine():
        time.sleep(0.03)
        await asyncio.sleep(0)

    loop.run_until_complete(slow_coroutine())
    messages = [r.getMessage() for r in caplog.records
                if r.name == "asyncio"
                and r.getMessage().startswith("Executing")]
    assert len(messages) == 1
    assert re.match(r"^Executing <Task .*slow_coroutine\(\).*> took "
                    r"\d+\.\d{3} seconds$", messages[0]), messages[0]


def test_no_slow_warning_for_fast_callbacks(loop, caplog, run_briefly):
    loop.set_debug(True)
    loop.slow_callback_duration = 10.0
    loop.call_soon(slow_callback)
    run_briefly(loop)
    assert warnings_about_slow(caplog) == []


def test_no_slow_warning_without_debug(loop, caplog, run_briefly):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.01
    loop.call_soon(slow_callback)
    run_briefly(loop)
    assert warnings_about_slow(caplog) == []


def test_debug_handle_repr_has_creation_site(loop):
    loop.set_debug(True)

    def cb():
        pass

    here = __file__
    h = loop.call_soon(cb); line = lineno()  # noqa: E702
    assert repr(h).endswith(f" created at {here}:{line}>")
    t = loop.call_later(10, cb); line = lineno()  # noqa: E702
    assert repr(t).endswith(f" created at {here}:{line}>")
    h.cancel()
    t.cancel()


def test_debug_exception_context_has_source_traceback(loop, run_briefly):
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad():
        raise ValueError()

    loop.call_soon(bad); line = lineno()  # noqa: E702
    run_briefly(loop)
    assert len(contexts) == 1
    frame = contexts[0]["source_traceback"][-1]
    assert (frame.filename, frame.lineno) == (__file__, line)


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_call_from_other_thread_raises(loop, method):
    loop.set_debug(True)
    errors = []
    calls = []
    done = loop.create_future()
    args = {"call_soon": (calls.append, 1),
            "call_later": (0, calls.append, 1),
            "call_at": (0, calls.append, 1)}[method]

    def worker():
        try:
            getattr(loop, method)(*args)
        except RuntimeError as exc:
            errors.append(exc)
        loop.call_soon_threadsafe(done.set_result, None)

    def start():
        threading.Thread(target=worker).start()

    loop.call_soon(start)
    loop.run_until_complete(asyncio.wait_for(done, 10))
    loop.run_until_complete(asyncio.sleep(0))
    assert len(errors) == 1
    assert re.match(NON_THREADSAFE, str(errors[0]))
    assert calls == []


def test_debug_call_from_other_thread_when_not_running(loop, run_briefly):
    # The thread check applies only while the loop runs.
    loop.set_debug(True)
    calls = []
    t = threading.Thread(target=loop.call_soon, args=(calls.append, 1))
    t.start()
    t.join()
    run_briefly(loop)
    assert calls == [1]


def test_debug_call_soon_threadsafe_from_other_thread_ok(loop):
    loop.set_debug(True)
    done = loop.create_future()

    def worker():
        loop.call_soon_threadsafe(done.set_result, "ok")

    loop.call_soon(lambda: threading.Thread(target=worker).start())
    assert loop.run_until_complete(asyncio.wait_for(done, 10)) == "ok"


async def coroutine_function():
    pass


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_debug_call_soon_coroutine_function(loop, method):
    loop.set_debug(True)
    message = rf"^coroutines cannot be used with {method}\(\)$"
    with pytest.raises(TypeError, match=message):
        getattr(loop, method)(coroutine_function)


def test_debug_call_soon_coroutine_object(loop):
    loop.set_debug(True)
    coro = coroutine_function()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.call_soon(coro)
    finally:
        coro.close()


@pytest.mark.parametrize("method", ["call_later", "call_at"])
def test_debug_timer_coroutine_function(loop, method):
    loop.set_debug(True)
    # asyncio's call_later delegates to call_at and names call_at().
    with pytest.raises(TypeError,
                       match=r"^coroutines cannot be used with "
                             r"call_(at|later)\(\)$"):
        getattr(loop, method)(1, coroutine_function)


def test_debug_non_callable(loop):
    loop.set_debug(True)
    with pytest.raises(
        TypeError,
        match=r"^a callable object was expected by call_soon\(\), got 1$",
    ):
        loop.call_soon(1)


def test_debug_run_in_executor_coroutine_function(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.run_in_executor(None, coroutine_function)


# --- environment: PYTHONASYNCIODEBUG and -X dev --------------------------

CHILD = """
import asyncio, sys
if sys.argv[1] == "cloop":
    import cloop
    loop = cloop.new_event_loop()
else:
    loop = asyncio.SelectorEventLoop()
print(loop.get_debug())
loop.close()
"""


def run_child(loop_name, *flags, env_extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    env.update(env_extra or {})
    out = subprocess.run(
        [sys.executable, *flags, "-c", CHILD, loop_name],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_debug_off_by_default_in_subprocess(loop_name):
    assert run_child(loop_name) == "False"


def test_pythonasynciodebug_env(loop_name):
    assert run_child(loop_name,
                     env_extra={"PYTHONASYNCIODEBUG": "1"}) == "True"


def test_pythonasynciodebug_ignored_with_minus_E(loop_name):
    assert run_child(loop_name, "-E",
                     env_extra={"PYTHONASYNCIODEBUG": "1"}) == "False"


def test_dev_mode(loop_name):
    assert run_child(loop_name, "-X", "dev") == "True"
