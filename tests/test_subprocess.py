"""Subprocesses: subprocess_exec/subprocess_shell and the Popen options.

Every test runs on stock asyncio (the oracle) and on cloop.  cloop spawns
with uv_spawn, or with subprocess.Popen for the options uv_spawn cannot
reproduce (see docs/subprocess.md); either way the results must be
asyncio's.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings

import pytest

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT
PY = sys.executable


def run(loop, coro, timeout=30.0):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def exec_to_file(*args, stdin=DEVNULL, stderr=None, **kwargs):
    """Run a child with stdout to a temporary file (no pipes involved);
    return (returncode, output)."""
    with tempfile.TemporaryFile() as f:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=stdin, stdout=f, stderr=stderr, **kwargs)
        rc = await proc.wait()
        f.seek(0)
        return rc, f.read()


def status_field(text: bytes, name: bytes) -> int:
    for line in text.splitlines():
        if line.startswith(name + b":"):
            return int(line.split()[1], 16)
    raise AssertionError(name)


class RecordingProtocol(asyncio.SubprocessProtocol):
    def __init__(self, loop):
        self.events: list = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.done = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("connection_made",))

    def pipe_data_received(self, fd, data):
        self.events.append(("pipe_data_received", fd))
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_connection_lost", fd, exc))

    def process_exited(self):
        self.events.append(("process_exited",))

    def connection_lost(self, exc):
        self.events.append(("connection_lost", exc))
        self.done.set_result(None)


# --- stdio forms ------------------------------------------------------------


def test_exec_stdout_to_file_and_returncode(loop):
    rc, out = run(loop, exec_to_file("sh", "-c", "echo hello; exit 3"))
    assert (rc, out) == (3, b"hello\n")


def test_stderr_to_stdout_file(loop):
    rc, out = run(loop, exec_to_file("sh", "-c", "echo a; echo b >&2",
                                     stderr=STDOUT))
    assert (rc, out) == (0, b"a\nb\n")


def test_stdio_as_fds_and_files(loop):
    r, w = os.pipe()
    try:
        with tempfile.TemporaryFile() as fin:
            fin.write(b"input\n")
            fin.seek(0)

            async def main():
                # stdin a file object, stdout and stderr an fd.
                proc = await asyncio.create_subprocess_exec(
                    "sh", "-c", "cat; echo err >&2", stdin=fin, stdout=w,
                    stderr=w)
                return await proc.wait()
            assert run(loop, main()) == 0
        assert os.read(r, 100) == b"input\nerr\n"
    finally:
        os.close(r)
        os.close(w)


def test_devnull(loop):
    rc, out = run(loop, exec_to_file("sh", "-c", "cat; echo done",
                                     stdin=DEVNULL, stderr=DEVNULL))
    assert (rc, out) == (0, b"done\n")


def test_stdin_none_inherits(loop):
    # stdin=None inherits the parent's fd 0: whatever it is, the child
    # sees the same file.
    st = os.fstat(0) if _fd_open(0) else None
    rc, out = run(loop, exec_to_file(
        "sh", "-c", "stat -L -c '%d %i' /proc/self/fd/0 || echo none",
        stdin=None, stderr=DEVNULL))
    if st is not None:
        assert out.split() == [str(st.st_dev).encode(),
                               str(st.st_ino).encode()]


def _fd_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_shell(loop):
    rc, out = run(loop, _shell_to_file("echo $((6*7)); exit 4"))
    assert (rc, out) == (4, b"42\n")


async def _shell_to_file(cmd, **kwargs):
    with tempfile.TemporaryFile() as f:
        proc = await asyncio.create_subprocess_shell(
            cmd, stdin=DEVNULL, stdout=f, stderr=DEVNULL, **kwargs)
        rc = await proc.wait()
        f.seek(0)
        return rc, f.read()


def test_shell_missing_command_is_127(loop):
    rc, out = run(loop, _shell_to_file("nonexistent-cloop-cmd"))
    assert rc == 127


def test_executable_replaces_program(loop):
    rc, out = run(loop, exec_to_file("argv0-name", "-c", 'echo "$0"',
                                     executable="/bin/sh"))
    assert (rc, out) == (0, b"argv0-name\n")


def test_pathlike_and_bytes_args(loop):
    import pathlib
    rc, out = run(loop, exec_to_file(pathlib.Path("/bin/sh"), b"-c",
                                     "echo ok"))
    assert (rc, out) == (0, b"ok\n")


# --- pipes ------------------------------------------------------------------


def test_communicate_large(loop):
    data = os.urandom(1 << 16) * 48  # 3 MiB

    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "cat; cat /dev/null >&2", stdin=PIPE, stdout=PIPE,
            stderr=PIPE)
        out, err = await proc.communicate(data)
        return proc.returncode, out, err

    rc, out, err = run(loop, main())
    assert rc == 0 and err == b"" and out == data


def test_communicate_large_output_both_pipes(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "head -c 4000000 /dev/zero; head -c 3000000 "
            "/dev/zero >&2", stdout=PIPE, stderr=PIPE)
        return await proc.communicate()

    out, err = run(loop, main())
    assert (len(out), len(err)) == (4000000, 3000000)


def test_shell_pipes(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "read x; echo got $x; echo e >&2", stdin=PIPE, stdout=PIPE,
            stderr=PIPE)
        out, err = await proc.communicate(b"hi\n")
        return proc.returncode, out, err

    assert run(loop, main()) == (0, b"got hi\n", b"e\n")


def test_stderr_stdout_pipe(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo a; echo b >&2", stdout=PIPE, stderr=STDOUT)
        out, err = await proc.communicate()
        return out, err

    assert run(loop, main()) == (b"a\nb\n", None)


def test_callback_order(loop):
    async def main():
        proto = RecordingProtocol(loop)
        transport, _ = await loop.subprocess_exec(
            lambda: proto, "sh", "-c", "echo out; echo err >&2; exit 2")
        await proto.done
        rc = transport.get_returncode()
        transport.close()
        return proto, rc

    proto, rc = run(loop, main())
    ev = proto.events
    assert rc == 2
    assert ev[0] == ("connection_made",)
    assert ev[-1] == ("connection_lost", None)
    assert ev.count(("process_exited",)) == 1
    for fd in (0, 1, 2):
        assert ev.count(("pipe_connection_lost", fd, None)) == 1
    for fd in (1, 2):
        lost = ev.index(("pipe_connection_lost", fd, None))
        assert all(i < lost for i, e in enumerate(ev)
                   if e == ("pipe_data_received", fd))
    assert bytes(proto.data[1]) == b"out\n"
    assert bytes(proto.data[2]) == b"err\n"


def test_exit_before_pipes_close(loop):
    # The child exits while a grandchild holds its stdout; the grandchild
    # writes only once the parent has seen the exit.
    async def main():
        proto = RecordingProtocol(loop)
        exited = loop.create_future()
        proto.process_exited = lambda: (
            proto.events.append(("process_exited",)), exited.set_result(None))
        transport, _ = await loop.subprocess_exec(
            lambda: proto, "sh", "-c",
            "exec 3<&0; (read x <&3; echo late $x) & exit 5",
            stderr=DEVNULL)
        await exited
        assert transport.get_returncode() == 5
        stdin = transport.get_pipe_transport(0)
        stdin.write(b"now\n")
        stdin.close()
        await proto.done
        transport.close()
        return proto

    proto = run(loop, main())
    ev = proto.events
    assert bytes(proto.data[1]) == b"late now\n"
    assert ev.index(("process_exited",)) < ev.index(
        ("pipe_connection_lost", 1, None))
    assert ev[-1] == ("connection_lost", None)


def test_kill_mid_output_keeps_written_data(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "head -c 60000 /dev/zero; echo ready >&2; "
            "exec sleep 60", stdout=PIPE, stderr=PIPE)
        assert await proc.stderr.readline() == b"ready\n"
        proc.kill()
        out = await proc.stdout.read()
        return await proc.wait(), out

    rc, out = run(loop, main())
    assert rc == -signal.SIGKILL
    assert out == bytes(60000)


def test_get_pipe_transport(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingProtocol(loop), "cat", stdin=PIPE, stdout=PIPE,
            stderr=DEVNULL)
        t0 = transport.get_pipe_transport(0)
        t1 = transport.get_pipe_transport(1)
        t2 = transport.get_pipe_transport(2)
        kinds = (isinstance(t0, asyncio.WriteTransport),
                 isinstance(t1, asyncio.ReadTransport), t2)
        t0.close()
        await proto.done
        transport.close()
        return kinds, isinstance(transport, asyncio.SubprocessTransport)

    assert run(loop, main()) == ((True, True, None), True)


def test_many_concurrent_children(loop):
    async def main():
        procs = [await asyncio.create_subprocess_exec(
            "sh", "-c", f"exit {i % 7}", stdin=DEVNULL, stdout=DEVNULL,
            stderr=DEVNULL) for i in range(200)]
        return await asyncio.gather(*(p.wait() for p in procs))

    assert run(loop, main()) == [i % 7 for i in range(200)]


def test_many_concurrent_children_with_pipes(loop):
    async def main():
        async def one(i):
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", f"echo {i}", stdout=PIPE)
            out, _ = await proc.communicate()
            return int(out)
        return await asyncio.gather(*(one(i) for i in range(100)))

    assert run(loop, main()) == list(range(100))


# --- errors -----------------------------------------------------------------


def test_missing_executable(loop):
    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec("nonexistent-cloop-prog")
        return info.value

    exc = run(loop, main())
    assert exc.errno == 2 and exc.filename == "nonexistent-cloop-prog"


def test_missing_executable_path(loop):
    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec("/nonexistent/cloop-prog",
                                                 stdout=PIPE)
        return info.value

    exc = run(loop, main())
    assert exc.filename == "/nonexistent/cloop-prog"


def test_not_executable(loop, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")

    async def main():
        with pytest.raises(PermissionError) as info:
            await asyncio.create_subprocess_exec(str(script))
        return info.value

    assert run(loop, main()).filename == str(script)


@pytest.mark.parametrize("kwargs", [
    {"stdin": STDOUT}, {"stdout": STDOUT}, {"stdout": -5}, {"stdout": 999},
    {"pass_fds": (-1,)}, {"pass_fds": ("x",)}, {"pass_fds": (999,)},
    {"env": {1: 2}}, {"executable": 123}, {"cwd": "/etc/passwd"},
    {"stderr": object()}, {"args": ("true", 5)}, {"args": ("",)},
    {"args": ("/tmp",)}, {"env": {"PATH": ""}},
])
def test_odd_arguments_match_asyncio(cloop_mod, kwargs):
    # Whatever asyncio (Popen) does with these, cloop does: the same
    # result or the same exception type, errno and filename.
    kwargs = dict(kwargs)
    args = kwargs.pop("args", ("true",))
    kwargs.setdefault("stdin", DEVNULL)
    kwargs.setdefault("stdout", DEVNULL)

    async def main():
        try:
            proc = await asyncio.create_subprocess_exec(*args, **kwargs)
            return "exited", await proc.wait()
        except Exception as exc:
            return (type(exc).__name__, getattr(exc, "errno", None),
                    getattr(exc, "filename", None))

    results = []
    for factory in (asyncio.SelectorEventLoop, cloop_mod.new_event_loop):
        loop = factory()
        try:
            results.append(run(loop, main()))
        finally:
            loop.close()
    assert results[1] == results[0]


def test_bad_cwd(loop):
    async def main():
        with pytest.raises(FileNotFoundError) as info:
            await asyncio.create_subprocess_exec("true", cwd="/nonexistent-d")
        return info.value

    exc = run(loop, main())
    assert exc.filename == "/nonexistent-d"


@pytest.mark.parametrize("kwargs,exc", [
    ({"universal_newlines": True}, ValueError),
    ({"text": True}, ValueError),
    ({"encoding": "utf-8"}, ValueError),
    ({"errors": "strict"}, ValueError),
    ({"bufsize": 1}, ValueError),
    ({"startupinfo": object()}, ValueError),
    ({"creationflags": 1}, ValueError),
    ({"no_such_option": 1}, TypeError),
    ({"env": {"A=B": "1"}}, ValueError),
    ({"env": {"A": "1\0"}}, ValueError),
    ({"cwd": 42}, TypeError),
])
def test_bad_arguments(loop, kwargs, exc):
    async def main():
        with pytest.raises(exc):
            await asyncio.create_subprocess_exec("true", **kwargs)

    run(loop, main())


def test_shell_requires_string(loop):
    async def main():
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_shell(["echo", "x"])

    run(loop, main())


def test_null_byte_in_args(loop):
    async def main():
        with pytest.raises(ValueError):
            await asyncio.create_subprocess_exec("echo", "a\0b")

    run(loop, main())


# --- signals and close ----------------------------------------------------


@pytest.mark.parametrize("how,sig", [
    ("terminate", signal.SIGTERM),
    ("kill", signal.SIGKILL),
    ("send_signal", signal.SIGUSR1),
])
def test_signals_and_returncode(loop, how, sig):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sleep", "60", stdin=DEVNULL, stdout=DEVNULL)
        if how == "send_signal":
            proc.send_signal(sig)
        else:
            getattr(proc, how)()
        return await proc.wait()

    assert run(loop, main()) == -sig


def test_signal_after_exit(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec("true", stdin=DEVNULL,
                                                    stdout=DEVNULL)
        await proc.wait()
        with pytest.raises(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with pytest.raises(ProcessLookupError):
            proc.kill()

    run(loop, main())


def test_signal_exited_not_yet_reported(loop, loop_name):
    # Between the exit and the loop noticing it, signals are dropped, not
    # sent to a pid that may be reused.
    if loop_name == "asyncio":
        pytest.skip("asyncio's Popen.poll() in send_signal() races its "
                    "child watcher here (returncode 255 or 0)")
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingProtocol(loop), "true", stdin=DEVNULL,
            stdout=DEVNULL, stderr=DEVNULL)
        pid = transport.get_pid()
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # asyncio's watcher thread was first
        transport.send_signal(signal.SIGTERM)
        transport.kill()
        await proto.done
        rc = transport.get_returncode()
        transport.close()
        return rc

    assert run(loop, main()) == 0


def test_close_kills_running_child(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingProtocol(loop), "sleep", "60", stdin=DEVNULL,
            stdout=DEVNULL, stderr=DEVNULL)
        transport.close()
        assert transport.is_closing()
        await proto.done
        return transport.get_returncode()

    assert run(loop, main()) == -signal.SIGKILL


def test_unclosed_transport_warns(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingProtocol(loop), "true", stdin=DEVNULL,
            stdout=DEVNULL, stderr=DEVNULL)
        await proto.done
        return transport

    transport = run(loop, main())
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del transport
        gc.collect()


def test_transport_api(loop):
    async def main():
        transport, proto = await loop.subprocess_exec(
            lambda: RecordingProtocol(loop), "sh", "-c", "exit 9",
            stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        pid = transport.get_pid()
        popen = transport.get_extra_info("subprocess")
        same_proto = transport.get_protocol() is proto
        await proto.done
        info = (isinstance(pid, int) and pid > 0,
                isinstance(popen, subprocess.Popen), popen.pid == pid,
                transport.get_returncode(), popen.returncode, same_proto)
        transport.close()
        return info

    assert run(loop, main()) == (True, True, True, 9, 9, True)


def test_loop_close_with_child_running(loop_factory, loop_name):
    loop = loop_factory()
    try:
        async def main():
            return await loop.subprocess_exec(
                lambda: RecordingProtocol(loop), "sleep", "60",
                stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        transport, proto = run(loop, main())
        pid = transport.get_pid()
    finally:
        loop.close()
    # The transport outlives the loop; closing it kills the child, and
    # the child is reaped (no zombie) although the loop is gone.
    with warnings.catch_warnings():
        # asyncio's Popen warns that the child it did not reap itself is
        # "still running".
        warnings.simplefilter("ignore", ResourceWarning)
        transport.close()
        del transport, proto
        if loop_name == "asyncio" and sys.version_info >= (3, 12):
            # asyncio's pidfd child watcher (3.12+) stops with its loop
            # and leaves the child a zombie: cloop does better.
            os.waitpid(pid, 0)
        _wait_reaped(pid)
        for thread in threading.enumerate():
            if thread.name.startswith("asyncio-waitpid"):
                thread.join(10)
        gc.collect()


def _wait_reaped(pid, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        time.sleep(0.01)
    raise AssertionError(f"child {pid} was not reaped")


def test_foreign_children_not_stolen(loop):
    # Children created with subprocess.Popen and os.fork elsewhere in the
    # process keep their exit status for their own waiters.
    async def main():
        other = subprocess.Popen(["sh", "-c", "exit 7"])
        with warnings.catch_warnings():
            # 3.12+: "This process is multi-threaded, use of fork() ..."
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os._exit(11)
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "sleep 0.05; exit 3", stdin=DEVNULL, stdout=DEVNULL)
        rc = await proc.wait()
        return rc, other, pid

    rc, other, pid = run(loop, main())
    assert rc == 3
    assert other.wait() == 7
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 11


def test_sigchld_handler_does_not_hide_exits(loop):
    # A SIGCHLD handler added after the spawn replaces libuv's; cloop also
    # watches a pidfd, so the exit is still seen.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "read x; exit 4", stdin=PIPE, stdout=DEVNULL)
        calls = []
        loop.add_signal_handler(signal.SIGCHLD, calls.append, 1)
        try:
            proc.stdin.write(b"go\n")
            rc = await proc.wait()
            other = await asyncio.create_subprocess_exec(
                "sh", "-c", "exit 6", stdin=DEVNULL, stdout=DEVNULL)
            rc2 = await other.wait()
        finally:
            loop.remove_signal_handler(signal.SIGCHLD)
        return rc, rc2

    assert run(loop, main()) == (4, 6)


# --- Popen options ----------------------------------------------------------


def test_cwd(loop, tmp_path):
    rc, out = run(loop, exec_to_file("pwd", cwd=tmp_path))
    assert out.decode().strip() == os.path.realpath(tmp_path)


def test_env(loop):
    rc, out = run(loop, exec_to_file("sh", "-c", 'echo "$CLOOP_X:$HOME"',
                                     env={"CLOOP_X": "1", "PATH": "/bin"}))
    assert out == b"1:\n"


def test_env_path_search(loop, tmp_path):
    prog = tmp_path / "cloop-prog"
    prog.write_text("#!/bin/sh\necho found\n")
    prog.chmod(0o755)
    rc, out = run(loop, exec_to_file("cloop-prog",
                                     env={"PATH": str(tmp_path)}))
    assert out == b"found\n"


def test_pass_fds_and_close_fds(loop):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.set_inheritable(w2, True)  # must still be closed by close_fds
    try:
        script = (f"test -e /proc/self/fd/{w1} && echo w1; "
                  f"test -e /proc/self/fd/{w2} && echo w2; true")
        rc, out = run(loop, exec_to_file("sh", "-c", script,
                                         pass_fds=(w1,)))
        assert out == b"w1\n"
        rc, out = run(loop, exec_to_file("sh", "-c", script))
        assert out == b""
        rc, out = run(loop, exec_to_file("sh", "-c", script,
                                         close_fds=False))
        assert out == b"w2\n"
        with pytest.warns(RuntimeWarning, match="pass_fds overriding"):
            rc, out = run(loop, exec_to_file("sh", "-c", script,
                                             close_fds=False,
                                             pass_fds=(w1,)))
        assert out == b"w1\n"
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_fallback_warns_once(loop):
    # An ignored signal sends cloop to Popen: Popen's warning comes once.
    r, w = os.pipe()
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc, out = run(loop, exec_to_file("true", close_fds=False,
                                             pass_fds=(w,)))
    finally:
        signal.signal(signal.SIGUSR2, old)
        os.close(r)
        os.close(w)
    assert rc == 0
    messages = [str(x.message) for x in caught
                if x.category is RuntimeWarning]
    assert messages == ["pass_fds overriding close_fds."]


def test_start_new_session(loop):
    rc, out = run(loop, exec_to_file(
        PY, "-c", "import os; print(os.getsid(0) == os.getpid())",
        start_new_session=True))
    assert out == b"True\n"
    rc, out = run(loop, exec_to_file(
        PY, "-c", "import os; print(os.getsid(0) == os.getpid())"))
    assert out == b"False\n"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.11+")
def test_process_group(loop):
    rc, out = run(loop, exec_to_file(
        PY, "-c", "import os; print(os.getpgid(0) == os.getpid())",
        process_group=0))
    assert out == b"True\n"


def test_umask(loop):
    rc, out = run(loop, exec_to_file("sh", "-c", "umask", umask=0o027))
    assert out.strip() == b"0027"


def test_preexec_fn(loop, tmp_path):
    marker = tmp_path / "marker"

    def pre():
        os.environ["CLOOP_PRE"] = "1"
        marker.write_text(str(os.getpid()))

    rc, out = run(loop, exec_to_file("sh", "-c", 'echo "$$:$CLOOP_PRE"',
                                     preexec_fn=pre))
    pid, flag = out.decode().strip().split(":")
    assert marker.read_text() == pid and flag == "1"


def test_preexec_fn_raises(loop):
    def pre():
        raise ValueError("boom")

    async def main():
        with pytest.raises(subprocess.SubprocessError):
            await asyncio.create_subprocess_exec("true", preexec_fn=pre)

    run(loop, main())


def test_restore_signals(loop):
    script = "grep SigIgn /proc/self/status"
    rc, on = run(loop, exec_to_file("sh", "-c", script))
    rc, off = run(loop, exec_to_file("sh", "-c", script,
                                     restore_signals=False))
    bit = 1 << (signal.SIGPIPE - 1)
    assert not status_field(on, b"SigIgn") & bit
    assert status_field(off, b"SigIgn") & bit


def test_ignored_signal_stays_ignored(loop):
    # Popen keeps signals the parent ignores ignored in the child (nohup);
    # only SIGPIPE and SIGXFSZ are restored.
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        rc, out = run(loop, exec_to_file("grep", "SigIgn",
                                         "/proc/self/status"))
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert status_field(out, b"SigIgn") & (1 << (signal.SIGUSR2 - 1))


def test_blocked_signal_mask_inherited(loop):
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        rc, out = run(loop, exec_to_file("grep", "SigBlk",
                                         "/proc/self/status"))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    assert status_field(out, b"SigBlk") & (1 << (signal.SIGUSR2 - 1))


def test_user_group_own_ids(loop):
    rc, out = run(loop, exec_to_file(
        "sh", "-c", "id -u; id -g", user=os.getuid(), group=os.getgid()))
    assert out.split() == [str(os.getuid()).encode(),
                           str(os.getgid()).encode()]


def test_user_group_by_name(loop):
    import grp
    import pwd
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        pytest.skip("no name for this uid/gid")
    rc, out = run(loop, exec_to_file("sh", "-c", "id -u; id -g",
                                     user=user, group=group))
    assert out.split() == [str(os.getuid()).encode(),
                           str(os.getgid()).encode()]


def test_extra_groups(loop):
    async def main():
        try:
            return await exec_to_file("id", "-G", extra_groups=[os.getgid()])
        except PermissionError as exc:
            return type(exc)

    res = run(loop, main())
    if os.geteuid() == 0:
        assert res[1].split() == [str(os.getgid()).encode()]
    else:
        assert res is PermissionError


def test_unknown_user(loop):
    async def main():
        with pytest.raises(KeyError):
            await asyncio.create_subprocess_exec(
                "true", user="no-such-user-cloop")

    run(loop, main())


def test_pipesize(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo x", stdout=PIPE, pipesize=1 << 16)
        out, _ = await proc.communicate()
        return out

    assert run(loop, main()) == b"x\n"


# --- cloop's Popen path for everything ------------------------------------


@pytest.fixture
def popen_path(cloop_mod, monkeypatch):
    """cloop with every spawn sent through subprocess.Popen."""
    from cloop import _subprocess
    monkeypatch.setattr(_subprocess, "_USE_UV_SPAWN", False)
    loop = cloop_mod.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.mark.parametrize("test", [
    test_communicate_large,
    test_callback_order,
    test_exit_before_pipes_close,
    test_kill_mid_output_keeps_written_data,
    test_get_pipe_transport,
    test_many_concurrent_children,
    test_close_kills_running_child,
    test_transport_api,
    test_sigchld_handler_does_not_hide_exits,
    test_missing_executable,
], ids=lambda f: f.__name__)
def test_popen_path(popen_path, test):
    test(popen_path)


def test_popen_path_loop_close_with_child_running(cloop_mod, monkeypatch):
    from cloop import _subprocess
    monkeypatch.setattr(_subprocess, "_USE_UV_SPAWN", False)
    test_loop_close_with_child_running(cloop_mod.new_event_loop, "cloop")
