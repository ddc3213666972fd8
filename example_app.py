#!/usr/bin/env python3
"""An example pipeplug plugin: publish a directory of files into local target directories.

Each deploy target is a directory on the piped host. A release is a copy of the
application's ``source`` directory under ``<target>/releases/<commit>``, and
``<target>/current`` points at the live one. The plugin shows every pipeplug
decorator: stages (with a rollback stage), versions, strategy, pipeline and
quick-sync planning, live state and plan preview. WAIT and WAIT_APPROVAL show
stages that talk back to piped: the stage log, stage metadata to resume after a
restart, and approvals from the web UI.

Run it locally:   pipeplug run example_app.py
Run it as piped:  python example_app.py start --piped-plugin-service localhost:9087 --config '{"name":"example","port":7001}'
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import shutil
import time

import attrs

import pipeplug
from pipeplug import ArtifactKind
from pipeplug import diff
from pipeplug import ArtifactVersion
from pipeplug import Livestate
from pipeplug import ManualOperation
from pipeplug import PlannedStage
from pipeplug import PlanPreview
from pipeplug import Resource
from pipeplug import StageResult
from pipeplug import StageStatus
from pipeplug import StrategyDecision
from pipeplug import SyncStatus
from pipeplug import SyncStrategy


@attrs.frozen
class TargetConfig:
    """A deploy target's ``config`` in piped's config."""

    path: str  # the directory releases are published into


@attrs.frozen
class AppSpec:
    """The app config section ``spec.plugins.example``."""

    source: str = "."  # directory, relative to the application directory, to publish


@attrs.frozen
class WaitOptions:
    duration: datetime.timedelta


@attrs.frozen
class ApprovalOptions:
    approvers: list[str]  # users who may approve; the web UI offers the button to them only
    min_approver_num: int = 1  # `minApproverNum` in YAML


@attrs.frozen
class VerifyOptions:
    files: list[str] = attrs.field(factory=list)  # paths that must exist in the release


app = pipeplug.App("example", deploy_target_config=TargetConfig, app_spec=AppSpec)


# -- helpers ------------------------------------------------------------------


def source_dir(source: pipeplug.DeploymentSource, spec: AppSpec) -> str:
    return os.path.normpath(os.path.join(source.application_directory, spec.source))


def files_of(directory: str) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``directory``."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def current_release(target: pipeplug.DeployTarget) -> str | None:
    link = os.path.join(target.config.path, "current")
    return os.path.realpath(link) if os.path.islink(link) else None


def switch_to(target: pipeplug.DeployTarget, release: str) -> None:
    """Point ``current`` at ``release`` atomically."""
    link = os.path.join(target.config.path, "current")
    tmp = link + ".new"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(release, tmp)
    os.replace(tmp, link)


# -- startup ------------------------------------------------------------------


@app.on_startup
def create_target_dirs(deploy_targets: list[pipeplug.DeployTarget]) -> None:
    for target in deploy_targets:
        os.makedirs(os.path.join(target.config.path, "releases"), exist_ok=True)


# -- planning -----------------------------------------------------------------


@app.versions
def versions(target_source: pipeplug.DeploymentSource, app_spec: AppSpec) -> list[ArtifactVersion]:
    version_file = os.path.join(source_dir(target_source, app_spec), "VERSION")
    if os.path.exists(version_file):
        with open(version_file) as f:
            version = f.read().strip()
    else:
        version = target_source.commit_hash[:12]
    return [ArtifactVersion(version=version, name="site", kind=ArtifactKind.GIT_SOURCE)]


@app.strategy
def strategy(target_source: pipeplug.DeploymentSource, running_source: pipeplug.DeploymentSource | None, app_spec: AppSpec) -> StrategyDecision:
    """A new VERSION goes through the pipeline; content-only changes are quick-synced."""
    if running_source is None:
        return StrategyDecision(SyncStrategy.QUICK_SYNC, "first deployment")
    target = files_of(source_dir(target_source, app_spec)).get("VERSION")
    running = files_of(source_dir(running_source, app_spec)).get("VERSION")
    if target != running:
        return StrategyDecision(SyncStrategy.PIPELINE, "VERSION changed")
    return StrategyDecision(SyncStrategy.QUICK_SYNC, "content-only change")


@app.pipeline_stages
def pipeline_stages(stages: list[pipeplug.RequestedStage], rollback: bool) -> list[PlannedStage]:
    """Plan the requested stages (as their ``plan=`` says), and a rollback right where the first DIR_SYNC is."""
    planned = [app.plan_stage(s) for s in stages]
    syncs = [s.index for s in stages if s.name == "DIR_SYNC"]
    if rollback and syncs:
        planned.append(PlannedStage(name="DIR_ROLLBACK", index=min(syncs), rollback=True))
    return planned


@app.quick_sync_stages
def quick_sync_stages(rollback: bool) -> list[PlannedStage]:
    stages = [PlannedStage(name="DIR_SYNC", desc="Publish the directory")]
    if rollback:
        stages.append(PlannedStage(name="DIR_ROLLBACK", desc="Restore the previous release", rollback=True))
    return stages


# -- stages -------------------------------------------------------------------


#: seconds between WAIT's progress lines
WAIT_LOG_INTERVAL = 10.0


@app.stage("WAIT")
async def wait(ctx: pipeplug.Context, options: WaitOptions) -> StageResult | None:
    """Wait for ``with.duration``, resuming where it stopped if piped executes the stage again.

    The start time is kept in stage metadata as ``startTime`` (unix seconds, like
    the official wait plugin), so after a restart only the remainder is waited.
    """
    total = options.duration.total_seconds()
    if total <= 0:
        return StageResult(StageStatus.FAILURE, f"with.duration must be greater than 0, got {options.duration}")
    saved = await ctx.stage_metadata.get("startTime")
    if saved is not None and saved.isdigit():
        start = int(saved)
        ctx.log.info("Resuming: %s of %s already waited", datetime.timedelta(seconds=int(time.time()) - start), options.duration)
    else:
        start = int(time.time())
        await ctx.stage_metadata.put("startTime", str(start))
        ctx.log.info("Waiting for %s...", options.duration)
    try:
        while (remaining := start + total - time.time()) > 0:
            await asyncio.sleep(min(remaining, WAIT_LOG_INTERVAL))
            if start + total - time.time() > 0:
                ctx.log.info("%s elapsed...", datetime.timedelta(seconds=int(time.time()) - start))
    except asyncio.CancelledError:
        ctx.log.info("Wait cancelled")
        raise
    ctx.log.success("Waited for %s", options.duration)
    return None


def plan_approval(stage: pipeplug.RequestedStage) -> PlannedStage:
    """Plan WAIT_APPROVAL with an Approve button that only ``with.approvers`` may press.

    pipeplug has already checked ``stage.config`` against ApprovalOptions, so ``approvers`` is a list of names.
    """
    return PlannedStage(stage.name, stage.index, available_operation=ManualOperation.APPROVE, authorized_operators=stage.config["approvers"])


@app.stage("WAIT_APPROVAL", plan=plan_approval)
async def wait_approval(ctx: pipeplug.Context, options: ApprovalOptions) -> StageResult | None:
    """Wait until ``minApproverNum`` of ``with.approvers`` approved in the web UI; approvals survive a restart."""
    if not options.approvers:
        return StageResult(StageStatus.FAILURE, "with.approvers: list at least one user who may approve this stage")
    await ctx.wait_for_approval(options.min_approver_num, approvers=options.approvers)
    return None


@app.stage("DIR_SYNC")
def sync(
    ctx: pipeplug.Context,
    deploy_targets: list[pipeplug.DeployTarget],
    target_source: pipeplug.DeploymentSource,
    app_spec: AppSpec,
) -> StageResult | None:
    """Copy the source directory into a new release of every target and switch to it."""
    source = source_dir(target_source, app_spec)
    if not os.path.isdir(source):
        return StageResult(StageStatus.FAILURE, f"source directory {app_spec.source!r} not found in the application")
    for target in deploy_targets:
        release = os.path.join(target.config.path, "releases", target_source.commit_hash or "unknown")
        staging = release + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(release, ignore_errors=True)
        os.replace(staging, release)
        switch_to(target, release)
        ctx.log.info("published %s to %s", target_source.commit_hash, target.name)
    return None


@app.stage("DIR_VERIFY")
def verify(deploy_targets: list[pipeplug.DeployTarget], options: VerifyOptions) -> None:
    """Fail when a file listed in ``with.files`` is missing from a live release."""
    for target in deploy_targets:
        release = current_release(target)
        missing = [f for f in options.files if release is None or not os.path.exists(os.path.join(release, f))]
        if missing:
            raise pipeplug.StageFailed(f"{target.name}: missing {', '.join(missing)}")


@app.stage("DIR_ROLLBACK", rollback=True)
def rollback(ctx: pipeplug.Context, deploy_targets: list[pipeplug.DeployTarget], running_source: pipeplug.DeploymentSource | None) -> None:
    """Switch every target back to the running commit's release, if it was published."""
    for target in deploy_targets:
        if running_source is None:
            ctx.log.info("%s: first deployment, nothing to roll back to", target.name)
            continue
        release = os.path.join(target.config.path, "releases", running_source.commit_hash)
        if os.path.isdir(release):
            switch_to(target, release)
            ctx.log.info("%s: rolled back to %s", target.name, running_source.commit_hash)


