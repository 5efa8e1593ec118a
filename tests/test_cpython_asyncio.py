"""CPython's own asyncio tests (test.test_asyncio), run on cloop.

One test per CPython test module: tests/cpython/run_cpython_tests.py runs
the module in a fresh interpreter with asyncio's default loop swapped for
cloop's, and its outcome must match tests/cpython/expected_failures.py for
the running Python exactly: no unlisted failure, no listed test passing, no
stale entry.  A module the running Python does not ship is skipped; a
Python on which cloop cannot be imported fails.

To run one module by hand, with every outcome::

    python tests/cpython/run_cpython_tests.py test_tasks -v
    python tests/cpython/run_cpython_tests.py test_tasks --stock  # oracle
"""

from __future__ import annotations

import faulthandler
import fnmatch
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "cpython" / "run_cpython_tests.py"

# The modules of test.test_asyncio that exercise what a loop does with
# callbacks, timers, futures and tasks, and its networking (test_events
# and test_base_events only in part, and the networking modules on one
# cloop class each: see the runner).  One entry per line.
MODULES = (
    "test_futures",
    "test_futures2",
    "test_tasks",
    "test_locks",
    "test_queues",
    "test_timeouts",
    "test_runners",
    "test_taskgroups",
    "test_waitfor",
    "test_context",
    "test_pep492",
    "test_threads",
    "test_eager_task_factory",  # 3.12+
    "test_events",
    "test_base_events",
    "test_streams",  # stream transports (issue 3)
    "test_server",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_ssl",
    "test_sslproto",
    "test_buffered_proto",
    "test_subprocess",  # subprocesses (issue 4)
)

def _slowdown() -> float:
    """How much slower a sanitizer build runs (ASan, PYTHONMALLOC=malloc)."""
    try:
        import cloop
    except ImportError:
        return 1.0
    return 4.0 if cloop.features()["sanitize"] not in ("", "none") else 1.0


# test_tasks, the longest, takes about 25 s on a 2-core machine (about
# 35 s under ASan, and several times that on a loaded machine).
MODULE_TIMEOUT = 150.0 * _slowdown()
# A single hung test aborts the run with a traceback of every thread.
PER_TEST_TIMEOUT = 60.0 * _slowdown()

PYTHON = "%d.%d" % sys.version_info[:2]
PROGRESS_PREFIX = "cloop-cpython: start "


def _load_expected_failures():
    spec = importlib.util.spec_from_file_location(
        "_cloop_cpython_expected_failures",
        HERE / "cpython" / "expected_failures.py",
    )
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


xfails = _load_expected_failures()


def _cpython_test_file(module: str) -> Path | None:
    """The file of test.test_asyncio.<module>, without importing it."""
    spec = importlib.util.find_spec("test")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "test_asyncio" / f"{module}.py"
        if path.is_file():
            return path
    return None


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _essence(entry: dict) -> str:
    """The last lines of each traceback recorded for a test."""
    parts = []
    for detail in entry.get("details", ()):
        parts.append(_tail(detail, 6))
    return "\n".join("        " + line for part in parts
                     for line in part.splitlines())


