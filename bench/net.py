"""The networking workloads: servers on the loop under test, clients outside it.

Every server here runs in the worker process on the loop being measured;
the client is another process that does not use that loop: ``echo_load``
(C on plain epoll, built with the package) for echo and bulk transfers,
``wrk`` for HTTP. The time is the client's own clock, from before its first
connect to its last verified byte, added with ``Timer.record``. The
client checks every echoed byte and the workload checks the server's own
count, so a loop that drops, reorders or duplicates data FAILS.

Rows:

- ``tcp_echo_{proto,streams,sock}_{1k,10k,100k}``: TCP echo, 32 connections,
  each sending a message and waiting for the whole echo before the next;
  the server is an ``asyncio.Protocol``, ``asyncio.start_server`` streams,
  or ``sock_accept``/``sock_recv``/``sock_sendall`` tasks.
- ``unix_echo_proto_1k``: the Protocol server on a Unix socket.
- ``udp_echo_512``: a ``DatagramProtocol`` echoing 512-byte datagrams.
- ``tcp_bulk_stream``: a streams server writing n MiB to one client
  (``write`` + ``drain`` in 64 KB chunks): throughput and flow control.
- ``http_one``, ``http_split``: an HTTP/1.1 keep-alive Protocol server
  parsing with ``httptools``, loaded by ``wrk``; the response goes out as
  one ``write()``, or as headers and body in two (the split penalty is
  ``http_split`` vs ``http_one``).
- ``http_pipelined``, ``http_pipelined_split``: the same servers with wrk
  pipelining 16 requests per connection. One wrk thread sending one
  request at a time is slower than these servers, so ``http_one`` mostly
  measures wrk; pipelined, the server sets the pace.
- ``getaddrinfo_numeric``, ``getaddrinfo_localhost``: n sequential awaits.
- ``c_tcp_echo_1k``, ``c_unix_echo_1k``, ``c_udp_echo_512``: the same
  clients against ``echo_uv``, an echo server in C on libuv alone: the
  ceiling, reported as reference rows.

Full sizes aim at 0.1-0.5 s per pass on the slowest loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from ._registry import Skip, Timer, check, workload
from ._tools import (
    Server,
    bench_tool,
    parse_fields,
    process_cpu,
    system_tool,
    watch_process,
)

# Concurrent client connections of the echo workloads.
ECHO_CONNS = 32
# Concurrent connections of wrk (one wrk thread: the server has the other core).
HTTP_CONNS = 32
# Requests in flight per connection in the pipelined rows.
HTTP_DEPTH = 16
# Give up (and FAIL) after this long; well under the runner's worker timeout.
CLIENT_TIMEOUT = 60.0
_HOST = "127.0.0.1"


class _Stats:
    """What a server saw: bytes echoed, connections ended, requests served."""

    def __init__(self) -> None:
        self.bytes = 0
        self.closed = 0
        self.requests = 0
        self.target = -1  # call on_target() when requests reaches this
        self.on_target: Callable[[], None] = lambda: None


def _load(mode: str, where: list[str], conns: int, size: int, requests: int) -> list[str]:
    args = [mode, *where, str(conns), str(size), str(requests), str(CLIENT_TIMEOUT)]
    return [bench_tool("echo_load"), *args]


async def _drive(loop: asyncio.AbstractEventLoop, argv: list[str]) -> dict[str, str]:
    """Run a client process while the loop serves; return its result fields
    plus ``server_cpu``, this process's CPU time meanwhile."""
    _, done = watch_process(loop, argv)
    cpu = process_cpu()
    code, out, err, _ = await done
    cpu = process_cpu() - cpu
    name = os.path.basename(argv[0])
    check(code == 0, f"client {name} failed ({code}): {err.strip()}")
    return {**parse_fields(out), "server_cpu": str(cpu)}


