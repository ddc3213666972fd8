"""Conversions between generated protobuf messages and pipeplug's plain values.

The value classes are imported by the functions that make them, so that
importing this module (as the servicers do) does not load them.
"""

from __future__ import annotations

import time
import typing as t

from ._gen.model import common_pb2 as common_pb
from ._gen.model import deployment_pb2 as model_pb
from .enums import ManualOperation
from .enums import SyncStrategy

if t.TYPE_CHECKING:
    from .types import ArtifactVersion
    from .types import Deployment
    from .types import DeploymentSource
    from .types import PlannedStage


def enum_number(value: int) -> t.Any:
    """An enum member as the number a message field takes: protoc's stubs type such fields by
    their enum wrapper class, which a plain ``int`` (our IntEnums included) does not satisfy."""
    return int(value)


def deployment_from_pb(pb: model_pb.Deployment) -> Deployment:
    from .types import Deployment

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
        repository_url=pb.git_path.repo.remote,
        proto=pb,
    )


def source_from_pb(pb: t.Any, present: bool) -> DeploymentSource | None:
    """A DeploymentSource, or None when piped left the field unset (first deployment)."""
    if not present:
        return None
    from .types import DeploymentSource

    return DeploymentSource(
        application_directory=pb.application_directory,
        commit_hash=pb.commit_hash,
        application_config=bytes(pb.application_config),
        application_config_filename=pb.application_config_filename,
        shared_config_directory=pb.shared_config_directory,
    )


def version_to_pb(version: ArtifactVersion) -> common_pb.ArtifactVersion:
    return common_pb.ArtifactVersion(kind=enum_number(version.kind), version=version.version, name=version.name, url=version.url)


def stage_from_pb(stage: model_pb.PipelineStage) -> PlannedStage:
    """A planned stage as a plugin answered it (what :func:`stage_to_pb` made), back as a value."""
    from .types import PlannedStage

    return PlannedStage(
        name=stage.name,
        index=stage.index,
        desc=stage.desc,
        rollback=stage.rollback,
        metadata=dict(stage.metadata),
        available_operation=ManualOperation(stage.available_operation),
        authorized_operators=tuple(stage.authorized_operators),
    )


def stage_to_pb(stage: PlannedStage, *, desc: str, now: int) -> model_pb.PipelineStage:
    """A planned stage as piped expects it: NOT_STARTED_YET, timestamps > 0, a defined operation."""
    return model_pb.PipelineStage(
        name=stage.name,
        desc=stage.desc or desc,
        index=stage.index,
        rollback=stage.rollback,
        status=model_pb.STAGE_NOT_STARTED_YET,
        metadata=dict(stage.metadata),
        available_operation=enum_number(stage.available_operation),
        authorized_operators=list(stage.authorized_operators),
        created_at=now,
        updated_at=now,
    )
