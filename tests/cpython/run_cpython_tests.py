"""Run one of CPython's own asyncio test modules against cloop.

Usage::

    python tests/cpython/run_cpython_tests.py MODULE [--json PATH]
        [--stock] [-k SUBSTRING] [-v] [--per-test-timeout SECONDS]
        [--use RESOURCE[,RESOURCE...]]

MODULE is the name of a module of ``test.test_asyncio`` (``test_tasks``).
The runner is meant to be started in a fresh interpreter (one per module,
as tests/test_cpython_asyncio.py does): it rewires asyncio for the whole
process before it imports the tests.

What it changes, in cloop mode (the default):

* ``asyncio.DefaultEventLoopPolicy`` (and the name in ``asyncio.events``
  and ``asyncio.unix_events``) becomes ``cloop.EventLoopPolicy``, and the
  current policy is reset, so ``asyncio.new_event_loop()``,
  ``asyncio.run()``, ``asyncio.Runner()`` and
  ``unittest.IsolatedAsyncioTestCase`` all make cloop loops, including after
  a test module's ``asyncio.set_event_loop_policy(None)`` in its tear-down.
* Where a CPython test builds its loop from asyncio's internals rather than
  through the policy, the loop is replaced with a cloop loop (each case is
  one of the ``adapt_*`` functions below); tests that need asyncio's
  virtual-time ``TestLoop`` (``new_test_loop(gen)``) keep it.
* ``test_events`` and ``test_base_events`` are mostly about other loops
  (selector loops, mocked ``BaseEventLoop``s); the parts that apply to
  cloop are selected by ``build_test_events`` and
  ``build_test_base_events``, which document the choice.
* The networking modules that run one mixin on each of CPython's loops
  (``test_server``, ``test_sslproto``, ``test_sock_lowlevel``,
  ``test_sendfile``, ``test_buffered_proto``) run it once, on cloop
  (``LOOP_CLASSES`` and ``build_loop_classes``).

``--stock`` runs the same selection on stock asyncio without any of the
above, as an oracle when triaging a failure.

The runner counts the cloop loops each test creates: a cloop-mode run in
which no test created one exits with status 3, since it would prove
nothing.  The summary (JSON) lists every test id with its outcome, the
loops it created and, for a failure, the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import asyncio.events
import faulthandler
import importlib
import json
import sys
import time
import unittest
from typing import Any, Callable

# Printed to stderr before each test, so that a crash or a hang can be
# pinned on the test that was running.
PROGRESS_PREFIX = "cloop-cpython: start "
JSON_BEGIN = "=== cloop-cpython json begin ==="
JSON_END = "=== cloop-cpython json end ==="

PACKAGE = "test.test_asyncio"

# --- test_events selection ------------------------------------------------
#
# test_events.EventLoopTestsMixin is CPython's generic event loop test
# suite; CPython runs it on its selector and proactor loops.  Here it runs
# on cloop (as CloopEventLoopTests), restricted to what exercises
# callbacks, timers, signals and the run/stop/close methods.  Every test of
# the mixin must be named in exactly one of the three sets below, so a
# test added by a new Python version is noticed (the run fails with
# "unclassified") rather than silently dropped.

EVENTS_SELECTED = frozenset({
    "test_run_until_complete_nesting",
    "test_run_until_complete",
    "test_run_until_complete_stopped",
    "test_call_later",
    "test_call_soon",
    "test_call_soon_threadsafe",
    "test_call_soon_threadsafe_same_thread",
    "test_run_in_executor",
    "test_run_in_executor_cancel",
    "test_close",
    "test_close_running_event_loop",
    "test_add_signal_handler",
    "test_signal_handling_while_selecting",
    "test_signal_handling_args",
})

# File descriptors, sockets, pipes, ptys, servers, TLS (issue 3): run too,
# with the networking-specific expected failures in expected_failures.py.
EVENTS_SELECTED_IO = frozenset({
    "test_reader_callback",
    "test_writer_callback",
    "test_add_fds_after_closing",
    "test_remove_fds_after_closing",
    "test_prompt_cancellation",
    "test_internal_fds",
    "test_create_connection",
    "test_create_unix_connection",
    "test_create_ssl_connection",
    "test_create_ssl_unix_connection",
    "test_create_connection_local_addr",
    "test_create_connection_local_addr_skip_different_family",
    "test_create_connection_local_addr_nomatch_family",
    "test_create_connection_local_addr_in_use",
    "test_connect_accepted_socket",
    "test_ssl_connect_accepted_socket",
    "test_connect_accepted_socket_ssl_timeout_for_plain_socket",
    "test_create_server_multiple_hosts_ipv4",
    "test_create_server_multiple_hosts_ipv6",
    "test_create_server",
    "test_create_server_trsock",
    "test_create_server_reuse_port",
    "test_create_unix_server",
    "test_create_unix_server_path_socket_error",
    "test_create_server_ssl",
    "test_create_unix_server_ssl",
    "test_create_server_ssl_verify_failed",
    "test_create_unix_server_ssl_verify_failed",
    "test_create_server_ssl_match_failed",
    "test_create_unix_server_ssl_verified",
    "test_create_server_ssl_verified",
    "test_create_server_sock",
    "test_create_server_addr_in_use",
    "test_create_server_dual_stack",
    "test_server_close",
    "test_create_datagram_endpoint",
    "test_create_datagram_endpoint_ipv6",
    "test_create_datagram_endpoint_sock",
    "test_datagram_send_to_non_listening_address",
    "test_read_pipe",
    "test_unclosed_pipe_transport",
    "test_read_pty_output",
    "test_write_pipe",
    "test_write_pipe_disconnect_on_close",
    "test_write_pty",
    "test_bidirectional_pty",
})

# Tests that cannot say anything about cloop.
EVENTS_NOT_APPLICABLE = {
    "test_timeout_rounding": (
        "Counts calls of BaseEventLoop._run_once, which cloop's C run loop "
        "never makes, so it would pass without testing anything; cloop's "
        "own suite checks that timers never fire early."
    ),
}

# Tests of the mixin that would fail only now and then on cloop (so they
# cannot be expected failures), and why; each names the deterministic
# test of the cause in cloop's own suite.
EVENTS_RACY: dict[str, str] = {}

# Tests of test_events outside the mixin that are not run, and why.
EVENTS_DEFERRED_OTHER: dict[str, str] = {}

# Classes of test_events that run on a loop cloop replaces: CPython's
# selector and proactor loops (EventLoopTestsMixin runs on cloop instead,
# see above) and their subprocess tests (SubprocessTestsMixin: the
# subprocess issue adds these).
EVENTS_STOCK_LOOP_CLASSES = frozenset({
    "SelectEventLoopTests",
    "PollEventLoopTests",
    "EPollEventLoopTests",
    "KqueueEventLoopTests",
    "ProactorEventLoopTests",
})

# Nothing of the mixin is deferred any more; the set stays so that a
# later issue can park tests here.
EVENTS_DEFERRED_IO: frozenset[str] = frozenset()

assert not (EVENTS_SELECTED & EVENTS_SELECTED_IO
            or (EVENTS_SELECTED | EVENTS_SELECTED_IO)
            & set(EVENTS_NOT_APPLICABLE))

# --- test_base_events selection ------------------------------------------
#
# Most of test_base_events tests BaseEventLoop itself: a bare
# BaseEventLoop with a mocked selector (BaseEventLoopTests), the
# selector-based networking helpers with mocked sockets
# (BaseEventLoopWithSelectorTests, BaseLoopSockSendfileTests) and pure
# helpers (BaseEventTests, TestSelectorUtils).  cloop reuses BaseEventLoop
# for everything that is not per-callback, so those tests are CPython's
# business, not cloop's.  What is run here:
#
# * RunningLoopTests, which uses asyncio.new_event_loop() (so cloop);
# * BaseEventLoopTests re-run with a cloop loop as self.loop
#   (CloopBaseEventLoopTests), limited to the tests below, which drive the
#   loop through its public API: scheduling, run_until_complete, stop,
#   exception handlers, debug mode, task factories, executors.  The others
#   exercise BaseEventLoop's private machinery (_run_once, _ready,
#   _scheduled, _process_events, _selector) and are not run.

BASE_EVENTS_SELECTED = frozenset({
    "test_asyncgen_finalization_by_gc",
    "test_asyncgen_finalization_by_gc_in_other_thread",
    "test_call_later",
    "test_call_later_negative_delays",
    "test_call_soon",
    "test_call_soon_non_callable",
    "test_check_thread",
    "test_close",
    "test_create_named_task_with_custom_factory",
    "test_create_named_task_with_default_factory",
    "test_create_task",
    "test_create_task_error_closes_coro",
    "test_default_exc_handler_callback",
    "test_default_exc_handler_coro",
    "test_run_forever_keyboard_interrupt",
    "test_run_once",
    "test_run_until_complete_baseexception",
    "test_run_until_complete_loop",
    "test_run_until_complete_loop_orphan_future_close_loop",
    "test_run_until_complete_type_error",
    "test_set_debug",
    "test_set_default_executor",
    "test_set_default_executor_error",
    "test_set_exc_handler_invalid",
    "test_set_task_factory",
    "test_set_task_factory_invalid",
    "test_shutdown_default_executor_timeout",
    "test_time_and_call_at",
})

# Not run, and why.  Assigning a mock to _process_events or _write_to_self
# (as many selected tests do) is harmless on cloop, which never calls them.
BASE_EVENTS_NOT_RUN = {
    "test_not_implemented":
        "BaseEventLoop's abstract transport factories",
    "test__add_callback_handle": "loop._ready and loop._scheduled",
    "test__add_callback_cancelled_handle": "loop._ready and loop._scheduled",
    "test__run_once": "BaseEventLoop._run_once and the selector",
    "test__run_once_schedule_handle": "BaseEventLoop._run_once",
    "test__run_once_cancelled_event_cleanup": "BaseEventLoop._run_once",
    "test_set_exc_handler_custom": "drives the loop with _run_once()",
    "test_set_exc_handler_broken": "drives the loop with _run_once()",
    "test_default_exc_handler_broken": "drives the loop with _run_once()",
    "test_single_selecter_event_callback_after_stopping": "the selector",
    "test_run_forever_pre_stopped": "asserts how the selector was polled",
    "test_custom_run_forever_integration":
        "BaseEventLoop's _run_forever_setup/_run_once/_run_forever_cleanup",
    "test_env_var_debug":
        "starts a fresh interpreter, whose loop is stock asyncio's",
    "test_subprocess_exec_invalid_args": "subprocesses (a later issue)",
    "test_subprocess_shell_invalid_args": "subprocesses (a later issue)",
}

assert not BASE_EVENTS_SELECTED & set(BASE_EVENTS_NOT_RUN)


# --- Counting loops -------------------------------------------------------

class LoopCounter:
    """Counts the event loops created, cloop's and the others."""

    def __init__(self) -> None:
        self.cloop = 0
        self.other = 0

    def install(self, cloop_loop_type: type | None) -> None:
        base_init = asyncio.base_events.BaseEventLoop.__init__
        counter = self

        def counting_init(loop: Any, *args: Any, **kwargs: Any) -> None:
            if cloop_loop_type is not None and isinstance(
                    loop, cloop_loop_type):
                counter.cloop += 1
            else:
                counter.other += 1
            base_init(loop, *args, **kwargs)

        asyncio.base_events.BaseEventLoop.__init__ = counting_init