def _run(module: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{module}.json"
    cmd = [
        sys.executable, str(RUNNER), module,
        "--json", str(out),
        "--per-test-timeout", str(PER_TEST_TIMEOUT),
    ]
    # conftest.py arms a 120 s watchdog that kills pytest; the subprocess
    # timeout is the guard here, so give it room.
    faulthandler.dump_traceback_later(MODULE_TIMEOUT + 30, exit=True)
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, capture_output=True, text=True,
            timeout=MODULE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr or ""
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        pytest.fail(
            f"{module}: no result after {MODULE_TIMEOUT:.0f}s (a hang is a "
            f"cloop bug); last test started: {_last_started(stderr)}\n"
            f"{_tail(_without_progress(stderr), 40)}",
            pytrace=False,
        )
    if proc.returncode != 0 or not out.exists():
        how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        pytest.fail(
            f"{module}: the runner failed ({how}); a crash or a per-test "
            f"timeout is a cloop bug.  Last test started: "
            f"{_last_started(proc.stderr)}\n"
            f"{_tail(_without_progress(proc.stderr), 60)}",
            pytrace=False,
        )
    return json.loads(out.read_text(encoding="utf-8"))


def _last_started(stderr: str) -> str:
    started = [line[len(PROGRESS_PREFIX):] for line in stderr.splitlines()
               if line.startswith(PROGRESS_PREFIX)]
    return started[-1] if started else "(none)"


def _without_progress(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines()
                     if not line.startswith(PROGRESS_PREFIX))


def compare(summary: dict, expected: dict) -> list[str]:
    """Differences between a run and the expected failures, as text."""
    problems = []
    tests = summary["tests"]
    bad = {tid: e for tid, e in tests.items()
           if e["outcome"] in ("fail", "error", "unexpected_success")}

    def listed(tid: str) -> str | None:
        for pattern in expected:
            if fnmatch.fnmatchcase(tid, pattern):
                return pattern
        return None

    unexpected = sorted(tid for tid in bad if listed(tid) is None)
    if unexpected:
        problems.append(f"Unexpected failures ({len(unexpected)}):")
        for tid in unexpected:
            problems.append(f"    {tid} [{bad[tid]['outcome']}]")
            problems.append(_essence(bad[tid]))

    passed = sorted(
        tid for tid, e in tests.items()
        if e["outcome"] in ("pass", "expected_failure")
        and listed(tid) is not None
    )
    if passed:
        problems.append(
            f"Unexpected passes ({len(passed)}); remove them from "
            f"tests/cpython/expected_failures.py:")
        problems.extend(f"    {tid}" for tid in passed)

    stale = sorted(
        pattern for pattern in expected
        if not any(fnmatch.fnmatchcase(tid, pattern) for tid in tests)
    )
    if stale:
        problems.append(
            f"Stale entries ({len(stale)}): no test that ran matches them "
            f"on Python {summary['python']} (limit them with versions=):")
        problems.extend(f"    {pattern}" for pattern in stale)

    if summary.get("unclassified"):
        problems.append(
            "Tests the runner's selection does not classify (add each to "
            "a selection set in run_cpython_tests.py):")
        problems.extend(f"    {name}" for name in summary["unclassified"])
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_cpython_asyncio_module(module, tmp_path):
    if _cpython_test_file(module) is None:
        pytest.skip(f"Python {PYTHON} does not ship test.test_asyncio."
                    f"{module}")
    try:
        import cloop  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"cloop is not importable on Python {PYTHON}: {exc}")

    summary = _run(module, tmp_path)
    assert summary["mode"] == "cloop"
    assert summary["tests"], f"{module}: no test ran"
    assert summary["cloop_loops"] > 0, (
        f"{module}: no test created a cloop loop, so the run proves nothing"
    )

    expected = xfails.expected_for(module, summary["python"])
    problems = compare(summary, expected)
    counts = summary["counts"]
    print(
        f"{module} on Python {summary['python']}: {len(summary['tests'])} "
        f"tests ({summary['tests_using_cloop']} on a cloop loop), {counts}, "
        f"{len(expected)} expected failures, {summary['seconds']}s"
    )
    if problems:
        pytest.fail(
            f"CPython's {module} on cloop (Python {summary['python']}) "
            f"does not match tests/cpython/expected_failures.py:\n"
            + "\n".join(problems),
            pytrace=False,
        )


def test_expected_failures_are_well_formed():
    for module, entries in xfails.EXPECTED_FAILURES.items():
        assert module in MODULES, f"{module} is not a module the suite runs"
        # pattern -> versions it is listed for (empty: all)
        listed: dict[str, set[str]] = {}
        for entry in entries:
            assert entry.category in xfails.CATEGORIES, entry
            reason = entry.reason.strip()
            if reason.startswith(xfails.LEAD_PREFIX):
                assert entry.category == "not-yet", entry
                reason = reason[len(xfails.LEAD_PREFIX):]
            # A reason is a real sentence: why cloop differs, and whether
            # that is intended.
            assert len(reason.split()) >= 8, f"reason too short: {reason!r}"
            assert reason[0].isupper() and reason.endswith("."), reason
            assert entry.tests, f"{module}: an entry without tests"
            for version in entry.versions:
                major, _, minor = version.partition(".")
                assert major == "3" and minor.isdigit(), version
            for pattern in entry.tests:
                versions = set(entry.versions)
                if pattern in listed:
                    before = listed[pattern]
                    assert before and versions and not before & versions, (
                        f"{module}: {pattern} is listed twice for one "
                        f"Python version")
                    versions |= before
                listed[pattern] = versions


def test_runner_rejects_a_run_without_cloop_loops(tmp_path):
    """The runner itself fails a cloop run in which no cloop loop was made.

    test_events.TimerTests only use mock loops, so they make none.
    """
    if _cpython_test_file("test_events") is None:
        pytest.skip(f"Python {PYTHON} does not ship test_asyncio")
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "test_events", "-k", "TimerTests",
         "--json", str(tmp_path / "timer.json")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "no test created a cloop loop" in proc.stderr
