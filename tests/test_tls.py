"""TLS over cloop's transports (ssl=, start_tls), against asyncio's.

A self-signed certificate for "localhost" and 127.0.0.1 is made once per
session with the openssl command.  Each behaviour runs on stock asyncio
(the oracle) and on cloop: handshakes that succeed and fail, timeouts,
shutdown, close and abort mid-handshake, start_tls, Unix sockets,
BufferedProtocol, and get_extra_info's TLS keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading

import pytest

HOST = "127.0.0.1"
MiB = 1 << 20


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory):
    """(certfile, keyfile) of a self-signed CA:TRUE certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


@pytest.fixture
def server_ctx(cert_files):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert_files)
    return ctx


@pytest.fixture
def client_ctx(cert_files):
    return ssl.create_default_context(cafile=cert_files[0])


async def _echo_handler(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def _close(writer):
    writer.close()
    await writer.wait_closed()


@pytest.fixture
def silent_port():
    """A TCP port whose listener never accepts: the kernel completes the
    TCP handshake, but a TLS handshake with it never gets an answer."""
    listener = socket.create_server((HOST, 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


def test_echo_mib_payload(loop, server_ctx, client_ctx):
    payload = os.urandom(3 * MiB + 17)

    async def main():
        server = await asyncio.start_server(_echo_handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost")

        async def send():
            for i in range(0, len(payload), MiB):
                writer.write(payload[i:i + MiB])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        got = await reader.readexactly(len(payload))
        await sender
        await _close(writer)
        server.close()
        await server.wait_closed()
        return got

    got = loop.run_until_complete(main())
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def test_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server_side = loop.create_future()

        async def handler(reader, writer):
            server_side.set_result(writer.transport)
            await reader.read()
            await _close(writer)

        server = await asyncio.start_server(handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost")
        srv_tr = await server_side
        cli_tr = writer.transport
        info = {}
        for name, tr in (("client", cli_tr), ("server", srv_tr)):
            ssl_object = tr.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            assert ssl_object.server_side == (name == "server")
            assert tr.get_extra_info("cipher") == ssl_object.cipher()
            assert tr.get_extra_info("compression") == (
                ssl_object.compression())
            assert tr.get_extra_info("peercert") == (
                ssl_object.getpeercert())
            assert tr.get_extra_info("socket").fileno() >= 0
            assert tr.get_extra_info("peername")[0] == HOST
            assert tr.get_extra_info("sockname")[0] == HOST
            assert tr.get_extra_info("nonexistent", "dflt") == "dflt"
            info[name] = tr
        assert cli_tr.get_extra_info("sslcontext") is client_ctx
        assert srv_tr.get_extra_info("sslcontext") is server_ctx
        peercert = cli_tr.get_extra_info("peercert")
        assert dict(x[0] for x in peercert["subject"]) == {
            "commonName": "localhost"}
        # The server asked for no client certificate.
        assert srv_tr.get_extra_info("peercert") is None
        assert cli_tr.get_extra_info("ssl_object").server_hostname == (
            "localhost")
        await _close(writer)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_client_certificate(loop, cert_files, server_ctx, client_ctx):
    """Mutual TLS: the server requires and sees the client's certificate."""
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(cafile=cert_files[0])
    client_ctx.load_cert_chain(*cert_files)

    async def main():
        seen = loop.create_future()

        async def handler(reader, writer):
            seen.set_result(writer.get_extra_info("peercert"))
            await _echo_handler(reader, writer)

        server = await asyncio.start_server(handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost")
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        peercert = await seen
        await _close(writer)
        server.close()
        await server.wait_closed()
        return peercert

    peercert = loop.run_until_complete(main())
    assert dict(x[0] for x in peercert["subject"]) == {
        "commonName": "localhost"}


@pytest.mark.parametrize("hostname,context", [
    ("localhost", "default"),          # the CA is not trusted
    ("wrong.example", "trusting"),     # the name does not match
])
def test_handshake_verify_failure(loop, server_ctx, client_ctx, hostname,
                                  context):
    ctx = client_ctx if context == "trusting" else (
        ssl.create_default_context())
    errors = []
    loop.set_exception_handler(lambda lp, c: errors.append(c))

    async def main():
        server = await asyncio.start_server(_echo_handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection(HOST, port, ssl=ctx,
                                              server_hostname=hostname)
            # The server survives a failed handshake.
            r, w = await asyncio.open_connection(
                HOST, port, ssl=client_ctx, server_hostname="localhost")
            w.write(b"still there")
            assert await r.readexactly(11) == b"still there"
            await _close(w)
        finally:
            server.close()
            await server.wait_closed()
        return info.value

    exc = loop.run_until_complete(main())
    if context == "trusting":
        assert "Hostname mismatch" in str(exc)
    else:
        assert "self-signed certificate" in str(exc)
    # The server's side of the failure is an OSError, which asyncio
    # reports ("Error on transport creation for incoming connection") only
    # in debug mode (python -X dev).
    assert all(isinstance(c.get("exception"), OSError) for c in errors)
    if not loop.get_debug():
        assert errors == []


def test_client_handshake_timeout(loop, client_ctx, silent_port):
    async def main():
        with pytest.raises(ConnectionAbortedError) as info:
            await loop.create_connection(
                asyncio.Protocol, HOST, silent_port, ssl=client_ctx,
                server_hostname="localhost", ssl_handshake_timeout=0.1)
        return info.value

    exc = loop.run_until_complete(main())
    assert "SSL handshake is taking longer than 0.1 seconds" in str(exc)


def test_server_handshake_timeout(loop, server_ctx):
    made = []

    async def main():
        server = await loop.create_server(
            lambda: made.append(1) or asyncio.Protocol(), HOST, 0,
            ssl=server_ctx, ssl_handshake_timeout=0.1)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection((HOST, port))
        sock.setblocking(False)
        with sock:
            # The server gives up on a client that never says hello.
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 100), 10)
            except ConnectionResetError:
                data = b""
        server.close()
        await server.wait_closed()
        return data

    assert loop.run_until_complete(main()) == b""
    assert made == [1]


def test_ssl_arguments_checked(loop, client_ctx):
    async def main():
        with pytest.raises(ValueError, match="only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1,
                                         ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="only meaningful with ssl"):
            await loop.create_connection(asyncio.Protocol, HOST, 1,
                                         server_hostname="x")
        with socket.socket() as sock:
            with pytest.raises(ValueError, match="server_hostname"):
                await loop.create_connection(asyncio.Protocol, sock=sock,
                                             ssl=client_ctx)

    loop.run_until_complete(main())


class _LostRecorder(asyncio.Protocol):
    def __init__(self, loop):
        self.lost = loop.create_future()
        self.eof = False
        self.data = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.eof = True

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_clean_shutdown(loop, server_ctx, client_ctx):
    """close() sends close_notify: the peer sees EOF, then both sides'
    connection_lost(None)."""

    async def main():
        server_proto = loop.create_future()

        def factory():
            p = _LostRecorder(loop)
            server_proto.set_result(p)
            return p

        server = await loop.create_server(factory, HOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, cp = await loop.create_connection(
            lambda: _LostRecorder(loop), HOST, port, ssl=client_ctx,
            server_hostname="localhost")
        sp = await server_proto
        tr.write(b"bye")
        tr.close()
        assert tr.is_closing()
        server_exc = await sp.lost
        client_exc = await cp.lost
        server.close()
        await server.wait_closed()
        return sp, server_exc, client_exc

    sp, server_exc, client_exc = loop.run_until_complete(main())
    assert sp.data == b"bye"
    assert sp.eof
    assert server_exc is None and client_exc is None


def _stubborn_tls_peer(server_ctx, listener, done):
    """Thread: completes the handshake, then reads nothing (so a
    close_notify is never answered) until done is set."""
    conn, _ = listener.accept()
    with conn:
        try:
            tls = server_ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        done.wait(30)
        tls.close()


def test_shutdown_timeout(loop, server_ctx, client_ctx):
    listener = socket.create_server((HOST, 0))
    done = threading.Event()
    thread = threading.Thread(target=_stubborn_tls_peer,
                              args=(server_ctx, listener, done))
    thread.start()

    async def main():
        tr, proto = await loop.create_connection(
            lambda: _LostRecorder(loop), HOST,
            listener.getsockname()[1], ssl=client_ctx,
            server_hostname="localhost", ssl_shutdown_timeout=0.1)
        tr.close()
        return tr, await proto.lost

    try:
        tr, exc = loop.run_until_complete(main())
    finally:
        done.set()
        thread.join()
        listener.close()
    # SSLProtocol gives up waiting for the peer's close_notify and passes
    # its TimeoutError to the socket transport's _force_close(), which
    # hands it to connection_lost().
    assert isinstance(exc, asyncio.TimeoutError)
    assert str(exc) == "SSL shutdown timed out"
    assert tr.is_closing()


def test_cancel_during_handshake(loop, client_ctx, silent_port):
    """Cancelling create_connection() mid-handshake closes the socket
    (no ResourceWarning) and leaves the loop usable."""

    async def main():
        task = asyncio.ensure_future(loop.create_connection(
            asyncio.Protocol, HOST, silent_port, ssl=client_ctx,
            server_hostname="localhost"))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    loop.run_until_complete(main())


@pytest.mark.parametrize("how", ["close", "abort", "garbage"])
def test_peer_gone_during_server_handshake(loop, server_ctx, client_ctx,
                                           how):
    """A client that closes, resets or talks nonsense mid-handshake: the
    server drops it and serves the next client."""

    async def main():
        server = await asyncio.start_server(_echo_handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        sock = socket.create_connection((HOST, port))
        with sock:
            if how == "garbage":
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
            elif how == "abort":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                b"\x01\x00\x00\x00\x00\x00\x00\x00")
            else:
                # Half a ClientHello.
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03")
        r, w = await asyncio.open_connection(
            HOST, port, ssl=client_ctx, server_hostname="localhost")
        w.write(b"next")
        assert await r.readexactly(4) == b"next"
        await _close(w)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_abort_tls_transport(loop, server_ctx, client_ctx):
    async def main():
        server = await asyncio.start_server(_echo_handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(
            lambda: _LostRecorder(loop), HOST, port, ssl=client_ctx,
            server_hostname="localhost")
        tr.write(b"x" * 100000)
        tr.abort()
        exc = await proto.lost
        server.close()
        await server.wait_closed()
        return tr, exc

    tr, exc = loop.run_until_complete(main())
    assert exc is None
    assert tr.is_closing()


def test_start_tls_upgrade(loop, server_ctx, client_ctx):
    async def main():
        upgraded = loop.create_future()

        finished = loop.create_future()

        async def handler(reader, writer):
            try:
                line = await reader.readline()
                assert line == b"STARTTLS\n"
                writer.write(b"GO\n")
                await writer.drain()
                await writer.start_tls(server_ctx)
                upgraded.set_result(writer.get_extra_info("ssl_object"))
                await _echo_handler(reader, writer)
            finally:
                finished.set_result(None)

        server = await asyncio.start_server(handler, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        assert writer.get_extra_info("ssl_object") is None
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        # The transport-level API, as StreamWriter.start_tls() (3.11+).
        transport = writer.transport
        protocol = transport.get_protocol()
        new_tr = await loop.start_tls(transport, protocol, client_ctx,
                                      server_hostname="localhost")
        assert new_tr is not transport
        # The stream protocol now gets the decrypted bytes.
        assert new_tr.get_extra_info("cipher") is not None
        assert (await upgraded) is not None
        payload = os.urandom(MiB)
        new_tr.write(payload)
        got = await reader.readexactly(len(payload))
        new_tr.close()
        writer.close()
        await finished
        server.close()
        await server.wait_closed()
        return got == payload

    assert loop.run_until_complete(main())


def test_start_tls_checks(loop, client_ctx, silent_port):
    async def main():
        tr, _ = await loop.create_connection(asyncio.Protocol, HOST,
                                             silent_port)
        try:
            with pytest.raises(TypeError, match="SSLContext"):
                await loop.start_tls(tr, tr.get_protocol(), object())
            with pytest.raises(ConnectionAbortedError):
                await loop.start_tls(tr, tr.get_protocol(), client_ctx,
                                     server_hostname="localhost",
                                     ssl_handshake_timeout=0.1)
        finally:
            tr.close()
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_unix_socket_tls(loop, server_ctx, client_ctx):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tls.sock")

        async def main():
            server = await asyncio.start_unix_server(_echo_handler, path,
                                                     ssl=server_ctx)
            reader, writer = await asyncio.open_unix_connection(
                path, ssl=client_ctx, server_hostname="localhost")
            assert writer.get_extra_info("ssl_object") is not None
            payload = os.urandom(MiB)
            writer.write(payload)
            got = await reader.readexactly(len(payload))
            await _close(writer)
            server.close()
            await server.wait_closed()
            return got == payload

        assert loop.run_until_complete(main())

        async def no_hostname():
            with pytest.raises(ValueError, match="server_hostname"):
                await loop.create_unix_connection(asyncio.Protocol, path,
                                                  ssl=client_ctx)

        loop.run_until_complete(no_hostname())


class _BufferedSink(asyncio.BufferedProtocol):
    def __init__(self, loop, want):
        self.buf = bytearray(4096)
        self.got = bytearray()
        self.want = want
        self.done = loop.create_future()

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.got += self.buf[:nbytes]
        if len(self.got) >= self.want and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


def test_buffered_protocol_over_tls(loop, server_ctx, client_ctx):
    payload = os.urandom(MiB + 3)

    async def main():
        finished = loop.create_future()

        async def handler(reader, writer):
            try:
                writer.write(payload)
                await writer.drain()
                await reader.read()
                await _close(writer)
            finally:
                finished.set_result(None)

        server = await asyncio.start_server(handler, HOST, 0,
                                            ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(
            lambda: _BufferedSink(loop, len(payload)), HOST, port,
            ssl=client_ctx, server_hostname="localhost")
        assert await proto.done is None
        tr.close()
        await finished
        server.close()
        await server.wait_closed()
        return proto.got

    assert loop.run_until_complete(main()) == payload


def test_connect_accepted_socket_tls(loop, server_ctx, client_ctx):
    async def main():
        listener = socket.create_server((HOST, 0))
        with listener:
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
        conn.setblocking(False)
        client.setblocking(False)
        connect = asyncio.ensure_future(loop.create_connection(
            lambda: _LostRecorder(loop), sock=client, ssl=client_ctx,
            server_hostname="localhost"))
        str_, sp = await loop.connect_accepted_socket(
            lambda: _LostRecorder(loop), conn, ssl=server_ctx)
        ctr, cp = await connect
        ctr.write(b"hello")
        while len(sp.data) < 5:
            await asyncio.sleep(0.01)
        assert str_.get_extra_info("ssl_object").server_side
        ctr.close()
        await sp.lost
        await cp.lost
        return bytes(sp.data)

    assert loop.run_until_complete(main()) == b"hello"


class _Scheduling(asyncio.Protocol):
    def __init__(self, loop, ran):
        self.loop, self.ran = loop, ran

    def data_received(self, data):
        self.ran.append("data_received")
        self.loop.call_soon(self.ran.append, "scheduled by data_received")


def test_data_received_runs_in_the_callback_pass(loop):
    """Where received data lands in a turn of the loop, as asyncio.

    In asyncio a socket that became readable queues its read behind the
    callbacks already ready; what data_received() schedules waits for the
    next turn.  SSLProtocol turns a received close_notify into a
    call_soon(transport.close), so this order decides whether a TLS
    transport is still open when run_until_complete() returns (CPython's
    test_events.test_create_ssl_[unix_]connection check that, against a
    server that answers and closes at once).
    """
    a, b = socket.socketpair()
    ran = []
    tr, _ = loop.run_until_complete(
        loop.create_connection(lambda: _Scheduling(loop, ran), sock=a))

    def first():
        b.send(b"x")
        loop.call_soon(second)

    def second():
        ran.append("stop")
        loop.stop()

    try:
        loop.call_soon(first)
        loop.run_forever()
        seen = list(ran)
    finally:
        tr.close()
        loop.run_until_complete(asyncio.sleep(0))
        b.close()
    assert seen == ["stop", "data_received"]


class _LateWriter(asyncio.Protocol):
    """Writes once more from resume_writing() after close(), as
    SSLProtocol does to flush its backlog and close_notify."""

    def __init__(self, loop):
        self.lost = loop.create_future()
        self.late = False

    def connection_made(self, transport):
        self.transport = transport

    def resume_writing(self):
        if self.transport.is_closing() and not self.late:
            self.late = True
            self.transport.write(b"L" * 1000)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_write_from_resume_writing_after_close(loop):
    """A socket transport that close() was called on still sends what is
    written until the connection is lost (asyncio's selector transport
    does; SSLProtocol relies on it when the peer closes while its write
    backlog is full: CPython's
    test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data)."""
    a, b = socket.socketpair()
    b.setblocking(False)

    async def main():
        tr, proto = await loop.create_connection(lambda: _LateWriter(loop),
                                                 sock=a)
        tr.write(b"x" * (4 * MiB))
        tr.close()
        got = 0
        while data := await loop.sock_recv(b, MiB):
            got += len(data)
        await proto.lost
        return got, proto.late

    try:
        got, late = loop.run_until_complete(asyncio.wait_for(main(), 30))
    finally:
        b.close()
    assert late
    assert got == 4 * MiB + 1000


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="asyncio checks the socket's owner from 3.12")
def test_ssl_on_a_socket_a_transport_owns(loop, client_ctx):
    a, b = socket.socketpair()

    async def main():
        tr, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.create_connection(
                    asyncio.Protocol, sock=a, ssl=client_ctx,
                    server_hostname="localhost")
        finally:
            tr.close()
            await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        b.close()