# --- Rewiring asyncio -----------------------------------------------------

def install_cloop_policy(cloop: Any) -> None:
    """Make asyncio's default policy (and so new_event_loop()) cloop's."""
    import asyncio.unix_events

    asyncio.DefaultEventLoopPolicy = cloop.EventLoopPolicy
    asyncio.events.DefaultEventLoopPolicy = cloop.EventLoopPolicy
    asyncio.unix_events.DefaultEventLoopPolicy = cloop.EventLoopPolicy
    asyncio.set_event_loop_policy(None)
    loop = asyncio.new_event_loop()
    try:
        if not isinstance(loop, cloop.Loop):
            raise SystemExit(
                f"policy swap failed: new_event_loop() made {loop!r}")
    finally:
        loop.close()


def adapt_test_utils(cloop: Any) -> None:
    """TestCase.new_test_loop() without a time generator makes cloop loops.

    asyncio's TestLoop (a BaseEventLoop with a mock selector and virtual
    time) is what most of test_futures and test_tasks run on.  Without a
    generator it never advances time and schedules no timers, so a real
    loop can stand in for it: those tests then exercise cloop's
    call_soon() with C and Python futures and tasks.  With a generator the
    test depends on virtual time and keeps TestLoop.
    """
    from test.test_asyncio import utils as test_utils

    original = test_utils.TestCase.new_test_loop

    def new_test_loop(self: Any, gen: Any = None) -> Any:
        if gen is not None:
            return original(self, gen)
        loop = cloop.new_event_loop()
        self.set_event_loop(loop)
        return loop

    test_utils.TestCase.new_test_loop = new_test_loop


