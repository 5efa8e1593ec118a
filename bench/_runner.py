"""Run workers in fresh processes, interleaving the loops, and collect samples.

Every measurement is a new ``python -m <package>._worker`` process, so no loop
inherits another's heap, caches or imports. Repetitions are interleaved: each
round runs every workload once on every loop, and the loop order is rotated
from one (round, workload) to the next so none always goes first. A loop is
probed once up front; one that is not installed is skipped, and a workload
that fails on a loop is not retried in later rounds.

A reference workload (``Workload.reference``: a C server, no loop involved)
runs once per round, hosted by a worker on the stock asyncio loop; its cell
is keyed by the pseudo-loop ``REFERENCE``. A workload that reports
``Skip`` is marked skipped and not run again.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ._registry import Workload
from ._worker import EXIT_NOT_INSTALLED, EXIT_SKIPPED

__all__ = ["REFERENCE", "Cell", "LoopStatus", "Plan", "Progress", "Results", "run"]

OK = "ok"
FAILED = "failed"
NOT_INSTALLED = "not installed"
SKIPPED = "skipped"

# The cell key of reference workloads, and the loop that hosts their worker.
REFERENCE = "ref"
_REFERENCE_HOST = "asyncio"

_WORKER = f"{__package__}._worker"


def _interpreter_flags() -> list[str]:
    """The runner's own interpreter options (-X dev, -S, -W ...), for workers."""
    # Private but stable (multiprocessing and test.support rely on it).
    flags = getattr(subprocess, "_args_from_interpreter_flags", None)
    return list(flags()) if flags is not None else []


@dataclass(frozen=True)
class Plan:
    """What to run: workloads, loops, how often, how big."""

    workloads: list[Workload]
    loops: list[str]
    reps: int
    passes: int
    quick: bool
    timeout: float

    def size(self, wl: Workload) -> int:
        return wl.size(self.quick)


@dataclass
class LoopStatus:
    """The outcome of probing one loop: usable, not installed, or broken."""

    name: str
    state: str
    error: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cell:
    """One workload on one loop: a sample per worker process, or a failure."""

    samples: list[float] = field(default_factory=list)  # best pass per process
    passes: list[list[float]] = field(default_factory=list)  # every timed pass
    warmups: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why the workload could not run here
    info: list[list[dict[str, float]]] = field(default_factory=list)  # per pass


@dataclass
class Results:
    plan: Plan
    loops: dict[str, LoopStatus]
    cells: dict[tuple[str, str], Cell]  # keyed by (workload, loop)
    elapsed: float = 0.0
    interrupted: bool = False


@dataclass(frozen=True)
class _Outcome:
    state: str
    payload: dict[str, Any]
    error: str


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _run_worker(args: list[str], timeout: float) -> _Outcome:
    """Run one worker process and interpret its exit status and JSON line."""
    command = [sys.executable, *_interpreter_flags(), "-m", _WORKER, *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return _Outcome(FAILED, {}, f"timed out after {timeout:g} s")
    payload: dict[str, Any] = {}
    lines = proc.stdout.strip().splitlines()
    if lines:
        try:
            payload = json.loads(lines[-1])
        except ValueError:
            pass
    if proc.returncode == 0 and payload.get("ok"):
        return _Outcome(OK, payload, "")
    if proc.returncode == EXIT_NOT_INSTALLED:
        return _Outcome(NOT_INSTALLED, payload, payload.get("error", ""))
    if proc.returncode == EXIT_SKIPPED and payload.get("skipped"):
        return _Outcome(SKIPPED, payload, payload.get("error", ""))
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        error = f"crashed ({name})"
        if proc.stderr.strip():
            error += f": {_tail(proc.stderr)}"
    else:
        error = (
            payload.get("error")
            or _tail(proc.stderr)
            or (f"exit status {proc.returncode}")
        )
    return _Outcome(FAILED, payload, error)


def probe(loop: str, timeout: float) -> LoopStatus:
    """Check in a fresh process that ``loop`` is installed and can run."""
    outcome = _run_worker([loop, "--probe"], timeout)
    info = {
        k: v for k, v in outcome.payload.items() if k not in ("ok", "loop", "workload")
    }
    return LoopStatus(loop, outcome.state, outcome.error, info)


def schedule(plan: Plan, loops: list[str]) -> Iterator[tuple[int, Workload, str]]:
    """Yield (round, workload, loop) in interleaved, rotated order; a
    reference workload once per round, with the loop ``REFERENCE``."""
    for rep in range(plan.reps):
        for index, wl in enumerate(plan.workloads):
            if wl.reference:
                yield rep, wl, REFERENCE
                continue
            if not loops:
                continue
            shift = (rep + index) % len(loops)
            for loop in loops[shift:] + loops[:shift]:
                yield rep, wl, loop


class Progress:
    """One status line on a stream, rewritten in place on a terminal.

    On a terminal the line is truncated to the terminal width (a wrapped line
    could not be rewritten) and erased by ``clear()`` before the report is
    printed. Elsewhere (a log file) each update is a line of its own.
    """

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = stream.isatty()
        self._width = 0

    def update(self, text: str) -> None:
        if not self._enabled:
            return
        if self._tty:
            columns = shutil.get_terminal_size().columns - 1
            text = text[:columns]
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def clear(self) -> None:
        if self._enabled and self._tty and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def run(plan: Plan, progress: Progress) -> Results:
    """Probe the loops, then run the plan; Ctrl-C stops early with partial results."""
    started = time.perf_counter()
    results = Results(plan, {}, {})
    try:
        for loop in plan.loops:
            progress.update(f"probing {loop}")
            results.loops[loop] = probe(loop, plan.timeout)
        usable = [name for name in plan.loops if results.loops[name].state == OK]
        for wl in plan.workloads:
            for loop in [REFERENCE] if wl.reference else usable:
                results.cells[wl.name, loop] = Cell()
        jobs = list(schedule(plan, usable))
        for number, (rep, wl, loop) in enumerate(jobs, 1):
            cell = results.cells[wl.name, loop]
            if cell.error is not None or cell.skipped is not None:
                continue
            progress.update(
                f"[{number}/{len(jobs)} {_elapsed(time.perf_counter() - started)}]"
                f" {wl.name} {loop} rep {rep + 1}/{plan.reps}"
            )
            args = [
                _REFERENCE_HOST if loop == REFERENCE else loop,
                wl.name,
                "--size",
                str(plan.size(wl)),
                "--passes",
                str(plan.passes),
            ]
            outcome = _run_worker(args, plan.timeout)
            if outcome.state == OK:
                times = [float(t) for t in outcome.payload["times"]]
                cell.samples.append(min(times))
                cell.passes.append(times)
                cell.warmups.append(float(outcome.payload["warmup"]))
                if "info" in outcome.payload:
                    cell.info.append(outcome.payload["info"])
            elif outcome.state == SKIPPED:
                cell.skipped = outcome.error or "skipped"
            else:
                cell.error = outcome.error or outcome.state
    except KeyboardInterrupt:
        results.interrupted = True
    finally:
        progress.clear()
    results.elapsed = time.perf_counter() - started
    return results
