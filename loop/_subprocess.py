"""Subprocesses for cloop.Loop: ``subprocess_exec`` and ``subprocess_shell``.

``BaseEventLoop.subprocess_exec()``/``subprocess_shell()`` check their
arguments and call ``_make_subprocess_transport()``, defined here.  The
transport is asyncio's own ``BaseSubprocessTransport`` (so the callback
order, ``communicate()``, ``wait()`` and ``close()`` are asyncio's code),
with ``_start()`` replaced:

* The fast path spawns with libuv's ``uv_spawn`` (csrc/process.c).  This
  module does on the parent side what ``subprocess.Popen`` does before it
  forks (argument and environment conversion, the PATH it searches, the
  pipes, which fd goes where) and hands the result to C.  libuv reaps the
  child (or cloop does, when the child's pidfd reports the exit first);
  the exit reaches the transport as asyncio's child watchers report it
  (one ``call_soon`` later).
* Options ``uv_spawn`` cannot reproduce exactly (``preexec_fn``,
  ``umask``, ``user``, ``group``, ``extra_groups``, ``process_group``,
  ``restore_signals=False``, ``pipesize``, and anything unknown) and
  states where libuv's child would differ (signals the parent ignores, a
  blocked signal mask, an fd to inherit that is closed) go through
  ``subprocess.Popen`` itself, exactly as asyncio does.  That child is
  reaped by the loop: a pidfd (``os.pidfd_open``) watched with
  ``_add_reader``, then ``Popen.poll()``; without pidfd support, a thread
  waits for it, as asyncio's ThreadedChildWatcher does.

Either way ``get_extra_info('subprocess')`` is a ``subprocess.Popen``: on
the fast path an instance of ``_UVPopen``, a subclass whose ``poll()`` and
``wait()`` look at the child without reaping it (``waitid`` with
``WNOWAIT``), so they never take the child from libuv.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import subprocess
import sys
import threading
import time
import warnings
from asyncio import base_subprocess
from typing import Any, Callable

__all__ = ["SubprocessMixin"]

# Popen keywords the fast path implements; any other keyword with a value
# other than Popen's default sends the spawn to Popen.
_FAST_KEYWORDS = frozenset(
    ("executable", "cwd", "env", "pass_fds", "close_fds",
     "start_new_session", "restore_signals")
)
_POPEN_DEFAULTS: dict[str, Any] = {
    "preexec_fn": None,
    "startupinfo": None,
    "creationflags": 0,
    "group": None,
    "extra_groups": None,
    "user": None,
    "umask": -1,
    "pipesize": -1,
    "process_group": None,
}
# uv_spawn errors that come from the parent or from placing fds in the
# child: Popen reports those without a filename.
_NO_FILENAME_ERRNOS = frozenset(
    (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EBADF)
)
_HAS_PIDFD = hasattr(os, "pidfd_open")

# False sends every spawn through subprocess.Popen (with the loop still
# reaping the child through a pidfd).  libuv 1.44's uv_spawn fork()s, where
# Popen vfork()s; see "Spawn cost" in docs/subprocess.md.
_USE_UV_SPAWN = True


class _Fallback(Exception):
    """The fast path cannot give Popen's exact result: use Popen."""


def _status_from_siginfo(info: Any) -> int:
    if info.si_code == os.CLD_EXITED:
        return int(info.si_status)
    return -int(info.si_status)


