#!/usr/bin/env python3
"""A plugin for the tests of how stages end: cancellation, shutdown, hard kills, a blocked event loop.

Stages (each, when piped re-executes it (stage status RUNNING), logs ``resumed`` and succeeds):
- CLEANUP_SYNC (def): logs ``started``, waits for the cancellation, then spends
  ``with.cleanup`` seconds cleaning up and logs ``cleaned up`` before it returns.
- CLEANUP_ASYNC (async): the same, with ``await asyncio.sleep`` in its ``except CancelledError``.
- LINES (async): logs ``with.lines`` numbered lines (``line <i>``), then waits
  ``with.seconds`` (a stage to kill in the middle).
- BLOCK_LOOP (async, wrongly): ``time.sleep(with.seconds)`` on the event loop.
- QUICK (async): returns at once.
"""

from __future__ import annotations

import asyncio
import time

import attrs

import pipeplug


@attrs.frozen
class Options:
    seconds: float = 60.0
    cleanup: float = 0.0
    lines: int = 0


def resumed(ctx: pipeplug.Context) -> bool:
    if ctx.stage_status == pipeplug.StageStatus.RUNNING:
        ctx.log.info("resumed")
        return True
    return False


app = pipeplug.App("lifecycle")


@app.stage("CLEANUP_SYNC")
def cleanup_sync(ctx: pipeplug.Context, options: Options) -> pipeplug.StageStatus:
    if resumed(ctx):
        return pipeplug.StageStatus.SUCCESS
    ctx.log.info("started")
    if not ctx.wait_cancelled(options.seconds):
        return pipeplug.StageStatus.SUCCESS
    time.sleep(options.cleanup)  # clean-up work that takes a while
    ctx.log.info("cleaned up")
    return pipeplug.StageStatus.CANCELLED


@app.stage("CLEANUP_ASYNC")
async def cleanup_async(ctx: pipeplug.Context, options: Options) -> None:
    if resumed(ctx):
        return
    ctx.log.info("started")
    try:
        await asyncio.sleep(options.seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(options.cleanup)
        ctx.log.info("cleaned up")
        raise


@app.stage("LINES")
async def lines(ctx: pipeplug.Context, options: Options) -> None:
    if resumed(ctx):
        return
    for i in range(options.lines):
        ctx.log.info("line %d", i)
    await asyncio.sleep(options.seconds)


@app.stage("BLOCK_LOOP")
async def block_loop(ctx: pipeplug.Context, options: Options) -> None:
    ctx.log.info("blocking")
    time.sleep(options.seconds)  # the mistake the loop watch reports


@app.stage("QUICK")
async def quick() -> None:
    pass


if __name__ == "__main__":
    app.main()
