"""getaddrinfo() and getnameinfo(): results and errors as the socket module's.

The grid tests compare cloop's answers with socket.getaddrinfo() and
socket.getnameinfo() called directly (lists compared for exact equality,
exceptions by type and args), over hosts that cloop answers itself
(address literals) and hosts it sends to libuv's worker pool (legacy
forms, scoped IPv6, localhost, None, errors).  The behaviour tests run on
stock asyncio and cloop alike.

No test touches the network: hosts are literals or localhost (answered by
/etc/hosts for AF_INET), and everything that could reach a DNS server
(names, '', malformed literals) is asked with AI_NUMERICHOST.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import re
import socket
import sys
import weakref

import pytest

AF_INET, AF_INET6, AF_UNIX = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX
STREAM, DGRAM, RAW = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW
NUMERIC = socket.AI_NUMERICHOST

# Hosts that never reach a resolver whatever the other arguments are:
# glibc parses them as numbers (the legacy forms with inet_aton()).
LITERAL_HOSTS = [
    "127.0.0.1",
    b"127.0.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    b"::1",
    "::",
    "::0001",
    "2001:DB8::1",
    "::ffff:1.2.3.4",
    "fe80::1%lo",
    "fe80::1%1",
    "127.1",
    "0x7f.1",
    "017.0.0.1",
    "2130706433",
    None,
]

# Hosts asked only with AI_NUMERICHOST, so a resolver is never consulted.
NUMERIC_ONLY_HOSTS = [
    "",
    "localhost",
    "1.2.3.256",
    " 1.2.3.4",
    "1.2.3.4.",
    "1.2.3.4%1",
    "fe80::1%no-such-if",
    "::1::",
    "a..b",
    "b\u00fccher.example",
    b"\xff.example",
    "127.0.0.1\x00junk",
    b"127.0.0.1\x00junk",
    123,
    1.5,
]

PORTS = [
    80,
    0,
    65535,
    65536,
    -1,
    2**70,
    "80",
    b"80",
    "080",
    " +80",
    "",
    "http",
    "no-such-service",
    "8\udc80",
    None,
    1.5,
    True,
]

FAMILIES = [0, AF_INET, AF_INET6, AF_UNIX]
TYPES = [0, STREAM, DGRAM, RAW]
PROTOS = [0, socket.IPPROTO_TCP, socket.IPPROTO_UDP]
FLAGS = [
    0,
    socket.AI_PASSIVE,
    NUMERIC | socket.AI_NUMERICSERV,
    socket.AI_CANONNAME,
    socket.AI_V4MAPPED | socket.AI_ALL,
    socket.AI_ADDRCONFIG,
]


def getaddrinfo_grid():
    """(host, port, family, type, proto, flags) cases, a few thousand."""
    cases = []
    for host, port, type_ in itertools.product(LITERAL_HOSTS, PORTS, TYPES):
        cases.append((host, port, 0, type_, 0, 0))
    for host, family, type_, proto, flags in itertools.product(
        LITERAL_HOSTS, FAMILIES, TYPES, PROTOS, FLAGS
    ):
        cases.append((host, 80, family, type_, proto, flags))
        if type_ == proto == 0:
            cases.append((host, None, family, type_, proto, flags))
    for host, port, type_ in itertools.product(NUMERIC_ONLY_HOSTS, PORTS[:8], TYPES):
        cases.append((host, port, 0, type_, 0, NUMERIC))
    for family, flags in itertools.product([0, AF_INET], [0, socket.AI_CANONNAME]):
        cases.append(("localhost", 80, family, 0, 0, flags))
        cases.append(("LOCALHOST", "http", family, STREAM, 0, flags))
    # Extra integer checks: out of C int range, wrong types.
    cases += [
        ("127.0.0.1", 80, 2**40, 0, 0, 0),
        ("127.0.0.1", 80, 0, -(2**40), 0, 0),
        ("127.0.0.1", 80, 0, 0, 1.5, 0),
        ("127.0.0.1", 80, 0, 0, 0, "1"),
        ("127.0.0.1", 80, 0, 0, 0, -1),
        ("127.0.0.1", 80, socket.AddressFamily.AF_INET, STREAM, 0, 0),
        ("127.0.0.1", 80, 0, STREAM | socket.SOCK_NONBLOCK, 0, 0),
    ]
    return cases


def outcome(fn, *args):
    """A call's result, or its exception as (type, args)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - every exception is compared
        return (type(exc), exc.args)


