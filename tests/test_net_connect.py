"""create_connection()/create_server() options and their failures.

Host lists, happy eyeballs, interleave, all_errors, local_addr, family,
flags, unreachable and invalid addresses, and the Server object's
semantics, each against stock asyncio and cloop.  Where the address list
matters, the loop's getaddrinfo() is replaced by one returning a fixed
list, so the tests do not depend on the machine's resolver.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import sys
import tempfile

import pytest

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")


def dead_port(family=socket.AF_INET, host="127.0.0.1") -> int:
    """A port nothing listens on (bound, noted, released)."""
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def info(family, host, port):
    if family == socket.AF_INET6:
        addr = (host, port, 0, 0)
    else:
        addr = (host, port)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)


def fake_resolver(loop, table):
    """Make loop.getaddrinfo() answer names in table with fixed lists."""
    real = loop.getaddrinfo
    calls = []

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0,
                          flags=0):
        calls.append((host, port, family, type, proto, flags))
        if host in table:
            return list(table[host])
        return await real(host, port, family=family, type=type,
                          proto=proto, flags=flags)

    loop.getaddrinfo = getaddrinfo
    return calls


def bind_error_text(err: int, addr) -> str:
    """asyncio's message for a failed bind (its wording per version)."""
    reason = os.strerror(err).lower()
    if PY313:
        reason = f"[errno {err}] {reason}"
    return (f"[Errno {err}] error while attempting to bind on address "
            f"{addr!r}: {reason}")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def warm(loop) -> None:
    """Make one stream transport and close it.  libuv keeps one spare fd
    per loop from its first stream on (its reserve for EMFILE), so fd
    counts are compared only after that."""
    a, b = socket.socketpair()

    async def main():
        tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        tr.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    b.close()


class Listener:
    """A plain listening socket (IPv4 or IPv6 loopback)."""

    def __init__(self, family=socket.AF_INET, backlog=16):
        self.sock = socket.socket(family)
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.addr = self.sock.getsockname()
        self.port = self.addr[1]

    def close(self):
        self.sock.close()


