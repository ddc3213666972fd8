"""Conversions between generated protobuf messages and pipeplug's plain values."""

from __future__ import annotations

import time
import typing as t

from ._gen.model import application_live_state_pb2 as live_pb
from ._gen.model import application_pb2 as app_pb
from ._gen.model import common_pb2 as common_pb
from ._gen.model import deployment_pb2 as model_pb
from ._gen.plugin import planpreview_pb2 as preview_pb
from .types import ArtifactVersion
from .types import Deployment
from .types import DeploymentSource
from .types import HealthStatus
from .types import LiveState
from .types import PlannedStage
from .types import PlanPreview
from .types import SyncStrategy


def deployment_from_pb(pb: model_pb.Deployment) -> Deployment:
    trigger = pb.trigger
    return Deployment(
        id=pb.id,
        application_id=pb.application_id,
        application_name=pb.application_name,
        piped_id=pb.piped_id,
        project_id=pb.project_id,
        labels=dict(pb.labels),
        commit_hash=trigger.commit.hash,
        commit_message=trigger.commit.message,
        commit_author=trigger.commit.author,
        commit_branch=trigger.commit.branch,
        commander=trigger.commander,
        summary=pb.summary,
        running_commit_hash=pb.running_commit_hash,
        sync_strategy=SyncStrategy(trigger.sync_strategy) if trigger.sync_strategy in SyncStrategy._value2member_map_ else SyncStrategy.AUTO,
        deploy_targets_by_plugin={k: list(v.deploy_targets) for k, v in pb.deploy_targets_by_plugin.items()},
        created_at=pb.created_at,
        proto=pb,
    )


def source_from_pb(pb: t.Any, present: bool) -> DeploymentSource | None:
    """A DeploymentSource, or None when piped left the field unset (first deployment)."""
    if not present:
        return None
    return DeploymentSource(
        application_directory=pb.application_directory,
        commit_hash=pb.commit_hash,
        application_config=bytes(pb.application_config),
        application_config_filename=pb.application_config_filename,
        shared_config_directory=pb.shared_config_directory,
    )


def version_to_pb(version: ArtifactVersion) -> common_pb.ArtifactVersion:
    return common_pb.ArtifactVersion(kind=int(version.kind), version=version.version, name=version.name, url=version.url)


def stage_to_pb(stage: PlannedStage, *, desc: str, now: int) -> model_pb.PipelineStage:
    """A planned stage as piped expects it: NOT_STARTED_YET, timestamps > 0, a defined operation."""
    return model_pb.PipelineStage(
        name=stage.name,
        desc=stage.desc or desc,
        index=stage.index,
        rollback=stage.rollback,
        status=model_pb.STAGE_NOT_STARTED_YET,
        metadata=dict(stage.metadata),
        available_operation=int(stage.available_operation),
        authorized_operators=list(stage.authorized_operators),
        created_at=now,
        updated_at=now,
    )


def livestate_to_pb(state: LiveState, *, plugin_name: str) -> tuple[live_pb.ApplicationLiveState, app_pb.ApplicationSyncState]:
    now = int(time.time())
    resources = [
        live_pb.ResourceState(
            id=r.id,
            parent_ids=list(r.parent_ids),
            name=r.name,
            resource_type=r.resource_type,
            resource_metadata=dict(r.metadata),
            health_status=int(r.health),
            health_description=r.health_description,
            deploy_target=r.deploy_target,
            plugin_name=plugin_name,
            created_at=r.created_at or now,
            updated_at=r.updated_at or now,
        )
        for r in state.resources
    ]
    healthy = all(r.health == HealthStatus.HEALTHY for r in state.resources)
    live = live_pb.ApplicationLiveState(
        resources=resources,
        health_status=live_pb.ApplicationLiveState.HEALTHY if healthy else live_pb.ApplicationLiveState.OTHER,
    )
    sync = app_pb.ApplicationSyncState(
        status=int(state.sync_status), short_reason=state.short_reason, reason=state.reason, timestamp=now
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
