"""The workload registry: how a workload is declared, timed and checked.

A workload is one function, registered with ``@workload``::

    @workload(full=1_000_000, quick=100_000)
    def call_soon(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
        '''One line that ``--list`` shows.'''
        ...                      # setup, not timed
        with timer:
            loop.run_forever()   # the measured body
        check(count == n, f"{count} of {n} callbacks ran")

The worker calls it once per pass with a fresh loop (created and closed
outside the timing) and the size ``n``: ``full`` normally, ``quick`` under
``--quick``. Pick ``full`` so that one timed pass takes roughly 0.1-0.5 s on
stock asyncio. The function must enter ``timer`` at least once (entries add
up) and must verify its own result with ``check``, so a loop that runs fast
but wrong is reported as FAILED instead of posting a number.

A workload that cannot run on this machine (a program it drives is not
installed) raises ``Skip(reason)``: it is reported as "skipped", not FAILED.
Time measured outside the process (by a load generator) is added with
``timer.record(seconds)`` instead of entering the timer.

Two optional fields relate rows. ``reference=True`` marks a workload that
does not use the loop at all (a server written in C, the ceiling): it runs
once per round instead of once per loop and gets one time. ``vs="other"``
asks the report for each loop's speed relative to the workload ``other``
(a reference, or a variant such as the same server writing in two calls).

Workloads live in the modules listed in ``_MODULES``; a new family
(networking, files) can go in its own module added there.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "CheckFailed",
    "Skip",
    "Timer",
    "Workload",
    "check",
    "load",
    "workload",
]

# Modules (relative to this package) that define workloads, in table order.
_MODULES = (
    "workloads",
    "net",
    "fs_workloads",
    "proc_workloads",
)


class CheckFailed(Exception):
    """A workload computed a wrong result."""


class Skip(Exception):
    """The workload cannot run here (say, a program it needs is missing)."""


def check(ok: bool, message: str) -> None:
    """Raise ``CheckFailed(message)`` unless ``ok``."""
    if not ok:
        raise CheckFailed(message)


class Timer:
    """Context manager accumulating ``time.perf_counter()`` time spent inside."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.entries = 0
        self._start = 0.0
        # Optional numbers a workload reports about its pass (say, the load
        # generator's CPU time); they reach --json, not the table.
        self.info: dict[str, float] = {}

    def __enter__(self) -> Timer:
        self.entries += 1
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.elapsed += time.perf_counter() - self._start

    def record(self, seconds: float) -> None:
        """Add time measured elsewhere (say, by a load generator process)."""
        self.entries += 1
        self.elapsed += seconds


WorkloadFunc = Callable[[asyncio.AbstractEventLoop, int, Timer], None]
F = TypeVar("F", bound=WorkloadFunc)


@dataclass(frozen=True)
class Workload:
    """A registered workload and its sizes."""

    name: str
    func: WorkloadFunc
    full: int
    quick: int
    doc: str
    reference: bool = False
    vs: str | None = None

    def size(self, quick: bool) -> int:
        return self.quick if quick else self.full


REGISTRY: dict[str, Workload] = {}


def workload(
    *,
    full: int,
    quick: int,
    name: str | None = None,
    reference: bool = False,
    vs: str | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as a workload (named after it)."""

    def register(func: F) -> F:
        key = name or func.__name__
        if key in REGISTRY:
            raise ValueError(f"workload {key!r} registered twice")
        doc = (func.__doc__ or "").strip().split("\n", 1)[0]
        REGISTRY[key] = Workload(key, func, full, quick, doc, reference, vs)
        return func

    return register


def load() -> dict[str, Workload]:
    """Import every workload module and return the registry, in table order."""
    for module in _MODULES:
        importlib.import_module(f".{module}", __package__)
    return REGISTRY
