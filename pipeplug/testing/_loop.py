"""An asyncio loop in a daemon thread, shared by the fake piped and the test client."""

from __future__ import annotations

import asyncio
import threading
import typing as t

T = t.TypeVar("T")

#: bound on every wait this module makes on its own machinery
STARTUP_TIMEOUT = 15.0


class LoopThread:
    """An asyncio loop in a daemon thread, so sync tests can host grpc.aio servers."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: t.Coroutine[t.Any, t.Any, T], timeout: float | None = STARTUP_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STARTUP_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()
