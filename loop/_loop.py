"""cloop.Loop: asyncio's BaseEventLoop over cloop's C core.

The C base (CoreLoop) supplies everything that runs per callback or per
timer: call_soon*, call_later/call_at, time, stop, the run loop itself.
BaseEventLoop supplies everything per loop or per error, unchanged from the
running Python (exception handlers, executors, async generators,
run_until_complete, create_task, debug checks), so those behave exactly as
asyncio's on every version.  This module adds what asyncio keeps in its
Unix loop: signal handling, through signal.set_wakeup_fd.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
import warnings
from asyncio import base_events, coroutines, events
from typing import Any, Callable

from . import _cloop
from ._dns import DNSMixin
from ._pipe import PipeMixin
from ._stream import StreamMixin
from ._udp import DatagramMixin
from ._sock import SockMixin
from ._tls import TLSMixin
from ._subprocess import SubprocessMixin

__all__ = ["Loop"]

_HAS_RUN_FOREVER_SETUP = hasattr(base_events.BaseEventLoop, "_run_forever_setup")


class Loop(  # type: ignore[misc]
    _cloop.CoreLoop,
    StreamMixin,
    PipeMixin,
    DatagramMixin,
    SockMixin,
    TLSMixin,
    DNSMixin,
    SubprocessMixin,
    base_events.BaseEventLoop,
):
    """An asyncio event loop whose engine is C on libuv."""

    def __init__(self) -> None:
        base_events.BaseEventLoop.__init__(self)
        self._signal_handlers: dict[int, _cloop.Handle] = {}
        # Python writes signal numbers to _csock (signal.set_wakeup_fd);
        # the C core watches _ssock, so a signal ends even an idle poll.
        self._ssock, self._csock = socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._cl_watch_signal_fd(self._ssock.fileno())

    # --- running -----------------------------------------------------

    def run_forever(self) -> None:
        if _HAS_RUN_FOREVER_SETUP:
            self._run_forever_setup()
        else:
            self._cl_run_forever_setup()
        try:
            # In the main thread, Ctrl-C must interrupt an idle poll.
            try:
                previous: int | None = self._cl_set_wakeup()
            except ValueError:
                previous = None
            self._cl_run()
        finally:
            if previous is not None and not self._signal_handlers:
                self._cl_unset_wakeup(previous)
            if _HAS_RUN_FOREVER_SETUP:
                self._run_forever_cleanup()
            else:
                self._cl_run_forever_cleanup()

    # BaseEventLoop.run_forever before 3.13 has no setup/cleanup halves;
    # these do what its body does around _run_once().
    def _cl_run_forever_setup(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._cl_old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        events._set_running_loop(self)

    def _cl_run_forever_cleanup(self) -> None:
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        sys.set_asyncgen_hooks(*self._cl_old_agen_hooks)

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._signal_handlers:
            if not sys.is_finalizing():
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
            else:
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown "
                    f"stage, skipping signal handlers removal",
                    ResourceWarning,
                    source=self,
                )
                self._signal_handlers.clear()
        super().close()
        self._cl_close()
        self._ssock.close()
        self._csock.close()

    # --- signals -----------------------------------------------------

    def _cl_set_wakeup(self) -> int:
        """Point signal.set_wakeup_fd() at this loop (main thread only);
        return the fd it replaced."""
        return signal.set_wakeup_fd(self._csock.fileno())

    def _cl_unset_wakeup(self, previous: int = -1) -> None:
        """Undo _cl_set_wakeup() if the wake-up fd is still this loop's.

        Loops come and go in any order, so a loop only ever takes back its
        own fd, never one another loop installed since."""
        ours = self._csock.fileno()
        if previous == ours:
            previous = -1
        try:
            current = signal.set_wakeup_fd(previous)
        except OSError:
            # The fd we replaced was closed meanwhile.
            current = signal.set_wakeup_fd(-1)
        if current != ours:
            signal.set_wakeup_fd(current)

    def _cl_handle_signals(self, signums: bytes) -> None:
        """Called by the C core with the signal numbers read from the
        wake-up socket, after Python's own handlers ran."""
        for signum in signums:
            if signum:
                self._handle_signal(signum)

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(
        self, sig: int, callback: Callable[..., object], *args: Any
    ) -> None:
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(
            callback
        ):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Fails outside the main thread, so a loop running in another
            # thread cannot take over a signal.
            self._cl_set_wakeup()
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        handle = _cloop.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            # A no-op Python handler makes Python write the signal number
            # to the wake-up fd; SA_RESTART limits EINTR.
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers and not self.is_running():
                try:
                    self._cl_unset_wakeup()
                except (ValueError, OSError) as nexc:
                    base_events.logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers and not self.is_running():
            try:
                self._cl_unset_wakeup()
            except (ValueError, OSError) as exc:
                base_events.logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True


def _sighandler_noop(signum: int, frame: Any) -> None:
    """Dummy signal handler."""