def adapt_test_runners(module: Any, cloop: Any) -> None:
    """test_runners' policy builds a mocked BaseEventLoop: use cloop's.

    The mock records that shutdown_asyncgens() ran; the cloop loop records
    it too, and still shuts its async generators down.
    """

    def new_loop(self: Any) -> Any:
        loop = cloop.new_event_loop()
        loop.shutdown_ag_run = False
        shutdown_asyncgens = loop.shutdown_asyncgens

        async def recording_shutdown_asyncgens() -> None:
            loop.shutdown_ag_run = True
            await shutdown_asyncgens()

        loop.shutdown_asyncgens = recording_shutdown_asyncgens
        return loop

    module.BaseTest.new_loop = new_loop


def adapt_test_pep492(module: Any, cloop: Any) -> None:
    """test_pep492's BaseTest runs on a mocked BaseEventLoop: use cloop's."""

    def setUp(self: Any) -> None:
        super(module.BaseTest, self).setUp()
        self.loop = cloop.new_event_loop()
        self.set_event_loop(self.loop)

    module.BaseTest.setUp = setUp


# Module name -> function(module, cloop) applied before loading its tests.
ADAPTATIONS: dict[str, Callable[[Any, Any], None]] = {
    "test_runners": adapt_test_runners,
    "test_pep492": adapt_test_pep492,
}


