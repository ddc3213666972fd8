#!/usr/bin/env python3
"""A pipeplug plugin for `pipeplug dev` tests: stages that sleep, fail, exit, park, crash and wait for approval."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import typing as t

import attrs

import pipeplug
from pipeplug import ManualOperation
from pipeplug import PlannedStage
from pipeplug import StageResult
from pipeplug import StageStatus

app = pipeplug.App("devstages")


@attrs.frozen
class SleepOptions:
    seconds: float = 0.0
    marker: str = ""


@app.stage("SLEEP")
async def sleep(ctx: pipeplug.Context, options: SleepOptions) -> None:
    """Sleep (cancellable); counts its executions in stage metadata."""
    runs = int(await ctx.stage_metadata.get("runs") or "0") + 1
    await ctx.stage_metadata.put("runs", str(runs))
    ctx.log.info("sleeping %ss (run %d)", options.seconds, runs)
    try:
        await asyncio.sleep(options.seconds)
    except asyncio.CancelledError:
        await ctx.deployment_metadata.put("sleep-cancelled", "yes")
        raise
    ctx.log.success("slept")


@app.stage("FAIL")
def fail(ctx: pipeplug.Context) -> StageResult:
    ctx.log.error("failing on purpose")
    return StageResult(StageStatus.FAILURE, "failed on purpose")


@app.stage("EXIT")
def exit_stage() -> StageStatus:
    return StageStatus.EXITED


@app.stage("PARK")
def park() -> StageStatus:
    return StageStatus.RUNNING


@app.stage("CRASH")
def crash() -> None:
    print("boom: the plugin dies mid-stage", file=sys.stderr, flush=True)
    os._exit(3)


@app.stage("UNDO", rollback=True)
async def undo(ctx: pipeplug.Context, options: t.Any, running_source: pipeplug.DeploymentSource | None) -> None:
    """Rollback: records the `with` it got (that of the pipeline stage sharing its index)."""
    await ctx.stage_metadata.put("with", json.dumps(options, sort_keys=True))
    await ctx.stage_metadata.put("running", running_source.commit_hash if running_source else "")
    ctx.log.info("undo ran")


def plan_gate(stage: pipeplug.RequestedStage) -> PlannedStage:
    return PlannedStage(stage.name, stage.index, available_operation=ManualOperation.APPROVE, authorized_operators=stage.config.get("approvers", []))


@app.stage("GATE", plan=plan_gate)
async def gate(ctx: pipeplug.Context) -> None:
    await ctx.wait_for_approval(1)


if __name__ == "__main__":
    app.main()
