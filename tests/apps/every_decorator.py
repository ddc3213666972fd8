#!/usr/bin/env python3
"""A test plugin that registers every decorator, with sync and async handlers.

Its answers are derived from its inputs so tests can check the whole path.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time

import attrs

import pipeplug
from pipeplug import PlannedStage
from pipeplug import StageResult
from pipeplug import StageStatus


@attrs.frozen
class PluginConfig:
    greeting: str = "hello"
    state_dir: str = ""


@attrs.frozen
class TargetConfig:
    region: str


@attrs.frozen
class Spec:
    version_tag: str = "v0"


@attrs.frozen
class SleepOptions:
    duration: datetime.timedelta


@attrs.frozen
class OutcomeOptions:
    status: str = "SUCCESS"
    message: str = ""


app = pipeplug.App("every", config=PluginConfig, deploy_target_config=TargetConfig, app_spec=Spec)

STARTUP_MARK = {"ran": False}


@app.on_startup
def startup(config: PluginConfig, deploy_targets: list[pipeplug.DeployTarget]) -> None:
    STARTUP_MARK["ran"] = True
    if config.state_dir:
        with open(os.path.join(config.state_dir, "startup.json"), "w") as f:
            json.dump({"targets": [t.name for t in deploy_targets], "greeting": config.greeting}, f)


@app.versions
async def versions(app_spec: Spec, target_source: pipeplug.DeploymentSource) -> list[pipeplug.ArtifactVersion]:
    return [pipeplug.ArtifactVersion(version=app_spec.version_tag, name=target_source.commit_hash, kind=pipeplug.ArtifactKind.GIT_SOURCE)]


@app.strategy
def strategy(running_source: pipeplug.DeploymentSource | None, deployment: pipeplug.Deployment) -> pipeplug.StrategyDecision | None:
    if deployment.commit_message.startswith("no-opinion"):
        return None
    if running_source is None:
        return pipeplug.StrategyDecision(pipeplug.SyncStrategy.QUICK_SYNC, "first")
    return pipeplug.SyncStrategy.PIPELINE


@app.pipeline_stages
def pipeline_stages(stages: list[pipeplug.RequestedStage], rollback: bool) -> list[PlannedStage]:
    planned = [PlannedStage(name=s.name, index=s.index, metadata={"with": json.dumps(s.config, sort_keys=True)}) for s in stages]
    if rollback and stages:
        planned.append(PlannedStage(name="EVERY_ROLLBACK", index=stages[0].index, rollback=True))
    return planned


@app.quick_sync_stages
async def quick_sync_stages(rollback: bool) -> list[PlannedStage]:
    stages = [PlannedStage(name="EVERY_SYNC", desc="sync all")]
    if rollback:
        stages.append(PlannedStage(name="EVERY_ROLLBACK", rollback=True))
    return stages


@app.stage("EVERY_SYNC")
def sync_stage(ctx: pipeplug.Context, config: PluginConfig, deploy_targets: list[pipeplug.DeployTarget], app_spec: Spec) -> StageResult:
    regions = ",".join(t.config.region for t in deploy_targets)
    return StageResult(StageStatus.SUCCESS, f"{config.greeting} {regions} {app_spec.version_tag} {ctx.stage_id}")


@app.stage("EVERY_ROLLBACK", rollback=True)
async def rollback_stage(running_source: pipeplug.DeploymentSource | None) -> StageStatus:
    return StageStatus.SUCCESS if running_source is not None else StageStatus.SKIPPED


@app.stage("ASYNC_SLEEP")
async def async_sleep(ctx: pipeplug.Context, options: SleepOptions, config: PluginConfig) -> None:
    try:
        await asyncio.sleep(options.duration.total_seconds())
    except asyncio.CancelledError:
        if config.state_dir:
            with open(os.path.join(config.state_dir, f"cancelled-{ctx.stage_id}"), "w") as f:
                f.write("async")
        raise


@app.stage("SYNC_SLEEP")
def sync_sleep(ctx: pipeplug.Context, options: SleepOptions, config: PluginConfig) -> StageStatus:
    deadline = time.monotonic() + options.duration.total_seconds()
    while time.monotonic() < deadline:
        if ctx.wait_cancelled(0.05):
            if config.state_dir:
                with open(os.path.join(config.state_dir, f"cancelled-{ctx.stage_id}"), "w") as f:
                    f.write("sync")
            return StageStatus.CANCELLED
    return StageStatus.SUCCESS


@app.stage("OUTCOME")
def outcome(options: OutcomeOptions) -> StageResult:
    return StageResult(StageStatus[options.status], options.message)


@app.stage("RAISE")
async def raise_stage() -> None:
    raise RuntimeError("boom from RAISE")


@app.stage("BAD_RETURN")
def bad_return() -> object:
    return 42


@app.livestate
def livestate(deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource) -> pipeplug.Livestate:
    resources = [pipeplug.Resource(id=f"{t.name}/app", name="app", resource_type="Deployment", deploy_target=t.name) for t in deploy_targets]
    return pipeplug.Livestate(resources, pipeplug.SyncStatus.OUT_OF_SYNC, "drift", f"commit {target_source.commit_hash}")


@app.plan_preview
async def plan_preview(deploy_targets: list[pipeplug.DeployTarget], running_source: pipeplug.DeploymentSource | None) -> list[pipeplug.PlanPreview]:
    return [
        pipeplug.PlanPreview(f"would deploy to {t.name}", deploy_target=t.name, no_change=running_source is None, details="+ a\n")
        for t in deploy_targets
    ]


if __name__ == "__main__":
    app.main()
