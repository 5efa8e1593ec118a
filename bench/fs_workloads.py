"""File workloads: cloop.fs batches against the executor and a plain loop.

Each file workload comes in three methods, registered as three workloads
that run on every loop like the others:

* ``fs_<what>``: ``cloop.fs`` (``read_files``, ``write_files``,
  ``stat_many``).  On cloop that is one batch of libuv requests; on
  asyncio and uvloop ``cloop.fs`` falls back to ``gather`` of
  ``run_in_executor``, so the cloop/asyncio ratio of this row is the
  libuv batch against asyncio's executor.
* ``fs_<what>_executor``: ``asyncio.gather`` of ``loop.run_in_executor``
  over plain ``open``/``os.stat`` calls, on any loop.
* ``fs_<what>_sync``: the same calls in a synchronous loop inside one
  coroutine (it blocks the loop; the baseline for raw cost).

The relative-speed table pairs ``fs_<what>`` with ``fs_<what>_executor``
and ``fs_<what>_sync`` with ``fs_<what>``; also compare the ``fs_read_100``
row's cloop column with the ``fs_read_100_executor`` row's asyncio column.  Files live in a fresh temporary directory per pass, created and
removed outside the timing; the page cache is warm after the warm-up.
Full sizes count repetitions of the whole batch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

from ._registry import Timer, check, workload

FILE_SIZE = 4096


def _make_files(count: int) -> tuple[str, list[str], list[bytes]]:
    root = tempfile.mkdtemp(prefix="cloop-bench-fs-")
    paths = []
    contents = []
    for i in range(count):
        path = os.path.join(root, f"f{i:04d}")
        data = i.to_bytes(4, "big") * (FILE_SIZE // 4)
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
        contents.append(data)
    return root, paths, contents


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


Body = Callable[[asyncio.AbstractEventLoop, list[str], list[bytes]], Coroutine[Any, Any, list[Any]]]


def _run(
    loop: asyncio.AbstractEventLoop,
    n: int,
    timer: Timer,
    count: int,
    body: Body,
    verify: Callable[[list[Any], list[str], list[bytes]], None],
) -> None:
    root, paths, contents = _make_files(count)
    try:
        results: list[Any] = []

        async def main() -> None:
            for _ in range(n):
                results[:] = await body(loop, paths, contents)

        with timer:
            loop.run_until_complete(main())
        verify(results, paths, contents)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- Reading ---------------------------------------------------------------


async def _read_fs(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    from cloop import fs

    return await fs.read_files(paths)


async def _read_executor(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return await asyncio.gather(*[loop.run_in_executor(None, _read, p) for p in paths])


async def _read_sync(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return [_read(p) for p in paths]


def _check_read(results: list[Any], paths: list[str], contents: list[bytes]) -> None:
    check(results == contents, "file contents differ")


def _reader(count: int, body: Body) -> Callable[[asyncio.AbstractEventLoop, int, Timer], None]:
    def run(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
        _run(loop, n, timer, count, body, _check_read)

    return run


def _vs(base: str, suffix: str) -> str | None:
    """The relative-speed pairs: the cloop.fs row against the executor
    row, the synchronous row against the cloop.fs row."""
    return {"": base + "_executor", "_sync": base}.get(suffix)


def _register_read(count: int, full: int, quick: int) -> None:
    for suffix, body, how in [
        ("", _read_fs, "cloop.fs.read_files()"),
        ("_executor", _read_executor, "gather() of run_in_executor()"),
        ("_sync", _read_sync, "a synchronous loop"),
    ]:
        func = _reader(count, body)
        func.__doc__ = f"Read {count} files of 4 KiB with {how}."
        workload(full=full, quick=quick, name=f"fs_read_{count}{suffix}",
                 vs=_vs(f"fs_read_{count}", suffix))(func)


_register_read(100, full=40, quick=8)
_register_read(1000, full=5, quick=1)


# --- Writing ---------------------------------------------------------------


async def _write_fs(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    from cloop import fs

    return await fs.write_files(zip(paths, contents))


async def _write_executor(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return await asyncio.gather(
        *[loop.run_in_executor(None, _write, p, d) for p, d in zip(paths, contents)]
    )


async def _write_sync(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return [_write(p, d) for p, d in zip(paths, contents)]


def _check_write(results: list[Any], paths: list[str], contents: list[bytes]) -> None:
    check(results == [None] * len(paths), "write results are not all None")
    check([_read(p) for p in paths] == contents, "written contents differ")


for _suffix, _body, _how in [
    ("", _write_fs, "cloop.fs.write_files()"),
    ("_executor", _write_executor, "gather() of run_in_executor()"),
    ("_sync", _write_sync, "a synchronous loop"),
]:

    def _writer(loop: asyncio.AbstractEventLoop, n: int, timer: Timer, _body: Body = _body) -> None:
        _run(loop, n, timer, 100, _body, _check_write)

    _writer.__doc__ = f"Write 100 files of 4 KiB with {_how}."
    workload(full=20, quick=4, name=f"fs_write_100{_suffix}",
             vs=_vs("fs_write_100", _suffix))(_writer)


# --- stat ------------------------------------------------------------------


async def _stat_fs(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    from cloop import fs

    return await fs.stat_many(paths)


async def _stat_executor(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return await asyncio.gather(*[loop.run_in_executor(None, os.stat, p) for p in paths])


async def _stat_sync(loop: Any, paths: list[str], contents: list[bytes]) -> list[Any]:
    return [os.stat(p) for p in paths]


def _check_stat(results: list[Any], paths: list[str], contents: list[bytes]) -> None:
    check(len(results) == len(paths), "wrong number of stat results")
    check(all(r.st_size == FILE_SIZE for r in results), "wrong st_size")
    check(results == [os.stat(p) for p in paths], "stat results differ from os.stat()")


for _suffix, _body, _how in [
    ("", _stat_fs, "cloop.fs.stat_many()"),
    ("_executor", _stat_executor, "gather() of run_in_executor()"),
    ("_sync", _stat_sync, "a synchronous loop"),
]:

    def _stater(loop: asyncio.AbstractEventLoop, n: int, timer: Timer, _body: Body = _body) -> None:
        _run(loop, n, timer, 1000, _body, _check_stat)

    _stater.__doc__ = f"os.stat() of 1,000 paths with {_how}."
    workload(full=8, quick=2, name=f"fs_stat_1000{_suffix}",
             vs=_vs("fs_stat_1000", _suffix))(_stater)