# -- live state and plan preview ----------------------------------------------


@app.livestate
def livestate(deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource, app_spec: AppSpec) -> Livestate:
    wanted = files_of(source_dir(target_source, app_spec))
    resources, reasons = [], []
    for target in deploy_targets:
        release = current_release(target)
        live = files_of(release) if release else {}
        for path in sorted(live):
            resources.append(Resource(id=f"{target.name}:{path}", name=path, resource_type="file", deploy_target=target.name))
        verdict = diff.sync_verdict(wanted, live)  # live (before) against git (after), rendered like the Go SDK
        if verdict.sync_status is not SyncStatus.SYNCED:
            reasons.append(f"{target.name}: {verdict.short_reason}\n{verdict.reason}")
    if reasons:
        return Livestate(resources, SyncStatus.OUT_OF_SYNC, "files differ from git", "\n".join(reasons))
    return Livestate(resources, SyncStatus.SYNCED)


@app.plan_preview
def plan_preview(
    deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource, app_spec: AppSpec
) -> list[PlanPreview]:
    wanted = files_of(source_dir(target_source, app_spec))
    results = []
    for target in deploy_targets:
        release = current_release(target)
        changes = diff.diff(files_of(release) if release else {}, wanted)  # file path -> sha256, live against git
        results.append(PlanPreview(changes.summary, deploy_target=target.name, no_change=not changes, details=changes.render()))
    return results


if __name__ == "__main__":
    app.main()