async def async_outcome(coro_fn, *args):
    try:
        return await coro_fn(*args)
    except Exception as exc:  # noqa: BLE001
        return (type(exc), exc.args)


def call_getaddrinfo(loop, host, port, family, type_, proto, flags):
    return loop.getaddrinfo(
        host, port, family=family, type=type_, proto=proto, flags=flags
    )


def test_getaddrinfo_grid_matches_socket(cloop_mod):
    cases = getaddrinfo_grid()
    expected = [outcome(socket.getaddrinfo, *case) for case in cases]
    loop = cloop_mod.new_event_loop()
    try:

        async def run_all():
            return [
                await async_outcome(call_getaddrinfo, loop, *case) for case in cases
            ]

        got = loop.run_until_complete(run_all())
    finally:
        loop.close()
    mismatches = [
        (case, exp, res)
        for case, exp, res in zip(cases, expected, got)
        if exp != res or [tuple(map(type, e)) for e in exp if isinstance(exp, list)]
        != [tuple(map(type, e)) for e in res if isinstance(res, list)]
    ]
    assert not mismatches, mismatches[:10]
    # The grid reaches both the literal answers and the worker pool.
    assert any(isinstance(e, list) for e in expected)
    assert any(isinstance(e, tuple) for e in expected)


def test_literals_skip_the_pool(cloop_mod):
    """Strict literals with a numeric port are answered synchronously;
    forms libc parses differently, and names, are not."""
    from cloop._dns import _FAMILIES, _KINDS

    loop = cloop_mod.new_event_loop()
    try:

        def primitive(host, port, family=0, type_=0, proto=0, flags=0):
            return loop._cl_getaddrinfo(
                host, port, family, type_, proto, flags, _FAMILIES, _KINDS
            )

        for args in [
            ("127.0.0.1", 80),
            (b"127.0.0.1", "443"),
            ("::1", None, AF_INET6, STREAM),
            ("2001:db8::1", b"0", 0, DGRAM, socket.IPPROTO_UDP),
            ("10.0.0.1", 65535, AF_INET, 0, socket.IPPROTO_TCP, NUMERIC),
        ]:
            res = primitive(*args)
            assert type(res) is list
            assert res == socket.getaddrinfo(*args)
        pending = [
            primitive("127.1", 80),
            primitive("fe80::1%lo", 80),
            primitive("127.0.0.1", "http"),
            primitive("127.0.0.1", 80, AF_INET6),
            primitive("127.0.0.1", 80, 0, RAW),
            primitive("127.0.0.1", 80, 0, 0, 0, socket.AI_CANONNAME),
            primitive("localhost", 80),
        ]
        for fut in pending:
            assert isinstance(fut, asyncio.Future)
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        loop.close()


GETNAMEINFO_CASES = [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80), socket.NI_NUMERICSERV | socket.NI_NAMEREQD),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("127.0.0.1", 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 65536), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", -1), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.1", 80), socket.NI_NUMERICHOST),
    (("::1", 80), socket.NI_NUMERICHOST),
    (("::1", 80, 5, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("fe80::1", 80, 0, 1), socket.NI_NUMERICHOST),
    (("fe80::1%lo", 80, 0, 0), socket.NI_NUMERICHOST),
    (("::1", 80, 0x100000, 0), socket.NI_NUMERICHOST),
    (("::1", 80, -1, 0), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80, 0, 0), socket.NI_NUMERICHOST),
    (("localhost", 80), socket.NI_NUMERICHOST),
    (("", 80), socket.NI_NUMERICHOST),
    (("127.0.0.1\x00", 80), socket.NI_NUMERICHOST),
    ((b"127.0.0.1", 80), socket.NI_NUMERICHOST),
    (["127.0.0.1", 80], socket.NI_NUMERICHOST),
    (("127.0.0.1",), socket.NI_NUMERICHOST),
    (("127.0.0.1", "80"), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80, 1, 2, 3), socket.NI_NUMERICHOST),
    (("127.0.0.1", 80), 1.5),
    (("127.0.0.1", 80), 2**40),
]


