"""Benchmark cloop against stock asyncio and uvloop.

Usage::

    python -m cloop.bench                  # all workloads, all loops (~11 min)
    python -m cloop.bench --quick          # smaller sizes, fewer runs (~2 min)
    python -m cloop.bench --only call_soon,tasks --loops asyncio,cloop
    python -m cloop.bench --json results.json
    python -m cloop.bench --list           # workloads and what they do

Each measurement runs in a fresh worker process (``python -m
cloop.bench._worker``) on one loop: ``asyncio`` (the stock loop the default
policy creates, ``SelectorEventLoop`` on Linux), ``uvloop`` and ``cloop``.
Rounds are interleaved across loops with a rotating order. Inside a worker a
warm-up pass runs first, then the timed passes; only the workload body is
timed (``time.perf_counter()``), not creating or closing the loop. Every
workload checks its own result: a wrong result, an exception, a crash or a
timeout shows as FAILED for that loop and workload, and the run goes on. A
loop that cannot be imported is shown as "not installed".

The table gives, per workload and loop, the median time in ms over the
worker processes and the min-max range across them, then speed ratios:
"A vs B" = B's median / A's median, how many times faster A ran (above
1.00x A is faster). ``--json`` writes every raw sample as well.

Networking workloads (``net.py``) run their server on the loop under test
and drive it from a separate C client (``echo_load``) or ``wrk``; reference
rows (``c_*``) time a C server on libuv with the same client, the ceiling,
and a "relative speed" table compares rows with the row they name (select
both with ``--only``). A workload whose tool is missing (``wrk``,
``httptools``) shows "skipped", which is not a failure.

Exit status: 0 when every selected, installed loop passed every workload
(or skipped it); 1 when something FAILED; 130 when interrupted (partial
results are shown).

Adding a workload: write one function in ``workloads.py`` (or a new module
listed in ``_registry._MODULES``) decorated with ``@workload``; see
``_registry`` for the contract.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import _registry
from ._loops import LOOP_NAMES
from ._report import format_report, to_json
from ._runner import FAILED, Plan, Progress, run

_FULL_REPS, _QUICK_REPS = 5, 3
_FULL_PASSES, _QUICK_PASSES = 3, 2


def _names(text: str, known: list[str], what: str) -> list[str]:
    """Parse a comma-separated list of names, keeping the canonical order."""
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        problem = f"unknown {what} {', '.join(unknown)}" if unknown else f"no {what}"
        raise argparse.ArgumentTypeError(f"{problem}; choose from {', '.join(known)}")
    return [name for name in known if name in wanted]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser(workloads: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloop.bench",
        description=(
            "Compare cloop with stock asyncio and uvloop on event-loop"
            " workloads. Each measurement runs in a fresh process; rounds are"
            " interleaved across loops. Reports median time [min-max] per"
            " loop and 'A vs B' speed ratios (B median / A median, >1.00x"
            " means A is faster)."
        ),
        epilog=(
            f"workloads: {', '.join(workloads)}. Progress goes to stderr, the"
            " table to stdout. Exit status 1 if any workload FAILED."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller sizes, {_QUICK_REPS} processes x {_QUICK_PASSES} passes"
        " per cell (a few minutes)",
    )
    parser.add_argument(
        "--reps",
        type=_positive,
        metavar="N",
        help=f"worker processes per workload and loop (default {_FULL_REPS},"
        f" {_QUICK_REPS} with --quick)",
    )
    parser.add_argument(
        "--passes",
        type=_positive,
        metavar="N",
        help=f"timed passes per process after the warm-up, best kept (default"
        f" {_FULL_PASSES}, {_QUICK_PASSES} with --quick)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: _names(text, workloads, "workload"),
        metavar="NAMES",
        help="comma-separated workloads to run (default: all)",
    )
    parser.add_argument(
        "--loops",
        type=lambda text: _names(text, list(LOOP_NAMES), "loop"),
        default=list(LOOP_NAMES),
        metavar="NAMES",
        help=f"comma-separated loops to compare (default: {','.join(LOOP_NAMES)})",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write raw samples and results as JSON"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SEC",
        help="kill a worker after this long and report FAILED (default 120)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress line on stderr"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the workloads and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    registry = _registry.load()
    args = _parser(list(registry)).parse_args(argv)
    if args.list:
        for wl in registry.values():
            note = " [reference: no loop]" if wl.reference else ""
            note += f" [compared with {wl.vs}]" if wl.vs else ""
            print(f"{wl.name:22} n={wl.full:<8} quick n={wl.quick:<7} {wl.doc}{note}")
        return 0

    plan = Plan(
        workloads=[registry[name] for name in (args.only or registry)],
        loops=args.loops,
        reps=args.reps or (_QUICK_REPS if args.quick else _FULL_REPS),
        passes=args.passes or (_QUICK_PASSES if args.quick else _FULL_PASSES),
        quick=args.quick,
        timeout=args.timeout,
    )
    results = run(plan, Progress(sys.stderr, enabled=not args.no_progress))
    print(format_report(results), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_json(results, sys.argv), f, indent=2, default=repr)
            f.write("\n")
        print(f"wrote {args.json}")

    if results.interrupted:
        return 130
    failed = any(s.state == FAILED for s in results.loops.values()) or any(
        cell.error is not None for cell in results.cells.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
