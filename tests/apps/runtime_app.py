#!/usr/bin/env python3
"""A plugin for runtime tests: stages that hold, block, log and report cancellation.

Stages:
- HOLD (async): waits ``with.seconds``, or, with ``with.gate``, until a RELEASE stage opens
  that gate (``with.seconds`` then bounds the wait). If piped cancels it first, it appends
  ``cancelled <stage id>`` to ``with.marker`` (when set) and lets the cancellation through.
- RELEASE (async): opens the gate ``with.gate``.
- STUBBORN (async): swallows piped's cancellation and returns SUCCESS anyway.
- BLOCK (sync, runs in the thread pool): waits ``with.seconds`` with ``ctx.wait_cancelled``.
- TALK (async): logs a line that includes the config's secret token.
- DEAF (sync): sleeps ``with.seconds`` and ignores any cancellation.
"""

from __future__ import annotations

import asyncio
import time

import attrs

import pipeplug


@attrs.frozen
class Config:
    token: str = pipeplug.secret(default="")
    region: str = "local"


@attrs.frozen
class HoldOptions:
    seconds: float = 0.0
    marker: str = ""
    gate: str = ""


app = pipeplug.App("runtime", config=Config)
gates: dict[str, asyncio.Event] = {}


@app.stage("HOLD")
async def hold(ctx: pipeplug.Context, options: HoldOptions) -> None:
    try:
        if options.gate:
            gate = gates.setdefault(options.gate, asyncio.Event())
            await asyncio.wait_for(gate.wait(), options.seconds)
        else:
            await asyncio.sleep(options.seconds)
    except asyncio.CancelledError:
        if options.marker:
            with open(options.marker, "a") as f:
                f.write(f"cancelled {ctx.stage_id}\n")
        raise


@app.stage("RELEASE")
async def release(options: HoldOptions) -> None:
    gates.setdefault(options.gate, asyncio.Event()).set()


@app.stage("STUBBORN")
async def stubborn(options: HoldOptions) -> None:
    try:
        await asyncio.sleep(options.seconds)
    except asyncio.CancelledError:
        pass  # wrong, but users write it: pipeplug must not reply on the cancelled call


@app.stage("BLOCK")
def block(ctx: pipeplug.Context, options: HoldOptions) -> pipeplug.StageStatus:
    if ctx.wait_cancelled(options.seconds):
        return pipeplug.StageStatus.CANCELLED
    return pipeplug.StageStatus.SUCCESS


@app.stage("DEAF")
def deaf(options: HoldOptions) -> None:
    time.sleep(options.seconds)  # wrong, but users write it: shutdown must not wait for it


@app.stage("TALK")
async def talk(ctx: pipeplug.Context, config: Config) -> None:
    ctx.logger.info("talking to %s with token %s (config %r)", config.region, config.token, config)


if __name__ == "__main__":
    app.main()
