"""Smoke tests of the bench tool's networking workloads (cloop.bench.net).

Each workload runs once on cloop with a tiny size and must pass its own
checks; nothing is timed. The C helpers are built with the package: when
they are missing these tests skip, as do the HTTP ones without wrk or
httptools.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

import cloop
from cloop.bench import _registry, _tools, _worker
from cloop.bench._registry import Skip, Timer
from cloop.bench._report import format_report, ratios, relative
from cloop.bench._runner import REFERENCE, Cell, LoopStatus, Plan, Results

REGISTRY = _registry.load()

try:
    _tools.bench_tool("echo_load")
    _tools.bench_tool("echo_uv")
except Skip as exc:  # pragma: no cover
    pytest.skip(f"bench C tools not built: {exc}", allow_module_level=True)

# Tiny sizes: a few milliseconds each.
SIZES = {
    "tcp_bulk_stream": 2,
    "http_one": 2000,
    "http_split": 2000,
    "http_pipelined": 5000,
    "http_pipelined_split": 5000,
    "getaddrinfo_numeric": 50,
    "getaddrinfo_localhost": 20,
}
NET = [name for name in REGISTRY if REGISTRY[name].func.__module__.endswith(".net")]


def test_net_workloads_are_registered() -> None:
    assert {"tcp_echo_proto_1k", "unix_echo_proto_1k", "udp_echo_512"} <= set(NET)
    assert {"http_one", "http_split", "getaddrinfo_numeric", "c_tcp_echo_1k"} <= set(NET)
    assert {"http_pipelined", "http_pipelined_split"} <= set(NET)
    for name in NET:
        wl = REGISTRY[name]
        assert wl.doc, name
        assert wl.vs is None or wl.vs in REGISTRY, name


@pytest.mark.parametrize("name", NET)
def test_workload_passes_on_cloop(name: str) -> None:
    wl = REGISTRY[name]
    size = SIZES.get(name, 64)
    try:
        elapsed = _worker.run_pass(cloop.new_event_loop, wl, size)
    except Skip as exc:
        pytest.skip(str(exc))
    assert elapsed > 0


def test_client_detects_a_corrupted_echo() -> None:
    """echo_load compares every byte: a server that flips one fails it."""

    class Corrupt(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            corrupted = bytes([data[0] ^ 1]) + data[1:]
            self.transport.write(corrupted)  # type: ignore[attr-defined]

    async def main() -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Corrupt, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        argv = [_tools.bench_tool("echo_load"), "tcp", "127.0.0.1", str(port)]
        proc, done = _tools.watch_process(loop, [*argv, "2", "100", "10", "10"])
        code, _, err, _ = await done
        server.close()
        await server.wait_closed()
        assert proc.returncode == code
        return code, err

    code, err = asyncio.run(main())
    assert code == 1
    assert "differs" in err


def test_reference_server_stops_with_its_stdin() -> None:
    with _tools.Server("tcp", "127.0.0.1", "0") as server:
        assert server.port > 0
        argv = [_tools.bench_tool("echo_load"), "tcp", "127.0.0.1", str(server.port)]
        out = subprocess.run([*argv, "3", "10", "30"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert _tools.parse_fields(out.stdout)["requests"] == "30"
    assert server._proc is None


def cpu_cell(seconds: float, cpu: float) -> Cell:
    """A cell of one process with one pass that reported its server CPU."""
    info = [[{"server_cpu_s": cpu}]]
    return Cell(samples=[seconds], passes=[[seconds]], info=info)


def test_report_shows_reference_relative_and_skipped() -> None:
    names = ("tcp_echo_proto_1k", "c_tcp_echo_1k", "http_one")
    plan = Plan([REGISTRY[name] for name in names], ["uvloop", "cloop"], 1, 1, True, 10.0)
    ok = {"version": "x", "class": "L"}
    results = Results(
        plan,
        {name: LoopStatus(name, "ok", info=ok) for name in plan.loops},
        {
            ("tcp_echo_proto_1k", "uvloop"): Cell(samples=[0.2]),
            ("tcp_echo_proto_1k", "cloop"): cpu_cell(0.1, 0.05),
            ("c_tcp_echo_1k", REFERENCE): cpu_cell(0.08, 0.04),
            ("http_one", "uvloop"): Cell(skipped="wrk is not installed"),
            ("http_one", "cloop"): Cell(skipped="wrk is not installed"),
        },
    )
    rel = relative(results, "tcp_echo_proto_1k")
    assert rel == {"uvloop": pytest.approx(0.4), "cloop": pytest.approx(0.8)}
    # CPU time only where both rows reported it.
    rel = relative(results, "tcp_echo_proto_1k", cpu=True)
    assert rel == {"uvloop": None, "cloop": pytest.approx(0.8)}
    text = format_report(results)
    assert "C on libuv" in text
    assert "tcp_echo_proto_1k vs c_tcp_echo_1k" in text
    assert "0.80x" in text
    assert "server CPU time" in text
    assert "skipped (not a failure):" in text
    assert "FAILED" not in text


def test_report_compares_server_cpu_between_loops() -> None:
    plan = Plan([REGISTRY["http_one"]], ["uvloop", "cloop"], 1, 1, True, 10.0)
    ok = {"version": "x", "class": "L"}
    results = Results(
        plan,
        {name: LoopStatus(name, "ok", info=ok) for name in plan.loops},
        {
            ("http_one", "uvloop"): cpu_cell(0.1, 0.09),
            ("http_one", "cloop"): cpu_cell(0.1, 0.06),
        },
    )
    assert ratios(results, "http_one") == {"cloop_vs_uvloop": pytest.approx(1.0)}
    cpu = ratios(results, "http_one", cpu=True)
    assert cpu == {"cloop_vs_uvloop": pytest.approx(1.5)}
    text = format_report(results)
    assert "x less CPU" in text
    assert "1.50x" in text


def test_timer_record_counts_as_an_entry() -> None:
    timer = Timer()
    timer.record(0.25)
    timer.record(0.5)
    assert timer.entries == 2
    assert timer.elapsed == 0.75
