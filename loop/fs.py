"""Awaitable file operations on libuv's worker pool.

On a cloop loop every call is one batch of libuv ``uv_fs_*`` requests
(csrc/fs.c): all requests of a batch are submitted at once, libuv's pool
(``UV_THREADPOOL_SIZE`` threads, default 4) runs them concurrently, and
chained operations (``read_file`` is open, fstat, read until EOF, close)
go from step to step in C without returning to Python.  The batch
completes one future when every request has finished.

On any other loop (asyncio's, uvloop) the same functions run the
equivalent ``os`` calls in the loop's default executor, with the same
results and errors, so code using ``cloop.fs`` runs anywhere.

Errors are the ``OSError`` subclasses the ``os`` module raises, with
``errno``, ``strerror`` and ``filename`` (and ``filename2`` for
``rename`` and ``copy_file``).  A batch raises the first error in
argument order once every request has finished, or with
``return_exceptions=True`` returns the exceptions in place.  Cancelling
the awaiting task takes requests that have not started off the pool and
waits for those already running, closing any file they opened, before
``CancelledError`` propagates.  See docs/fs.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterable
from typing import Any, Union

from . import _cloop

__all__ = [
    "append_file",
    "close",
    "copy_file",
    "exists",
    "listdir",
    "mkdir",
    "open",
    "read",
    "read_file",
    "read_files",
    "remove",
    "rename",
    "rmdir",
    "stat",
    "stat_many",
    "write",
    "write_file",
    "write_files",
]

StrOrBytesPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# The operation kinds of csrc/fs.c.
_READ_FILE = 0
_WRITE_FILE = 1
_STAT = 2
_UNLINK = 3
_RMDIR = 4
_MKDIR = 5
_RENAME = 6
_COPYFILE = 7
_SCANDIR = 8
_OPEN = 9
_CLOSE = 10
_READ = 11
_WRITE = 12

# How read_file/write_file run on cloop: -1 lets the C side choose (one
# pool job per file, or chained uv_fs_* requests where libuv serves them
# from io_uring); 0 and 1 force either (the tests run both).
_MODE = -1

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND

_OPEN_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
}


def _named(path: Any) -> tuple[bytes, Any]:
    """(encoded path, name for errors): the os module and open() name a
    file in their errors by os.fspath(path), never by a path object."""
    p = os.fspath(path)
    return (os.fsencode(p) if isinstance(p, str) else p), p


def _is_cloop(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(loop, _cloop.CoreLoop)


def _unpack(results: list[Any], return_exceptions: bool) -> list[Any]:
    if not return_exceptions:
        for r in results:
            if isinstance(r, BaseException):
                raise r
    return results


async def _submit(loop: Any, kind: int, items: list[tuple[Any, ...]]) -> list[Any]:
    batch = loop._cl_fs_submit(kind, items, _MODE)
    fut = batch.future
    try:
        return await fut  # type: ignore[no-any-return]
    except asyncio.CancelledError:
        # Wait until every request has finished and every fd the batch
        # opened is closed.
        await _wait_out(batch.cancel())
        if kind == _OPEN and fut.done() and not fut.cancelled():
            # Opened, but the caller is gone: nobody else can close it.
            for fd in fut.result():
                if isinstance(fd, int):
                    os.close(fd)
        raise


class _Jobs:
    """The executor jobs of one call on a loop that is not cloop's.

    A cancelled call waits until none of its jobs is running any more,
    as a cancelled batch does on cloop; jobs not started yet are skipped,
    and an fd opened for a caller that is gone is closed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, opens: bool) -> None:
        self._loop = loop
        self._opens = opens
        self._lock = threading.Lock()
        self._running = 0
        self._cancelled = False
        self._fds: list[int] = []
        self._drained: asyncio.Future[None] | None = None

    def _call(self, func: Any, *args: Any) -> Any:
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._running += 1
        ok = False
        try:
            res = func(*args)
            ok = True
            return res
        finally:
            with self._lock:
                self._running -= 1
                if ok and self._opens:
                    if self._cancelled:
                        os.close(res)
                    else:
                        self._fds.append(res)
                if self._cancelled and self._running == 0:
                    self._wake()

    def _wake(self) -> None:
        drained = self._drained
        if drained is not None:
            try:
                self._loop.call_soon_threadsafe(_set_none, drained)
            except RuntimeError:  # the loop is closed: nobody waits
                pass

    async def gather(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        futs = [self._loop.run_in_executor(None, self._call, *c) for c in calls]
        try:
            return await asyncio.gather(*futs, return_exceptions=True)
        except asyncio.CancelledError:
            with self._lock:
                self._cancelled = True
                for fd in self._fds:
                    os.close(fd)
                self._fds.clear()
                if self._running:
                    self._drained = self._loop.create_future()
            await _wait_out(self._drained)
            raise


def _set_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _wait_out(fut: asyncio.Future[Any] | None) -> None:
    """Wait for fut, through any further cancellation of the caller."""
    if fut is None:
        return
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            pass


async def _one(kind: int, item: tuple[Any, ...], func: Any, *args: Any) -> Any:
    """One operation: libuv on a cloop loop, func(*args) in the executor
    elsewhere."""
    loop = asyncio.get_running_loop()
    if _is_cloop(loop):
        [res] = await _submit(loop, kind, [item])
    else:
        [res] = await _Jobs(loop, kind == _OPEN).gather([(func, *args)])
    if isinstance(res, BaseException):
        raise res
    return res


async def _many(
    kind: int,
    items: list[tuple[Any, ...]],
    func: Any,
    args: list[tuple[Any, ...]],
    return_exceptions: bool,
) -> list[Any]:
    loop = asyncio.get_running_loop()
    if _is_cloop(loop):
        results = await _submit(loop, kind, items)
    else:
        results = await _Jobs(loop, False).gather([(func, *a) for a in args])
    return _unpack(results, return_exceptions)


# --- The executor versions (non-cloop loops) ------------------------------


# The built-in open(); this module's open() shadows it.
_builtin_open = open


def _sync_read(path: Any) -> bytes:
    with _builtin_open(path, "rb") as f:
        return f.read()


def _sync_write(path: Any, data: bytes, flags: int) -> None:
    fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)


