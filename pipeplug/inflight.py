"""The stages this process is executing, and how a cancelled one ends: its handler's clean-up reaches its log.

Two things cancel a stage: piped (a cancel from the web UI, a stage timeout,
piped's own shutdown) and this process's own shutdown (SIGTERM).

- An ``async def`` handler gets :class:`asyncio.CancelledError` at its current
  ``await``; its ``except``/``finally`` clean-up runs before the call ends.
- A ``def`` handler runs in a worker thread, which nothing can interrupt: it
  sees ``ctx.cancelled`` (and ``ctx.wait_cancelled()``) turn true and returns
  when it chooses. Its stage log stays open until it returns, for at most
  :data:`CLEANUP_SECONDS`; lines written after that reach the process log only.

When piped cancels, the call ends at once (piped has stopped listening) and the
log is completed in the background once the handler is done. When the process
stops (:meth:`InFlight.stop_all`), every stage is cancelled at once, handlers get
the same clean-up time, and each log is flushed but *not* completed: the call
answers STAGE_RUNNING, which piped records as "still running" (it keeps the
stage's status), so after piped's restart the stage is executed again and its
new run appends to the same log, as the Go SDK leaves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing as t

from .context import cancel
from .stagelog import complete_stage_log
from .stagelog import suspend_stage_log

if t.TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("pipeplug")

#: how long a cancelled stage's handler may keep writing to its stage log (a ``def`` handler's clean-up)
CLEANUP_SECONDS = 5.0
#: at shutdown, how long a stopped stage's reply waits for its log to reach piped
SUSPEND_SECONDS = 2.0

#: the reply to a stage stopped by the plugin's shutdown; piped keeps the stage RUNNING and executes it again
STOPPED_MESSAGE = "the plugin stopped (SIGTERM) before the stage finished; piped executes the stage again when it restarts"


class InFlight:
    """The ExecuteStage calls being served, each with the task serving it."""

    def __init__(self) -> None:
        self._running: dict[Context, asyncio.Task[t.Any]] = {}
        #: stage logs waiting for a cancelled handler to return
        self._closing: set[asyncio.Task[None]] = set()
        #: ``def`` handlers still running after their clean-up time: the process exits without them
        self.abandoned = 0
        #: set by :meth:`stop_all`: cancellations from now on are the process stopping
        self.stopping = False

    def __len__(self) -> int:
        return len(self._running)

    def begin(self, ctx: Context) -> None:
        """Record the current task as serving ``ctx``'s stage."""
        task = asyncio.current_task()
        if task is not None:
            self._running[ctx] = task
        if self.stopping and task is not None:  # a call accepted just before the server closed: stop it too
            cancel(ctx)
            task.cancel()

    def end(self, ctx: Context) -> None:
        self._running.pop(ctx, None)

    def stop_all(self) -> int:
        """Cancel every running stage at once (the process is stopping); return how many."""
        self.stopping = True
        running = list(self._running.items())
        for ctx, task in running:
            cancel(ctx)
            task.cancel()
        return len(running)

    def cancelled(self, ctx: Context, started: float, handler: str, thread: asyncio.Future[t.Any] | None) -> asyncio.Task[None] | None:
        """A stage's call was cancelled: close its log once the handler is done (``thread``: a ``def`` handler's future).

        Returns None when piped cancelled (end the call now), or, when the
        process is stopping, the task to await before answering STAGE_RUNNING.
        """
        cancel(ctx)
        stopping = self.stopping
        elapsed = time.monotonic() - started
        if stopping:
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()  # our cancel, not piped's: the call may still answer
            ctx.log.warning("The plugin is stopping (SIGTERM) after %.1fs; piped executes this stage again when it restarts", elapsed)
        else:
            ctx.log.warning("Cancelled by piped after %.1fs", elapsed)
        closing = asyncio.ensure_future(self._close_log(ctx, handler, thread, stopping))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        return closing if stopping else None

    async def _close_log(self, ctx: Context, handler: str, thread: asyncio.Future[t.Any] | None, stopping: bool) -> None:
        if thread is not None and not thread.done():
            await asyncio.wait([thread], timeout=CLEANUP_SECONDS)
            if not thread.done():
                self.abandoned += 1
                thread.add_done_callback(self._returned_late)
                ctx.log.warning(
                    "Handler %s() had not returned %gs after the cancellation; what it logs from now on reaches the process log only. "
                    "Return soon after ctx.cancelled turns true (or use ctx.wait_cancelled() instead of sleeping).",
                    handler,
                    CLEANUP_SECONDS,
                )
        if thread is not None and thread.done() and not thread.cancelled() and thread.exception() is not None:
            ctx.log.exception("Handler %s() raised after the cancellation", handler, exc=thread.exception())
        if stopping:
            await asyncio.wait([suspend_stage_log(ctx.log)], timeout=SUSPEND_SECONDS)
        else:
            await complete_stage_log(ctx.log)

    def _returned_late(self, thread: asyncio.Future[t.Any]) -> None:
        self.abandoned -= 1
        if not thread.cancelled():
            thread.exception()  # retrieved: it was logged, or nobody waits for it any more

    async def wait_closing(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the logs of cancelled stages to be closed (at shutdown)."""
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=timeout)
