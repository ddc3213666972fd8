"""Noticing a blocked event loop: a heartbeat on the loop, and a thread that watches it.

An ``async def`` handler that calls blocking code (``time.sleep``, a blocking
HTTP client, a long computation) stops the whole process: every other stage,
every other call, even Ctrl-C and SIGTERM wait for it. The loop cannot say so
while it is blocked, so a thread does. The loop stamps a heartbeat every
:data:`HEARTBEAT_SECONDS`; the thread checks it as often and, once the stamp is
older than the threshold (``PIPEPLUG_LOOP_BLOCKED_SECONDS``, default 1 s, 0 turns
the watch off), reads what the loop thread is executing
(:func:`sys._current_frames`) and warns, naming the function and line, in the
process log and in the log of the stage whose handler blocks.

Nothing is done per call: the cost is two timer callbacks a second on the loop
and a thread that wakes as often.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import types
import typing as t

from .stagelog import framework_frame

if t.TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("pipeplug")

#: how often (at most) the loop stamps its heartbeat and the watcher looks at it
HEARTBEAT_SECONDS = 0.5
#: blocked this long, the loop is reported (``PIPEPLUG_LOOP_BLOCKED_SECONDS`` overrides it; 0: never)
DEFAULT_THRESHOLD_SECONDS = 1.0
ENV_THRESHOLD = "PIPEPLUG_LOOP_BLOCKED_SECONDS"

_ADVICE = "every other stage and call, and signals, wait meanwhile; run blocking code in a def handler or with `await asyncio.to_thread(...)`"


def threshold_from_env() -> float:
    """The threshold in seconds from ``PIPEPLUG_LOOP_BLOCKED_SECONDS``; ValueError naming the variable if it is not a number >= 0."""
    raw = os.environ.get(ENV_THRESHOLD, "").strip()
    if not raw:
        return DEFAULT_THRESHOLD_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ValueError(f"{ENV_THRESHOLD}={raw!r}: expected seconds as a number >= 0 (e.g. 1 or 0.5; 0 turns the check off)")
    return value


class _Blocker(t.NamedTuple):
    """What the loop thread was executing when found blocked."""

    handler: str  # the outermost function of plugin code: usually the handler
    where: str  # the innermost line of plugin code: where it blocks
    stage: Context | None


class LoopWatch:
    """Warns when ``loop`` has not run its callbacks for ``threshold`` seconds; start and stop it on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self.interval = min(HEARTBEAT_SECONDS, threshold / 2)
        #: blocking episodes reported so far
        self.reports = 0
        self._beat = time.monotonic()
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.interval, self._tick)
        self._thread = threading.Thread(target=self._watch, name="pipeplug-loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def _tick(self) -> None:
        self._beat = time.monotonic()
        self._handle = self.loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        reported: tuple[float, _Blocker] | None = None  # the heartbeat of the episode reported, and its blocker
        while not self._stop.wait(self.interval):
            beat = self._beat
            late = time.monotonic() - beat - self.interval
            if reported is not None and reported[0] != beat:
                self._unblocked(reported[1], beat - reported[0] - self.interval)
                reported = None
            elif reported is None and late >= self.threshold:
                blocker = self._blocker()
                if blocker is not None:
                    reported = (beat, blocker)
                    self.reports += 1
                    self._warn(blocker, late)

    def _blocker(self) -> _Blocker | None:
        frame = sys._current_frames().get(self._loop_thread)
        frames: list[types.FrameType] = []
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        if not frames:
            return None
        # The innermost run of plugin frames (pipeplug's and the stdlib's around it skipped): the
        # handler is its outermost frame, the blocking line its innermost.
        plugin: list[types.FrameType] = []
        for frame in frames:
            if not framework_frame(frame.f_code.co_filename):
                plugin.append(frame)
            elif plugin:
                break
        outer, inner = (plugin[-1], plugin[0]) if plugin else (frames[-1], frames[0])
        return _Blocker(_name(outer), f"{inner.f_code.co_filename}:{inner.f_lineno}", _stage_of(frames))

    def _warn(self, blocker: _Blocker, late: float) -> None:
        text = "The event loop has been blocked for %.1fs by %s() at %s: %s"
        if blocker.stage is not None:
            blocker.stage.log.warning(text, late, blocker.handler, blocker.where, _ADVICE)  # the process log gets it too
        else:
            log.warning(text, late, blocker.handler, blocker.where, _ADVICE)

    def _unblocked(self, blocker: _Blocker, seconds: float) -> None:
        # the process log only: by now the stage has usually ended, its log with it
        stage = f" (stage id {blocker.stage.stage_id})" if blocker.stage is not None else ""
        log.warning("the event loop was blocked for %.1fs in total by %s()%s", seconds, blocker.handler, stage)


def _name(frame: types.FrameType) -> str:
    code = frame.f_code
    return str(getattr(code, "co_qualname", code.co_name))


def _stage_of(frames: list[types.FrameType]) -> Context | None:
    """The context of the stage being served by these frames: the ``ctx`` of pipeplug's run_stage frame."""
    for frame in frames:
        code = frame.f_code
        if code.co_name == "run_stage" and framework_frame(code.co_filename):
            ctx = frame.f_locals.get("ctx")
            return ctx if getattr(ctx, "stage_id", "") else None
    return None