class _UVPopen(subprocess.Popen):  # type: ignore[type-arg]
    """The ``subprocess.Popen`` of a child spawned with uv_spawn.

    ``Popen.__init__`` is not called: the child exists already.  The
    attributes Popen's other methods read are set here.  ``poll()`` and
    ``wait()`` peek with ``waitid(WNOWAIT)``: libuv reaps the child.
    """

    def __init__(self, cproc: Any, args: Any, stdin: Any, stdout: Any,
                 stderr: Any) -> None:
        self._cl_proc = cproc
        self._cl_returncode: int | None = None
        # Set once the loop closed with the child running: a thread
        # reaps it (see SubprocessMixin.close).
        self._cl_orphaned = False
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.pid = cproc.pid
        # Popen.__del__ reaps only children it created.
        self._child_created = False
        self.text_mode = False
        self.encoding = None
        self.errors = None
        self.universal_newlines = False
        self.pipesize = -1
        self._input = None
        self._communication_started = False
        self._closed_child_pipe_fds = True
        self._sigint_wait_secs = 0.25
        self._waitpid_lock = threading.Lock()
        self._devnull = None
        self._fileobj2output: dict[Any, Any] = {}

    @property  # type: ignore[override]
    def returncode(self) -> int | None:
        if self._cl_returncode is None:
            self._cl_returncode = self._cl_proc.returncode
        return self._cl_returncode

    @returncode.setter
    def returncode(self, value: int | None) -> None:
        self._cl_returncode = value

    def _internal_poll(self, _deadstate: Any = None, **kwargs: Any) -> Any:
        if self.returncode is None:
            try:
                info = os.waitid(os.P_PID, self.pid,
                                 os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                # Reaped by libuv; its callback has set the code.
                return self.returncode
            if info is not None:
                self._cl_returncode = _status_from_siginfo(info)
        return self.returncode

    def poll(self) -> int | None:
        return self._internal_poll()  # type: ignore[no-any-return]

    def _wait(self, timeout: float | None) -> int:
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            else:
                if info is not None and self.returncode is None:
                    self._cl_returncode = _status_from_siginfo(info)
            return self.returncode  # type: ignore[return-value]
        endtime = time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            remaining = endtime - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            delay = min(delay * 2, remaining, 0.05)
            time.sleep(delay)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        # The pid cannot be reused before libuv reaps the child, and the
        # exit callback sets the return code in the same step.
        self.poll()
        if self.returncode is not None:
            return
        try:
            if self._cl_orphaned:
                os.kill(self.pid, sig)
            else:
                self._cl_proc.kill(sig)
        except ProcessLookupError:
            pass

    def _cl_orphan(self) -> None:
        """The loop closes with the child running: a thread reaps it."""
        if self._cl_proc._cl_orphan():
            self._cl_orphaned = True
            threading.Thread(target=self._cl_reap, daemon=True).start()

    def _cl_reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return
        self._cl_returncode = os.waitstatus_to_exitcode(status)


def _stdout_fd() -> int:
    """Where Popen sends stderr=STDOUT when stdout is inherited."""
    return sys.__stdout__.fileno()  # type: ignore[union-attr]


def _fileno(obj: Any) -> int:
    if isinstance(obj, int):
        return obj
    return obj.fileno()  # type: ignore[no-any-return]


def _child_stdio(spec: Any, fd: int, stdio: list[int],
                 to_close_child: list[int],
                 to_close_parent: list[int]) -> int | None:
    """Set stdio[fd], the child's descriptor for spec (None inherits,
    PIPE, DEVNULL, an fd or a file), as Popen._get_handles() does; return
    the parent's end of a PIPE, else None."""
    if spec is None:
        return None
    if spec == subprocess.PIPE:
        r, w = os.pipe()
        child, parent = (r, w) if fd == 0 else (w, r)
        to_close_child.append(child)
        to_close_parent.append(parent)
        stdio[fd] = child
        return parent
    if spec == subprocess.DEVNULL:
        stdio[fd] = -1
        return None
    stdio[fd] = _fileno(spec)
    if stdio[fd] < 0:
        raise _Fallback
    return None


def _uv_spawn(loop: Any, args: Any, shell: bool, stdin: Any, stdout: Any,
              stderr: Any, kwargs: dict[str, Any],
              on_exit: Callable[[int], object]) -> _UVPopen:
    """Spawn with uv_spawn as Popen would; raise _Fallback when that cannot
    be exact."""
    if not _USE_UV_SPAWN:
        raise _Fallback
    for key, value in kwargs.items():
        if key in _FAST_KEYWORDS:
            continue
        if key not in _POPEN_DEFAULTS or value is not _POPEN_DEFAULTS[key] \
                and value != _POPEN_DEFAULTS[key]:
            raise _Fallback
    executable = kwargs.get("executable")
    cwd = kwargs.get("cwd")
    env = kwargs.get("env")
    pass_fds = kwargs.get("pass_fds", ())
    close_fds = kwargs.get("close_fds", True)
    start_new_session = kwargs.get("start_new_session", False)
    restore_signals = kwargs.get("restore_signals", True)
    if not restore_signals:
        raise _Fallback
    keep = sorted({int(fd) for fd in pass_fds})
    if keep and keep[0] < 0:
        raise _Fallback
    inherited = [fd for fd in keep if fd >= 3]
    for obj, default in ((stdin, 0), (stdout, 1), (stderr, 2)):
        if obj is None:
            inherited.append(default)
        elif obj == subprocess.STDOUT and default == 2:
            if stdout is None:
                inherited.append(_stdout_fd())
        elif obj not in (subprocess.PIPE, subprocess.DEVNULL):
            inherited.append(_fileno(obj))
    # Signals and fds uv_spawn would treat differently; checked before
    # anything observable (warnings, audit events) happens.
    if not loop._cl_spawn_check(tuple(inherited), restore_signals):
        raise _Fallback

    # What Popen.__init__ and _execute_child do before they fork.
    if pass_fds and not close_fds:
        warnings.warn("pass_fds overriding close_fds.", RuntimeWarning)
        close_fds = True
    if isinstance(args, (str, bytes)):
        args = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        args = [args]
    else:
        args = list(args)
    if shell:
        args = ["/bin/sh", "-c"] + args
        if executable:
            args[0] = executable
    if executable is None:
        executable = args[0]
    sys.audit("subprocess.Popen", executable, args, cwd, env)
    orig_executable = executable

    argv = [os.fsencode(a) for a in args]
    env_list = None
    if env is not None:
        env_list = []
        for k, v in env.items():
            k = os.fsencode(k)
            if b"=" in k:
                raise ValueError("illegal environment variable name")
            env_list.append(k + b"=" + os.fsencode(v))
    file = os.fsencode(executable)
    if not file:
        # Popen tries the PATH directories themselves (EACCES); execvp
        # reports ENOENT.
        raise _Fallback
    cwd_b = None if cwd is None else os.fsencode(cwd)

    # The pipes, as Popen._get_handles() makes them.
    to_close_parent: list[int] = []  # the parent's ends, on failure
    to_close_child: list[int] = []   # the child's ends, always
    stdio = [0, 1, 2]
    try:
        p_stdin = _child_stdio(stdin, 0, stdio, to_close_child,
                               to_close_parent)
        p_stdout = _child_stdio(stdout, 1, stdio, to_close_child,
                                to_close_parent)
        if stderr == subprocess.STDOUT:
            stdio[2] = _stdout_fd() if stdout is None else stdio[1]
            p_stderr = None
        else:
            p_stderr = _child_stdio(stderr, 2, stdio, to_close_child,
                                    to_close_parent)
        if keep and keep[-1] >= 3:
            stdio.extend([-1] * (keep[-1] + 1 - 3))
            for fd in keep:
                if fd >= 3:
                    stdio[fd] = fd

        try:
            cproc = loop._cl_spawn(file, argv, env_list, cwd_b, tuple(stdio),
                                   start_new_session, close_fds,
                                   restore_signals, on_exit)
        except OSError as exc:
            err = exc.errno
            if err in _NO_FILENAME_ERRNOS:
                raise OSError(err, os.strerror(err)) from None
            if cwd_b is not None and not (os.path.isdir(cwd_b)
                                          and os.access(cwd_b, os.X_OK)):
                filename = cwd
            else:
                filename = orig_executable
            raise OSError(err, os.strerror(err), filename) from None
        if cproc is None:
            raise _Fallback
        fstdin = None if p_stdin is None else io.open(p_stdin, "wb", 0)
        fstdout = None if p_stdout is None else io.open(p_stdout, "rb", 0)
        fstderr = None if p_stderr is None else io.open(p_stderr, "rb", 0)
        to_close_parent.clear()
        return _UVPopen(cproc, args, fstdin, fstdout, fstderr)
    finally:
        for fd in to_close_child:
            os.close(fd)
        for fd in to_close_parent:
            os.close(fd)


class _SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport over a child cloop spawned."""

    def _start(self, args: Any, shell: bool, stdin: Any, stdout: Any,
               stderr: Any, bufsize: int, **kwargs: Any) -> None:
        loop = self._loop
        on_exit = functools.partial(loop._cl_child_exited, self)
        try:
            self._proc = _uv_spawn(loop, args, shell, stdin, stdout, stderr,
                                   kwargs, on_exit)
            loop._cl_children_map()[self._proc.pid] = self._proc
        except _Fallback:
            self._proc = subprocess.Popen(
                args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                universal_newlines=False, bufsize=bufsize, **kwargs)
            loop._cl_watch_popen(self._proc, on_exit)
        self._cl_grow = kwargs.get("pipesize", -1) == -1

    async def _connect_pipes(self, waiter: Any) -> None:
        await super()._connect_pipes(waiter)
        # Pipes made for the child may grow when a bulk transfer fills
        # them (csrc/stream.c); a pipesize= the caller chose stays.
        if self._cl_grow and self._pipes:
            for proto in self._pipes.values():
                if proto is not None and proto.pipe is not None:
                    proto.pipe._cl_allow_grow()


class _PopenWatch:
    """A Popen child the loop reaps: its pidfd, or a waiting thread."""

    def __init__(self, loop: Any, proc: Any,
                 on_exit: Callable[[int], object]) -> None:
        self.loop = loop
        self.proc = proc
        self.on_exit: Callable[[int], object] | None = on_exit
        self.pidfd = -1
        if _HAS_PIDFD:
            try:
                self.pidfd = os.pidfd_open(proc.pid)
            except OSError:
                self.pidfd = -1
        if self.pidfd >= 0:
            loop._add_reader(self.pidfd, self._readable)
        else:
            threading.Thread(target=self._wait_thread, daemon=True).start()

    def _readable(self) -> None:
        self._stop()
        rc = self.proc.poll()
        if rc is None:  # pragma: no cover - a readable pidfd has exited
            rc = self.proc.wait()
        self._exited(rc)

    def _stop(self) -> None:
        if self.pidfd >= 0:
            self.loop._remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = -1

    def _wait_thread(self) -> None:
        rc = self.proc.wait()
        try:
            self.loop.call_soon_threadsafe(self._exited, rc)
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _exited(self, rc: int) -> None:
        on_exit, self.on_exit = self.on_exit, None
        if on_exit is not None:
            # Like the uv path: the exit reaches the transport one
            # call_soon later.
            self.loop.call_soon(on_exit, rc)

    def orphan(self) -> None:
        """The loop is closing with the child running: a thread reaps it."""
        self.on_exit = None
        if self.pidfd >= 0:
            self._stop()
            threading.Thread(target=self.proc.wait, daemon=True).start()


class SubprocessMixin:
    """BaseEventLoop's subprocess hook: cloop spawns and reaps."""

    _cl_children: dict[int, Any] | None = None

    def _cl_children_map(self) -> dict[int, Any]:
        children = self._cl_children
        if children is None:
            children = self._cl_children = {}
        return children

    def _cl_child_exited(self, transport: Any, returncode: int) -> None:
        children = self._cl_children
        if children is not None:
            children.pop(transport._proc.pid if transport._proc else None,
                          None)
        # asyncio's child watcher callback: process_exited one turn later.
        self.call_soon(transport._process_exited,  # type: ignore[attr-defined]
                       returncode)

    def _cl_watch_popen(self, proc: Any,
                        on_exit: Callable[[int], object]) -> None:
        self._cl_children_map()[proc.pid] = _PopenWatch(self, proc, on_exit)

    async def _make_subprocess_transport(
        self, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any,
        stderr: Any, bufsize: int, extra: dict | None = None, **kwargs: Any
    ) -> Any:
        waiter = self.create_future()  # type: ignore[attr-defined]
        transp = _SubprocessTransport(self, protocol, args, shell, stdin,
                                      stdout, stderr, bufsize, waiter=waiter,
                                      extra=extra, **kwargs)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def close(self) -> None:
        # Children still running when the loop closes are no longer
        # watched by it; threads reap them so none is left a zombie.
        children = self._cl_children
        if children and not self.is_running():  # type: ignore[attr-defined]
            self._cl_children = None
            for child in children.values():
                if isinstance(child, _PopenWatch):
                    child.orphan()
                else:
                    child._cl_orphan()
        super().close()  # type: ignore[misc]
