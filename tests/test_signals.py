"""add_signal_handler / remove_signal_handler and Ctrl-C."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest


def test_signal_handler_runs(loop):
    calls = []
    done = loop.create_future()

    def handler(*args):
        calls.append(args)
        done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, handler, "a", 2)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert calls == [("a", 2)]
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True


def test_signal_wakes_idle_loop(loop, watchdog):
    calls = []

    def handler():
        calls.append("signal")
        loop.stop()

    def send():
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    loop.add_signal_handler(signal.SIGUSR1, handler)
    t = threading.Thread(target=send)
    try:
        loop.call_soon(t.start)
        dog = watchdog(loop)
        loop.run_forever()
        dog["handle"].cancel()
        assert not dog["fired"], "the signal did not wake the loop"
        assert calls == ["signal"]
    finally:
        t.join()
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_runs_as_callback_not_inline(loop):
    # The handler runs later, from the loop, not inside os.kill().
    calls = []
    done = loop.create_future()

    def handler():
        calls.append("handler")
        done.set_result(None)

    def send():
        os.kill(os.getpid(), signal.SIGUSR1)
        calls.append("after kill")

    loop.add_signal_handler(signal.SIGUSR1, handler)
    try:
        loop.call_soon(send)
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert calls == ["after kill", "handler"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_signal_handler_replaced(loop):
    calls = []
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, calls.append, "first")
    loop.add_signal_handler(signal.SIGUSR1,
                            lambda: (calls.append("second"),
                                     done.set_result(None)))
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert calls == ["second"]
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True


def test_two_signals(loop):
    calls = []
    done = loop.create_future()

    def on(sig):
        calls.append(sig)
        if len(calls) == 2:
            done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, on, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, on, "usr2")
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR2)
        loop.run_until_complete(asyncio.wait_for(done, 10))
        assert calls == ["usr1", "usr2"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        loop.remove_signal_handler(signal.SIGUSR2)
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_signal_handler_exception_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad():
        raise ValueError("from signal handler")

    loop.add_signal_handler(signal.SIGUSR1, bad)
    try:
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert len(contexts) == 1
        assert isinstance(contexts[0]["exception"], ValueError)
        assert contexts[0]["message"].startswith("Exception in callback ")
        assert "handle" in contexts[0]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


def test_remove_signal_handler_return_value(loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_remove_sigint_restores_default_int_handler(loop):
    loop.add_signal_handler(signal.SIGINT, print)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_removes_signal_handlers(loop_factory):
    lp = loop_factory()
    lp.add_signal_handler(signal.SIGUSR1, print)
    lp.add_signal_handler(signal.SIGINT, print)
    lp.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("sig", [0, 1000, -1])
def test_add_signal_handler_invalid_signal(loop, sig):
    with pytest.raises(ValueError, match=f"invalid signal number {sig}"):
        loop.add_signal_handler(sig, print)


@pytest.mark.parametrize("sig", [0, 1000])
def test_remove_signal_handler_invalid_signal(loop, sig):
    with pytest.raises(ValueError, match=f"invalid signal number {sig}"):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("sig", ["SIGUSR1", 1.0, None])
def test_signal_not_an_int(loop, sig):
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.add_signal_handler(sig, print)
    with pytest.raises(TypeError, match="sig must be an int"):
        loop.remove_signal_handler(sig)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signal(loop, sig):
    with pytest.raises(RuntimeError, match=f"sig {int(sig)} cannot be "
                                           "caught"):
        loop.add_signal_handler(sig, print)
    assert loop.remove_signal_handler(sig) is False


async def coroutine_function():
    pass


def test_signal_handler_coroutine_function(loop):
    with pytest.raises(TypeError, match=r"coroutines cannot be used with "
                                        r"add_signal_handler\(\)"):
        loop.add_signal_handler(signal.SIGUSR1, coroutine_function)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_signal_handler_on_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.add_signal_handler(signal.SIGUSR1, print)


def test_add_signal_handler_from_non_main_thread(loop_factory):
    results = {}

    def in_thread():
        lp = loop_factory()
        try:
            async def main():
                try:
                    lp.add_signal_handler(signal.SIGUSR1, print)
                except RuntimeError as exc:
                    results["add"] = exc
                results["remove"] = lp.remove_signal_handler(signal.SIGUSR1)

            lp.run_until_complete(main())
            # Not running, still in the thread.
            try:
                lp.add_signal_handler(signal.SIGUSR2, print)
            except RuntimeError as exc:
                results["add-idle"] = exc
        except BaseException as exc:  # pragma: no cover - reported below
            results["unexpected"] = exc
        finally:
            lp.close()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert "unexpected" not in results, results
    assert isinstance(results.get("add"), RuntimeError)
    assert isinstance(results.get("add-idle"), RuntimeError)
    assert results["remove"] is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


# --- subprocesses: dispositions and Ctrl-C -------------------------------

PRELUDE = """
import asyncio, os, signal, sys
name = sys.argv[1]
if name == "cloop":
    import cloop
    new_loop, run = cloop.new_event_loop, cloop.run
else:
    new_loop, run = asyncio.SelectorEventLoop, asyncio.run

def ready():
    print("ready", flush=True)
"""

CHILDREN = {
    "run_forever": """
loop = new_loop()
loop.call_soon(ready)
try:
    loop.run_forever()
finally:
    loop.close()
""",
    "run_until_complete": """
loop = new_loop()
loop.call_soon(ready)
try:
    loop.run_until_complete(asyncio.sleep(100))
finally:
    loop.close()
""",
    "run": """
async def main():
    ready()
    await asyncio.sleep(100)
run(main())
""",
}


def spawn(code, loop_name):
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code, loop_name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc, timeout):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child did not exit within {timeout} s; "
                    f"stderr:\n{err}")
    return out, err


@pytest.mark.parametrize("mode", sorted(CHILDREN))
def test_ctrl_c_interrupts_idle_loop(loop_name, mode):
    proc = spawn(CHILDREN[mode], loop_name)
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"child did not start: {line!r}\n{err}")
    time.sleep(0.2)  # let the loop settle into its idle wait
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc, timeout=5)
    assert "KeyboardInterrupt" in err, err
    # An uncaught KeyboardInterrupt makes Python die of SIGINT.
    assert proc.returncode == -signal.SIGINT, (proc.returncode, err)


def test_sigint_handler_replaces_keyboard_interrupt(loop_name):
    code = """
loop = new_loop()
def on_sigint():
    print("handled", flush=True)
    loop.stop()
loop.add_signal_handler(signal.SIGINT, on_sigint)
loop.call_soon(ready)
try:
    loop.run_forever()
finally:
    loop.close()
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("clean exit", flush=True)
"""
    proc = spawn(code, loop_name)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, timeout=5)
    assert proc.returncode == 0, err
    assert out == "handled\nclean exit\n"


@pytest.mark.parametrize("how", ["remove", "close"])
def test_disposition_restored(loop_name, how):
    # After the handler is removed (or the loop closed), SIGUSR1 has its
    # default action again: it terminates the process.
    code = f"""
loop = new_loop()
loop.add_signal_handler(signal.SIGUSR1, print)
loop.run_until_complete(asyncio.sleep(0))
if {how!r} == "remove":
    assert loop.remove_signal_handler(signal.SIGUSR1)
loop.close()
os.kill(os.getpid(), signal.SIGUSR1)
import time
time.sleep(5)
print("survived", flush=True)
"""
    proc = spawn(code, loop_name)
    out, err = finish(proc, timeout=30)
    assert proc.returncode == -signal.SIGUSR1, (proc.returncode, out, err)
