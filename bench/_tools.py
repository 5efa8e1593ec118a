"""The external programs the networking workloads drive, found at run time.

``echo_load`` (the load generator) and ``echo_uv`` (the reference server on
libuv alone) are C programs built by meson with the package and installed
next to these modules; an editable install maps them to its build
directory, which ``importlib.resources`` resolves either way. ``wrk`` (the
HTTP load generator) comes from the system (Debian: ``apt-get install
wrk``). A missing program makes the workloads that need it report
"skipped", not FAILED: see ``_registry.Skip``.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
from collections.abc import Sequence
from importlib import resources
from typing import IO, Any

from ._registry import Skip, check

__all__ = [
    "Server",
    "bench_tool",
    "parse_fields",
    "process_cpu",
    "system_tool",
    "watch_process",
]


def bench_tool(name: str) -> str:
    """The path of one of the package's own C programs, or ``Skip``."""
    try:
        path = resources.files(__package__) / name
    except (ModuleNotFoundError, TypeError):  # pragma: no cover
        raise Skip(f"{name} not found: the bench package has no files") from None
    text = os.fspath(path) if isinstance(path, os.PathLike) else ""
    if not text or not os.path.isfile(text) or not os.access(text, os.X_OK):
        raise Skip(f"{name} was not built (reinstall cloop with a C compiler)")
    return text


def system_tool(name: str) -> str:
    """The path of a program on PATH, or ``Skip``."""
    path = shutil.which(name)
    if path is None:
        raise Skip(f"{name} is not installed (Debian: apt-get install {name})")
    return path


def parse_fields(line: str) -> dict[str, str]:
    """``"a=1 b=2"`` -> ``{"a": "1", "b": "2"}``."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def watch_process(loop: Any, argv: Sequence[str]) -> tuple[subprocess.Popen[str], Any]:
    """Start ``argv``; return it and a future of ``(returncode, stdout,
    stderr, cpu)``, cpu being the CPU seconds the process used (when no
    other child ends meanwhile).

    The process is awaited by a plain thread, which wakes the loop with
    ``call_soon_threadsafe``: the loop under test only has to run its
    servers, not its own subprocess machinery, and the thread sleeps in
    ``wait()`` while the process runs.
    """
    future = loop.create_future()
    cpu_before = _children_cpu()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def deliver(result: tuple[int, str, str, float]) -> None:
        if not future.done():
            future.set_result(result)

    def wait() -> None:
        out, err = proc.communicate()
        cpu = _children_cpu() - cpu_before
        loop.call_soon_threadsafe(deliver, (proc.returncode, out, err, cpu))

    threading.Thread(target=wait, name="bench-load", daemon=True).start()
    return proc, future


class Server:
    """The reference echo server ``echo_uv``, run for the life of a ``with``.

    It exits when its stdin closes, so it cannot outlive this process.
    """

    def __init__(self, *args: str) -> None:
        self._argv = [bench_tool("echo_uv"), *args]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.cpu = 0.0  # its CPU seconds after READY, once it has stopped

    def __enter__(self) -> Server:
        self._proc = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout: IO[str] | None = self._proc.stdout
        line = stdout.readline() if stdout is not None else ""
        if not line.startswith("READY "):
            self._stop()
            check(False, f"echo_uv did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            # Its last words: the CPU time it spent after READY.
            self.cpu = float(parse_fields(proc.stdout.read()).get("cpu", "0"))
            proc.stdout.close()
        self._proc = None

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