def test_getnameinfo_grid_matches_socket(cloop_mod):
    expected = [outcome(socket.getnameinfo, *case) for case in GETNAMEINFO_CASES]
    loop = cloop_mod.new_event_loop()
    try:

        async def run_all():
            return [
                await async_outcome(loop.getnameinfo, *case)
                for case in GETNAMEINFO_CASES
            ]

        got = loop.run_until_complete(run_all())
    finally:
        loop.close()
    mismatches = [
        (case, exp, res)
        for case, exp, res in zip(GETNAMEINFO_CASES, expected, got)
        if exp != res
    ]
    assert not mismatches, mismatches


# --- Behaviour, on asyncio and cloop --------------------------------------


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("127.0.0.1", 80), {}),
        (("::1", "443"), {"type": STREAM}),
        (("localhost", 80), {"family": AF_INET}),
        ((None, 0), {"flags": socket.AI_PASSIVE, "type": STREAM}),
    ],
)
def test_getaddrinfo_result(loop, args, kwargs):
    res = loop.run_until_complete(loop.getaddrinfo(*args, **kwargs))
    assert res == socket.getaddrinfo(*args, **kwargs)
    assert all(type(e[0]) is socket.AddressFamily for e in res)
    assert all(type(e[1]) is socket.SocketKind for e in res)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((123, 80), {}),
        (("127.0.0.1", 1.5), {}),
        (("127.0.0.1", True), {}),
        (("127.0.0.1", 2**70), {}),
        (("127.0.0.1", 80), {"family": 1.5}),
        (("127.0.0.1", 80), {"type": 2**40}),
        (("a..b", 80), {}),
        (("127.0.0.1", "8\udc80"), {}),
        (("127.0.0.1", 80), {"flags": -1}),
        (("localhost", 80), {"flags": NUMERIC}),
        (("127.0.0.1", 80), {"type": RAW}),
    ],
)
def test_getaddrinfo_bad_arguments(loop, args, kwargs):
    with pytest.raises(Exception) as info:
        socket.getaddrinfo(*args, **kwargs)
    with pytest.raises(type(info.value)) as got:
        loop.run_until_complete(loop.getaddrinfo(*args, **kwargs))
    assert got.value.args == info.value.args


def test_keyword_only_and_defaults(loop):
    with pytest.raises(TypeError):
        loop.getaddrinfo("127.0.0.1", 80, AF_INET)  # keyword-only
    coro = loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST)
    assert loop.run_until_complete(coro) == ("127.0.0.1", "http")


def test_getnameinfo_bad_arguments(loop):
    for sockaddr, flags in [
        (["127.0.0.1", 80], 0),
        (("127.0.0.1", 80, 0, 0), socket.NI_NUMERICHOST),
        (("localhost", 80), socket.NI_NUMERICHOST),
    ]:
        with pytest.raises(Exception) as info:
            socket.getnameinfo(sockaddr, flags)
        with pytest.raises(type(info.value)) as got:
            loop.run_until_complete(loop.getnameinfo(sockaddr, flags))
        assert got.value.args == info.value.args


def test_closed_loop(loop):
    loop.close()
    for coro in (
        loop.getaddrinfo("127.0.0.1", 80),
        loop.getaddrinfo("localhost", 80),
        loop.getnameinfo(("127.0.0.1", 80)),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            coro.send(None)
        coro.close()


def test_cancel_pending_lookups(loop):
    """Cancelled lookups raise CancelledError; the loop goes on, and
    later lookups still answer."""

    async def main():
        tasks = [
            asyncio.ensure_future(loop.getaddrinfo("localhost", port, family=AF_INET))
            for port in range(30)
        ]
        tasks.append(
            asyncio.ensure_future(
                loop.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV)
            )
        )
        await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        # Give running lookups time to finish and be dropped.
        for _ in range(3):
            await asyncio.sleep(0.01)
        return await loop.getaddrinfo("localhost", 80, family=AF_INET)

    res = loop.run_until_complete(main())
    assert res == socket.getaddrinfo("localhost", 80, family=AF_INET)