class BlackHole:
    """A loopback address whose connects never complete: a listener with
    backlog 0 whose accept queue is already full drops further SYNs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.socket()
        self.filler.connect(("127.0.0.1", self.port))
        # Make sure the queue is full: a probe must stay pending.
        probe = socket.socket()
        probe.setblocking(False)
        probe.connect_ex(("127.0.0.1", self.port))
        import select
        _, w, _ = select.select([], [probe], [], 0.2)
        probe.close()
        if w:
            self.close()
            pytest.skip("cannot make a black-hole address here")

    def close(self):
        self.filler.close()
        self.sock.close()


# --- one address: refused, unreachable, invalid ---------------------------


def test_refused_exact_error(loop):
    port = dead_port()

    async def main():
        with pytest.raises(ConnectionRefusedError) as ei:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        return ei.value

    exc = loop.run_until_complete(main())
    assert exc.errno == errno.ECONNREFUSED
    assert str(exc) == (f"[Errno {errno.ECONNREFUSED}] Connect call failed "
                        f"('127.0.0.1', {port})")


@needs_ipv6
def test_refused_ipv6_exact_error(loop):
    port = dead_port(socket.AF_INET6, "::1")

    async def main():
        with pytest.raises(ConnectionRefusedError) as ei:
            await loop.create_connection(asyncio.Protocol, "::1", port)
        return ei.value

    exc = loop.run_until_complete(main())
    assert str(exc) == (f"[Errno {errno.ECONNREFUSED}] Connect call failed "
                        f"('::1', {port}, 0, 0)")


def test_refused_streams(loop):
    port = dead_port()

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    loop.run_until_complete(main())


def _unreachable_or_skip() -> tuple[str, int]:
    """An address the kernel refuses at once with ENETUNREACH."""
    candidates = [("224.0.0.1", socket.AF_INET)]
    for host, fam in candidates:
        with socket.socket(fam) as s:
            s.setblocking(False)
            if s.connect_ex((host, 9)) == errno.ENETUNREACH:
                return host, fam
    pytest.skip("no address gives ENETUNREACH at once here")


def test_network_unreachable(loop):
    host, _ = _unreachable_or_skip()
    before = fd_count()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(asyncio.Protocol, host, 9)
        return ei.value

    exc = loop.run_until_complete(main())
    assert type(exc) is OSError
    assert exc.errno == errno.ENETUNREACH
    assert str(exc) == f"[Errno {errno.ENETUNREACH}] Network is unreachable"
    gc.collect()
    assert fd_count() == before


@pytest.mark.skipif(not PY312, reason="all_errors is 3.12+")
def test_network_unreachable_all_errors(loop):
    host, _ = _unreachable_or_skip()

    async def main():
        with pytest.raises(ExceptionGroup) as ei:
            await loop.create_connection(asyncio.Protocol, host, 9,
                                         all_errors=True)
        return ei.value

    eg = loop.run_until_complete(main())
    assert eg.message == "create_connection failed"
    assert [type(e) for e in eg.exceptions] == [OSError]
    assert eg.exceptions[0].errno == errno.ENETUNREACH


@pytest.mark.parametrize("host, exc_type", [
    ("a" * 64 + ".example", UnicodeError),        # label too long for IDNA
    ("bad\x00host", (ValueError, TypeError, socket.gaierror)),
    ("256.256.256.256", socket.gaierror),        # not an address, no name
])
def test_invalid_host_string(loop, host, exc_type):
    """The exception (type and text) asyncio's getaddrinfo raises."""
    def outcome(lp):
        async def main():
            try:
                await lp.create_connection(asyncio.Protocol, host, 80,
                                           flags=socket.AI_NUMERICHOST)
            except Exception as exc:
                return exc
            raise AssertionError("connected")
        return lp.run_until_complete(main())

    exc = outcome(loop)
    assert isinstance(exc, exc_type)
    oracle = asyncio.SelectorEventLoop()
    try:
        expected = outcome(oracle)
    finally:
        oracle.close()
    assert type(exc) is type(expected)
    assert str(exc) == str(expected)


@pytest.mark.parametrize("port", ["notaport", -1, 70000, 1.5])
def test_invalid_port(loop, port):
    def outcome(lp):
        async def main():
            try:
                await lp.create_connection(asyncio.Protocol, "127.0.0.1",
                                           port)
            except Exception as exc:
                return exc
            raise AssertionError("connected")
        return lp.run_until_complete(main())

    exc = outcome(loop)
    oracle = asyncio.SelectorEventLoop()
    try:
        expected = outcome(oracle)
    finally:
        oracle.close()
    assert type(exc) is type(expected)
    assert str(exc) == str(expected)


def test_unknown_name_is_gaierror(loop):
    async def main():
        with pytest.raises(socket.gaierror) as ei:
            await loop.create_connection(asyncio.Protocol, "localhost", 80,
                                         flags=socket.AI_NUMERICHOST)
        return ei.value

    exc = loop.run_until_complete(main())
    assert exc.errno == socket.EAI_NONAME


def test_family_mismatch(loop):
    async def main():
        with pytest.raises(socket.gaierror) as e1:
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", 80,
                                         family=socket.AF_INET6)
        with pytest.raises(socket.gaierror) as e2:
            await loop.create_connection(asyncio.Protocol, "::1", 80,
                                         family=socket.AF_INET)
        return e1.value, e2.value

    e1, e2 = loop.run_until_complete(main())
    ref = []
    for host, fam in (("127.0.0.1", socket.AF_INET6), ("::1", socket.AF_INET)):
        try:
            socket.getaddrinfo(host, 80, fam, socket.SOCK_STREAM)
        except socket.gaierror as exc:
            ref.append(exc)
    assert (e1.errno, str(e1)) == (ref[0].errno, str(ref[0]))
    assert (e2.errno, str(e2)) == (ref[1].errno, str(ref[1]))