def _record_echo(timer: Timer, result: dict[str, str], requests: int, size: int) -> None:
    check(
        result.get("requests") == str(requests),
        f"client finished {result.get('requests')} of {requests} requests",
    )
    check(
        result.get("bytes") == str(requests * size),
        f"client verified {result.get('bytes')} bytes, expected {requests * size}",
    )
    _record(timer, result)


def _record(timer: Timer, result: dict[str, str]) -> None:
    """Add the client's time, and both sides' CPU time to ``timer.info``: a
    side busy nearly all the time (``*_busy`` near 1) sets the pace."""
    elapsed = float(result["elapsed"])
    timer.record(elapsed)
    for side, key in (("client", "cpu"), ("server", "server_cpu")):
        if key in result:
            timer.info[f"{side}_cpu_s"] = float(result[key])
            timer.info[f"{side}_busy"] = float(result[key]) / elapsed


async def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``predicate()`` (servers see the clients' EOFs
    after the client has exited); FAIL after a few seconds."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    check(False, f"timed out waiting for {what}")


# --- echo servers -----------------------------------------------------------


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.stats.bytes += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.closed += 1


async def _serve_proto(
    loop: asyncio.AbstractEventLoop, stats: _Stats, unix_path: str | None
) -> tuple[asyncio.AbstractServer, list[str]]:
    if unix_path is not None:
        server = await loop.create_unix_server(lambda: _EchoProtocol(stats), unix_path)
        return server, [unix_path]
    server = await loop.create_server(lambda: _EchoProtocol(stats), _HOST, 0)
    port = server.sockets[0].getsockname()[1]
    return server, [_HOST, str(port)]


