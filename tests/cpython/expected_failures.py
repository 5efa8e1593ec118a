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
            "not yet (lead): The test reads from an os.pipe() through "
            "connect_read_pipe(); cloop has no pipe transports yet "
            "(NotImplementedError from BaseEventLoop).",
            ("StreamTests.test_read_all_from_pipe_reader",),
        ),
        XFail(
            "not-yet",
            "not yet (lead): Knock-on effect of the pipe entry above: "
            "BaseEventLoop leaves the pipe unclosed when "
            "_make_read_pipe_transport raises NotImplementedError, and this "
            "test's gc.collect() inside assertWarns(ResourceWarning) then "
            "counts that warning too (2 != 1).  Passes when run alone.",
            ("StreamTests.test_unclosed_resource_warnings",),
        ),
    ],
    # The networking parts of EventLoopTestsMixin (issue 3, conformance).
    "test_events": [
        XFail(
            "not-yet",
            "not yet (lead): The tests connect pipes or ptys with "
            "connect_read_pipe()/connect_write_pipe(); cloop has no pipe "
            "transports yet (NotImplementedError from BaseEventLoop).",
            (
                "CloopEventLoopTests.test_read_pipe",
                "CloopEventLoopTests.test_unclosed_pipe_transport",
                "CloopEventLoopTests.test_read_pty_output",
                "CloopEventLoopTests.test_write_pipe",
                "CloopEventLoopTests.test_write_pipe_disconnect_on_close",
                "CloopEventLoopTests.test_write_pty",
                "CloopEventLoopTests.test_bidirectional_pty",
            ),
        ),
    ],
    "test_sendfile": [
        XFail(
            "not-yet",
            "not yet (lead): The tests call loop.sendfile() on a plain "
            "(non-TLS) cloop socket transport, which has no "
            "_sendfile_compatible mode yet, so BaseEventLoop.sendfile() "
            "raises RuntimeError('sendfile is not supported for "
            "transport').  The TLS variants pass (SSLProtocol's transport "
            "takes the read-and-write fallback).",
            (
                "CloopSendfileTests.test_sendfile",
                "CloopSendfileTests.test_sendfile_close_peer_after_receiving",
                "CloopSendfileTests."
                "test_sendfile_close_peer_in_the_middle_of_receiving",
                "CloopSendfileTests."
                "test_sendfile_fallback_close_peer_in_the_middle_of_receiving",
                "CloopSendfileTests.test_sendfile_force_fallback",
                "CloopSendfileTests.test_sendfile_force_unsupported_native",
                "CloopSendfileTests.test_sendfile_partial",
                "CloopSendfileTests.test_sendfile_pre_and_post_data",
            ),
        ),
        XFail(
            "not-yet",
            "not yet (lead): The test expects transport.write() during a "
            "loop.sendfile() to raise RuntimeError (asyncio's selector "
            "transport blocks bare writes while its native sendfile runs); "
            "without transport sendfile the sendfile fails first and the "
            "write goes through.",
            ("CloopSendfileTests.test_sendfile_prevents_bare_write",),
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