def test_close_with_lookups_pending(loop_factory, loop_name):
    """Closing a loop while lookups are in flight neither crashes nor
    leaks: the loop is freed once its tasks are gone."""
    loop = loop_factory()
    tasks = [
        loop.create_task(loop.getaddrinfo("localhost", port, family=AF_INET))
        for port in range(20)
    ]
    tasks.append(loop.create_task(loop.getnameinfo(("127.0.0.1", 80))))
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert loop.is_closed()
    for t in tasks:
        # A task of a closed loop stays pending: do not log it.
        t._log_destroy_pending = False
    if loop_name == "asyncio":
        return  # its executor threads may still hold the loop a while
    wr = weakref.ref(loop)
    del loop, tasks, t
    gc.collect()
    assert wr() is None


def test_many_concurrent_lookups(loop):
    # localhost only as AF_INET: /etc/hosts answers it, never DNS.
    hosts = [("127.0.0.1", 0), ("::1", 0), ("localhost", AF_INET),
             ("127.1", 0), ("fe80::1%lo", 0)]
    cases = [(h, 1000 + i, f) for i in range(20) for h, f in hosts]

    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo(h, p, family=f, type=STREAM) for h, p, f in cases)
        )

    got = loop.run_until_complete(main())
    want = [socket.getaddrinfo(h, p, family=f, type=STREAM) for h, p, f in cases]
    assert got == want


def _debug_messages(caplog):
    out = []
    for rec in caplog.records:
        msg = rec.getMessage()
        if msg.startswith("Get"):
            out.append((rec.levelno, re.sub(r"took \d+\.\d{3}ms", "took Nms", msg)))
    return out


@pytest.mark.parametrize("slow", [False, True])
def test_debug_logging(loop, caplog, slow):
    loop.set_debug(True)
    if slow:
        loop.slow_callback_duration = 0.0
    caplog.set_level(logging.DEBUG, logger="asyncio")
    res = loop.run_until_complete(
        loop.getaddrinfo("127.0.0.1", 80, type=STREAM, flags=NUMERIC)
    )
    messages = _debug_messages(caplog)
    head = (
        "127.0.0.1:80, type=<SocketKind.SOCK_STREAM: 1>, "
        "flags=<AddressInfo.AI_NUMERICHOST: 4>"
    )
    assert messages == [
        (logging.DEBUG, f"Get address info {head}"),
        (
            logging.INFO if slow else logging.DEBUG,
            f"Getting address info {head} took Nms: {res!r}",
        ),
    ]
    caplog.clear()
    with pytest.raises(socket.gaierror):
        loop.run_until_complete(loop.getaddrinfo("localhost", "80", flags=NUMERIC))
    assert _debug_messages(caplog) == [
        (
            logging.DEBUG,
            "Get address info localhost:'80', "
            "flags=<AddressInfo.AI_NUMERICHOST: 4>",
        )
    ]


def test_refcounts_of_arguments(cloop_mod):
    """Lookups keep no reference to their arguments, the loop or the
    future once answered, on the literal path, the pool and errors."""
    loop = cloop_mod.new_event_loop()
    try:
        host = "".join(["127.0.0", ".1"])
        name = "".join(["local", "host"])
        port = "".join(["8", "0"])

        async def main():
            await loop.getaddrinfo(host, port)
            await loop.getaddrinfo(name, port, family=AF_INET)
            with pytest.raises(socket.gaierror):
                await loop.getaddrinfo(name, port, flags=NUMERIC)
            await loop.getnameinfo((host, 80))

        loop.run_until_complete(main())
        gc.collect()  # the tracebacks of the errors are cycles
        before = [sys.getrefcount(o) for o in (loop, host, name, port)]
        for _ in range(20):
            loop.run_until_complete(main())
        gc.collect()
        after = [sys.getrefcount(o) for o in (loop, host, name, port)]
        assert after == before
    finally:
        loop.close()
