"""Planning a deployment exactly as piped's planner does (contract §3).

Versions from every selected plugin (errors skipped, empty -> ``unknown``),
the strategy by piped's rules in piped's order, then BuildQuickSyncStages or
BuildPipelineSyncStages with piped's checks, fresh stage ids and ``requires``
chained in index order. Every response is also checked against the rules
piped's control plane enforces; a plan it would refuse leaves the deployment
PENDING, as it would with real piped.
"""

from __future__ import annotations

import re
import time
import typing as t
import uuid

import attrs
import grpc

from .. import validation
from .._gen.model import common_pb2 as common_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.plugin import deployment_pb2 as deploy_pb

if t.TYPE_CHECKING:
    from .appconfig import AppConfig
    from .launcher import PluginProcess
    from .registry import Registry

QUICK, PIPELINE = common_pb.QUICK_SYNC, common_pb.PIPELINE


@attrs.define
class Plan:
    """The planner's outcome: PLANNED, FAILURE (piped fails the plan) or PENDING (the control plane refuses it)."""

    status: model_pb.DeploymentStatus = model_pb.DEPLOYMENT_PLANNED
    reason: str = ""
    strategy: common_pb.SyncStrategy = common_pb.AUTO
    summary: str = ""
    versions: list[t.Any] = attrs.field(factory=list)
    stages: list[t.Any] = attrs.field(factory=list)


class Notes(t.Protocol):
    def note(self, text: str) -> None: ...
    def violation(self, text: str) -> None: ...


async def plan(
    deployment: model_pb.Deployment,
    config: AppConfig,
    registry: Registry,
    plugin_input: deploy_pb.PlanPluginInput,
    last_successful_commit: str,
    out: Notes,
) -> Plan:
    """Plan ``deployment`` (PENDING); ``plugin_input`` carries the deployment and both sources."""
    result = Plan()
    rejected: list[str] = []

    def check(problems: list[str]) -> None:
        for problem in problems:
            out.violation(problem)
            if problem.startswith(validation.CONTROL_PLANE_REJECT):
                rejected.append(problem)

    try:
        plugins = registry.for_app(config)
    except LookupError as exc:
        return _failed(result, str(exc))

    for plugin in plugins:
        try:
            response = await plugin.deployment.DetermineVersions(deploy_pb.DetermineVersionsRequest(input=plugin_input))
        except grpc.aio.AioRpcError as exc:
            out.note(f"DetermineVersions on {plugin.name} failed ({exc.code().name}: {exc.details()}); piped logs it and skips the plugin")
            continue
        check(validation.check_versions(response.versions))
        result.versions.extend(response.versions)
    if not result.versions:
        result.versions = [common_pb.ArtifactVersion(kind=common_pb.ArtifactVersion.UNKNOWN, version="unknown")]

    strategy, result.summary = await determine_strategy(config, plugins, plugin_input, last_successful_commit, out)
    result.strategy = t.cast(t.Any, strategy)
    try:
        if result.strategy == QUICK:
            result.stages = await _quick_sync_stages(config, plugins, registry, check)
        elif result.strategy == PIPELINE:
            result.stages = await _pipeline_stages(config, registry, check)
        else:
            return _failed(result, "unable to plan the deployment: no plugin decided the strategy (all errored or answered unsupported); "
                           "stage-only pipelines need spec.planner.alwaysUsePipeline: true")  # fmt: skip
    except _PlanFailed as exc:
        return _failed(result, str(exc))
    if rejected:
        result.status = model_pb.DEPLOYMENT_PENDING
        result.reason = (
            "real piped would leave this deployment PENDING: its control plane refuses ReportDeploymentPlanned "
            f"({len(rejected)} problem(s) above); piped retries 10 times, then plans it again an hour later"
        )
    return result


async def determine_strategy(
    config: AppConfig, plugins: t.Sequence[PluginProcess], plugin_input: deploy_pb.PlanPluginInput, last_successful_commit: str, out: Notes
) -> tuple[int, str]:
    """piped's strategy rules, first match wins (contract §3.1 step 2)."""
    trigger = plugin_input.deployment.trigger
    if trigger.sync_strategy in (QUICK, PIPELINE):
        return trigger.sync_strategy, trigger.strategy_summary
    if not config.stages:
        return QUICK, "Quick sync due to the pipeline was not configured"
    if config.always_use_pipeline:
        return PIPELINE, "Sync with the specified pipeline (alwaysUsePipeline was set)"
    if not trigger.commander:
        if config.commit_matcher_pipeline and _matches(config.commit_matcher_pipeline, trigger.commit.message):
            return PIPELINE, f"Sync progressively because the commit message was matching {config.commit_matcher_pipeline!r}"
        if config.commit_matcher_quick_sync and _matches(config.commit_matcher_quick_sync, trigger.commit.message):
            return QUICK, f"Quick sync because the commit message was matching {config.commit_matcher_quick_sync!r}"
    if not last_successful_commit:
        return QUICK, "Quick sync, it seems this is the first deployment of the application"
    strategy, summary = common_pb.AUTO, ""
    for plugin in plugins:
        try:
            response = await plugin.deployment.DetermineStrategy(deploy_pb.DetermineStrategyRequest(input=plugin_input))
        except grpc.aio.AioRpcError as exc:
            out.note(f"DetermineStrategy on {plugin.name} failed ({exc.code().name}: {exc.details()}); piped logs it and skips the plugin")
            continue
        for problem in validation.check_strategy(response):
            out.violation(problem)
        if response.unsupported:
            continue
        strategy, summary = response.sync_strategy, response.summary
        if strategy == PIPELINE:
            break
    return strategy, summary