async def _serve_streams(
    loop: asyncio.AbstractEventLoop, stats: _Stats
) -> tuple[asyncio.AbstractServer, list[str]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                stats.bytes += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            stats.closed += 1

    server = await asyncio.start_server(handle, _HOST, 0)
    port = server.sockets[0].getsockname()[1]
    return server, [_HOST, str(port)]


class _SockServer:
    """sock_accept() in a task; each connection a sock_recv/sock_sendall task."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: _Stats) -> None:
        self.loop = loop
        self.stats = stats
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((_HOST, 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.tasks: set[asyncio.Task[None]] = set()
        self.acceptor = loop.create_task(self._accept())

    async def _accept(self) -> None:
        while True:
            conn, _ = await self.loop.sock_accept(self.listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._echo(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _echo(self, conn: socket.socket) -> None:
        loop = self.loop
        try:
            while data := await loop.sock_recv(conn, 65536):
                self.stats.bytes += len(data)
                await loop.sock_sendall(conn, data)
        finally:
            conn.close()
            self.stats.closed += 1

    async def close(self) -> None:
        self.acceptor.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(self.acceptor, *self.tasks, return_exceptions=True)
        self.listener.close()


def _echo_run(
    loop: asyncio.AbstractEventLoop, timer: Timer, kind: str, size: int, requests: int
) -> None:
    """One pass of a TCP or Unix echo workload on the loop under test."""
    stats = _Stats()

    async def main(tmp: str) -> None:
        server: asyncio.AbstractServer | _SockServer
        if kind == "sock":
            server = _SockServer(loop, stats)
            where = [_HOST, str(server.listener.getsockname()[1])]
        elif kind == "streams":
            server, where = await _serve_streams(loop, stats)
        else:
            unix = os.path.join(tmp, "echo.sock") if kind == "unix" else None
            server, where = await _serve_proto(loop, stats, unix)
        mode = "unix" if kind == "unix" else "tcp"
        try:
            argv = _load(mode, where, ECHO_CONNS, size, requests)
            result = await _drive(loop, argv)
            _record_echo(timer, result, requests, size)
            await _wait_for(
                lambda: stats.closed >= ECHO_CONNS, "the connections to end"
            )
        finally:
            if isinstance(server, _SockServer):
                await server.close()
            else:
                server.close()
                await server.wait_closed()

    with tempfile.TemporaryDirectory(prefix="cloop-bench-") as tmp:
        loop.run_until_complete(main(tmp))
    check(
        stats.bytes == requests * size,
        f"server echoed {stats.bytes} bytes, expected {requests * size}",
    )


def _register_echo(
    kind: str, label: str, size: int, full: int, quick: int, doc: str
) -> None:
    def run(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
        _echo_run(loop, timer, kind, size, n)

    run.__doc__ = doc
    # 1 KiB rows are compared with the C server's.
    vs = None
    if size == 1024:
        vs = "c_unix_echo_1k" if kind == "unix" else "c_tcp_echo_1k"
    workload(full=full, quick=quick, name=label, vs=vs)(run)


_ECHO_SIZES = (
    # label, bytes, full n, quick n
    ("1k", 1024, 10_000, 2_000),
    ("10k", 10 * 1024, 8_000, 1_600),
    ("100k", 100 * 1024, 2_000, 400),
)
_KIND_TEXT = {
    "proto": "an asyncio.Protocol server",
    "streams": "a start_server() streams server (read, write, drain)",
    "sock": "sock_accept + sock_recv/sock_sendall tasks",
}
for _kind in ("proto", "streams", "sock"):
    for _label, _size, _full, _quick in _ECHO_SIZES:
        _register_echo(
            _kind,
            f"tcp_echo_{_kind}_{_label}",
            _size,
            _full,
            _quick,
            f"TCP echo of {_size // 1024} KiB messages, {ECHO_CONNS} connections:"
            f" {_KIND_TEXT[_kind]}",
        )
_register_echo(
    "unix",
    "unix_echo_proto_1k",
    1024,
    10_000,
    2_000,
    f"Unix-socket echo of 1 KiB messages, {ECHO_CONNS} connections: an asyncio.Protocol",
)


# --- UDP --------------------------------------------------------------------


class _UDPEcho(asyncio.DatagramProtocol):
    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stats.bytes += len(data)
        self.stats.requests += 1
        self.transport.sendto(data, addr)  # type: ignore[union-attr]


_UDP_SIZE = 512


@workload(full=10_000, quick=2_000, vs="c_udp_echo_512")
def udp_echo_512(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """UDP echo of 512-byte datagrams, 32 client sockets: a DatagramProtocol."""
    stats = _Stats()

    async def main() -> None:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDPEcho(stats), local_addr=(_HOST, 0)
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            argv = _load("udp", [_HOST, str(port)], ECHO_CONNS, _UDP_SIZE, n)
            _record_echo(timer, await _drive(loop, argv), n, _UDP_SIZE)
        finally:
            transport.close()
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    check(stats.requests == n, f"server echoed {stats.requests} of {n} datagrams")


# --- bulk -------------------------------------------------------------------

# One chunk repeats the client's p % 251 pattern exactly (251 * 256 bytes).
_CHUNK = bytes(range(251)) * 256
_MIB = 1 << 20


@workload(full=256, quick=32)
def tcp_bulk_stream(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """One streams server connection writes n MiB (write + drain, 62.75 KiB chunks)."""
    total = n * _MIB
    sent = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        try:
            want = int.from_bytes(await reader.readexactly(8), "big")
            view = memoryview(_CHUNK)
            while sent < want:
                piece = view[: min(len(_CHUNK), want - sent)]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, _HOST, 0)
        try:
            port = server.sockets[0].getsockname()[1]
            argv = _load("sink", [_HOST, str(port)], 1, total, 1)
            result = await _drive(loop, argv)
            got = result.get("bytes")
            check(got == str(total), f"client got {got} of {total} bytes")
            _record(timer, result)
        finally:
            server.close()
            await server.wait_closed()

    loop.run_until_complete(main())
    check(sent == total, f"server wrote {sent} of {total} bytes")


# --- HTTP -------------------------------------------------------------------

_BODY = b'{"message": "Hello, World!", "padding": "' + b"x" * 200 + b'"}\n'
_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n"
    b"\r\n"
)

# wrk prints its exact totals (durations in microseconds). A response()
# hook could check each body too, but it doubles wrk's cost per request;
# wrong framing shows up as read errors, a wrong status as status errors.
_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "CLOOP requests=%d bytes=%d duration_us=%d connect=%d read=%d"
    .. " write=%d status=%d timeout=%d\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read,
    e.write, e.status, e.timeout))
end
"""
# Pipelining: each send is depth requests (wrk counts the responses).
_WRK_PIPELINE = """
init = function(args)
  local r = {}
  for i = 1, %d do r[i] = wrk.format(nil, "/") end
  pipelined = table.concat(r)
end
request = function() return pipelined end
"""


class _HTTPProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1: every complete request gets the same response."""

    def __init__(self, stats: _Stats, split: bool, parser_class: Any) -> None:
        self.stats = stats
        self.split = split
        self.parser = parser_class(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:  # httptools.HttpParserError and friends
            self.stats.bytes += 1  # counted as a bad request
            self.transport.close()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        stats = self.stats
        stats.requests += 1
        if stats.requests == stats.target:
            stats.on_target()
        transport = self.transport
        assert transport is not None
        if self.split:
            transport.write(_HEAD)
            transport.write(_BODY)
        else:
            transport.write(_HEAD + _BODY)


def _http_run(
    loop: asyncio.AbstractEventLoop, n: int, timer: Timer, split: bool, depth: int = 1
) -> None:
    wrk = system_tool("wrk")
    try:
        import httptools  # type: ignore[import-not-found]
    except ImportError:
        raise Skip("httptools is not installed (pip install 'cloop[bench]')") from None
    stats = _Stats()

    async def main(script: str) -> None:
        server = await loop.create_server(
            lambda: _HTTPProtocol(stats, split, httptools.HttpRequestParser), _HOST, 0
        )
        try:
            port = server.sockets[0].getsockname()[1]
            argv = [wrk, "-t1", f"-c{HTTP_CONNS}", f"-d{int(CLIENT_TIMEOUT)}s"]
            argv += ["-s", script, f"http://{_HOST}:{port}/"]
            proc, done = watch_process(loop, argv)
            # wrk runs for a fixed time, or until SIGINT: the server sends
            # it once it has answered n requests.
            stats.target = n
            stats.on_target = lambda: proc.send_signal(signal.SIGINT)
            server_cpu = process_cpu()
            code, out, err, cpu = await done
            server_cpu = process_cpu() - server_cpu
            check(code == 0, f"wrk failed ({code}): {err.strip() or out.strip()}")
            lines = [line for line in out.splitlines() if line.startswith("CLOOP ")]
            check(bool(lines), f"wrk printed no totals: {out.strip()!r}")
            r = {k: int(v) for k, v in parse_fields(lines[-1]).items()}
            errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout")}
            check(not any(errors.values()), f"wrk saw errors: {errors}")
            size = len(_HEAD) + len(_BODY)
            # Responses cut short when wrk stopped may add a little.
            check(
                r["requests"] * size
                <= r["bytes"]
                <= (r["requests"] + HTTP_CONNS * depth) * size,
                f"wrk read {r['bytes']} bytes in {r['requests']} responses of {size}",
            )
            check(stats.bytes == 0, "the server could not parse a request")
            answered = stats.requests
            check(answered >= n, f"server answered {answered} of {n} requests")
            check(
                stats.requests >= r["requests"] >= n // 2,
                f"server answered {stats.requests}, wrk counted {r['requests']}",
            )
            # wrk's clock runs on a little after the signal, and its count
            # with it; the rate is what it measured, scaled to n requests.
            timer.record(r["duration_us"] / 1e6 * n / r["requests"])
            for side, used in (("client", cpu), ("server", server_cpu)):
                timer.info[f"{side}_cpu_s"] = used
                timer.info[f"{side}_busy"] = used / (r["duration_us"] / 1e6)
        finally:
            server.close()
            await server.wait_closed()

    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="cloop-bench-") as f:
        f.write(_WRK_DONE + (_WRK_PIPELINE % depth if depth > 1 else ""))
        f.flush()
        loop.run_until_complete(main(f.name))


@workload(full=20_000, quick=5_000)
def http_one(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """HTTP/1.1 keep-alive Protocol (httptools), one write() per response; wrk -c32."""
    _http_run(loop, n, timer, split=False)


@workload(full=20_000, quick=5_000, vs="http_one")
def http_split(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The http_one server writing headers and body in two write() calls."""
    _http_run(loop, n, timer, split=True)


@workload(full=200_000, quick=50_000)
def http_pipelined(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The http_one server with wrk pipelining 16 requests per connection."""
    _http_run(loop, n, timer, split=False, depth=HTTP_DEPTH)


@workload(full=200_000, quick=50_000, vs="http_pipelined")
def http_pipelined_split(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The http_split server with wrk pipelining 16 requests per connection."""
    _http_run(loop, n, timer, split=True, depth=HTTP_DEPTH)


# --- getaddrinfo ------------------------------------------------------------


def _gai_run(loop: asyncio.AbstractEventLoop, n: int, timer: Timer, host: str) -> None:
    expected = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    wrong = 0

    async def main() -> None:
        nonlocal wrong
        getaddrinfo = loop.getaddrinfo
        for _ in range(n):
            result = await getaddrinfo(host, 80, type=socket.SOCK_STREAM)
            if result != expected:
                wrong += 1

    with timer:
        loop.run_until_complete(main())
    check(wrong == 0, f"{wrong} of {n} results differ from socket.getaddrinfo's")


@workload(full=10_000, quick=2_000)
def getaddrinfo_numeric(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n sequential await loop.getaddrinfo('127.0.0.1', 80, type=SOCK_STREAM)."""
    _gai_run(loop, n, timer, "127.0.0.1")


@workload(full=5_000, quick=1_000)
def getaddrinfo_localhost(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n sequential await loop.getaddrinfo('localhost', 80, type=SOCK_STREAM)."""
    _gai_run(loop, n, timer, "localhost")


# --- the C ceiling ----------------------------------------------------------


def _reference(mode: str, timer: Timer, size: int, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cloop-bench-") as tmp:
        path = os.path.join(tmp, "echo.sock")
        server_args = ["unix", path] if mode == "unix" else [mode, _HOST, "0"]
        with Server(*server_args) as server:
            where = [path] if mode == "unix" else [_HOST, str(server.port)]
            argv = _load(mode, where, ECHO_CONNS, size, n)
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            check(proc.returncode == 0, f"echo_load failed: {proc.stderr.strip()}")
            result = parse_fields(proc.stdout)
            _record_echo(timer, result, n, size)
    # Known once echo_uv has exited.
    timer.info["server_cpu_s"] = server.cpu
    timer.info["server_busy"] = server.cpu / float(result["elapsed"])


@workload(full=10_000, quick=2_000, reference=True)
def c_tcp_echo_1k(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The ceiling: TCP echo of 1 KiB messages against echo_uv (C on libuv)."""
    _reference("tcp", timer, 1024, n)


@workload(full=10_000, quick=2_000, reference=True)
def c_unix_echo_1k(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The ceiling: Unix-socket echo of 1 KiB messages against echo_uv."""
    _reference("unix", timer, 1024, n)


@workload(full=10_000, quick=2_000, reference=True)
def c_udp_echo_512(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """The ceiling: UDP echo of 512-byte datagrams against echo_uv."""
    _reference("udp", timer, _UDP_SIZE, n)

