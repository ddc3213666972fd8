#!/usr/bin/env python3
"""The benchmark's pipeplug plugin: a WAIT stage like bench/go_sdk_wait's, plus a gate for held bursts.

- WAIT waits ``with.duration`` (a Go duration; ``0s`` returns at once). With
  ``with.gate`` it waits until a RELEASE stage opens that gate instead
  (``with.duration`` then bounds the wait), so a benchmark can hold thousands
  of stages and end them together.
- LOGS writes ``with.lines`` stage log lines and answers, in the reply's
  message, how long the slowest write took (wall clock), and the most CPU
  time one write used.
"""

from __future__ import annotations

import array
import asyncio
import datetime
import json
import time

import attrs

import pipeplug


@attrs.frozen
class WaitOptions:
    duration: datetime.timedelta = datetime.timedelta(0)
    gate: str = ""


@attrs.frozen
class LogOptions:
    lines: int = 0


app = pipeplug.App("wait")
gates: dict[str, asyncio.Event] = {}


@app.stage("WAIT")
async def wait(options: WaitOptions) -> None:
    if options.gate:
        opened = gates.setdefault(options.gate, asyncio.Event())
        if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per waiting stage, unlike wait_for
            async with asyncio.timeout(options.duration.total_seconds() or None):
                await opened.wait()
        else:
            await asyncio.wait_for(opened.wait(), options.duration.total_seconds() or None)
    elif options.duration:
        await asyncio.sleep(options.duration.total_seconds())


@app.stage("RELEASE")
async def release(options: WaitOptions) -> None:
    gates.setdefault(options.gate, asyncio.Event()).set()


@app.stage("LOGS")
async def logs(ctx: pipeplug.Context, options: LogOptions) -> pipeplug.StageResult:
    clock = time.perf_counter
    # flat, not a list: a list of 100,000 floats would add 100,000 elements to every full
    # garbage collection the writes below set off, and so stall them for its own sake
    durations = array.array("d")
    cpu = time.thread_time
    max_cpu = 0.0  # this thread's CPU time in the slowest write: tells pipeplug's work from the OS taking the core
    for i in range(options.lines):
        started, cpu_started = clock(), cpu()
        ctx.log.info("line %d of the log benchmark", i)
        durations.append(clock() - started)
        max_cpu = max(max_cpu, cpu() - cpu_started)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # a real stage does work between lines; let the flusher run
    durations = array.array("d", sorted(durations))
    stats = {
        "sent": options.lines,
        "max_stall_ms": durations[-1] * 1000 if durations else 0.0,
        "p999_ms": durations[int(len(durations) * 0.999)] * 1000 if durations else 0.0,
        "writes_over_1ms": sum(1 for d in durations if d > 0.001),
        "max_write_cpu_ms": max_cpu * 1000,
    }
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, json.dumps(stats))


if __name__ == "__main__":
    app.main()
