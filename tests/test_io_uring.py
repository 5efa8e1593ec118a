"""UV_USE_IO_URING and cloop.features(), each setting in a fresh process.

libuv reads UV_USE_IO_URING once per process (when a loop first needs
io_uring), so every setting runs in its own interpreter.  Whatever the
libuv (Debian's 1.44.2 has no io_uring at all), file operations must work
under every setting; the tests never require io_uring to be present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

cloop = pytest.importorskip("cloop")

CHILD = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import cloop
    from cloop import fs

    async def main(d):
        paths = [os.path.join(d, f"f{i}") for i in range(20)]
        await fs.write_files([(p, p.encode() * 100) for p in paths])
        got = await fs.read_files(paths)
        assert got == [p.encode() * 100 for p in paths], "read_files"
        stats = await fs.stat_many(paths)
        assert [s.st_size for s in stats] == [len(g) for g in got], "stat"
        await fs.append_file(paths[0], b"!")
        assert (await fs.read_file(paths[0])).endswith(b"!"), "append"
        for p in paths:
            await fs.remove(p)
        assert await fs.listdir(d) == [], "remove"
        # Which fds are io_uring instances, while the loop is open.
        rings = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if "io_uring" in link:
                rings.append(link)
        return rings

    with tempfile.TemporaryDirectory() as d:
        rings = cloop.run(main(d))
    print(json.dumps({"features": cloop.features(), "rings": rings}))
    """
)


def run_child(setting: str | None) -> dict:
    env = dict(os.environ)
    env.pop("UV_USE_IO_URING", None)
    if setting is not None:
        env["UV_USE_IO_URING"] = setting
    proc = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def expected_enabled(version: int, compiled: int, setting: str | None) -> bool:
    """The table of docs/io_uring.md."""
    if not sys.platform.startswith("linux") or version < 0x012D00:
        return False
    value = None if setting is None else int(setting)
    if version < 0x013100:  # 1.45 - 1.48: on unless 0
        return value is None or value != 0
    return compiled >= 0x013100 and value is not None and value > 0


def hexversion(text: str) -> int:
    major, minor, patch = (int(x) for x in text.split("."))
    return (major << 16) | (minor << 8) | patch


@pytest.mark.parametrize("setting", [None, "0", "1"])
def test_features_and_fs_under_setting(setting):
    out = run_child(setting)
    f = out["features"]
    version = hexversion(f["libuv_version"])
    compiled = hexversion(f["libuv_compiled_version"])
    available = sys.platform.startswith("linux") and version >= 0x012D00
    assert f["io_uring_available"] is available
    assert f["io_uring_enabled"] is expected_enabled(version, compiled, setting)
    if not available:
        # A libuv without io_uring never makes a ring.
        assert out["rings"] == []


def test_debian_libuv_has_no_io_uring():
    info = cloop._cloop.build_info()
    if info["libuv_version_hex"] >= 0x012D00:
        pytest.skip(f"libuv {info['libuv_version']} can use io_uring")
    f = cloop.features()
    assert f["io_uring_available"] is False
    assert f["io_uring_enabled"] is False


@pytest.mark.parametrize(
    "version, setting, want",
    [
        (0x012C02, None, False),
        (0x012C02, "1", False),
        (0x012D00, None, True),
        (0x012D00, "0", False),
        (0x012D00, "abc", False),
        (0x013000, "-1", True),
        (0x013100, None, False),
        (0x013100, "0", False),
        (0x013100, "1", True),
        (0x013200, "-1", False),
        (0x013300, " 2x", True),
    ],
)
def test_features_applies_libuvs_rules(monkeypatch, version, setting, want):
    # features() applied to a libuv of another version (the C module's
    # build_info() stands in for it); cloop built with new headers.
    real = cloop._cloop.build_info()

    def fake() -> dict:
        info = dict(real)
        info["libuv_version_hex"] = version
        info["libuv_version"] = "%d.%d.%d" % (
            version >> 16, (version >> 8) & 0xFF, version & 0xFF
        )
        info["libuv_compiled_version"] = info["libuv_version"]
        return info

    monkeypatch.setattr(cloop._cloop, "build_info", fake)
    if setting is None:
        monkeypatch.delenv("UV_USE_IO_URING", raising=False)
    else:
        monkeypatch.setenv("UV_USE_IO_URING", setting)
    f = cloop.features()
    assert f["io_uring_available"] is (sys.platform.startswith("linux") and version >= 0x012D00)
    assert f["io_uring_enabled"] is want
