"""CPython asyncio tests that are expected to fail on cloop, and why.

tests/test_cpython_asyncio.py runs CPython's own test.test_asyncio modules
on cloop (through run_cpython_tests.py) and compares the outcome with this
list, per module and per Python version:

* a test that fails (or errors) and is not listed here fails the run;
* a listed test that passes fails the run too (remove the entry: cloop got
  better, or the test changed);
* an entry that matches no test that ran fails the run (a stale entry, or
  one that needs a ``versions`` limit).

Each entry groups test ids (``Class.test_method``, as the runner prints
them; ``fnmatch`` patterns allowed) under one reason.  A reason says why
cloop differs and whether that is intended.  Entries are for deliberate
differences only: a test that fails because cloop is wrong does not go
here, it stays failing until cloop is fixed.

Categories:

``internals``
    The test reaches into asyncio's private loop machinery
    (``_ready``, ``_scheduled``, ``_run_once``, ``_selector``), which
    cloop's C engine replaces.  Intended.
``handle-type``
    The test requires asyncio's Python ``Handle``/``TimerHandle`` classes;
    cloop's handles are its own C types with the same public API.
    Intended.
``child-watcher``
    The test installs a child watcher through the event loop policy.
    cloop's policy has none: libuv reaps cloop's subprocesses.  Intended;
    the watcher API is deprecated since 3.12 and removed in 3.14.
``not-yet``
    The test needs a feature cloop does not implement yet (networking,
    subprocesses); the entry goes when the feature lands.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("internals", "handle-type", "child-watcher", "not-yet")


@dataclass(frozen=True)
class XFail:
    """Tests of one module expected to fail, for one reason."""

    category: str
    reason: str
    tests: tuple[str, ...]
    # Python versions ("3.12") the entry applies to; empty: all of them.
    versions: tuple[str, ...] = ()


_TASK_CLASSES = (
    "CTask_CFuture_Tests",
    "CTask_CFuture_SubclassTests",
    "CTaskSubclass_PyFuture_Tests",
    "PyTask_CFutureSubclass_Tests",
    "CTask_PyFuture_Tests",
    "PyTask_CFuture_Tests",
    "PyTask_PyFuture_Tests",
    "PyTask_PyFuture_SubclassTests",
)

_GET_EVENT_LOOP_TESTS = tuple(
    f"{cls}.{test}"
    for cls in ("TestPyGetEventLoop", "TestCGetEventLoop")
    for test in (
        "test_get_event_loop_new_process",
        "test_get_event_loop_returns_running_loop",
        "test_get_event_loop_returns_running_loop2",
    )
)


EXPECTED_FAILURES: dict[str, list[XFail]] = {
    "test_tasks": [
        XFail(
            "internals",
            "The test steps the loop by calling loop._run_once() and then "
            "checks that loop._ready is empty; cloop inherits "
            "BaseEventLoop._run_once but never uses it (its run loop is C), "
            "so the call fails for lack of a selector.",
            tuple(f"{cls}.test_log_destroyed_pending_task"
                  for cls in _TASK_CLASSES),
        ),
        XFail(
            "internals",
            "GatherTestsBase._run_loop() runs the loop 'while loop._ready', "
            "asyncio's deque of ready handles; cloop keeps its ready queue "
            "in C, so loop._ready is always empty, the loop never runs and "
            "the gather is still pending when the test checks it (the same "
            "tests pass when the loop is run a few turns instead).",
            (
                "FutureGatherTests.test_success",
                "FutureGatherTests.test_result_exception_success",
                "FutureGatherTests.test_one_exception",
                "FutureGatherTests.test_return_exceptions",
                "FutureGatherTests.test_one_cancellation",
                "CoroutineGatherTests.test_success",
                "CoroutineGatherTests.test_result_exception_success",
                "CoroutineGatherTests.test_one_exception",
                "CoroutineGatherTests.test_return_exceptions",
                "CoroutineGatherTests.test_duplicate_coroutines",
            ),
        ),
    ],
    "test_events": [
        XFail(
            "child-watcher",
            "Their setUp() installs a SafeChildWatcher with "
            "asyncio.set_child_watcher(), which cloop.EventLoopPolicy does "
            "not support (NotImplementedError, as with uvloop's policy) "
            "because libuv reaps cloop's child processes itself.  With that "
            "call skipped, all six pass on cloop.",
            _GET_EVENT_LOOP_TESTS,
        ),
    ],
    "test_base_events": [
        XFail(
            "handle-type",
            "The test asserts that call_soon()/call_later() return "
            "instances of asyncio.Handle/asyncio.TimerHandle and then looks "
            "for them in loop._ready/loop._scheduled; cloop's handles are C "
            "types (not subclasses of asyncio's Python classes) queued in "
            "C, by design.",
            (
                "CloopBaseEventLoopTests.test_call_soon",
                "CloopBaseEventLoopTests.test_call_later",
            ),
        ),
    ],
}


def expected_for(module: str, python: str) -> dict[str, XFail]:
    """The entries for one module on one Python version, by test pattern."""
    out: dict[str, XFail] = {}
    for entry in EXPECTED_FAILURES.get(module, ()):
        if entry.versions and python not in entry.versions:
            continue
        for pattern in entry.tests:
            out[pattern] = entry
    return out
