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
    # --- subprocess (issue 4, section 1): begin ---------------------------
    "test_subprocess": [
        XFail(
            "internals",
            "The test patches subprocess.Popen to make the spawn fail; "
            "cloop spawns with uv_spawn and calls Popen only for the "
            "options uv_spawn cannot express, so the patch never fires.  "
            "The failure path it guards (pipes closed, no warning when the "
            "spawn fails) is covered by tests/test_subprocess.py.",
            (
                "Subprocess*WatcherTests.test_popen_error",
                "Subprocess*WatcherTests.test_popen_error_with_stdin_pipe",
            ),
        ),
        XFail(
            "internals",
            "The test installs an inactive asyncio child watcher and "
            "expects subprocess creation to fail; cloop reaps its children "
            "itself and never consults asyncio's child watchers, by design.",
            ("GenericWatcherTests."
             "test_create_subprocess_fails_with_inactive_watcher",),
        ),
    ],
    # --- subprocess (issue 4, section 1): end -----------------------------
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