def test_family_selects_address(loop):
    """family=AF_INET picks the IPv4 entry of a mixed answer."""
    lst = Listener()

    async def main():
        calls = fake_resolver(loop, {})
        tr, pr = await loop.create_connection(
            asyncio.Protocol, "localhost", lst.port, family=socket.AF_INET,
            flags=socket.AI_ADDRCONFIG)
        assert tr.get_extra_info("socket").family == socket.AF_INET
        assert tr.get_extra_info("peername") == ("127.0.0.1", lst.port)
        tr.close()
        await asyncio.sleep(0)
        assert calls and calls[0][2] == socket.AF_INET
        assert calls[0][5] == socket.AI_ADDRCONFIG
        assert calls[0][3] == socket.SOCK_STREAM

    try:
        loop.run_until_complete(main())
    finally:
        lst.close()


# --- several addresses -----------------------------------------------------


def test_second_address_used_after_refusal(loop):
    lst = Listener()
    dead = dead_port()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", dead),
        info(socket.AF_INET, "127.0.0.1", lst.port),
    ]})

    async def main():
        tr, pr = await loop.create_connection(asyncio.Protocol,
                                              "multi.test", 0)
        assert tr.get_extra_info("peername") == ("127.0.0.1", lst.port)
        tr.close()
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        lst.close()


def test_multiple_exceptions_message(loop):
    p1, p2 = dead_port(), dead_port()
    while p2 == p1:
        p2 = dead_port()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", p1),
        info(socket.AF_INET, "127.0.0.1", p2),
    ]})
    before = fd_count()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(asyncio.Protocol, "multi.test", 0)
        return ei.value

    exc = loop.run_until_complete(main())
    assert type(exc) is OSError
    assert exc.errno is None
    r = errno.ECONNREFUSED
    assert str(exc) == (
        f"Multiple exceptions: [Errno {r}] Connect call failed "
        f"('127.0.0.1', {p1}), [Errno {r}] Connect call failed "
        f"('127.0.0.1', {p2})")
    gc.collect()
    assert fd_count() == before


def test_same_errors_raise_the_first(loop):
    """Identical messages: the first exception itself is raised."""
    p = dead_port()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", p),
        info(socket.AF_INET, "127.0.0.1", p),
    ]})

    async def main():
        with pytest.raises(ConnectionRefusedError) as ei:
            await loop.create_connection(asyncio.Protocol, "multi.test", 0)
        return ei.value

    exc = loop.run_until_complete(main())
    assert str(exc) == (f"[Errno {errno.ECONNREFUSED}] Connect call failed "
                        f"('127.0.0.1', {p})")


@pytest.mark.skipif(not PY312, reason="all_errors is 3.12+")
@pytest.mark.parametrize("delay", [None, 0.01])
def test_all_errors_group(loop, delay):
    p1, p2 = dead_port(), dead_port()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", p1),
        info(socket.AF_INET, "127.0.0.1", p2),
    ]})

    async def main():
        with pytest.raises(ExceptionGroup) as ei:
            await loop.create_connection(asyncio.Protocol, "multi.test", 0,
                                         all_errors=True,
                                         happy_eyeballs_delay=delay)
        return ei.value

    eg = loop.run_until_complete(main())
    assert eg.message == "create_connection failed"
    assert [type(e) for e in eg.exceptions] == [ConnectionRefusedError] * 2
    assert [e.args[1] for e in eg.exceptions] == [
        f"Connect call failed ('127.0.0.1', {p1})",
        f"Connect call failed ('127.0.0.1', {p2})"]


@needs_ipv6
@pytest.mark.parametrize("interleave, delay, order", [
    (None, None, ["6a", "6b", "4a", "4b"]),
    (1, None, ["6a", "4a", "6b", "4b"]),
    (2, None, ["6a", "6b", "4a", "4b"]),
    (None, 0.01, ["6a", "4a", "6b", "4b"]),   # happy eyeballs: interleave=1
])
def test_interleave_order(loop, interleave, delay, order):
    """Attempts go in asyncio's order (seen in the combined message)."""
    ports = {"6a": dead_port(socket.AF_INET6, "::1"),
             "6b": dead_port(socket.AF_INET6, "::1"),
             "4a": dead_port(), "4b": dead_port()}
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET6, "::1", ports["6a"]),
        info(socket.AF_INET6, "::1", ports["6b"]),
        info(socket.AF_INET, "127.0.0.1", ports["4a"]),
        info(socket.AF_INET, "127.0.0.1", ports["4b"]),
    ]})

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(asyncio.Protocol, "multi.test", 0,
                                         interleave=interleave,
                                         happy_eyeballs_delay=delay)
        return ei.value

    exc = loop.run_until_complete(main())
    text = str(exc)
    assert text.startswith("Multiple exceptions: ")
    where = {k: text.index(f", {p}") for k, p in ports.items()}
    assert sorted(where, key=where.get) == order


