"""cloop.fs: results and errors as the os module's, batches, cancellation.

Every behaviour test runs on stock asyncio (where cloop.fs runs the os
calls in the default executor) and on cloop (libuv's worker pool); the
expected values come from the os module called directly.  The
cloop-only tests check what only the libuv path has: the executor is
never used, a batch is one FsBatch, the loop can close with requests in
flight, the pool size follows UV_THREADPOOL_SIZE.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import cloop
from cloop import fs


def run(loop, coro):
    return loop.run_until_complete(coro)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_error(func, *args):
    """The exception func(*args) raises."""
    with pytest.raises(OSError) as info:
        func(*args)
    return info.value


def same_error(got: BaseException, want: BaseException) -> None:
    assert type(got) is type(want)
    assert got.errno == want.errno
    assert got.strerror == want.strerror
    assert got.filename == want.filename
    assert got.filename2 == want.filename2


def sync_read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(autouse=True, params=["auto", "chained"])
def fs_mode(request, monkeypatch):
    """cloop runs read_file/write_file as one pool job per file, or (where
    libuv has io_uring) as chained uv_fs_* requests: test both."""
    if request.param == "chained":
        if "loop_name" not in request.fixturenames or (
            request.getfixturevalue("loop_name") != "cloop"
        ):
            pytest.skip("the chained mode is cloop's")
        monkeypatch.setattr(fs, "_MODE", 1)
    return request.param


@pytest.fixture
def files(tmp_path):
    """Ten small files with distinct contents."""
    paths = []
    for i in range(10):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * (100 + i))
        paths.append(p)
    return paths


# --- Whole files -----------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, 65536, 5 * 1024 * 1024 + 3])
def test_read_file_sizes(loop, tmp_path, size):
    p = tmp_path / "f"
    data = os.urandom(size)
    p.write_bytes(data)
    assert run(loop, fs.read_file(p)) == data


def test_read_file_path_likes(loop, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    for path in (p, str(p), os.fsencode(str(p))):
        assert run(loop, fs.read_file(path)) == b"abc"


def test_read_file_not_regular(loop):
    # /proc files report size 0 and fifo-like reads: read until EOF.
    data = run(loop, fs.read_file("/proc/self/status"))
    assert data.startswith(b"Name:")
    assert data.endswith(b"\n")


@pytest.mark.parametrize("kind", ["missing", "dir", "notdir"])
def test_read_file_errors(loop, tmp_path, kind):
    (tmp_path / "file").write_bytes(b"x")
    path = {
        "missing": tmp_path / "nope",
        "dir": tmp_path,
        "notdir": tmp_path / "file" / "x",
    }[kind]
    want = os_error(sync_read, path)
    with pytest.raises(OSError) as info:
        run(loop, fs.read_file(path))
    same_error(info.value, want)
    assert info.value.filename == os.fspath(path)


def test_read_file_bad_path(loop):
    with pytest.raises(TypeError):
        run(loop, fs.read_file(1.5))
    with pytest.raises(ValueError):
        run(loop, fs.read_file("a\0b"))


@pytest.mark.parametrize(
    "make", [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))]
)
def test_write_file_bytes_likes(loop, tmp_path, make):
    p = tmp_path / "f"
    run(loop, fs.write_file(p, make(b"hello world")))
    assert p.read_bytes() == b"hello world"


def test_write_file_truncates_and_appends(loop, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    run(loop, fs.write_file(p, b"abc"))
    assert p.read_bytes() == b"abc"
    run(loop, fs.append_file(p, bytearray(b"def")))
    run(loop, fs.append_file(tmp_path / "new", b"ghi"))
    assert p.read_bytes() == b"abcdef"
    assert (tmp_path / "new").read_bytes() == b"ghi"


def test_write_file_large_and_empty(loop, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 5)
    run(loop, fs.write_file(tmp_path / "big", data))
    assert (tmp_path / "big").read_bytes() == data
    run(loop, fs.write_file(tmp_path / "empty", b""))
    assert (tmp_path / "empty").read_bytes() == b""


def test_write_file_snapshots_mutable_data(loop, tmp_path):
    p = tmp_path / "f"
    buf = bytearray(b"before")

    async def main():
        task = asyncio.ensure_future(fs.write_file(p, buf))
        await asyncio.sleep(0)  # the write is submitted
        buf[:] = b"AFTER!"
        await task

    run(loop, main())
    assert p.read_bytes() == b"before"


def test_write_file_errors(loop, tmp_path):
    path = tmp_path / "no" / "f"
    want = os_error(open, path, "wb")
    with pytest.raises(OSError) as info:
        run(loop, fs.write_file(path, b"x"))
    same_error(info.value, want)
    with pytest.raises(TypeError):
        run(loop, fs.write_file(tmp_path / "f", "text"))
    assert not (tmp_path / "f").exists()


def test_write_file_mode_follows_umask(loop, tmp_path):
    run(loop, fs.write_file(tmp_path / "a", b"x"))
    with open(tmp_path / "b", "wb"):
        pass
    assert (tmp_path / "a").stat().st_mode == (tmp_path / "b").stat().st_mode


def test_copy_file(loop, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(os.urandom(100000))
    os.chmod(src, 0o640)
    run(loop, fs.copy_file(src, tmp_path / "dst"))
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert (tmp_path / "dst").stat().st_mode == src.stat().st_mode
    with pytest.raises(FileNotFoundError) as info:
        run(loop, fs.copy_file(tmp_path / "nope", tmp_path / "dst2"))
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(tmp_path / "nope")
    assert info.value.filename2 == str(tmp_path / "dst2")


# --- Metadata and names -----------------------------------------------------


def test_stat_matches_os(loop, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 1234)
    os.utime(p, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    for path in (p, str(p), tmp_path):
        got = run(loop, fs.stat(path))
        want = os.stat(path)
        assert type(got) is os.stat_result
        assert got == want
        for name in dir(want):
            if name.startswith("st_"):
                assert getattr(got, name) == getattr(want, name), name


def test_stat_follow_symlinks(loop, tmp_path):
    (tmp_path / "target").write_bytes(b"abc")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    assert run(loop, fs.stat(link)) == os.stat(link)
    got = run(loop, fs.stat(link, follow_symlinks=False))
    assert got == os.lstat(link)
    assert run(loop, fs.stat_many([link], follow_symlinks=False)) == [os.lstat(link)]


def test_stat_errors(loop, tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(OSError) as info:
        run(loop, fs.stat(path))
    same_error(info.value, os_error(os.stat, path))


def test_exists(loop, tmp_path):
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "dangling").symlink_to(tmp_path / "nope")
    for path in ("f", "nope", "dangling", "f/x"):
        full = tmp_path / path
        assert run(loop, fs.exists(full)) is os.path.exists(full)
    assert run(loop, fs.exists(tmp_path)) is True
    assert run(loop, fs.exists("a\0b")) is False


def test_remove_rename_mkdir_rmdir(loop, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1")
    run(loop, fs.rename(a, b))
    assert not a.exists() and b.read_bytes() == b"1"
    run(loop, fs.remove(b))
    assert not b.exists()
    d = tmp_path / "d"
    run(loop, fs.mkdir(d))
    assert d.is_dir()
    run(loop, fs.mkdir(d / "sub", 0o700))
    assert (d / "sub").stat().st_mode & 0o777 == 0o700 & ~_umask()
    run(loop, fs.rmdir(d / "sub"))
    assert not (d / "sub").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    "op, func, args",
    [
        ("remove", os.remove, ("nope",)),
        ("remove", os.remove, (".",)),
        ("rmdir", os.rmdir, ("nope",)),
        ("rmdir", os.rmdir, ("full",)),
        ("mkdir", os.mkdir, ("full",)),
        ("rename", os.rename, ("nope", "other")),
        ("rename", os.rename, ("full", "file")),
        ("listdir", os.listdir, ("nope",)),
        ("listdir", os.listdir, ("file",)),
    ],
)
def test_errors_match_os(loop, tmp_path, op, func, args):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    (tmp_path / "file").write_bytes(b"")
    paths = [str(tmp_path / a) if a != "." else str(tmp_path) for a in args]
    want = os_error(func, *paths)
    with pytest.raises(OSError) as info:
        run(loop, getattr(fs, op)(*paths))
    same_error(info.value, want)


def test_listdir(loop, tmp_path):
    names = ["b", "a", "é", "c.txt", ".hidden"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    assert run(loop, fs.listdir(tmp_path)) == sorted(os.listdir(tmp_path))
    got = run(loop, fs.listdir(os.fsencode(str(tmp_path))))
    assert got == sorted(os.listdir(os.fsencode(str(tmp_path))))
    assert all(isinstance(n, bytes) for n in got)
    (tmp_path / "empty").mkdir()
    assert run(loop, fs.listdir(tmp_path / "empty")) == []


# --- File descriptors ------------------------------------------------------


def test_fd_operations(loop, tmp_path):
    p = tmp_path / "f"

    async def main():
        fd = await fs.open(p, "w")
        assert isinstance(fd, int)
        assert not os.get_inheritable(fd)
        assert await fs.write(fd, b"hello ") == 6
        assert await fs.write(fd, bytearray(b"world")) == 5
        assert await fs.write(fd, b"HE", offset=0) == 2
        await fs.close(fd)
        fd = await fs.open(p, "rb")
        first = await fs.read(fd, 3)
        rest = await fs.read(fd, 100)
        at = await fs.read(fd, 5, offset=6)
        end = await fs.read(fd, 10)
        await fs.close(fd)
        fd = await fs.open(p, os.O_RDWR | os.O_APPEND)
        await fs.write(fd, b"!")
        await fs.close(fd)
        return first, rest, at, end

    assert run(loop, main()) == (b"HEl", b"lo world", b"world", b"")
    assert p.read_bytes() == b"HEllo world!"


def test_fd_errors(loop, tmp_path):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for coro, func, args in [
        (fs.close(r), os.close, (r,)),
        (fs.read(r, 10), os.read, (r, 10)),
        (fs.write(r, b"x"), os.write, (r, b"x")),
    ]:
        want = os_error(func, *args)
        with pytest.raises(OSError) as info:
            run(loop, coro)
        same_error(info.value, want)
    path = tmp_path / "nope"
    with pytest.raises(OSError) as info:
        run(loop, fs.open(path))
    same_error(info.value, os_error(os.open, path, os.O_RDONLY))
    (tmp_path / "x").write_bytes(b"")
    with pytest.raises(FileExistsError):
        run(loop, fs.open(tmp_path / "x", "x"))
    with pytest.raises(ValueError):
        run(loop, fs.open(tmp_path / "x", "rw"))


# --- Batches ---------------------------------------------------------------


def test_read_files(loop, files):
    assert run(loop, fs.read_files(files)) == [p.read_bytes() for p in files]
    assert run(loop, fs.read_files([])) == []
    assert run(loop, fs.read_files(iter(files[:2]))) == [
        p.read_bytes() for p in files[:2]
    ]


def test_read_files_mixed_failures(loop, files, tmp_path):
    missing = tmp_path / "missing"
    paths = [files[0], missing, tmp_path, files[1]]
    with pytest.raises(FileNotFoundError) as info:
        run(loop, fs.read_files(paths))
    # The first error in argument order.
    assert info.value.filename == str(missing)
    got = run(loop, fs.read_files(paths, return_exceptions=True))
    assert got[0] == files[0].read_bytes()
    assert got[3] == files[1].read_bytes()
    same_error(got[1], os_error(sync_read, missing))
    same_error(got[2], os_error(sync_read, tmp_path))


def test_write_files_all_finish_before_the_error(loop, tmp_path):
    items = [(tmp_path / "no" / "x", b"a")] + [
        (tmp_path / f"w{i}", bytes([i]) * 10) for i in range(20)
    ]
    with pytest.raises(FileNotFoundError):
        run(loop, fs.write_files(items))
    for p, data in items[1:]:
        assert p.read_bytes() == data
    got = run(loop, fs.write_files(items, return_exceptions=True))
    assert isinstance(got[0], FileNotFoundError)
    assert got[1:] == [None] * 20


def test_stat_many(loop, files, tmp_path):
    paths = files + [tmp_path / "nope"]
    with pytest.raises(FileNotFoundError):
        run(loop, fs.stat_many(paths))
    got = run(loop, fs.stat_many(paths, return_exceptions=True))
    assert got[:-1] == [os.stat(p) for p in files]
    same_error(got[-1], os_error(os.stat, tmp_path / "nope"))


def test_many_files_at_once(loop, tmp_path):
    paths = []
    for i in range(300):
        p = tmp_path / f"m{i}"
        p.write_bytes(i.to_bytes(2, "big") * (i + 1))
        paths.append(p)
    before = fd_count()

    async def main():
        # Several batches in flight together.
        return await asyncio.gather(
            fs.read_files(paths[:150]),
            fs.read_files(paths[150:]),
            fs.stat_many(paths),
            fs.write_files([(tmp_path / f"o{i}", b"%d" % i) for i in range(100)]),
        )

    a, b, stats, writes = run(loop, main())
    assert a + b == [p.read_bytes() for p in paths]
    # The reads running alongside may change st_atime: compare the rest.
    def key(st):
        return (st.st_ino, st.st_dev, st.st_mode, st.st_size, st.st_mtime_ns)

    assert [key(st) for st in stats] == [key(os.stat(p)) for p in paths]
    assert writes == [None] * 100
    assert fd_count() == before


def test_batch_bad_item_fails_before_anything_starts(loop, tmp_path):
    with pytest.raises(TypeError):
        run(loop, fs.write_files([(tmp_path / "a", b"x"), (tmp_path / "b", "str")]))
    assert not (tmp_path / "a").exists()


# --- Cancellation ------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, 1, 3, 10])
def test_cancel_batch_leaks_no_fd(loop, tmp_path, steps):
    paths = []
    for i in range(200):
        p = tmp_path / f"c{i}"
        p.write_bytes(b"x" * 50000)
        paths.append(p)
    before = fd_count()

    async def main():
        task = asyncio.ensure_future(fs.read_files(paths))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            got = await task
        except asyncio.CancelledError:
            return True
        # Finished before the cancel arrived (only possible once it ran).
        assert steps > 0
        assert got == [b"x" * 50000] * len(paths)
        return False

    cancelled = run(loop, main())
    assert cancelled or steps > 0
    assert fd_count() == before


def test_cancel_write_batch(loop, tmp_path):
    before = fd_count()

    async def main():
        items = [(tmp_path / f"w{i}", b"y" * 100000) for i in range(100)]
        task = asyncio.ensure_future(fs.write_files(items))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Whatever was written is whole or absent... or truncated by the
        # stop between two writes; never an open fd.

    run(loop, main())
    assert fd_count() == before


def test_cancel_open_closes_the_fd(loop, tmp_path):
    (tmp_path / "f").write_bytes(b"")
    before = fd_count()

    async def main():
        for steps in range(4):
            task = asyncio.ensure_future(fs.open(tmp_path / "f"))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                fd = await task
            except asyncio.CancelledError:
                pass
            else:
                os.close(fd)

    run(loop, main())
    assert fd_count() == before


def test_cancel_twice_still_waits(loop, tmp_path):
    paths = [tmp_path / f"t{i}" for i in range(50)]
    for p in paths:
        p.write_bytes(b"z" * 100000)
    before = fd_count()

    async def main():
        task = asyncio.ensure_future(fs.read_files(paths))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(loop, main())
    assert fd_count() == before


# --- cloop only ----------------------------------------------------------------


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.count = 0

    def submit(self, *args, **kwargs):
        self.count += 1
        return super().submit(*args, **kwargs)


def test_executor_used_only_off_cloop(loop, loop_name, tmp_path):
    executor = CountingExecutor()
    loop.set_default_executor(executor)
    (tmp_path / "f").write_bytes(b"abc")

    async def main():
        await fs.read_file(tmp_path / "f")
        await fs.stat_many([tmp_path / "f"] * 3)
        await fs.exists(tmp_path / "f")

    try:
        run(loop, main())
    finally:
        run(loop, loop.shutdown_default_executor())
    if loop_name == "cloop":
        assert executor.count == 0
    else:
        assert executor.count == 5


@pytest.mark.parametrize("mode", [0, 1])
def test_one_batch_one_future(cloop_mod, tmp_path, mode):
    (tmp_path / "f").write_bytes(b"abc")
    loop = cloop_mod.new_event_loop()
    try:
        items = [(os.fsencode(str(tmp_path / "f")), "f")] * 3
        batch = loop._cl_fs_submit(fs._READ_FILE, items, mode)
        assert type(batch).__name__ == "FsBatch"
        assert batch.pending == 3
        assert run(loop, batch.future) == [b"abc"] * 3
        assert batch.pending == 0
        assert batch.cancel() is None
    finally:
        loop.close()


@pytest.mark.parametrize("mode", [0, 1])
def test_close_loop_with_requests_in_flight(cloop_mod, tmp_path, mode):
    paths = []
    for i in range(100):
        p = tmp_path / f"l{i}"
        p.write_bytes(b"q" * 200000)
        paths.append(os.fsencode(str(p)))
    before = fd_count()
    loop = cloop_mod.new_event_loop()
    batch = loop._cl_fs_submit(fs._READ_FILE, [(p, p) for p in paths], mode)
    fut = batch.future
    loop.close()
    # close() waited for the requests; none touched the future.
    assert batch.pending == 0
    assert not fut.done()
    assert fd_count() == before
    with pytest.raises(RuntimeError, match="closed"):
        loop._cl_fs_submit(fs._READ_FILE, [])


@pytest.mark.parametrize("mode", [0, 1])
def test_close_loop_during_a_write_chain(cloop_mod, tmp_path, mode):
    before = fd_count()
    loop = cloop_mod.new_event_loop()
    items = [
        (os.fsencode(str(tmp_path / f"w{i}")), i, b"d" * 300000, fs._WRITE_FLAGS, 0o666)
        for i in range(50)
    ]
    batch = loop._cl_fs_submit(fs._WRITE_FILE, items, mode)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert batch.pending == 0
    assert fd_count() == before


def test_refcounts(cloop_mod, tmp_path):
    p = tmp_path / "f"
    data = b"refcount data " * 10
    loop = cloop_mod.new_event_loop()
    try:
        before = (sys.getrefcount(p), sys.getrefcount(data))
        for _ in range(20):
            run(loop, fs.write_file(p, data))
            run(loop, fs.read_file(p))
            with pytest.raises(FileNotFoundError):
                run(loop, fs.read_file(tmp_path / "nope"))
            run(loop, fs.stat(p))
        assert (sys.getrefcount(p), sys.getrefcount(data)) == before
    finally:
        loop.close()


def test_batch_object_is_not_user_constructible(cloop_mod):
    with pytest.raises(TypeError):
        cloop_mod._cloop.FsBatch()
    loop = cloop_mod.new_event_loop()
    try:
        with pytest.raises(ValueError):
            loop._cl_fs_submit(99, [])
        with pytest.raises(TypeError):
            loop._cl_fs_submit(fs._READ_FILE, [("not bytes", None)])
        with pytest.raises(ValueError):
            loop._cl_fs_submit(fs._READ, [(0, -1, -1)])
    finally:
        loop.close()


def test_fs_from_a_loop_in_another_thread(cloop_mod, files):
    import threading

    result = []

    def target():
        result.append(cloop_mod.run(fs.read_files(files)))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    assert result == [[p.read_bytes() for p in files]]


def test_threadpool_size_is_libuvs(cloop_mod, tmp_path):
    # libuv starts UV_THREADPOOL_SIZE threads on first use of its pool.
    code = textwrap.dedent(
        """
        import os, sys, cloop
        from cloop import fs
        def threads():
            return len(os.listdir("/proc/self/task"))
        before = threads()
        cloop.run(fs.read_file(sys.executable))
        print(cloop.features()["threadpool_size"], threads() - before)
        """
    )
    for setting, want in [(None, 4), ("2", 2), ("7", 7), ("0", 1)]:
        env = dict(os.environ)
        env.pop("UV_THREADPOOL_SIZE", None)
        if setting is not None:
            env["UV_THREADPOOL_SIZE"] = setting
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True,
            text=True, check=True, timeout=60,
        ).stdout.split()
        assert out == [str(want), str(want)], (setting, out)


def test_features_threadpool_size_parsing(cloop_mod, monkeypatch):
    for setting, want in [("abc", 1), ("-1", 1024), ("5000", 1024), (" 12x", 12)]:
        monkeypatch.setenv("UV_THREADPOOL_SIZE", setting)
        assert cloop_mod.features()["threadpool_size"] == want


def test_fs_exported():
    assert cloop.fs is fs
    assert "fs" in cloop.__all__
    assert isinstance(pathlib.Path, type)


@pytest.mark.parametrize(
    "name",
    [
        f"fs_{what}{how}"
        for what in ("read_100", "write_100")
        for how in ("", "_executor", "_sync")
    ]
    + ["fs_stat_1000"],
)
def test_bench_workloads_run_and_check(loop, name, fs_mode):
    # File workloads of the bench, once, size 1: each must pass its own
    # checks (timing is the bench's business, not the tests'; the
    # 1,000-file ones differ only in size and take a while to set up).
    if fs_mode == "chained":
        pytest.skip("one mode is enough")
    from cloop.bench import _registry

    wl = _registry.load()[name]
    timer = _registry.Timer()
    wl.func(loop, 1, timer)
    assert timer.entries == 1


@pytest.mark.parametrize("op", ["read", "write", "close"])
def test_cancelled_fd_op_leaves_the_callers_fd_open(cloop_mod, tmp_path, op):
    # Fill libuv's pool with reads blocked on empty pipes, so the next
    # request stays queued and cancelling it takes it off the pool: the
    # fd it was given is the caller's and must stay open.
    size = cloop_mod.features()["threadpool_size"]
    pipes = [os.pipe() for _ in range(size)]
    (tmp_path / "f").write_bytes(b"data")
    fd = os.open(tmp_path / "f", os.O_RDWR)
    loop = cloop_mod.new_event_loop()

    async def main():
        blockers = [asyncio.ensure_future(fs.read(r, 1)) for r, _ in pipes]
        await asyncio.sleep(0.05)  # the pool's threads are all blocked
        coro = {
            "read": lambda: fs.read(fd, 4),
            "write": lambda: fs.write(fd, b"x"),
            "close": lambda: fs.close(fd),
        }[op]()
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            for _, w in pipes:
                os.write(w, b"!")
        assert await asyncio.gather(*blockers) == [b"!"] * size

    try:
        run(loop, main())
        os.fstat(fd)  # still open
        assert os.pread(fd, 4, 0) == b"data"
    finally:
        loop.close()
        os.close(fd)
        for r, w in pipes:
            os.close(r)
            os.close(w)
