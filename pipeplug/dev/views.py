"""``pipeplug dev livestate`` and ``pipeplug dev plan-preview``: one call each, as piped makes them.

Livestate (contract §6): every selected plugin gets GetLivestate with the
application directory as it is now (piped uses the branch HEAD) and its
deploy targets; UNIMPLEMENTED is skipped, any other error aborts the app's
report. piped keeps only the resources, recomputes health itself and merges
the sync states by priority. Plan preview (§7): the strategy by piped's rules
(with commander "pipectl", so commit matchers are skipped), then
GetPlanPreview on each plugin against the last successful deployment.
"""

from __future__ import annotations

import shutil
import typing as t

import grpc

from .. import validation
from .._gen.model import application_live_state_pb2 as live_pb
from .._gen.model import application_pb2 as app_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.plugin import deployment_pb2 as deploy_pb
from .._gen.plugin import livestate_pb2 as livestate_api
from .._gen.plugin import planpreview_pb2 as preview_api
from .planner import determine_strategy
from .session import Options
from .session import Session
from .sources import open_snapshot
from .ui import STRATEGY
from .ui import Output

HEALTH = {v.number: v.name for v in live_pb.ResourceState.HealthStatus.DESCRIPTOR.values}
SYNC = {v.number: v.name for v in app_pb.ApplicationSyncStatus.DESCRIPTOR.values}
#: piped's merge order for sync states: the first present wins
SYNC_PRIORITY = (app_pb.DEPLOYING, app_pb.INVALID_CONFIG, app_pb.OUT_OF_SYNC, app_pb.UNKNOWN, app_pb.SYNCED)


async def livestate(options: Options, out: Output) -> int:
    async with Session(options, out) as session:
        session.check_routing()
        assert session.registry is not None
        work = session.state.work_dir("livestate")
        source = session.source(session.snapshot(), session.config.filename, work)
        targets = session.targets_by_plugin()
        resources, syncs, errors = [], [], []
        try:
            for plugin in session.registry.for_app(session.config):
                request = livestate_api.GetLivestateRequest(
                    piped_id="pipeplug-dev", application_id=session.app_id, application_name=session.app_name,
                    deploy_source=source, deploy_targets=targets.get(plugin.name, []),
                )  # fmt: skip
                try:
                    response = await plugin.livestate.GetLivestate(request)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                        out.note(f"{plugin.name} does not serve LivestateService; piped skips it")
                        continue
                    errors.append(f"GetLivestate on {plugin.name} failed ({exc.code().name}: {exc.details()}); piped reports nothing for this app this cycle")
                    break
                for problem in validation.check_livestate(response):
                    session.violation(problem)
                resources.extend(response.application_live_state.resources)
                syncs.append(response.sync_state if response.HasField("sync_state") else None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record = livestate_record(session, resources, syncs, errors, list(out.violations))
        out.livestate(record)
        for error in errors:
            out.error(error)
        return 1 if errors or out.violations else 0


def livestate_record(session: Session, resources: list[t.Any], syncs: list[t.Any], errors: list[str], violations: list[str]) -> dict[str, t.Any]:
    if any(r.health_status == live_pb.ResourceState.UNHEALTHY for r in resources):
        health = "UNHEALTHY"
    elif any(r.health_status == live_pb.ResourceState.UNKNOWN for r in resources):
        health = "UNKNOWN"
    else:
        health = "HEALTHY"
    statuses = [s.status if s is not None else app_pb.UNKNOWN for s in syncs]
    merged = next((p for p in SYNC_PRIORITY if p in statuses), app_pb.UNKNOWN) if statuses else app_pb.UNKNOWN
    reasons = [s for s in syncs if s is not None]
    joined = merged not in (app_pb.SYNCED, app_pb.DEPLOYING)
    return {
        "application_id": session.app_id,
        "application_name": session.app_name,
        "health": health,
        "sync_state": {
            "status": SYNC.get(merged, str(merged)),
            "short_reason": "\n".join(s.short_reason for s in reasons if s.short_reason) if joined else "",
            "reason": "\n".join(s.reason for s in reasons if s.reason) if joined else "",
        },
        "resources": [
            {
                "id": r.id, "name": r.name, "resource_type": r.resource_type, "health": HEALTH.get(r.health_status, str(r.health_status)),
                "health_description": r.health_description, "deploy_target": r.deploy_target, "plugin_name": r.plugin_name,
                "parent_ids": list(r.parent_ids),
            }  # fmt: skip
            for r in resources
        ],
        "errors": errors,
        "violations": violations,
    }


async def plan_preview(options: Options, out: Output) -> int:
    async with Session(options, out) as session:
        session.check_routing()
        assert session.registry is not None
        work = session.state.work_dir("plan-preview")
        target_snapshot = session.snapshot()
        last = session.state.last_successful(session.app_id)
        running_snapshot = open_snapshot(session.state.snapshots_dir, last.trigger.commit.hash) if last else None
        targets = session.targets_by_plugin()
        results, errors = [], []
        try:
            target = session.source(target_snapshot, session.config.filename, work)
            running = session.source(running_snapshot, last.git_path.config_filename or session.config.filename, work) if running_snapshot and last else None
            plugins = session.registry.for_app(session.config)
            minimal = model_pb.Deployment(piped_id="pipeplug-dev", application_id=session.app_id, application_name=session.app_name)
            minimal.trigger.commander = "pipectl"
            plugin_input = deploy_pb.PlanPluginInput(deployment=minimal, target_deployment_source=target)
            if running is not None:
                plugin_input.running_deployment_source.CopyFrom(running)
            strategy, summary = await determine_strategy(session.config, plugins, plugin_input, running.commit_hash if running else "", session)
            for plugin in plugins:
                request = preview_api.GetPlanPreviewRequest(
                    application_id=session.app_id, application_name=session.app_name, piped_id="pipeplug-dev",
                    deploy_targets=targets.get(plugin.name, []), target_deployment_source=target,
                )  # fmt: skip
                if running is not None:
                    request.running_deployment_source.CopyFrom(running)
                try:
                    response = await plugin.planpreview.GetPlanPreview(request, timeout=300)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                        errors.append(f"GetPlanPreview on {plugin.name} failed: {exc.code().name}: {exc.details()}")
                    else:
                        out.note(f"{plugin.name} does not serve PlanPreviewService; piped skips it")
                    continue
                for r in response.results:
                    results.append(
                        {
                            "plugin_name": plugin.name, "deploy_target": r.deploy_target, "summary": r.summary, "no_change": r.no_change,
                            "details": bytes(r.details).decode(errors="replace"), "diff_language": r.diff_language,
                        }  # fmt: skip
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        record = {
            "application_id": session.app_id,
            "application_name": session.app_name,
            "strategy": STRATEGY.get(strategy, str(strategy)),
            "strategy_summary": summary,
            "commit_hash": target_snapshot.commit_hash,
            "running_commit_hash": running.commit_hash if running else "",
            "results": results,
            "errors": errors,
            "violations": list(out.violations),
        }
        out.plan_preview(record)
        return 1 if errors else 0
