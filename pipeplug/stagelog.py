"""The stage log as plugin code sees it: ``ctx.log``, and ``logging`` records routed to it.

:class:`StageLog` writes each line to the stage's :class:`~pipeplug.logship.StageLogBuffer`
(opened at the first line), which :mod:`pipeplug.logship` ships to piped, and
to the process log. :func:`route_logging` hands ``logging`` records emitted
inside a stage to that stage's log.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import threading
import traceback
import typing as t

from .logship import ERROR
from .logship import INFO
from .logship import MAX_LINE_CHARS as MAX_LINE_CHARS
from .logship import SUCCESS
from .logship import StageLogBuffer
from .logship import StageLogFlusher as StageLogFlusher

#: frames of a traceback shown in the stage log; the process log gets all of them
TRACEBACK_FRAMES = 3

#: the context of the stage the current task or thread is executing: `logging` records are routed to its
#: ``.log`` (built only if a record comes)
current_stage: contextvars.ContextVar[t.Any] = contextvars.ContextVar("pipeplug_current_stage", default=None)

_PIPEPLUG_DIR = os.path.dirname(__file__) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep  # the stdlib: where os.py lives (sysconfig costs ms at import)


def framework_frame(filename: str) -> bool:
    """Whether code in ``filename`` is pipeplug's or the stdlib's, not the user's (tracebacks and blame skip it)."""
    if filename.startswith(_PIPEPLUG_DIR):
        return True
    return filename.startswith(_STDLIB_DIR) and "-packages" + os.sep not in filename


def short_traceback(exc: BaseException) -> str:
    """The exception and its innermost few frames, starting at the first frame outside pipeplug and the stdlib."""
    frames = traceback.extract_tb(exc.__traceback__)
    while len(frames) > 1 and framework_frame(frames[0].filename):
        frames.pop(0)
    lines = ["Traceback (most recent call last):"]
    for entry in traceback.StackSummary.from_list(frames[-TRACEBACK_FRAMES:]).format():
        # keep "File ..." and the source line; drop 3.11's ^^^ markers
        lines += [line for line in entry.rstrip("\n").split("\n") if line.strip().strip("^~")]
    lines += [line.rstrip("\n") for line in traceback.format_exception_only(type(exc), exc)]
    return "\n".join(lines)


# -- ctx.log ----------------------------------------------------------------------------

_process_log = logging.getLogger("pipeplug.stage")