def test_happy_eyeballs_skips_black_hole(loop):
    """A first address that never answers is abandoned after the delay;
    its socket is closed and its writer removed."""
    hole = BlackHole()
    lst = Listener()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", hole.port),
        info(socket.AF_INET, "127.0.0.1", lst.port),
    ]})
    warm(loop)
    before = fd_count()

    async def main():
        tr, pr = await asyncio.wait_for(loop.create_connection(
            asyncio.Protocol, "multi.test", 0, happy_eyeballs_delay=0.05), 10)
        assert tr.get_extra_info("peername") == ("127.0.0.1", lst.port)
        tr.close()
        await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(main())
    finally:
        lst.close()
        hole.close()
    gc.collect()
    assert fd_count() == before - 3


def test_happy_eyeballs_first_wins(loop):
    lst = Listener()
    dead = dead_port()
    fake_resolver(loop, {"multi.test": [
        info(socket.AF_INET, "127.0.0.1", lst.port),
        info(socket.AF_INET, "127.0.0.1", dead),
    ]})

    async def main():
        tr, pr = await loop.create_connection(
            asyncio.Protocol, "multi.test", 0, happy_eyeballs_delay=0.25)
        assert tr.get_extra_info("peername") == ("127.0.0.1", lst.port)
        tr.close()
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        lst.close()


def test_cancel_connect_releases_socket(loop):
    hole = BlackHole()
    before = fd_count()

    async def main():
        task = asyncio.ensure_future(
            loop.create_connection(asyncio.Protocol, "127.0.0.1", hole.port))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        loop.run_until_complete(main())
        gc.collect()
        assert fd_count() == before
    finally:
        hole.close()


def test_connect_timeout(loop):
    hole = BlackHole()
    before = fd_count()

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(
                loop.create_connection(asyncio.Protocol, "127.0.0.1",
                                       hole.port), 0.05)

    try:
        loop.run_until_complete(main())
        gc.collect()
        assert fd_count() == before
    finally:
        hole.close()


# --- local_addr -------------------------------------------------------------


def test_local_addr_bound(loop):
    lst = Listener()
    local_port = dead_port()

    async def main():
        tr, pr = await loop.create_connection(
            asyncio.Protocol, "127.0.0.1", lst.port,
            local_addr=("127.0.0.1", local_port))
        assert tr.get_extra_info("sockname") == ("127.0.0.1", local_port)
        tr.close()
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        lst.close()


def test_local_addr_not_local(loop):
    """An address no interface has: EADDRNOTAVAIL, asyncio's message."""
    lst = Listener()
    before = fd_count()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", lst.port,
                local_addr=("192.0.2.254", 0))
        return ei.value

    try:
        exc = loop.run_until_complete(main())
    finally:
        lst.close()
    if exc.errno != errno.EADDRNOTAVAIL:
        pytest.skip(f"192.0.2.254 is local here ({exc!r})")
    assert type(exc) is OSError
    assert str(exc) == bind_error_text(errno.EADDRNOTAVAIL,
                                       ("192.0.2.254", 0))
    gc.collect()
    assert fd_count() == before - 1


def test_local_addr_in_use(loop):
    lst = Listener()
    busy = Listener()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", lst.port,
                local_addr=("127.0.0.1", busy.port))
        return ei.value

    try:
        exc = loop.run_until_complete(main())
    finally:
        lst.close()
        busy.close()
    assert type(exc) is OSError
    assert exc.errno == errno.EADDRINUSE
    assert str(exc) == bind_error_text(errno.EADDRINUSE,
                                       ("127.0.0.1", busy.port))