# --- Building the suites --------------------------------------------------

class Selection:
    """What a suite builder chose, for the summary."""

    def __init__(self) -> None:
        self.excluded: dict[str, str] = {}
        self.unclassified: list[str] = []


def load_module_suite(module: Any, selection: Selection,
                      cloop: Any) -> unittest.TestSuite:
    return unittest.defaultTestLoader.loadTestsFromModule(module)


def _iter_tests(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def build_test_events(module: Any, selection: Selection,
                      cloop: Any) -> unittest.TestSuite:
    from test.test_asyncio import utils as test_utils

    mixin = module.EventLoopTestsMixin
    names = sorted(n for n in dir(mixin) if n.startswith("test_"))
    selected = (EVENTS_SELECTED | EVENTS_SELECTED_IO) - set(EVENTS_RACY)
    known = (selected | set(EVENTS_RACY) | EVENTS_DEFERRED_IO
             | set(EVENTS_NOT_APPLICABLE))
    selection.unclassified = [n for n in names if n not in known]
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite()

    if cloop is not None:
        def create_event_loop(self: Any) -> Any:
            return cloop.new_event_loop()
        cls_name = "CloopEventLoopTests"
    else:
        def create_event_loop(self: Any) -> Any:
            return asyncio.SelectorEventLoop()
        cls_name = "StockEventLoopTests"

    cls = type(cls_name, (mixin, test_utils.TestCase), {
        "create_event_loop": create_event_loop,
        "__module__": module.__name__,
    })
    for name in names:
        if name in selected:
            suite.addTest(cls(name))
        elif name in EVENTS_DEFERRED_IO:
            selection.excluded[f"{cls_name}.{name}"] = "needs I/O (deferred)"
        elif name in EVENTS_NOT_APPLICABLE:
            selection.excluded[f"{cls_name}.{name}"] = (
                EVENTS_NOT_APPLICABLE[name])
        elif name in EVENTS_RACY and cloop is not None:
            selection.excluded[f"{cls_name}.{name}"] = EVENTS_RACY[name]
        elif name in EVENTS_RACY:
            suite.addTest(cls(name))

    for test in _iter_tests(loader.loadTestsFromModule(module)):
        cls_of = type(test).__name__
        if cls_of in EVENTS_STOCK_LOOP_CLASSES:
            selection.excluded[f"{cls_of}.*"] = (
                "runs CPython's selector/proactor loops")
            continue
        tid = f"{cls_of}.{test._testMethodName}"
        if tid in EVENTS_DEFERRED_OTHER:
            selection.excluded[tid] = EVENTS_DEFERRED_OTHER[tid]
            continue
        suite.addTest(test)
    return suite


def build_test_base_events(module: Any, selection: Selection,
                           cloop: Any) -> unittest.TestSuite:
    base = module.BaseEventLoopTests
    names = sorted(n for n in dir(base) if n.startswith("test_"))
    selection.unclassified = [
        n for n in names
        if n not in BASE_EVENTS_SELECTED and n not in BASE_EVENTS_NOT_RUN
    ]
    suite = unittest.TestSuite()

    if cloop is not None:
        def setUp(self: Any) -> None:
            super(base, self).setUp()
            self.loop = cloop.new_event_loop()
            self.set_event_loop(self.loop)

        cls = type("CloopBaseEventLoopTests", (base,), {
            "setUp": setUp,
            "__module__": module.__name__,
        })
    else:
        # The oracle runs the tests as CPython does, on its mocked loop.
        cls = base
    for name in names:
        if name in BASE_EVENTS_SELECTED:
            suite.addTest(cls(name))
        elif name in BASE_EVENTS_NOT_RUN:
            selection.excluded[f"{cls.__name__}.{name}"] = (
                BASE_EVENTS_NOT_RUN[name])
    loader = unittest.defaultTestLoader
    suite.addTests(loader.loadTestsFromTestCase(module.RunningLoopTests))
    return suite


# --- Modules whose test classes build a selector loop -------------------
#
# test_server, test_sslproto, test_sock_lowlevel, test_sendfile and
# test_buffered_proto write their tests once, in a mixin, and run them in
# one subclass per CPython loop (selector loops on each selector, the
# proactor), each overriding one loop-making method.  Here one of those
# subclasses (the Linux default, epoll) runs with the method returning a
# cloop loop, renamed so its ids say so; the other subclasses would only
# run the same tests again on CPython's loops and are left out.  A test
# class that does not override the method (test_sslproto's
# SslProtoHandshakeTests, which uses asyncio.new_event_loop()) runs as is,
# on cloop through the policy.
#
# module: (class run on cloop, its loop-making method, the cloop class name)
LOOP_CLASSES: dict[str, tuple[str, str, str]] = {
    "test_server": (
        "SelectorStartServerTests", "new_loop", "CloopStartServerTests"),
    "test_sslproto": (
        "SelectorStartTLSTests", "new_loop", "CloopStartTLSTests"),
    "test_sock_lowlevel": (
        "EPollEventLoopTests", "create_event_loop", "CloopSockTests"),
    "test_sendfile": (
        "EPollEventLoopTests", "create_event_loop", "CloopSendfileTests"),
    "test_buffered_proto": (
        "BufferedProtocolSelectorTests", "new_loop",
        "CloopBufferedProtocolTests"),
}


def build_loop_classes(module: Any, selection: Selection,
                       cloop: Any) -> unittest.TestSuite:
    """The module's tests, with its chosen loop class run on cloop."""
    chosen, method, cloop_name = LOOP_CLASSES[module.__name__.rpartition(
        ".")[2]]
    base = getattr(module, chosen)
    attrs: dict[str, Any] = {"__module__": module.__name__}
    if cloop is not None:
        def new_loop(self: Any) -> Any:
            return cloop.new_event_loop()
        attrs[method] = new_loop
    # Same class name in --stock mode, so that the ids can be compared.
    cls = type(cloop_name, (base,), attrs)
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite()
    for test in _iter_tests(loader.loadTestsFromModule(module)):
        klass = type(test)
        if klass is base:
            suite.addTest(cls(test._testMethodName))
        elif method in vars(klass):
            selection.excluded[f"{klass.__name__}.*"] = (
                f"the tests of {cloop_name} on one of CPython's loops")
        else:
            suite.addTest(test)
    return suite


# Tests that hang on cloop because of a known cloop bug: a hang cannot be
# an expected failure (the per-test timeout ends the whole module's run),
# so they are left out, in cloop mode only, until the bug is fixed; each
# reason names the bug and the xfail test in cloop's suite that pins it.
# module: {test id: reason}
HANGS_ON_CLOOP: dict[str, dict[str, str]] = {}


BUILDERS = {
    "test_events": build_test_events,
    "test_base_events": build_test_base_events,
    **{name: build_loop_classes for name in LOOP_CLASSES},
}


# --- Collecting results ---------------------------------------------------

def short_id(test: unittest.TestCase | Any, module_name: str) -> str:
    """Class.method for a test, the description for a fixture error."""
    tid = test.id()
    prefix = module_name + "."
    if tid.startswith(prefix):
        return tid[len(prefix):]
    return tid


class Collector(unittest.TestResult):
    """Records one outcome per test id, plus loop counts and tracebacks."""

    # Worst outcome wins when subtests report several.
    RANK = {"pass": 0, "expected_failure": 0, "skip": 1, "fail": 2,
            "unexpected_success": 2, "error": 3}

    def __init__(self, module_name: str, counter: LoopCounter,
                 per_test_timeout: float, verbose: bool) -> None:
        super().__init__()
        self.module_name = module_name
        self.counter = counter
        self.per_test_timeout = per_test_timeout
        self.verbose = verbose
        self.tests: dict[str, dict[str, Any]] = {}
        self._start = 0.0
        self._loops = (0, 0)

    def _record(self, test: Any, outcome: str, detail: str = "") -> None:
        tid = short_id(test, self.module_name)
        entry = self.tests.setdefault(tid, {"outcome": "pass"})
        if self.RANK[outcome] >= self.RANK[entry["outcome"]]:
            entry["outcome"] = outcome
        if detail:
            entry.setdefault("details", []).append(detail)

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        tid = short_id(test, self.module_name)
        print(PROGRESS_PREFIX + tid, file=sys.stderr, flush=True)
        if self.per_test_timeout > 0:
            faulthandler.dump_traceback_later(self.per_test_timeout,
                                              exit=True)
        self._start = time.monotonic()
        self._loops = (self.counter.cloop, self.counter.other)
        self.tests.setdefault(tid, {"outcome": "pass"})

    def stopTest(self, test: Any) -> None:
        faulthandler.cancel_dump_traceback_later()
        tid = short_id(test, self.module_name)
        entry = self.tests.setdefault(tid, {"outcome": "pass"})
        entry["seconds"] = round(time.monotonic() - self._start, 3)
        entry["cloop_loops"] = self.counter.cloop - self._loops[0]
        entry["other_loops"] = self.counter.other - self._loops[1]
        if self.verbose:
            print(f"{tid}: {entry['outcome']}", file=sys.stderr, flush=True)
        super().stopTest(test)

    def _format(self, test: Any, err: Any) -> str:
        return self._exc_info_to_string(err, test)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error", self._format(test, err))

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail", self._format(test, err))

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip", f"skipped: {reason}")

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected_success",
                     "unexpected success of a CPython expectedFailure")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = ("fail" if issubclass(err[0], test.failureException)
                       else "error")
            self._record(test, outcome,
                         f"{subtest.id()}\n" + self._format(subtest, err))