def _sync_exists(path: Any) -> bool:
    return os.path.exists(path)


def _sync_copy(src: Any, dst: Any) -> None:
    try:
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    except shutil.SameFileError:
        pass
    except OSError as exc:
        raise OSError(
            exc.errno, exc.strerror, os.fspath(src), None, os.fspath(dst)
        ) from None


def _sync_listdir(path: Any) -> list[Any]:
    return sorted(os.listdir(path))


def _sync_fd_read(fd: int, n: int, offset: int) -> bytes:
    return os.read(fd, n) if offset < 0 else os.pread(fd, n, offset)


def _sync_fd_write(fd: int, data: bytes, offset: int) -> int:
    return os.write(fd, data) if offset < 0 else os.pwrite(fd, data, offset)


def _snapshot(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    return bytes(memoryview(data))


# --- Whole files ----------------------------------------------------------


async def read_file(path: StrOrBytesPath) -> bytes:
    """Return the contents of the file at path, as ``open(path, 'rb').read()``."""
    return await _one(_READ_FILE, _named(path), _sync_read, path)  # type: ignore[no-any-return]


async def write_file(path: StrOrBytesPath, data: Any) -> None:
    """Create or truncate the file at path and write data (bytes-like) to it."""
    await _one(
        _WRITE_FILE,
        (*_named(path), data, _WRITE_FLAGS, 0o666),
        _sync_write,
        path,
        _snapshot(data),
        _WRITE_FLAGS,
    )


async def append_file(path: StrOrBytesPath, data: Any) -> None:
    """Append data (bytes-like) to the file at path, creating it if needed."""
    await _one(
        _WRITE_FILE,
        (*_named(path), data, _APPEND_FLAGS, 0o666),
        _sync_write,
        path,
        _snapshot(data),
        _APPEND_FLAGS,
    )


async def read_files(
    paths: Iterable[StrOrBytesPath], *, return_exceptions: bool = False
) -> list[Any]:
    """Read every file of paths at once; a list of their contents."""
    paths = list(paths)
    return await _many(
        _READ_FILE,
        [_named(p) for p in paths],
        _sync_read,
        [(p,) for p in paths],
        return_exceptions,
    )


async def write_files(
    items: Iterable[tuple[StrOrBytesPath, Any]], *, return_exceptions: bool = False
) -> list[Any]:
    """Write each (path, data) of items at once, as write_file(); a list of None."""
    items = [(p, d) for p, d in items]
    return await _many(
        _WRITE_FILE,
        [(*_named(p), d, _WRITE_FLAGS, 0o666) for p, d in items],
        _sync_write,
        [(p, _snapshot(d), _WRITE_FLAGS) for p, d in items],
        return_exceptions,
    )


async def copy_file(src: StrOrBytesPath, dst: StrOrBytesPath) -> None:
    """Copy the contents and permission bits of src to dst (uv_fs_copyfile)."""
    await _one(
        _COPYFILE, (*_named(src), *_named(dst)), _sync_copy, src, dst
    )


# --- Metadata and names ---------------------------------------------------


async def stat(path: StrOrBytesPath, *, follow_symlinks: bool = True) -> os.stat_result:
    """os.stat(path, follow_symlinks=...)."""
    return await _one(  # type: ignore[no-any-return]
        _STAT,
        (*_named(path), int(bool(follow_symlinks))),
        _stat_sync,
        path,
        follow_symlinks,
    )


def _stat_sync(path: Any, follow_symlinks: bool) -> os.stat_result:
    return os.stat(path, follow_symlinks=follow_symlinks)


async def stat_many(
    paths: Iterable[StrOrBytesPath],
    *,
    follow_symlinks: bool = True,
    return_exceptions: bool = False,
) -> list[Any]:
    """os.stat() of every path at once; a list of stat results."""
    paths = list(paths)
    follow = int(bool(follow_symlinks))
    return await _many(
        _STAT,
        [(*_named(p), follow) for p in paths],
        _stat_sync,
        [(p, follow_symlinks) for p in paths],
        return_exceptions,
    )


async def exists(path: StrOrBytesPath) -> bool:
    """os.path.exists(path): False for any OSError or ValueError."""
    loop = asyncio.get_running_loop()
    if not _is_cloop(loop):
        [res] = await _Jobs(loop, False).gather([(_sync_exists, path)])
        return res  # type: ignore[no-any-return]
    try:
        item = (*_named(path), 1)
    except ValueError:
        return False
    try:
        [res] = await _submit(loop, _STAT, [item])
    except ValueError:
        return False
    return not isinstance(res, BaseException)


async def remove(path: StrOrBytesPath) -> None:
    """os.remove(path)."""
    await _one(_UNLINK, _named(path), os.remove, path)


async def rmdir(path: StrOrBytesPath) -> None:
    """os.rmdir(path)."""
    await _one(_RMDIR, _named(path), os.rmdir, path)


async def rename(src: StrOrBytesPath, dst: StrOrBytesPath) -> None:
    """os.rename(src, dst)."""
    await _one(
        _RENAME, (*_named(src), *_named(dst)), os.rename, src, dst
    )


async def mkdir(path: StrOrBytesPath, mode: int = 0o777) -> None:
    """os.mkdir(path, mode)."""
    await _one(_MKDIR, (*_named(path), mode), os.mkdir, path, mode)


async def listdir(path: StrOrBytesPath = ".") -> list[Any]:
    """os.listdir(path), sorted: str names, or bytes for a bytes path."""
    as_bytes = int(isinstance(os.fspath(path), bytes))
    return await _one(  # type: ignore[no-any-return]
        _SCANDIR, (*_named(path), as_bytes), _sync_listdir, path
    )


# --- File descriptors -----------------------------------------------------


def _open_flags(flags: str | int) -> int:
    if isinstance(flags, int):
        return flags
    if not isinstance(flags, str):
        raise TypeError(f"flags must be str or int, not {type(flags).__name__}")
    chars = flags.replace("b", "")
    base = chars.replace("+", "")
    if len(base) != 1 or base not in _OPEN_MODES or chars.count("+") > 1:
        raise ValueError(f"invalid flags: {flags!r}")
    value = _OPEN_MODES[base]
    if "+" in chars:
        value = (value & ~(os.O_WRONLY | os.O_RDONLY)) | os.O_RDWR
    return value


async def open(path: StrOrBytesPath, flags: str | int = "r", mode: int = 0o666) -> int:
    """Open path and return a file descriptor, as os.open().

    flags is "r", "w", "a" or "x", optionally with "+" (and "b",
    ignored), as for the built-in open(); or os.O_* flags.  The fd is
    non-inheritable; close it with cloop.fs.close() or os.close().
    """
    value = _open_flags(flags)
    return await _one(  # type: ignore[no-any-return]
        _OPEN, (*_named(path), value, mode), os.open, path, value, mode
    )


async def read(fd: int, size: int, offset: int | None = None) -> bytes:
    """os.read(fd, size), or os.pread() at offset."""
    off = -1 if offset is None else offset
    return await _one(  # type: ignore[no-any-return]
        _READ, (fd, size, off), _sync_fd_read, fd, size, off
    )


async def write(fd: int, data: Any, offset: int | None = None) -> int:
    """os.write(fd, data), or os.pwrite() at offset: one write, its count."""
    off = -1 if offset is None else offset
    return await _one(  # type: ignore[no-any-return]
        _WRITE, (fd, data, off), _sync_fd_write, fd, _snapshot(data), off
    )


async def close(fd: int) -> None:
    """os.close(fd)."""
    await _one(_CLOSE, (fd,), os.close, fd)

