"""Running a command from a stage: ``await ctx.run(...)`` and ``ctx.run_sync(...)``.

A stage that runs a command needs the same plumbing every time, and it is easy
to get wrong: output must reach the stage log line by line while the command
runs, not at the end; a cancelled or timed-out stage must not leave the command
(or what it started) running; memory must stay bounded however much it prints.

- The child starts in a new session, so it leads its own process group. Every
  kill goes to the whole group: grandchildren (``sh -c 'a | b'``, ``make``,
  background jobs) die with it.
- stdout and stderr are read in chunks and split into lines as they come; each
  line goes to the stage log (stdout as INFO, stderr as ``stderr_level``, INFO
  by default as in the official SCRIPT_RUN: tools print progress on stderr).
- On timeout or cancellation the group gets SIGTERM, then SIGKILL after
  ``kill_grace`` seconds. When the command exits on its own, whatever it left
  running in its group is stopped the same way, so a stage never leaves
  processes behind and never waits on a pipe an orphan holds open.
- A plugin killed with SIGKILL cannot stop anything: its commands keep running
  (a plugin stopped by SIGTERM, or whose piped died, cancels its stages first,
  which stops them).
- ``capture=True`` keeps the last ``capture_limit`` bytes of each stream
  (1 MiB by default) in the result; older lines are dropped and
  ``truncated`` says so.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import time
import typing as t

from .errors import PipeplugError

if t.TYPE_CHECKING:
    from .context import Context

#: default bytes kept per stream when capturing
CAPTURE_LIMIT = 1 << 20
#: a line longer than this is logged in pieces, so one endless line cannot grow memory
MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
_LEVELS = ("info", "warning", "error")


class ProcessError(PipeplugError, RuntimeError):
    """A command run with ``check=True`` failed: it exited non-zero or timed out.

    Raised from a stage handler it becomes the stage's FAILURE with this message.
    """

    def __init__(self, result: ProcessResult) -> None:
        self.result = result
        super().__init__(result.describe())


class ProcessResult(t.NamedTuple):
    """How a command ended."""

    #: the exit status; negative when a signal ended it (``-9`` for SIGKILL)
    returncode: int
    #: the command as given, for messages
    args: tuple[str, ...]
    #: captured stdout (text), or None without ``capture=True``
    stdout: str | None = None
    #: captured stderr (text), or None without ``capture=True``
    stderr: str | None = None
    #: True when ``timeout`` ran out and the process group was killed
    timed_out: bool = False
    #: True when capturing dropped older output beyond ``capture_limit``
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Exited with status 0 in time."""
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """One line saying how it ended, e.g. ``command exited with status 2: make test``."""
        what = " ".join(self.args)
        if len(what) > 200:
            what = what[:197] + "..."
        if self.timed_out:
            return f"command timed out and was killed: {what}"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"command was killed by {name}: {what}"
        return f"command exited with status {self.returncode}: {what}"


class _Sink:
    """One output stream: split into lines, send each to the stage log, keep a bounded tail."""

    def __init__(self, write: t.Callable[[str], None], capture_limit: int | None) -> None:
        self._write = write
        self._pending = b""
        self._limit = capture_limit
        self._kept: collections.deque[bytes] = collections.deque()
        self._kept_bytes = 0
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        while len(self._pending) > MAX_LINE_BYTES:  # an endless line: log it in pieces
            lines.append(self._pending[:MAX_LINE_BYTES])
            self._pending = self._pending[MAX_LINE_BYTES:]
        for line in lines:
            self._emit(line, b"\n")

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending, b"")
            self._pending = b""

    def _emit(self, line: bytes, end: bytes) -> None:
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        if text.strip():
            self._write(text)
        if self._limit is None:
            return
        self._kept.append(line + end)
        self._kept_bytes += len(line) + len(end)
        while self._kept_bytes > self._limit and self._kept:
            self._kept_bytes -= len(self._kept.popleft())
            self.truncated = True

    def text(self) -> str | None:
        return None if self._limit is None else b"".join(self._kept).decode("utf-8", "replace")


