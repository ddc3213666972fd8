"""LivestateService and PlanPreviewService: loaded, and served, only for apps that register
``@app.livestate`` or ``@app.plan_preview``."""

from __future__ import annotations

import time
import typing as t

import grpc

from ._gen.model import application_live_state_pb2 as live_state_pb
from ._gen.model import application_pb2 as app_pb
from ._gen.plugin import livestate_pb2 as live_pb
from ._gen.plugin import livestate_pb2_grpc as live_grpc
from ._gen.plugin import planpreview_pb2 as preview_pb
from ._gen.plugin import planpreview_pb2_grpc as preview_grpc
from .enums import HealthStatus
from . import validation
from .servicers import Dispatcher
from .servicers import valid_reply
from .wire import enum_number
from .servicers import checked
from .servicers import expect_list
from .types import Livestate
from .types import PlanPreview


def add_optional_servicers(server: grpc.aio.Server, dispatcher: Dispatcher) -> list[str]:
    """Register the services among these two that the app implements; return their full names."""
    names = []
    if "livestate" in dispatcher.app.hooks:
        live_grpc.add_LivestateServiceServicer_to_server(LivestateServicer(dispatcher), server)
        names.append(live_pb.DESCRIPTOR.services_by_name["LivestateService"].full_name)
    if "plan_preview" in dispatcher.app.hooks:
        preview_grpc.add_PlanPreviewServiceServicer_to_server(PlanPreviewServicer(dispatcher), server)
        names.append(preview_pb.DESCRIPTOR.services_by_name["PlanPreviewService"].full_name)
    return names


class LivestateServicer(live_grpc.LivestateServiceServicer):
    """``LivestateService``, served only when ``@app.livestate`` is registered."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def GetLivestate(self, request: t.Any, context: t.Any) -> t.Any:
        handler = self.d.app.hooks["livestate"]
        refused = self.d.no_deploy_targets(request.deploy_targets, "GetLivestate")
        if refused:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused)
        ctx = self.d.context("GetLivestate", application_id=request.application_id, application_name=request.application_name)
        values = self.d.values(ctx, target_source=request.deploy_source if request.HasField("deploy_source") else None, target_names=request.deploy_targets)
        result = await self.d.call_hook(context, handler, values)
        if not isinstance(result, Livestate):
            await context.abort(grpc.StatusCode.INTERNAL, f"@app.livestate handler {handler.qualname}() returned {result!r}; expected a Livestate")
        live, sync = livestate_to_pb(result, plugin_name=self.d.settings.name)
        response = live_pb.GetLivestateResponse(application_live_state=live, sync_state=sync)
        return await valid_reply(context, response, validation.check_livestate(response), f"@app.livestate handler {handler.qualname}()")


class PlanPreviewServicer(preview_grpc.PlanPreviewServiceServicer):
    """``PlanPreviewService``, served only when ``@app.plan_preview`` is registered."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def GetPlanPreview(self, request: t.Any, context: t.Any) -> t.Any:
        handler = self.d.app.hooks["plan_preview"]
        refused = self.d.no_deploy_targets(request.deploy_targets, "GetPlanPreview")
        if refused:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused)
        ctx = self.d.context("GetPlanPreview", application_id=request.application_id, application_name=request.application_name)
        values = self.d.values(
            ctx,
            target_source=request.target_deployment_source if request.HasField("target_deployment_source") else None,
            running_source=request.running_deployment_source if request.HasField("running_deployment_source") else None,
            target_names=request.deploy_targets,
        )
        result = await self.d.call_hook(context, handler, values)
        label = f"@app.plan_preview handler {handler.qualname}()"
        results = await checked(context, lambda: expect_list(result, PlanPreview, label))
        return preview_pb.GetPlanPreviewResponse(results=[preview_to_pb(r) for r in results])


def livestate_to_pb(state: Livestate, *, plugin_name: str) -> tuple[live_state_pb.ApplicationLiveState, app_pb.ApplicationSyncState]:
    now = int(time.time())
    resources = [
        live_state_pb.ResourceState(
            id=r.id,
            parent_ids=list(r.parent_ids),
            name=r.name,
            resource_type=r.resource_type,
            resource_metadata=dict(r.metadata),
            health_status=enum_number(r.health),
            health_description=r.health_description,
            deploy_target=r.deploy_target,
            plugin_name=plugin_name,
            created_at=r.created_at or now,
            updated_at=r.updated_at or now,
        )
        for r in state.resources
    ]
    healthy = all(r.health == HealthStatus.HEALTHY for r in state.resources)
    live = live_state_pb.ApplicationLiveState(
        resources=resources,
        health_status=live_state_pb.ApplicationLiveState.HEALTHY if healthy else live_state_pb.ApplicationLiveState.OTHER,
    )
    sync = app_pb.ApplicationSyncState(
        status=enum_number(state.sync_status), short_reason=state.short_reason, reason=state.reason, timestamp=now
    )
    return live, sync


def preview_to_pb(result: PlanPreview) -> preview_pb.PlanPreviewResult:
    details = result.details.encode() if isinstance(result.details, str) else bytes(result.details)
    return preview_pb.PlanPreviewResult(
        deploy_target=result.deploy_target,
        summary=result.summary,
        no_change=result.no_change,
        details=details,
        diff_language=result.diff_language,
    )
