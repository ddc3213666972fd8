"""Shipping stage logs: the lines ``ctx.log`` writes, buffered in memory and sent to piped in the background.

Piped's rules (contract §5.2) and how they are kept:

- **No empty line**: text is split on line breaks and empty lines are dropped,
  because one empty line makes piped refuse the whole batch.
- **created_at > 0**: unix seconds taken at write time.
- **Strictly increasing index per stage**: each line gets
  ``max(previous + 1, now in microseconds)``. The Go SDK starts at unix
  *seconds* and adds one per line, so a resumed stage (a new process, same
  stage id) collides with its earlier lines once it has logged more lines than
  seconds have passed; microsecond timestamps only collide if a process wrote
  more than a million lines per second, and they stay below 2**53, so the web
  UI (JavaScript numbers) keeps them exact.
- **Batches under 4 MiB**: requests carry at most ``log_batch_bytes``
  (1 MiB) of text, and a single line is cut at :data:`MAX_LINE_CHARS`.
- **Checkpoints**: plain flushes (ReportStageLogs, every
  ``log_flush_interval``) only reach the control plane's cache; every
  ``log_checkpoint_interval``, and at the end, *every* line since the last
  checkpoint is sent again with ReportStageLogsFromLastCheckpoint, which
  rebuilds the cached view from the durable one. A stage's *first* flush is a
  checkpoint too (as in the Go SDK): if the process is then killed hard and
  piped re-executes the stage, its first lines are already durable; without
  it, the re-execution's first checkpoint rebuilt the view from a file that
  held none of them. The last call carries
  ``completed=true``, exactly once per stage, even when there is nothing left
  to send. A stage that never wrote a line makes no call at all (as with the
  Go SDK), unless piped re-executes it: then its log is completed anyway.
- **Shutdown keeps logs open**: at SIGTERM a running stage's log is flushed
  with a checkpoint but *not* completed (:meth:`StageLogBuffer.suspend`), so
  the stage piped re-executes later continues the same log.

Writing never touches the network: :meth:`StageLogBuffer.write` appends to a
flat buffer (:class:`~pipeplug.loglines.LogLines`) under a lock (safe from sync handlers' threads) and returns. One
:class:`StageLogFlusher` task per process ships every stage's lines, so 2,000
idle stages cost 2,000 cheap checks per flush interval, not 2,000 tasks. When
piped is unreachable, lines stay buffered (up to ``log_buffer_lines`` per
stage) and flushes are retried with exponential backoff; beyond the bound the
oldest *unsent* lines are dropped, counted, reported in the process log and,
once piped answers again, in the stage log itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import typing as t

import grpc

from ._gen.model import logblock_pb2 as logblock_pb
from .logconfig import redact
from .loglines import LogLines
from .metrics import METRICS
from .piped import LogLine
from .piped import PipedError
from .piped import PipedOptions

if t.TYPE_CHECKING:
    from .piped import PipedClient

log = logging.getLogger("pipeplug")
#: where lines that cannot reach piped are written instead (the process log)
_process_log = logging.getLogger("pipeplug.stage")

INFO = logblock_pb.INFO
SUCCESS = logblock_pb.SUCCESS
ERROR = logblock_pb.ERROR

#: a longer line is cut, so that one line (at most 4 bytes per character) always fits a request
MAX_LINE_CHARS = 256 * 1024
_FLUSH, _CHECKPOINT, _FINAL = "flush", "checkpoint", "final"


class StageLogBuffer:
    """One stage's log lines on their way to piped (one per ExecuteStage call).

    Lines live in three places: ``_unsent`` (written, not sent yet), in flight
    (taken by the flusher; never dropped), and ``_sent`` (in piped's cache,
    to be repeated at the next checkpoint). All three count towards the bound,
    and only unsent lines are ever dropped (to the process log).
    """

    __slots__ = (
        "deployment_id", "stage_id", "dropped", "late", "_flusher", "_options", "_bound", "_early", "_lock", "_unsent", "_sent",
        "_sent_bytes", "_in_flight", "_last_index", "_dropped_noticed", "_urgent", "_closing", "_completed", "_busy", "_retry_at",
        "_backoff", "_needs_checkpoint", "_last_checkpoint", "_close_deadline", "_done", "_keep_open",
    )  # fmt: skip

    def __init__(self, flusher: StageLogFlusher, deployment_id: str, stage_id: str) -> None:
        self.deployment_id = deployment_id
        self.stage_id = stage_id
        self._flusher = flusher
        self._options = flusher.options
        self._bound = self._options.log_buffer_lines
        #: this many unsent lines wake the flusher before its next tick
        self._early = max(1, min(2000, self._bound // 4))
        self._lock = threading.Lock()
        self._unsent = LogLines()
        self._sent = LogLines()
        #: payload bytes in ``_sent``; kept within one request, so a checkpoint's first request repeats them all
        self._sent_bytes = 0
        self._in_flight = 0
        self._last_index = 0
        #: lines that never reached piped (dropped at the bound, refused, left when completion gave up); they went to the process log
        self.dropped = 0
        self._dropped_noticed = 0
        #: lines written after completion began; they reached the process log only
        self.late = 0
        self._urgent = False
        self._closing = False
        self._completed = False
        # the fields below are used on the event loop only
        self._busy = False
        self._retry_at = 0.0
        self._backoff = 0.0
        #: the first flush is a checkpoint: lines that only reached the cache are gone after a hard kill
        self._needs_checkpoint = True
        self._last_checkpoint = time.monotonic()
        self._close_deadline = 0.0
        self._done: asyncio.Future[None] = flusher.loop.create_future()
        #: closing without completing (shutdown): the stage's re-execution continues this log
        self._keep_open = False

    def __repr__(self) -> str:
        return f"<StageLogBuffer deployment={self.deployment_id} stage={self.stage_id} unsent={len(self._unsent)} sent={len(self._sent)}>"

    # -- writing (any thread) ----------------------------------------------------

    def write(self, severity: int, text: str) -> bool:
        """Queue ``text`` (split into lines, empty ones dropped) for the stage log; never blocks on the network.

        Secrets registered for the process log (:func:`pipeplug.secret`) are masked here too.
        False when the line will not reach piped (written after completion began).
        """
        lines = [line if len(line) <= MAX_LINE_CHARS else _cut(line) for line in redact(text).splitlines() if line]
        if not lines:
            return True
        dropped: list[LogLine] = []
        first_drop = wake = False
        with self._lock:
            if self._closing:
                self.late += len(lines)
                return False
            self._append_locked(severity, lines)
            overflow = len(self._unsent) + self._in_flight + len(self._sent) - self._bound
            if overflow > 0:
                first_drop = self.dropped == self._dropped_noticed
                dropped = self._drop_locked(overflow)
            if not self._urgent and len(self._unsent) >= self._early:
                self._urgent = wake = True
        if dropped:
            if first_drop:
                log.warning(
                    "stage log of stage %s (deployment %s) is full (%d lines piped has not taken yet): "
                    "the oldest unsent lines go to the process log instead",
                    self.stage_id,
                    self.deployment_id,
                    self._bound,
                )
            self._spill(dropped, "dropped")
        if wake:
            self._flusher.wake(self)
        return True

    def _append_locked(self, severity: int, lines: list[str]) -> None:
        now = time.time_ns()
        created_at = now // 1_000_000_000
        index = max(self._last_index + 1, now // 1000)
        append = self._unsent.append
        for line in lines:
            append(index, line, severity, created_at)
            index += 1
        self._last_index = index - 1

    def _drop_locked(self, count: int) -> list[LogLine]:
        """Drop the ``count`` oldest unsent lines and return them."""
        count = min(count, len(self._unsent))
        dropped = list(self._unsent.take(count).lines())
        self.dropped += count
        METRICS.log_lines_dropped(count)
        return dropped

    def _spill(self, blocks: t.Iterable[LogLine], why: str) -> None:
        """Write lines that will never reach piped to the process log at their level, so none is lost."""
        for _, text, severity, _ in blocks:
            _process_log.log(
                logging.ERROR if severity == ERROR else logging.INFO,
                "%s from the stage log: %s",
                why,
                text,
                extra={"deployment_id": self.deployment_id, "stage_id": self.stage_id, "pipeplug_stage_log": True},
            )

    def _notice(self) -> None:
        """Tell the reader of the stage log, and the process log, how many lines were dropped since the last notice."""
        with self._lock:
            new = self.dropped - self._dropped_noticed
            if not new:
                return
            self._dropped_noticed = self.dropped
            text = (
                f"pipeplug: {new} line(s) of this stage log were dropped: piped was unreachable or slower than the stage wrote, "
                f"and at most {self._bound} lines wait for it (PIPEPLUG_LOG_BUFFER_LINES); they are in the plugin's process log"
            )
            self._append_locked(ERROR, [text])  # also after completion began: the final request carries it
        log.warning("stage %s (deployment %s): %s", self.stage_id, self.deployment_id, text)

    # -- completing ----------------------------------------------------------------

    def complete(self) -> asyncio.Future[None]:
        """Flush everything, then mark the log completed, exactly once; resolves when done or given up."""
        return self._close(keep_open=False)

    def suspend(self) -> asyncio.Future[None]:
        """Flush everything with a checkpoint but leave the log open: the process stops, the stage does not.

        Piped re-executes a stage whose plugin stopped mid-way; its new process
        appends to this log and completes it. Like :meth:`complete`, it ends this
        buffer (later lines reach the process log only); whichever comes first wins.
        """
        return self._close(keep_open=True)

    def _close(self, keep_open: bool) -> asyncio.Future[None]:
        with self._lock:
            if not self._closing:
                self._closing = True
                self._keep_open = keep_open
                self._close_deadline = time.monotonic() + self._options.log_complete_timeout
                self._retry_at = 0.0
        self._flusher.wake(self)
        return self._done

    # -- flushing (event loop only, one operation at a time) -------------------------

    def _next_op(self, now: float, tick: bool) -> str | None:
        if self._completed or now < self._retry_at:
            return None
        if self._closing:
            return _FINAL
        if not (tick or self._urgent or self._retry_at):
            return None
        if self._needs_checkpoint or len(self._sent) >= self._bound // 2:
            return _CHECKPOINT
        if (self._sent or self._unsent) and now - self._last_checkpoint >= self._options.log_checkpoint_interval:
            return _CHECKPOINT
        if self._unsent:
            return _FLUSH
        return None

    async def _run(self, op: str) -> None:
        """Send the lines ``op`` covers: a flush sends unsent lines; a checkpoint (or the final call) every line held.

        piped's checkpoint replaces its cached view, so it must repeat every line
        sent since the previous one. Those lines are kept within one request
        (a flush that would exceed it becomes a checkpoint), so the first
        request of a checkpoint always repeats them all.
        """
        client = self._flusher.client
        max_bytes = self._options.log_batch_bytes
        if op == _FINAL:
            self._notice()
        with self._lock:
            self._urgent = False
            batch = self._unsent.take()
            self._in_flight = len(batch)
        if op == _FLUSH:
            chunks = batch.chunks(max_bytes)
            if self._sent_bytes + batch.size() > max_bytes:
                op = _CHECKPOINT
        was_sent = 0
        if op != _FLUSH:
            was_sent = len(self._sent)
            with self._lock:
                batch.put_back(self._sent.take())
                self._in_flight = len(batch)
            self._sent_bytes = 0
            # completed=true is sent even with nothing left; a log kept open needs no call then
            chunks = batch.chunks(max_bytes) or ([] if op == _FINAL and self._keep_open else [(0, 0, 0)])
        done = 0
        try:
            for i, (start, end, size) in enumerate(chunks):
                if op == _FLUSH:
                    await client.report_stage_logs(self.deployment_id, self.stage_id, batch.lines(start, end))
                else:
                    final = op == _FINAL and not self._keep_open and i == len(chunks) - 1
                    await client.report_stage_logs_from_last_checkpoint(self.deployment_id, self.stage_id, batch.lines(start, end), completed=final)
                with self._lock:
                    if op == _FLUSH:
                        self._sent.extend(batch, start, end)
                    self._in_flight -= end - start
                if op == _FLUSH:
                    self._sent_bytes += size
                done += end - start
            if op != _FLUSH:
                self._last_checkpoint = time.monotonic()
                self._needs_checkpoint = False
                self._completed = op == _FINAL
        except PipedError as exc:
            batch.take(done)  # delivered
            self._failed(op, exc, batch, max(0, was_sent - done))
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the flusher for every stage
            log.exception("stage log of stage %s: %s failed unexpectedly", self.stage_id, op)
            batch.take(done)
            self._failed(op, PipedError(op, grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"), batch, max(0, was_sent - done))
        else:
            METRICS.log_lines_sent(done if op == _FLUSH else max(0, done - was_sent))
            self._backoff = self._retry_at = 0.0
            if op != _FINAL:
                self._notice()
        if self._completed:
            self._finish()
        elif op == _FINAL and time.monotonic() >= self._close_deadline:
            self._give_up()

    def _failed(self, op: str, exc: PipedError, rest: LogLines, rest_was_sent: int) -> None:
        """``rest``: the lines the failed operation did not deliver, of which the first ``rest_was_sent`` had been sent before."""
        if op == _FINAL and exc.code == grpc.StatusCode.FAILED_PRECONDITION:
            # Already completed: an earlier attempt reached piped although it looked failed, or an
            # earlier process completed this stage's log before piped executed the stage again.
            log.warning("stage log of stage %s was already completed in piped; %d line(s) not sent: %s", self.stage_id, len(rest), exc)
            self._lose(rest)
            self._completed = True
            return
        if not exc.retryable:
            log.error("stage log of stage %s: piped refused %d line(s); they are dropped: %s", self.stage_id, len(rest), exc)
            self._lose(rest)
            if op == _FINAL:
                self._completed = True
            return
        # Keep the lines for a retry. A retry is always a checkpoint: it repeats every line, and piped
        # merges by index, so it is safe even if the failed call did reach piped.
        again = rest.take(rest_was_sent)
        dropped: list[LogLine] = []
        with self._lock:
            self._sent.put_back(again)
            self._unsent.put_back(rest)
            self._in_flight = 0
            overflow = len(self._unsent) + len(self._sent) - self._bound
            if overflow > 0:
                dropped = self._drop_locked(overflow)
        self._spill(dropped, "dropped")
        self._sent_bytes += again.size()
        self._needs_checkpoint = True
        self._backoff = min(self._options.retry_max_delay, self._backoff * 2 if self._backoff else min(1.0, self._options.log_flush_interval))
        self._retry_at = time.monotonic() + self._backoff
        log.warning("stage log of stage %s: %s failed, retrying in %.1fs: %s", self.stage_id, op, self._backoff, exc)

    def _lose(self, lines: LogLines) -> None:
        with self._lock:
            self.dropped += len(lines)
            self._in_flight = 0
        METRICS.log_lines_dropped(len(lines))
        self._spill(lines.lines(), "refused by piped")

    def _give_up(self) -> None:
        with self._lock:
            lost = self._sent.take()
            lost.extend(self._unsent.take())
            rest = len(lost)
            self.dropped += rest
        METRICS.log_lines_dropped(rest)
        self._spill(lost.lines(), "not delivered")
        self._sent_bytes = 0
        log.error(
            "stage log of stage %s (deployment %s) could not be completed within %.0fs: %d line(s) lost here",
            self.stage_id,
            self.deployment_id,
            self._options.log_complete_timeout,
            rest,
        )
        self._finish()

    def _finish(self) -> None:
        self._completed = True
        if self.dropped:
            log.warning("stage %s (deployment %s): %d stage log line(s) dropped in total", self.stage_id, self.deployment_id, self.dropped)
        if self.late:
            log.warning("stage %s (deployment %s): %d line(s) written after the stage ended reached the process log only", self.stage_id, self.deployment_id, self.late)
        self._flusher._forget(self)
        if not self._done.done():
            self._done.set_result(None)


class StageLogFlusher:
    """The one background task that ships every open stage log of this process to piped.

    Every ``log_flush_interval`` it looks at each open buffer once (cheap for
    idle ones); in between it looks only at buffers that asked for it: many
    unsent lines, completion, or a retry falling due. The task exists only
    while some stage log is open, and at most :data:`MAX_CALLS` log requests
    are in flight at once.
    """

    #: log requests in flight at once, whatever the number of stages
    MAX_CALLS = 32

    def __init__(self, client: PipedClient, options: PipedOptions | None = None) -> None:
        self.client = client
        self.options = options or client.options
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._buffers: set[StageLogBuffer] = set()
        self._ready: set[StageLogBuffer] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.MAX_CALLS)
        self._ops: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def open(self, deployment_id: str, stage_id: str) -> StageLogBuffer:
        """A new buffer for one ExecuteStage call; end it with :meth:`StageLogBuffer.complete`.

        Callable from any thread: a stage's log opens at its first line, which
        a sync handler writes from its worker thread.
        """
        buffer = StageLogBuffer(self, deployment_id, stage_id)
        self._buffers.add(buffer)
        if threading.get_ident() == self._loop_thread:
            self._start()
        else:
            self.loop.call_soon_threadsafe(self._start)
        return buffer

    def _start(self) -> None:
        if self._buffers and (self._task is None or self._task.done()):
            self._task = self.loop.create_task(self._run(), name="pipeplug-stage-log-flusher")

    def wake(self, buffer: StageLogBuffer) -> None:
        """Have the flusher look at ``buffer`` now; callable from any thread."""
        if threading.get_ident() == self._loop_thread:
            self._poke(buffer)
            return
        try:
            self.loop.call_soon_threadsafe(self._poke, buffer)
        except RuntimeError:  # the loop is closed: the process is exiting
            pass

    def _poke(self, buffer: StageLogBuffer) -> None:
        self._ready.add(buffer)
        self._wake.set()

    def _forget(self, buffer: StageLogBuffer) -> None:
        self._buffers.discard(buffer)
        self._ready.discard(buffer)

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # noqa: BLE001 - never leave a stage waiting for a flusher that died
            log.exception("the stage log flusher failed; giving up on %d open stage log(s)", len(self._buffers))
            for buffer in list(self._buffers):
                buffer._give_up()

    async def _loop(self) -> None:
        interval = self.options.log_flush_interval
        next_tick = time.monotonic() + interval
        while self._buffers:
            if not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            now = time.monotonic()
            tick = now >= next_tick
            if tick:
                next_tick = now + interval
            candidates = list(self._buffers if tick else self._ready)
            self._ready.clear()
            for buffer in candidates:
                if buffer._busy or buffer not in self._buffers:
                    continue
                op = buffer._next_op(now, tick)
                if op is not None:
                    buffer._busy = True
                    task = self.loop.create_task(self._run_op(buffer, op))
                    self._ops.add(task)
                    task.add_done_callback(self._ops.discard)

    async def _run_op(self, buffer: StageLogBuffer, op: str) -> None:
        try:
            async with self._slots:
                await buffer._run(op)
        finally:
            buffer._busy = False
            if buffer._retry_at:
                self.loop.call_later(max(0.0, buffer._retry_at - time.monotonic()), self._poke, buffer)
            else:
                self._poke(buffer)  # more may be due: lines written meanwhile, completion asked meanwhile

    async def aclose(self, timeout: float) -> None:
        """Flush every open stage log, waiting at most ``timeout`` seconds (at shutdown).

        Logs already completing complete; the others are suspended (flushed, left
        open), since their stages did not end: piped re-executes them.
        """
        pending = [buffer.suspend() for buffer in list(self._buffers)]
        if pending:
            _, not_done = await asyncio.wait(pending, timeout=timeout)
            if not_done:
                log.warning("%d stage log(s) could not be flushed before shutdown", len(not_done))
        for task in [self._task, *self._ops]:
            if task is not None and not task.done():
                task.cancel()


def _cut(line: str) -> str:
    return f"{line[:MAX_LINE_CHARS]} ... [pipeplug: line cut, {len(line) - MAX_LINE_CHARS} more characters]"