# --- Main -----------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("module", help="a module of test.test_asyncio")
    parser.add_argument("--json", metavar="PATH",
                        help="write the summary here (default: stdout)")
    parser.add_argument("--stock", action="store_true",
                        help="run on stock asyncio (no cloop), as an oracle")
    parser.add_argument("-k", dest="keyword", action="append", default=[],
                        help="only run test ids containing this substring")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--per-test-timeout", type=float, default=60.0,
                        help="seconds before a hung test aborts the run "
                             "with a traceback (0: never)")
    parser.add_argument("--use", default="",
                        help="test.support resources to enable, comma "
                             "separated (default: none, as regrtest)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    faulthandler.enable()

    from test import support

    # Like regrtest without -u: tests that need a resource are skipped.
    support.use_resources = [r for r in args.use.split(",") if r]

    cloop = None
    if not args.stock:
        import cloop as cloop_mod  # a failure here must be loud

        cloop = cloop_mod
    counter = LoopCounter()
    counter.install(cloop.Loop if cloop is not None else None)
    if cloop is not None:
        install_cloop_policy(cloop)
        adapt_test_utils(cloop)
        # The check loop above is not a test's.
        counter.cloop = counter.other = 0

    module_name = f"{PACKAGE}.{args.module}"
    module = importlib.import_module(module_name)
    if cloop is not None and args.module in ADAPTATIONS:
        ADAPTATIONS[args.module](module, cloop)

    selection = Selection()
    builder = BUILDERS.get(args.module, load_module_suite)
    suite = builder(module, selection, cloop)
    hangs = HANGS_ON_CLOOP.get(args.module, {}) if cloop is not None else {}
    if hangs:
        kept = unittest.TestSuite()
        for test in _iter_tests(suite):
            tid = short_id(test, module_name)
            if tid in hangs:
                selection.excluded[tid] = hangs[tid]
            else:
                kept.addTest(test)
        suite = kept
    if args.keyword:
        filtered = unittest.TestSuite()
        for test in _iter_tests(suite):
            tid = short_id(test, module_name)
            if any(k in tid for k in args.keyword):
                filtered.addTest(test)
        suite = filtered

    result = Collector(module_name, counter, args.per_test_timeout,
                       args.verbose)
    started = time.monotonic()
    result.startTestRun()
    try:
        suite(result)
    finally:
        result.stopTestRun()
    elapsed = time.monotonic() - started

    by_outcome: dict[str, int] = {}
    for entry in result.tests.values():
        by_outcome[entry["outcome"]] = by_outcome.get(entry["outcome"], 0) + 1
    summary = {
        "module": args.module,
        "python": "%d.%d" % sys.version_info[:2],
        "python_full": sys.version.split()[0],
        "mode": "stock" if cloop is None else "cloop",
        "seconds": round(elapsed, 2),
        "counts": by_outcome,
        "cloop_loops": counter.cloop,
        "other_loops": counter.other,
        "tests_using_cloop": sum(
            1 for e in result.tests.values() if e.get("cloop_loops")),
        "excluded": selection.excluded,
        "unclassified": selection.unclassified,
        "tests": result.tests,
    }
    text = json.dumps(summary, indent=1, sort_keys=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(JSON_BEGIN)
        print(text)
        print(JSON_END)
    print(
        f"{args.module}: {len(result.tests)} tests, {by_outcome}, "
        f"{counter.cloop} cloop loops, {elapsed:.1f}s",
        file=sys.stderr,
    )
    if cloop is not None and result.tests and counter.cloop == 0:
        print("error: no test created a cloop loop", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
