"""Shared fixtures for the cloop behaviour suite.

Every behaviour test runs twice: once on stock asyncio (the oracle) and once
on cloop.  A test is written against stock asyncio first; whatever asyncio
does on the running Python is the specification cloop has to meet.

Fixtures:

* ``loop_name``: ``"asyncio"`` or ``"cloop"`` (the test id suffix).
* ``loop_factory``: a zero-argument callable returning a new, unset loop.
* ``loop``: a loop from ``loop_factory``; closed (and checked closed) after
  the test.

The cloop parameters are skipped only while ``import cloop`` fails.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings

import pytest

try:
    import cloop
except ImportError as exc:  # pragma: no cover - only before cloop exists
    cloop = None
    CLOOP_IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    CLOOP_IMPORT_ERROR = None

LOOP_NAMES = ("asyncio", "cloop")

_HYPOTHESIS_HOME: str | None = None

# A test that hangs (a loop that never wakes up) must fail, not stall CI.
PER_TEST_WATCHDOG = 120.0


def asyncio_factory() -> asyncio.AbstractEventLoop:
    """Stock asyncio's loop under the default policy on Unix."""
    return asyncio.SelectorEventLoop()


def require_cloop():
    """Return the cloop module, skipping the test if it cannot be imported."""
    if cloop is None:
        pytest.skip(f"cloop is not importable ({CLOOP_IMPORT_ERROR})")
    return cloop


def factory_for(name: str):
    if name == "asyncio":
        return asyncio_factory
    return require_cloop().new_event_loop


def pytest_configure(config):
    # No ResourceWarning may escape a test.  A warning raised from __del__
    # becomes an "unraisable exception", which pytest reports as a
    # PytestUnraisableExceptionWarning: make that an error as well.
    config.addinivalue_line("filterwarnings", "error::ResourceWarning")
    config.addinivalue_line(
        "filterwarnings",
        "error::pytest.PytestUnraisableExceptionWarning",
    )
    # Hypothesis caches examples and constants under ./.hypothesis; keep
    # the suite from writing into the checkout (or wherever it runs from).
    global _HYPOTHESIS_HOME
    _HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="cloop-tests-hypothesis-")
    try:
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:  # pragma: no cover - very old hypothesis
        pass
    else:
        set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config):
    if _HYPOTHESIS_HOME is not None:
        shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


def pytest_collection_finish(session):
    # Each test ends with gc.collect() to surface ResourceWarnings; freezing
    # what exists after collection keeps those collections cheap.
    gc.collect()
    gc.freeze()


@pytest.fixture(params=LOOP_NAMES)
def loop_name(request) -> str:
    if request.param == "cloop":
        require_cloop()
    return request.param


@pytest.fixture
def loop_factory(loop_name):
    return factory_for(loop_name)


@pytest.fixture
def loop(loop_factory):
    lp = loop_factory()
    try:
        yield lp
    finally:
        assert not lp.is_running(), "test left the loop running"
        if not lp.is_closed():
            lp.close()
        assert lp.is_closed()


# Modules of this directory owned by others (CPython's suite, run in
# subprocesses with their own time limits): the guards below stay out of them.
FOREIGN_MODULES = frozenset({"test_cpython_asyncio.py"})


@pytest.fixture(autouse=True)
def _hygiene(request):
    """Per-test guards: a watchdog, and no state leaked to the next test.

    Checks that the test restored the event loop policy, left no running
    loop set, left no SIGINT/SIGUSR1 handler or wakeup fd behind, and that
    collecting its garbage emits no ResourceWarning.
    """
    if request.node.path.name in FOREIGN_MODULES:
        yield
        return
    faulthandler.dump_traceback_later(PER_TEST_WATCHDOG, exit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
    sigint = signal.getsignal(signal.SIGINT)
    sigusr1 = signal.getsignal(signal.SIGUSR1)
    asyncgen_hooks = sys.get_asyncgen_hooks()
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, [str(w.message) for w in leaked]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert asyncio.get_event_loop_policy() is policy, (
            "test did not restore the event loop policy"
        )
    assert asyncio._get_running_loop() is None
    assert signal.getsignal(signal.SIGINT) == sigint
    assert signal.getsignal(signal.SIGUSR1) == sigusr1
    if threading.current_thread() is threading.main_thread():
        fd = signal.set_wakeup_fd(-1)
        assert fd == -1, f"test left signal wakeup fd {fd} installed"
    assert sys.get_asyncgen_hooks() == asyncgen_hooks


@pytest.fixture
def pair():
    """A connected pair of non-blocking Unix stream sockets."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def tcp_socket_pair() -> tuple[socket.socket, socket.socket]:
    """A connected (client, server) pair of non-blocking TCP sockets over
    loopback (test modules import it where a fixture does not fit)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    c = socket.create_connection(lsock.getsockname())
    s, _ = lsock.accept()
    lsock.close()
    c.setblocking(False)
    s.setblocking(False)
    return c, s


@pytest.fixture
def tcp_pair():
    """A connected (client, server) pair of non-blocking TCP sockets."""
    c, s = tcp_socket_pair()
    yield c, s
    c.close()
    s.close()


@pytest.fixture
def cloop_mod():
    """The cloop module (skips while it is not importable)."""
    return require_cloop()


@pytest.fixture
def run_briefly():
    """Run exactly ``steps`` loop iterations (asyncio's own test idiom)."""

    def run(loop, steps: int = 1) -> None:
        for _ in range(steps):
            loop.call_soon(loop.stop)
            loop.run_forever()

    return run


@pytest.fixture
def watchdog():
    """Arm a timer that stops a loop so a missed wake-up fails, not hangs.

    ``watchdog(loop, seconds)`` returns a dict whose ``"fired"`` key says
    whether the watchdog fired and whose ``"handle"`` is its TimerHandle.
    """

    def arm(loop, seconds: float = 10.0) -> dict:
        state = {"fired": False}

        def fire():
            state["fired"] = True
            loop.stop()

        state["handle"] = loop.call_later(seconds, fire)
        return state

    return arm