async def _pump(pipe: t.IO[bytes] | None, sink: _Sink) -> None:
    """Feed ``pipe`` to ``sink`` as data arrives, until EOF; the pipe is closed when done."""
    if pipe is None:
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_CHUNK, loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    try:
        while chunk := await reader.read(_READ_CHUNK):
            sink.feed(chunk)
        sink.close()
    finally:
        transport.close()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # only a zombie leader left (macOS); nothing to stop
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs; zombies waiting for a reaper do not count.

    A killed grandchild is reparented and stays a zombie until its new parent
    reaps it, which a container's init may do late or never; signal 0 would
    still find it. On Linux, /proc tells the two apart.
    """
    if not _signal_group(pgid, 0):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state, _ppid, pgrp = stat.read().rsplit(b")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != b"Z":
            return True
    return False


async def _exited(proc: subprocess.Popen[bytes]) -> int:
    """Wait for the child itself to exit (not for its pipes, which an orphan may hold open) and reap it.

    A pidfd turns the exit into an event on the loop (Linux 5.3+); elsewhere the child is polled.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        while proc.poll() is None:
            await asyncio.sleep(0.02)
        return proc.returncode
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        if proc.poll() is None:
            await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return proc.wait()


async def _stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after ``grace`` seconds."""
    pgid = proc.pid  # the child leads its own session, so its pid is the group id
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            await asyncio.sleep(0.02)
    finally:  # also when cancelled again during the grace period: never leave the group behind
        _signal_group(pgid, signal.SIGKILL)
        if proc.poll() is None:
            await _exited(proc)


def _environment(env: t.Mapping[str, str] | None, inherit_env: bool) -> dict[str, str]:
    merged = dict(os.environ) if inherit_env else {}
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ValueError(f"ctx.run(env=...): {key!r} is not a valid environment variable name")
        if not isinstance(value, str):
            raise TypeError(f"ctx.run(env=...): env[{key!r}] must be a str, got {type(value).__name__} {value!r}; convert it with str()")
        merged[key] = value
    return merged


def _argv(command: str | t.Sequence[str]) -> tuple[str, ...]:
    if isinstance(command, str):
        return ("/bin/sh", "-c", command)
    args = tuple(command)
    if not args or not all(isinstance(a, str) for a in args):
        raise TypeError(f"ctx.run(command): expected a shell command string or a non-empty list of str, got {command!r}")
    return args


async def run_command(
    ctx: Context,
    command: str | t.Sequence[str],
    *,
    env: t.Mapping[str, str] | None = None,
    inherit_env: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    capture: bool = False,
    capture_limit: int = CAPTURE_LIMIT,
    check: bool = False,
    stderr_level: str = "info",
    kill_grace: float = 5.0,
) -> ProcessResult:
    """Run ``command`` and stream its output to ``ctx.log``; see :meth:`pipeplug.Context.run`."""
    if stderr_level not in _LEVELS:
        raise ValueError(f"ctx.run(stderr_level={stderr_level!r}): expected one of {', '.join(_LEVELS)}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"ctx.run(timeout={timeout!r}): expected a positive number of seconds, or None for no limit")
    args = _argv(command)
    stdout = _Sink(ctx.log.info, capture_limit if capture else None)
    stderr = _Sink(getattr(ctx.log, stderr_level), capture_limit if capture else None)
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(env, inherit_env),
        cwd=cwd,
        start_new_session=True,
    )
    pumps = asyncio.gather(_pump(proc.stdout, stdout), _pump(proc.stderr, stderr))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(_exited(proc), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            ctx.log.error("Command timed out after %gs; stopping its process group", timeout)
        await _stop_group(proc, kill_grace)  # on timeout, and what it left running in its group
        await pumps
    except asyncio.CancelledError:
        ctx.log.info("Stage cancelled; stopping the command's process group")
        await _stop_group(proc, kill_grace)
        pumps.cancel()
        raise
    result = ProcessResult(
        returncode=proc.returncode,
        args=args,
        stdout=stdout.text(),
        stderr=stderr.text(),
        timed_out=timed_out,
        truncated=stdout.truncated or stderr.truncated,
    )
    if check and not result.ok:
        raise ProcessError(result)
    return result