@needs_ipv6
def test_local_addr_family_mismatch(loop):
    lst = Listener()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", lst.port,
                local_addr=("::1", 0))
        return ei.value

    try:
        exc = loop.run_until_complete(main())
    finally:
        lst.close()
    assert type(exc) is OSError
    assert str(exc) == (
        f"no matching local address with family={socket.AF_INET!r} found")


def test_sock_argument_errors(loop):
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError, match="A Stream Socket was"):
                await loop.create_connection(asyncio.Protocol, sock=s)
            with pytest.raises(ValueError, match="can not be specified"):
                await loop.create_connection(asyncio.Protocol, "127.0.0.1",
                                             80, sock=s)
        with pytest.raises(ValueError, match="no sock specified"):
            await loop.create_connection(asyncio.Protocol)

    loop.run_until_complete(main())


def test_protocol_factory_raising(loop):
    """The factory's exception propagates; asyncio does not close the
    connected socket then, so it is left to the garbage collector."""
    lst = Listener()

    def factory():
        raise ZeroDivisionError("factory")

    async def main():
        with pytest.raises(ZeroDivisionError):
            await loop.create_connection(factory, "127.0.0.1", lst.port)

    try:
        with pytest.warns(ResourceWarning, match="unclosed <socket"):
            loop.run_until_complete(main())
            gc.collect()
    finally:
        lst.close()


# --- Unix sockets -----------------------------------------------------------


def test_unix_connect_errors(loop):
    with tempfile.TemporaryDirectory() as d:
        missing = os.path.join(d, "missing")
        regular = os.path.join(d, "file")
        open(regular, "w").close()
        stale = os.path.join(d, "stale")
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()
        before = fd_count()

        async def main():
            out = []
            for path in (missing, regular, stale, "x" * 200):
                try:
                    await loop.create_unix_connection(asyncio.Protocol,
                                                      path)
                except Exception as exc:
                    out.append(exc)
            return out

        excs = loop.run_until_complete(main())
        gc.collect()
        assert fd_count() == before
    assert [type(e) for e in excs] == [
        FileNotFoundError, ConnectionRefusedError, ConnectionRefusedError,
        OSError]
    assert [e.errno for e in excs[:3]] == [
        errno.ENOENT, errno.ECONNREFUSED, errno.ECONNREFUSED]
    assert str(excs[3]) == "AF_UNIX path too long"


def test_unix_connect_streams_refused(loop):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.listen()
        s.close()

        async def main():
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_unix_connection(path)

        loop.run_until_complete(main())


# --- create_server ----------------------------------------------------------


class Accepting(asyncio.Protocol):
    made: list

    def connection_made(self, tr):
        type(self).made.append(tr)


def proto_class():
    return type("P", (Accepting,), {"made": []})


async def connect_and_wait(loop, P, family, addr, n_before):
    c = socket.socket(family)
    c.setblocking(False)
    await loop.sock_connect(c, addr)
    for _ in range(200):
        if len(P.made) > n_before:
            break
        await asyncio.sleep(0.005)
    assert len(P.made) == n_before + 1
    return c


@needs_ipv6
def test_server_host_list(loop):
    P = proto_class()

    async def main():
        srv = await loop.create_server(P, ["127.0.0.1", "::1"], 0)
        socks = srv.sockets
        assert sorted(s.family for s in socks) == [socket.AF_INET,
                                                   socket.AF_INET6]
        assert all(type(s).__name__ == "TransportSocket" for s in socks)
        clients = []
        for s in socks:
            clients.append(await connect_and_wait(
                loop, P, s.family, s.getsockname(), len(clients)))
        for tr in P.made:
            tr.close()
        for c in clients:
            c.close()
        srv.close()
        await srv.wait_closed()
        assert srv.sockets == ()

    loop.run_until_complete(main())


