"""The final report: a plain-text table and the ``--json`` document.

Times are shown in milliseconds as ``median [min-max]`` over the worker
processes. Speed columns read "A vs B" = B's median / A's median, i.e. how
many times faster A ran than B (``2.31x``: A took 1/2.31 of B's time; below
``1.00x`` A is slower). The last row is the geometric mean of each ratio
over the workloads where both loops have a number.

Reference workloads (a C server, no loop) get a table of their own, and
workloads declared ``vs`` another one get a "relative speed" table: per
loop, the other workload's median / this one's (the reference's single
median when the other is a reference).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from ._registry import Workload
from ._runner import FAILED, NOT_INSTALLED, OK, REFERENCE, SKIPPED, Cell, Results
from ._stats import Summary, geomean, speedup

__all__ = ["RATIOS", "format_report", "ratios", "relative", "to_json"]

# (A, B) pairs, shown as "A vs B" when both loops were selected.
RATIOS = (("cloop", "asyncio"), ("cloop", "uvloop"), ("uvloop", "asyncio"))

_GAP = "  "


def _selected_ratios(results: Results) -> list[tuple[str, str]]:
    loops = results.plan.loops
    return [(a, b) for a, b in RATIOS if a in loops and b in loops]


def _summary(results: Results, workload: str, loop: str) -> Summary | None:
    cell = results.cells.get((workload, loop))
    if cell is None or cell.error is not None or not cell.samples:
        return None
    return Summary.of(cell.samples)


def ratios(
    results: Results, workload: str, cpu: bool = False
) -> dict[str, float | None]:
    """Speed ratios for one workload, keyed ``"a_vs_b"`` (b median / a
    median); with ``cpu``, of the server's CPU seconds per pass."""
    measure = _server_cpu if cpu else _summary
    out: dict[str, float | None] = {}
    for a, b in _selected_ratios(results):
        sa, sb = measure(results, workload, a), measure(results, workload, b)
        out[f"{a}_vs_{b}"] = speedup(sb.median, sa.median) if sa and sb else None
    return out


def _loop_workloads(results: Results) -> list[Workload]:
    return [wl for wl in results.plan.workloads if not wl.reference]


def _by_name(results: Results) -> dict[str, Workload]:
    return {wl.name: wl for wl in results.plan.workloads}


def _server_cpu(results: Results, workload: str, loop: str) -> Summary | None:
    """The server's CPU seconds per pass (``info["server_cpu_s"]``), if the
    workload reported them for every timed pass."""
    cell = results.cells.get((workload, loop))
    if cell is None or cell.error is not None or not cell.samples:
        return None
    values = [p.get("server_cpu_s") for proc in cell.info for p in proc]
    if not values or len(values) != sum(len(t) for t in cell.passes):
        return None
    if any(v is None for v in values):
        return None
    return Summary.of([float(v) for v in values if v is not None])


def relative(
    results: Results, workload: str, cpu: bool = False
) -> dict[str, float | None] | None:
    """Per loop, the ``vs`` workload's median / this one's (with ``cpu``:
    of the server's CPU time per pass); None when the workload has no
    ``vs`` or it was not selected."""
    wl = _by_name(results).get(workload)
    other = _by_name(results).get(wl.vs) if wl is not None and wl.vs else None
    if wl is None or other is None:
        return None
    measure = _server_cpu if cpu else _summary
    out: dict[str, float | None] = {}
    for loop in results.plan.loops:
        mine = measure(results, workload, loop)
        theirs = measure(results, other.name, REFERENCE if other.reference else loop)
        out[loop] = speedup(theirs.median, mine.median) if mine and theirs else None
    return out


def _geomeans(results: Results) -> dict[str, float | None]:
    per_workload = [ratios(results, wl.name) for wl in _loop_workloads(results)]
    keys = [f"{a}_vs_{b}" for a, b in _selected_ratios(results)]
    means: dict[str, float | None] = {}
    for key in keys:
        values = [r[key] for r in per_workload]
        means[key] = geomean(v for v in values if v is not None)
    return means


