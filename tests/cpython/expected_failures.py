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
``not-yet``
    The test needs a feature cloop does not implement yet (networking,
    subprocesses); the entry goes when the feature lands.  A reason that
    starts with ``not yet (lead):`` names a feature the lead session is
    building on main (pipe transports, transport sendfile, the
    fd-owned-by-a-transport checks, write coalescing).
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("internals", "handle-type", "not-yet")

# The prefix of a reason whose feature the lead is building.
LEAD_PREFIX = "not yet (lead): "


@dataclass(frozen=True)
class XFail:
    """Tests of one module expected to fail, for one reason."""

    category: str
    reason: str
    tests: tuple[str, ...]
    # Python versions ("3.12") the entry applies to; empty: all of them.
    versions: tuple[str, ...] = ()


EXPECTED_FAILURES: dict[str, list[XFail]] = {
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
    # Added with the stream transports (issue 3, stream helper).
    "test_streams": [
        XFail(
            "not-yet",
            "The test starts a child process with "
            "asyncio.create_subprocess_exec() to write into the pipe it "
            "reads; cloop has no subprocess transports yet "
            "(NotImplementedError from BaseEventLoop).",
            ("StreamTests.test_read_all_from_pipe_reader",),
        ),
        XFail(
            "not-yet",
            "Knock-on effect of the subprocess entry above: that test "
            "leaves its read pipe transport and file open when "
            "subprocess_exec() raises, and this test's gc.collect() inside "
            "assertWarns(ResourceWarning) counts their two warnings too "
            "(3 != 1).  Passes when run alone.",
            ("StreamTests.test_unclosed_resource_warnings",),
        ),
    ],
    # The networking parts of EventLoopTestsMixin (issue 3, conformance).
    "test_events": [
        XFail(
            "internals",
            "The test's assertions pass; its clean-up then assigns None to "
            "the pipe transports' private _pipe attribute (a plain "
            "attribute in asyncio), which cloop's C pipe transport exposes "
            "as a read-only property (loop/_pipe.py), so the assignment "
            "raises AttributeError.",
            ("CloopEventLoopTests.test_unclosed_pipe_transport",),
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