def test_server_host_list_with_duplicates(loop):
    """Hosts resolving to the same address are bound once."""

    async def main():
        srv = await loop.create_server(asyncio.Protocol,
                                       ["127.0.0.1", "127.0.0.1"], 0)
        assert len(srv.sockets) == 1
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_server_bind_error_message(loop):
    busy = Listener()

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_server(asyncio.Protocol, "127.0.0.1",
                                     busy.port, reuse_address=False)
        return ei.value

    before = fd_count()
    try:
        exc = loop.run_until_complete(main())
    finally:
        busy.close()
    assert type(exc) is OSError
    assert exc.errno == errno.EADDRINUSE
    assert str(exc) == bind_error_text(errno.EADDRINUSE,
                                       ("127.0.0.1", busy.port))
    gc.collect()
    assert fd_count() == before - 1


def test_server_reuse_address(loop):
    async def main():
        out = []
        for reuse in (None, True, False):
            srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                           reuse_address=reuse)
            out.append(srv.sockets[0].getsockopt(socket.SOL_SOCKET,
                                                 socket.SO_REUSEADDR) != 0)
            srv.close()
            await srv.wait_closed()
        return out

    assert loop.run_until_complete(main()) == [True, True, False]


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_server_reuse_port(loop):
    async def main():
        a = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                     reuse_port=True)
        port = a.sockets[0].getsockname()[1]
        assert a.sockets[0].getsockopt(socket.SOL_SOCKET,
                                       socket.SO_REUSEPORT)
        b = await loop.create_server(asyncio.Protocol, "127.0.0.1", port,
                                     reuse_port=True)
        assert b.sockets[0].getsockname()[1] == port
        with pytest.raises(OSError) as ei:
            await loop.create_server(asyncio.Protocol, "127.0.0.1", port)
        assert ei.value.errno == errno.EADDRINUSE
        for s in (a, b):
            s.close()
            await s.wait_closed()

    loop.run_until_complete(main())


def test_server_listens_only_when_serving(loop):
    """start_serving=False: bound but not listening (refused) until
    start_serving()."""
    P = proto_class()

    async def main():
        srv = await loop.create_server(P, "127.0.0.1", 0, backlog=2,
                                       start_serving=False)
        addr = srv.sockets[0].getsockname()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, *addr)
        await srv.start_serving()
        c = await connect_and_wait(loop, P, socket.AF_INET, addr, 0)
        P.made[0].close()
        c.close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


def test_server_semantics(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0,
                                       start_serving=False)
        assert srv.get_loop() is loop
        assert not srv.is_serving()
        assert len(srv.sockets) == 1
        task = asyncio.ensure_future(srv.serve_forever())
        await asyncio.sleep(0)
        assert srv.is_serving()
        with pytest.raises(RuntimeError, match="already being awaited"):
            await srv.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not srv.is_serving()
        assert srv.sockets == ()
        srv.close()  # idempotent
        await srv.wait_closed()
        with pytest.raises(RuntimeError, match="is closed"):
            await srv.serve_forever()

    loop.run_until_complete(main())


def test_server_closed_refuses_connections(loop):
    async def main():
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)

    loop.run_until_complete(main())


def test_server_async_with_closes_on_error(loop):
    async def main():
        with pytest.raises(ZeroDivisionError):
            async with await loop.create_server(
                    asyncio.Protocol, "127.0.0.1", 0) as srv:
                assert srv.is_serving()
                raise ZeroDivisionError
        assert not srv.is_serving()
        assert srv.sockets == ()

    loop.run_until_complete(main())


@pytest.mark.skipif(not PY313, reason="3.13 API")
def test_abort_clients(loop):
    made = []

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            self.lost = loop.create_future()
            made.append(self)
            tr.write(b"x" * (4 << 20))  # stays queued: the peer won't read

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        srv = await loop.create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        c = socket.socket()
        c.setblocking(False)
        await loop.sock_connect(c, ("127.0.0.1", port))
        while not made:
            await asyncio.sleep(0.005)
        srv.close()
        srv.abort_clients()
        assert await asyncio.wait_for(made[0].lost, 5) is None
        await asyncio.wait_for(srv.wait_closed(), 5)
        c.close()

    loop.run_until_complete(main())


