"""How a sync handler's thread runs a context's coroutines on the server's event loop, and hears of a cancel.

Built per context only when a sync handler (or a thread) first needs it, so
async stages, the common case, pay for none of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import typing as t

T = t.TypeVar("T")


class SyncBridge:
    """What a context needs on the thread side: running its coroutines on the loop, and a cancel event."""

    __slots__ = ("loop", "event", "_lock", "_pending", "_cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop | None, cancelled: bool) -> None:
        self.loop = loop
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[t.Any]] = set()
        self._cancelled = False
        if cancelled:
            self.cancel()

    def run(self, coro: t.Coroutine[t.Any, t.Any, T], what: str) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(
                f"{what}_sync() waits for piped, so it cannot run on the event loop (that would stall the loop serving it); "
                f"in an async handler write `await {what}(...)`"
            )
        if self.loop is None or self.loop.is_closed():
            coro.close()
            raise RuntimeError(f"{what}_sync(): this context belongs to no running server")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        with self._lock:
            if self._cancelled:
                future.cancel()
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError(f"{what}_sync(): the stage was cancelled by piped") from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            pending = list(self._pending)
        self.event.set()
        for future in pending:
            future.cancel()