async def _quick_sync_stages(config: AppConfig, plugins: t.Sequence[PluginProcess], registry: Registry, check: t.Callable[[list[str]], None]) -> list[t.Any]:
    stages: list[t.Any] = []
    rollbacks: list[t.Any] = []
    for plugin in plugins:
        try:
            response = await plugin.deployment.BuildQuickSyncStages(deploy_pb.BuildQuickSyncStagesRequest(rollback=config.auto_rollback))
        except grpc.aio.AioRpcError as exc:
            raise _PlanFailed(f"BuildQuickSyncStages on {plugin.name} failed: {exc.code().name}: {exc.details()}") from None
        check(validation.check_quick_sync_stages(response.stages, defined_stages=set(registry.by_stage)))
        for stage in response.stages:
            stage.id = str(uuid.uuid4())
            (rollbacks if stage.rollback else stages).append(stage)
    if not stages and not rollbacks:
        check(validation.check_quick_sync_total(0))
        raise _PlanFailed("unable to build quick sync stages for deployment: no plugin returned a quick-sync stage")
    return stages + rollbacks


async def _pipeline_stages(config: AppConfig, registry: Registry, check: t.Callable[[list[str]], None]) -> list[t.Any]:
    requests: dict[str, tuple[PluginProcess, deploy_pb.BuildPipelineSyncStagesRequest]] = {}
    for stage in config.stages:
        plugin = registry.for_stage(stage.name)
        if plugin is None:
            raise _PlanFailed(f"no plugin offers stage {stage.name!r} (spec.pipeline.stages[{stage.index}]). Stages offered: {registry.offered()}")
        _, request = requests.setdefault(plugin.name, (plugin, deploy_pb.BuildPipelineSyncStagesRequest(rollback=config.auto_rollback)))
        request.stages.add(name=stage.name, desc=stage.desc, index=stage.index, config=stage.with_json)
    stages: list[t.Any] = []
    rollbacks: list[t.Any] = []
    for plugin, request in requests.values():
        try:
            response = await plugin.deployment.BuildPipelineSyncStages(request)
        except grpc.aio.AioRpcError as exc:
            raise _PlanFailed(f"BuildPipelineSyncStages on {plugin.name} failed: {exc.code().name}: {exc.details()}") from None
        problems = validation.check_pipeline_sync_stages(response.stages, [s.index for s in request.stages], defined_stages=set(registry.by_stage))
        check(problems)
        failing = [p for p in problems if p.startswith(validation.FAIL_PLAN)]
        if failing:
            raise _PlanFailed(f"invalid stage index was returned from {plugin.name}: {failing[0]}")
        for stage in response.stages:
            stage.id = str(uuid.uuid4())
            (rollbacks if stage.rollback else stages).append(stage)
    stages.sort(key=lambda s: s.index)
    rollbacks.sort(key=lambda s: s.index)
    previous = ""
    for stage in stages:
        if previous:
            del stage.requires[:]
            stage.requires.append(previous)
        previous = stage.id
    if not stages and not rollbacks:
        raise _PlanFailed("unable to build pipeline sync stages for deployment")
    return stages + rollbacks


class _PlanFailed(Exception):
    pass


def _failed(result: Plan, reason: str) -> Plan:
    result.status = model_pb.DEPLOYMENT_FAILURE
    result.reason = f"Unable to plan the deployment ({reason})"
    return result


def _matches(pattern: str, message: str) -> bool:
    try:
        return re.search(pattern, message) is not None
    except re.error:
        return False  # piped ignores a pattern it cannot compile


def apply_plan(deployment: model_pb.Deployment, result: Plan, running_commit: str) -> None:
    """What the control plane stores on ReportDeploymentPlanned (or on a failed plan)."""
    now = int(time.time())
    deployment.status = result.status
    deployment.updated_at = now
    if result.status != model_pb.DEPLOYMENT_PLANNED:
        # piped reports no strategy for a plan that failed; kept here so the record says what was decided
        deployment.trigger.sync_strategy = result.strategy
        deployment.summary = result.summary
    if result.status == model_pb.DEPLOYMENT_FAILURE:
        deployment.status_reason = result.reason
        deployment.completed_at = now
        return
    if result.status == model_pb.DEPLOYMENT_PENDING:
        deployment.status_reason = result.reason
        return
    deployment.status_reason = "The deployment has been planned"
    deployment.trigger.sync_strategy = result.strategy
    deployment.summary = result.summary
    deployment.running_commit_hash = running_commit
    del deployment.versions[:]
    deployment.versions.extend(result.versions)
    del deployment.stages[:]
    deployment.stages.extend(result.stages)