@pytest.mark.skipif(not PY313, reason="3.13 API")
def test_close_clients_flushes(loop):
    """close_clients() closes each transport gracefully: queued data is
    still delivered."""
    payload = os.urandom(1 << 20)

    class P(asyncio.Protocol):
        def connection_made(self, tr):
            tr.write(payload)

    async def main():
        srv = await loop.create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.01)
        srv.close()
        srv.close_clients()
        got = await r.read()
        assert got == payload
        await asyncio.wait_for(srv.wait_closed(), 5)
        w.close()
        await w.wait_closed()

    loop.run_until_complete(main())


def test_unix_server_path_errors(loop):
    with tempfile.TemporaryDirectory() as d:
        regular = os.path.join(d, "regular")
        open(regular, "w").close()
        before = fd_count()

        async def main():
            out = {}
            for key, path in (("regular", regular),
                              ("missing-dir", os.path.join(d, "no", "s")),
                              ("too-long", os.path.join(d, "x" * 120))):
                try:
                    await loop.create_unix_server(asyncio.Protocol, path)
                except Exception as exc:
                    out[key] = exc
            return out

        out = loop.run_until_complete(main())
        gc.collect()
        assert fd_count() == before
    assert type(out["regular"]) is OSError
    assert out["regular"].errno == errno.EADDRINUSE
    assert str(out["regular"]) == (
        f"[Errno {errno.EADDRINUSE}] Address {regular!r} is already in use")
    assert type(out["missing-dir"]) is FileNotFoundError
    assert type(out["too-long"]) is OSError
    assert str(out["too-long"]) == "AF_UNIX path too long"


def test_unix_server_replaces_live_socket_file(loop):
    """A path bound by another live socket is unlinked and rebound (asyncio
    only checks that it is a socket); bytes paths work too."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "live")
        other = socket.socket(socket.AF_UNIX)
        other.bind(path)
        other.listen()

        class Closer(asyncio.Protocol):
            def connection_made(self, tr):
                tr.close()

        async def main():
            srv = await loop.create_unix_server(Closer, os.fsencode(path))
            assert srv.sockets[0].getsockname() == path
            r, w = await asyncio.open_unix_connection(path)
            assert await r.read() == b""
            w.close()
            await w.wait_closed()
            srv.close()
            await srv.wait_closed()

        try:
            loop.run_until_complete(main())
        finally:
            other.close()


def test_unix_abstract_namespace(loop):
    name = f"\0cloop-test-{os.getpid()}-{id(loop)}"
    made = []

    async def main():
        srv = await loop.create_unix_server(
            lambda: type("P", (asyncio.Protocol,), {
                "connection_made": lambda self, tr: made.append(tr)})(),
            name)
        assert srv.sockets[0].getsockname() == name.encode()
        tr, _ = await loop.create_unix_connection(asyncio.Protocol, name)
        for _ in range(200):
            if made:
                break
            await asyncio.sleep(0.005)
        assert len(made) == 1
        tr.close()
        made[0].close()
        srv.close()
        await srv.wait_closed()

    loop.run_until_complete(main())


@needs_ipv6
def test_server_all_interfaces(loop):
    """host=None (and ""): one socket per family, on the wildcard address."""

    async def main():
        out = []
        for host in (None, ""):
            srv = await loop.create_server(asyncio.Protocol, host, 0)
            out.append(sorted((s.family, s.getsockname()[0])
                              for s in srv.sockets))
            srv.close()
            await srv.wait_closed()
        return out

    for socks in loop.run_until_complete(main()):
        assert socks == [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]


def test_server_host_list_bad_name_closes_bound(loop):
    """A name in the host list that does not resolve fails the whole call;
    nothing stays bound."""
    before = fd_count()

    async def main():
        with pytest.raises(socket.gaierror):
            await loop.create_server(asyncio.Protocol,
                                     ["127.0.0.1", "256.1.1.1"], 0,
                                     flags=socket.AI_NUMERICHOST)

    loop.run_until_complete(main())
    gc.collect()
    assert fd_count() == before
