"""Subprocess workloads: spawn rate and pipe throughput.

``proc_spawn`` measures how fast a loop starts and reaps short children
(``true``); ``proc_pipe`` pushes data through ``cat`` and back over the
subprocess pipe transports.  Both go through ``asyncio``'s public API
(``create_subprocess_exec``), so they run unchanged on every loop.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from ._registry import Timer, check, workload

# Children alive at once in proc_spawn.
_SPAWN_CONCURRENCY = 16
_CHUNK = 1 << 16


def _program(name: str) -> str:
    path = shutil.which(name)
    check(path is not None, f"{name} not found on PATH")
    return path  # type: ignore[return-value]


@workload(full=400, quick=80)
def proc_spawn(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n children running `true` (16 at a time), each spawned and reaped."""
    true = _program("true")
    codes: list[int] = []

    async def one(sem: asyncio.Semaphore) -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                true, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            codes.append(await proc.wait())

    async def main() -> None:
        sem = asyncio.Semaphore(_SPAWN_CONCURRENCY)
        await asyncio.gather(*(one(sem) for _ in range(n)))

    with timer:
        loop.run_until_complete(main())
    check(len(codes) == n and not any(codes),
          f"{len(codes)} of {n} children exited, codes {set(codes)}")


@workload(full=64, quick=8)
def proc_pipe(loop: asyncio.AbstractEventLoop, n: int, timer: Timer) -> None:
    """n MiB written to `cat` through its stdin pipe and read back."""
    cat = _program("cat")
    chunk = bytes(range(256)) * (_CHUNK // 256)
    total = n << 20
    received = 0

    async def main() -> int:
        nonlocal received
        proc = await asyncio.create_subprocess_exec(
            cat, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None

        async def feed() -> None:
            assert proc.stdin is not None
            for _ in range(total // _CHUNK):
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            proc.stdin.close()

        async def drain() -> None:
            nonlocal received
            assert proc.stdout is not None
            while True:
                data = await proc.stdout.read(1 << 20)
                if not data:
                    break
                received += len(data)

        await asyncio.gather(feed(), drain())
        return await proc.wait()

    with timer:
        rc = loop.run_until_complete(main())
    check(rc == 0 and received == total,
          f"cat exited {rc}, {received} of {total} bytes came back")