def _ms(seconds: float) -> str:
    # Three significant digits; thresholds such that 99.97 prints as "100".
    ms = seconds * 1000
    if ms >= 99.95:
        return f"{ms:.0f}"
    if ms >= 9.995:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _count(n: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if n >= scale and n % (scale // 10) == 0:
            value = n / scale
            return f"{value:g}{unit}"
    return str(n)


def _time_cell(results: Results, workload: str, loop: str) -> str:
    status = results.loops.get(loop)
    if status is None:  # interrupted before the probe
        return "-"
    if status.state == NOT_INSTALLED:
        return "not installed"
    if status.state != OK:
        return "FAILED"
    return _cell_text(results.cells[workload, loop])


def _cell_text(cell: Cell) -> str:
    if cell.error is not None:
        return "FAILED"
    if cell.skipped is not None:
        return "skipped"
    if not cell.samples:
        return "-"
    s = Summary.of(cell.samples)
    return f"{_ms(s.median)} [{_ms(s.low)}-{_ms(s.high)}]"


def _ratio_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _spans(groups: list[str]) -> list[tuple[int, int]]:
    """(first, last) column index of each run of equal group titles."""
    spans: list[tuple[int, int]] = []
    for index, title in enumerate(groups):
        if spans and groups[spans[-1][0]] == title:
            spans[-1] = (spans[-1][0], index)
        else:
            spans.append((index, index))
    return spans


def _layout(groups: list[str], header: list[str], rows: list[list[str]]) -> list[str]:
    """Align columns: the first left, the rest right; group titles span columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def span_width(first: int, last: int) -> int:
        return sum(widths[first : last + 1]) + len(_GAP) * (last - first)

    # Widen the last column of a group when its title is wider than the span.
    for first, last in _spans(groups):
        widths[last] += max(0, len(groups[first]) - span_width(first, last))
    titles = [
        groups[first].center(span_width(first, last)) for first, last in _spans(groups)
    ]
    lines = [_GAP.join(titles).rstrip()]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [row[i].rjust(widths[i]) for i in range(1, len(row))]
        lines.append(_GAP.join(cells).rstrip())
    return lines


def _loop_label(results: Results, loop: str) -> str:
    status = results.loops.get(loop)
    if status is None:
        return f"{loop}: not probed"
    if status.state == OK:
        version = status.info.get("version") or "?"
        return f"{loop} {version} ({status.info.get('class', '?')})"
    if status.state == NOT_INSTALLED:
        return f"{loop}: not installed ({status.error})"
    return f"{loop}: FAILED (see below)"


def format_report(results: Results) -> str:
    plan = results.plan
    mode = "quick" if plan.quick else "full"
    lines = [
        f"cloop.bench: Python {platform.python_version()}"
        f" ({platform.python_implementation()}), {platform.platform()},"
        f" {os.cpu_count()} CPUs; {mode} mode: {plan.reps} worker process(es)"
        f" x {plan.passes} timed pass(es) per cell; {results.elapsed:.0f} s",
        "loops: " + "; ".join(_loop_label(results, loop) for loop in plan.loops),
        "",
    ]
    pairs = _selected_ratios(results)
    groups = ["", ""] + ["time, ms: median [min-max]"] * len(plan.loops)
    groups += [f"{a}: x faster" for a, _ in pairs]
    header = ["workload", "n", *plan.loops, *(f"vs {b}" for _, b in pairs)]
    rows = []
    for wl in _loop_workloads(results):
        r = ratios(results, wl.name)
        rows.append(
            [wl.name, _count(plan.size(wl))]
            + [_time_cell(results, wl.name, loop) for loop in plan.loops]
            + [_ratio_cell(r[f"{a}_vs_{b}"]) for a, b in pairs]
        )
    if pairs:
        means = _geomeans(results)
        rows.append(
            ["geomean", ""]
            + [""] * len(plan.loops)
            + [_ratio_cell(means[f"{a}_vs_{b}"]) for a, b in pairs]
        )
    lines += _layout(groups, header, rows)
    lines += [
        "",
        f"time: median over worker processes (each: warm-up, then best of"
        f" {plan.passes} timed passes); [min-max] across processes.",
    ]
    if pairs:
        lines.append(
            "A vs B: B median / A median = how many times faster A ran"
            " (>1.00x: A faster). geomean: over workloads with both numbers."
        )
    lines += _server_cpu_table(results)
    lines += _reference_table(results)
    lines += _relative_table(results)
    problems = [
        f"  {loop}: FAILED to start: {status.error}"
        for loop, status in results.loops.items()
        if status.state == FAILED
    ]
    problems += [
        f"  {workload} on {loop}: FAILED: {cell.error}"
        for (workload, loop), cell in results.cells.items()
        if cell.error is not None
    ]
    if problems:
        lines += ["", "problems:", *problems]
    skipped: dict[str, list[str]] = {}
    for (workload, loop), cell in results.cells.items():
        if cell.skipped is not None:
            skipped.setdefault(f"{workload}: {cell.skipped}", []).append(loop)
    if skipped:
        lines += ["", "skipped (not a failure):"]
        lines += [f"  {text} ({', '.join(loops)})" for text, loops in skipped.items()]
    if results.interrupted:
        lines += ["", "interrupted: the numbers above are partial."]
    return "\n".join(lines)


def _reference_table(results: Results) -> list[str]:
    refs = [wl for wl in results.plan.workloads if wl.reference]
    if not refs:
        return []
    rows = []
    for wl in refs:
        cell = results.cells.get((wl.name, REFERENCE))
        text = "-" if cell is None else _cell_text(cell)
        rows.append([wl.name, _count(results.plan.size(wl)), text])
    groups = ["", "", "time, ms: median [min-max]"]
    header = ["reference (no Python)", "n", "C on libuv"]
    return ["", *_layout(groups, header, rows)]


def _server_cpu_table(results: Results) -> list[str]:
    """The time table's ratios, of the servers' CPU time instead: what each
    loop spends per pass where the client, not the server, may set the
    pace (both sides busy on a 2-core machine)."""
    pairs = _selected_ratios(results)
    rows = []
    for wl in _loop_workloads(results):
        r = ratios(results, wl.name, cpu=True)
        if pairs and any(v is not None for v in r.values()):
            rows.append([wl.name, *(_ratio_cell(r[f"{a}_vs_{b}"]) for a, b in pairs)])
    if not rows:
        return []
    groups = ["", *(f"{a}: x less CPU" for a, _ in pairs)]
    header = ["server CPU time", *(f"vs {b}" for _, b in pairs)]
    return [
        "",
        *_layout(groups, header, rows),
        "server CPU time: B's median CPU seconds per pass / A's, for the"
        " server process (>1.00x: A's server used less CPU for the same work).",
    ]


def _relative_table(results: Results) -> list[str]:
    loops = results.plan.loops
    rows = []
    for wl in _loop_workloads(results):
        rel = relative(results, wl.name)
        if rel is None:
            continue
        rows.append([f"{wl.name} vs {wl.vs}", *(_ratio_cell(rel[lp]) for lp in loops)])
    if not rows:
        return []
    groups = ["", *["x the other's speed"] * len(loops)]
    lines = ["", *_layout(groups, ["workload vs other", *loops], rows)]
    lines.append(
        "relative speed: the other row's median / this row's, per loop"
        " (1.00x: as fast; 0.90x: 10% slower)."
    )
    cpu_rows = []
    for wl in _loop_workloads(results):
        rel = relative(results, wl.name, cpu=True)
        if rel is None or all(v is None for v in rel.values()):
            continue
        cells = (_ratio_cell(rel[lp]) for lp in loops)
        cpu_rows.append([f"{wl.name} vs {wl.vs}", *cells])
    if cpu_rows:
        groups = ["", *["x the other's CPU efficiency"] * len(loops)]
        lines += ["", *_layout(groups, ["server CPU time", *loops], cpu_rows)]
        lines.append(
            "server CPU time: the same ratio of the servers' CPU seconds per"
            " pass (steadier than wall time when the machine is shared)."
        )
    return lines


def _cell_json(results: Results, workload: str, loop: str) -> dict[str, Any]:
    if loop != REFERENCE:
        status = results.loops[loop]
        if status.state != OK:
            return {"state": status.state, "error": status.error}
    cell: Cell = results.cells[workload, loop]
    state = OK
    if cell.error is not None:
        state = FAILED
    elif cell.skipped is not None:
        state = SKIPPED
    out: dict[str, Any] = {
        "state": state,
        "error": cell.error or cell.skipped,
        "samples_s": cell.samples,
        "passes_s": cell.passes,
        "warmups_s": cell.warmups,
    }
    if cell.info:
        out["info"] = cell.info
    if cell.error is None and cell.samples:
        s = Summary.of(cell.samples)
        out.update(median_s=s.median, min_s=s.low, max_s=s.high)
    return out


def to_json(results: Results, argv: list[str]) -> dict[str, Any]:
    """Everything measured, for ``--json``: raw samples, medians and ratios."""
    plan = results.plan
    cloop = results.loops.get("cloop")
    return {
        "tool": "cloop.bench",
        "format": 1,
        "argv": argv,
        "python": sys.version,
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "mode": "quick" if plan.quick else "full",
        "reps": plan.reps,
        "passes": plan.passes,
        "elapsed_s": results.elapsed,
        "interrupted": results.interrupted,
        "loops": {
            name: {"state": s.state, "error": s.error, **s.info}
            for name, s in results.loops.items()
        },
        "cloop_features": cloop.info.get("features") if cloop else None,
        "workloads": {wl.name: _workload_json(results, wl) for wl in plan.workloads},
        "geomean": _geomeans(results),
    }


def _workload_json(results: Results, wl: Workload) -> dict[str, Any]:
    plan = results.plan
    out: dict[str, Any] = {"doc": wl.doc, "size": plan.size(wl)}
    if wl.reference:
        cells = [REFERENCE] if (wl.name, REFERENCE) in results.cells else []
        out["reference"] = True
        out["loops"] = {key: _cell_json(results, wl.name, key) for key in cells}
        return out
    out["loops"] = {
        loop: _cell_json(results, wl.name, loop)
        for loop in plan.loops
        if loop in results.loops
    }
    out["ratios"] = ratios(results, wl.name)
    cpu = ratios(results, wl.name, cpu=True)
    if any(v is not None for v in cpu.values()):
        out["server_cpu_ratios"] = cpu
    if wl.vs is not None:
        out["vs"] = wl.vs
        out["relative"] = relative(results, wl.name)
        out["relative_server_cpu"] = relative(results, wl.name, cpu=True)
    return out