class StageLog(logging.Handler):
    """``ctx.log``: one logger for the stage log in the web UI and the process log.

    ``info``, ``success``, ``warning`` and ``error`` take a message and optional
    %-style arguments, like :mod:`logging`. Piped has three severities, so
    ``warning`` lines are INFO lines starting with ``WARNING:``. ``exception``
    adds a short traceback (the process log gets the whole one).

    The process log gets WARNING and ERROR lines at their level. INFO and
    SUCCESS lines on their way to piped go there at DEBUG only (``--log-level
    debug``): the stage log is where they are read, and copying every line of
    every stage would make the process log the busiest thing a plugin does.
    Lines that cannot reach piped (no piped, as under ``pipeplug run``; written
    after the stage ended; dropped or refused on the way) keep their level in
    the process log, so none is lost.

    It is also a :class:`logging.Handler`: ``logging`` records emitted while a
    stage runs (in its task, or in its sync handler's thread) reach its stage
    log automatically; attach it yourself (``logger.addHandler(ctx.log)``) for
    threads you start. Writing never waits for piped.
    """

    def __init__(
        self,
        *,
        label: str,
        extra: t.Mapping[str, t.Any] | None = None,
        opener: t.Callable[[], StageLogBuffer] | None = None,
    ) -> None:
        # Not logging.Handler.__init__: that creates a lock and registers the handler in
        # logging's global list, per stage, and thousands of stages may be held at once.
        # Nothing here needs either: handle() below takes no lock, and the buffer has its own.
        self.filters: list[t.Any] = []
        self._name = None
        self.level = logging.INFO
        self.formatter = None
        self._closed = False
        self.lock = None
        #: the stage's lines on their way to piped; opened by ``opener`` at the first line, so a
        #: stage that logs nothing costs piped no call. No opener: the process log only.
        self._buffer: StageLogBuffer | None = None
        self._opener = opener
        self._label = label
        self._extra = {**(extra or {}), "pipeplug_stage_log": True}

    def __repr__(self) -> str:
        shipped = self._buffer is not None or self._opener is not None
        return f"<StageLog {self._label}{'' if shipped else ' (process log only)'}>"

    @property
    def dropped(self) -> int:
        """Lines that could not be delivered to piped (buffer bound, refusals); each drop is also logged."""
        return self._buffer.dropped if self._buffer else 0

    def info(self, msg: object, *args: object) -> None:
        self._write(INFO, logging.INFO, msg, args)

    def success(self, msg: object, *args: object) -> None:
        """An INFO line in the process log, shown as a success line in the web UI."""
        self._write(SUCCESS, logging.INFO, msg, args)

    def warning(self, msg: object, *args: object) -> None:
        self._write(INFO, logging.WARNING, msg, args, prefix="WARNING: ")

    def error(self, msg: object, *args: object) -> None:
        self._write(ERROR, logging.ERROR, msg, args)

    def exception(self, msg: object, *args: object, exc: BaseException | None = None) -> None:
        """An ERROR line plus a short traceback of ``exc`` (default: the exception being handled)."""
        exc = exc if exc is not None else sys.exc_info()[1]
        text = str(msg) % args if args else str(msg)
        if _process_log.isEnabledFor(logging.ERROR):
            _process_log.error("%s: %s", self._label, text, exc_info=exc, extra=self._extra)
        buffer = self._buffer or self._open()
        if buffer is not None:
            if exc is not None:
                text += "\n" + short_traceback(exc)
            buffer.write(ERROR, text)

    def _write(self, severity: int, level: int, msg: object, args: tuple[object, ...], prefix: str = "") -> None:
        text = str(msg) % args if args else str(msg)
        buffer = self._buffer or self._open()
        if buffer is not None and buffer.write(severity, prefix + text if prefix else text) and level == logging.INFO:
            level = logging.DEBUG  # on its way to piped: the process log shows it at DEBUG only
        if _process_log.isEnabledFor(level):
            _process_log.log(level, "%s: %s", self._label, text, extra=self._extra)

    def _open(self) -> StageLogBuffer | None:
        if self._opener is None:
            return None
        with _OPEN_LOCK:
            if self._buffer is None and self._opener is not None:
                self._buffer = self._opener()
                self._opener = None
        return self._buffer

    # -- logging.Handler ---------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without a handler lock (see ``__init__``); the buffer is thread-safe."""
        rv = self.filter(record)
        if rv:
            self.emit(rv if isinstance(rv, logging.LogRecord) else record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        """Write a ``logging`` record to the stage log only (logging itself writes the process log)."""
        if getattr(record, "pipeplug_stage_log", False):
            return
        buffer = self._buffer or self._open()
        if buffer is None:
            return
        record.pipeplug_stage_log = True
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own policy for a broken record
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            buffer.write(ERROR, text)
        elif record.levelno >= logging.WARNING:
            buffer.write(INFO, "WARNING: " + text)
        else:
            buffer.write(INFO, text)

    def _complete(self, *, empty_too: bool = False) -> asyncio.Future[None]:
        """Flush what is left and complete the stage log, exactly once (see :func:`complete_stage_log`).

        Later lines reach the process log only. The future resolves when piped
        has the log, or when pipeplug gave up (``log_complete_timeout``); it never fails.
        A log nothing was written to is not completed (the Go SDK does the
        same) unless ``empty_too``: for a stage piped re-executes, whose earlier
        process may have left lines waiting for completion.
        """
        if empty_too:
            self._open()
        return self._close(StageLogBuffer.complete)

    def _suspend(self) -> asyncio.Future[None]:
        """Flush what is left without completing the log (see :func:`suspend_stage_log`)."""
        return self._close(StageLogBuffer.suspend)

    def _close(self, how: t.Callable[[StageLogBuffer], asyncio.Future[None]]) -> asyncio.Future[None]:
        with _OPEN_LOCK:
            self._opener = None  # from now on, lines reach the process log only
        if self._buffer is not None:
            return how(self._buffer)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


#: guards opening a stage's buffer at its first line, which may come from any thread
_OPEN_LOCK = threading.Lock()


class _Router(logging.Handler):
    """On the root logger: hands records emitted inside a stage to that stage's log."""

    def emit(self, record: logging.LogRecord) -> None:
        stage = current_stage.get()
        if stage is None or record.name == "pipeplug" or record.name.startswith("pipeplug."):
            return
        stage.log.handle(record)


_router = _Router(logging.INFO)


def route_logging() -> None:
    """Install the router on the root logger once per process."""
    root = logging.root
    if _router not in root.handlers:
        root.addHandler(_router)


def complete_stage_log(stage_log: StageLog, *, empty_too: bool = False) -> asyncio.Future[None]:
    """Complete ``stage_log`` when its stage ends: only the framework may, so it is not a method users see."""
    return stage_log._complete(empty_too=empty_too)


def suspend_stage_log(stage_log: StageLog) -> asyncio.Future[None]:
    """Flush ``stage_log`` without completing it (the process stops; piped executes the stage again)."""
    return stage_log._suspend()
