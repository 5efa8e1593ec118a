"""Run one workload on one loop in this process and print one JSON line.

    python -m cloop.bench._worker LOOP WORKLOAD --size N [--passes K]
    python -m cloop.bench._worker --probe LOOP

Each pass gets a fresh loop; creating and closing it is not timed. One
warm-up pass runs first, then ``--passes`` timed passes. Success prints
``{"ok": true, "warmup": s, "times": [s, ...], ...}``. Failure prints
``{"ok": false, "error": "..."}`` (a traceback goes to stderr) and exits 1;
a loop that is not installed exits 3; a workload that cannot run here
(``Skip``) prints ``{"ok": false, "skipped": true, "error": reason}`` and
exits 4. ``--probe`` only creates and closes a
loop and reports its class and version (and cloop's ``features()``).

Run it directly to debug one workload, e.g.
``python -m cloop.bench._worker cloop timers_fire --size 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import traceback
from typing import Any, NoReturn

from . import _loops, _registry
from ._registry import CheckFailed, Skip, Timer, Workload

EXIT_FAILED = 1
EXIT_NOT_INSTALLED = 3
EXIT_SKIPPED = 4


def _format_context(context: dict[str, Any]) -> str:
    message = str(context.get("message", "unhandled error"))
    exc = context.get("exception")
    return f"{message}: {exc!r}" if exc is not None else message


def run_pass(
    make_loop: _loops.LoopFactory,
    wl: Workload,
    n: int,
    info: dict[str, float] | None = None,
) -> float:
    """Run one pass of ``wl`` on a fresh loop; return the timed seconds
    (and put the workload's ``timer.info`` into ``info``)."""
    gc.collect()
    loop = make_loop()
    errors: list[str] = []

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # An error inside a callback would otherwise be logged and the
        # workload could wait forever; stop and fail instead.
        errors.append(_format_context(context))
        loop.stop()

    loop.set_exception_handler(on_error)
    timer = Timer()
    try:
        wl.func(loop, n, timer)
    except Exception:
        if errors:
            raise CheckFailed(f"loop reported: {errors[0]}") from None
        raise
    finally:
        loop.close()
    if errors:
        raise CheckFailed(f"loop reported: {errors[0]}")
    if timer.entries == 0:
        raise RuntimeError(f"workload {wl.name} never entered its timer")
    if info is not None:
        info.update(timer.info)
    return timer.elapsed


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=repr) + "\n")
    sys.stdout.flush()


def _fail(status: int, error: str, **extra: Any) -> NoReturn:
    _emit({"ok": False, "error": error, **extra})
    sys.exit(status)


def _probe(loop_name: str) -> dict[str, Any]:
    # Only create and close a loop: a loop still being written may fail some
    # workloads and pass others, and each is reported on its own.
    loop = _loops.factory(loop_name)()
    info = {"class": f"{type(loop).__module__}.{type(loop).__qualname__}"}
    loop.close()
    info.update(_loops.describe(loop_name))
    return info


def _measure(loop_name: str, wl: Workload, size: int, passes: int) -> dict[str, Any]:
    make_loop = _loops.factory(loop_name)
    warmup = run_pass(make_loop, wl, size)
    infos: list[dict[str, float]] = [{} for _ in range(passes)]
    times = [run_pass(make_loop, wl, size, info) for info in infos]
    result: dict[str, Any] = {"warmup": warmup, "times": times}
    if any(infos):
        result["info"] = infos
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cloop.bench._worker",
        description="Run one benchmark workload on one loop (used by cloop.bench).",
    )
    parser.add_argument("loop", choices=_loops.LOOP_NAMES)
    parser.add_argument("workload", nargs="?")
    parser.add_argument("--size", type=int, help="workload size (default: full)")
    parser.add_argument("--passes", type=int, default=1, help="timed passes")
    parser.add_argument("--probe", action="store_true", help="only check the loop")
    args = parser.parse_args(argv)

    try:
        if args.probe:
            result = _probe(args.loop)
        else:
            workloads = _registry.load()
            if args.workload not in workloads:
                parser.error(f"unknown workload {args.workload!r}")
            wl = workloads[args.workload]
            size = args.size if args.size is not None else wl.full
            result = _measure(args.loop, wl, size, max(1, args.passes))
            result["size"] = size
    except _loops.NotInstalled as exc:
        _fail(EXIT_NOT_INSTALLED, str(exc))
    except Skip as exc:
        _fail(EXIT_SKIPPED, str(exc), skipped=True)
    except CheckFailed as exc:
        _fail(EXIT_FAILED, f"check failed: {exc}")
    except Exception as exc:
        traceback.print_exc()
        _fail(EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    result.update(ok=True, loop=args.loop, workload=args.workload)
    _emit(result)


if __name__ == "__main__":
    main()
