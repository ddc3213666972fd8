"""What real piped and its control plane refuse, as pure checks.

Each function takes wire messages (generated protobuf objects) and returns a
list of human-readable violations; an empty list means "piped would accept
this". Every violation starts with what real piped would do about it, so a
test failure or a ``pipeplug dev`` warning tells the plugin author both the
rule and the consequence. The rules are the ``validate.rules`` options of
upstream's protos and the checks of piped's planner (see
``shared/reference/piped-contract.md`` §3-§6); nothing here talks to the network.
"""

from __future__ import annotations

import typing as t

from ._gen.model import application_live_state_pb2 as live_pb
from ._gen.model import application_pb2 as app_pb
from ._gen.model import common_pb2 as common_pb
from ._gen.model import deployment_pb2 as model_pb
from ._gen.model import logblock_pb2 as logblock_pb

REJECT = "real piped would reject this"
CONTROL_PLANE_REJECT = "the control plane would reject this"
DROP_OR_MISPLACE = "real piped would drop or misplace this line"
LOSE = "real piped would lose log lines"
PARK = "real piped would leave the deployment RUNNING"
FAIL_PLAN = "real piped would fail the plan"
CRASH = "real piped would crash"

#: PluginService request fields that need ``min_len = 1`` (pkg/plugin/pipedservice/service.proto)
REQUIRED_STRINGS: dict[str, tuple[str, ...]] = {
    "InstallTool": ("name", "version", "install_script"),
    "ReportStageLogs": ("deployment_id", "stage_id"),
    "ReportStageLogsFromLastCheckpoint": ("deployment_id", "stage_id"),
    "GetStageMetadata": ("deployment_id", "stage_id", "key"),
    "PutStageMetadata": ("deployment_id", "stage_id", "key"),
    "PutStageMetadataMulti": ("deployment_id", "stage_id"),
    # plugin_name is not validated on Get (upstream leaves it free-form there)
    "GetDeploymentPluginMetadata": ("deployment_id", "key"),
    "PutDeploymentPluginMetadata": ("deployment_id", "plugin_name", "key"),
    "PutDeploymentPluginMetadataMulti": ("deployment_id", "plugin_name"),
    "GetDeploymentSharedMetadata": ("deployment_id", "key"),
    "ListStageCommands": ("deployment_id", "stage_id"),
    "GetApplicationSharedObject": ("application_id", "plugin_name", "key"),
    "PutApplicationSharedObject": ("application_id", "plugin_name", "key"),
}


def _defined(enum: t.Any, value: int) -> bool:
    return value in enum.values_by_number


def _enum_name(enum: t.Any, value: int) -> str:
    found = enum.values_by_number.get(value)
    return found.name if found else str(value)


# -- PluginService requests (what piped's own validation interceptor refuses) ------


def check_plugin_service_request(method: str, request: t.Any) -> list[str]:
    """PGV rules of one PluginService request: ``method`` is the RPC name, e.g. ``"ReportStageLogs"``.

    A non-empty result means piped answers INVALID_ARGUMENT and does nothing.
    """
    problems = [
        f"{REJECT}: {method}Request.{field} is empty; it must be a non-empty string"
        for field in REQUIRED_STRINGS.get(method, ())
        if not getattr(request, field)
    ]
    if method in ("ReportStageLogs", "ReportStageLogsFromLastCheckpoint"):
        problems += check_log_blocks(request.blocks, stage=request.stage_id, method=method)
    return problems


def check_log_blocks(blocks: t.Iterable[t.Any], *, stage: str = "", method: str = "ReportStageLogs") -> list[str]:
    """PGV rules of ``model.LogBlock``: one bad block makes piped reject the whole batch."""
    problems = []
    where = f"stage {stage}" if stage else "the stage"
    for i, block in enumerate(blocks):
        label = f"{method}: log block {i} (index {block.index}) of {where}"
        if not block.log:
            problems.append(f"{REJECT} and the whole batch with it: {label} has an empty `log`; split or drop empty lines")
        if not _defined(logblock_pb.LogSeverity.DESCRIPTOR, block.severity):
            problems.append(f"{REJECT} and the whole batch with it: {label} has undefined severity {block.severity}; use INFO=0, SUCCESS=1 or ERROR=2")
        if block.created_at <= 0:
            problems.append(f"{REJECT} and the whole batch with it: {label} has created_at={block.created_at}; it must be unix seconds > 0")
    return problems


# -- log stream rules (stateful across calls; the caller keeps the state) -----------


def check_log_indexes(blocks: t.Sequence[t.Any], *, after: int | None, stage: str = "", method: str = "ReportStageLogs") -> list[str]:
    """Block indexes must rise strictly, within the batch and above ``after`` (the highest index already sent).

    The control plane drops a block whose index it already holds, and the web
    UI orders lines by index, so a repeat is lost and a step back is misplaced.
    """
    problems = []
    where = f"stage {stage}" if stage else "the stage"
    last = after
    for i, block in enumerate(blocks):
        if last is not None and block.index <= last:
            problems.append(
                f"{DROP_OR_MISPLACE}: {method}: log block {i} of {where} has index {block.index}, not above the previous index {last}; "
                "indexes must rise strictly per stage"
            )
        last = block.index if last is None else max(last, block.index)
    return problems


def check_checkpoint_covers(sent_since_checkpoint: t.Iterable[int], checkpoint_blocks: t.Iterable[t.Any], *, stage: str = "") -> list[str]:
    """A checkpoint call must repeat every block sent with ReportStageLogs since the previous checkpoint.

    ReportStageLogsFromLastCheckpoint *replaces* the cached view with what the
    durable store holds, so blocks not repeated vanish from the UI and are never persisted.
    """
    missing = sorted(set(sent_since_checkpoint) - {b.index for b in checkpoint_blocks})
    if not missing:
        return []
    shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
    where = f"stage {stage}" if stage else "the stage"
    return [
        f"{LOSE}: ReportStageLogsFromLastCheckpoint for {where} left out blocks {shown} that were sent with ReportStageLogs "
        "since the last checkpoint; a checkpoint must carry every block since the previous one"
    ]


def check_log_retried_count(retried_count: int, *, stage: str = "") -> list[str]:
    """pipedv1 never increments retried_count, and the web UI reads the log of the stage's own count."""
    if retried_count == 0:
        return []
    where = f"stage {stage}" if stage else "the stage"
    return [f"real piped would store this where the web UI never looks: log of {where} sent with retried_count={retried_count}; send 0"]


# -- planning responses ----------------------------------------------------------


def check_planned_stage(stage: model_pb.PipelineStage, *, where: str) -> list[str]:
    """The control plane's rules on one ``model.PipelineStage`` a plugin planned (piped fills ``id``)."""
    problems = []
    if not stage.name:
        problems.append(f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has an empty name")
    if not _defined(model_pb.StageStatus.DESCRIPTOR, stage.status):
        problems.append(f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has undefined status {stage.status}")
    elif stage.status != model_pb.STAGE_NOT_STARTED_YET:
        problems.append(
            f"real piped would schedule this wrongly: {where} was planned with status {_enum_name(model_pb.StageStatus.DESCRIPTOR, stage.status)}; "
            "planned stages must be STAGE_NOT_STARTED_YET (a SUCCESS stage is skipped)"
        )
    if stage.created_at <= 0:
        problems.append(f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has created_at={stage.created_at}; it must be > 0")
    if stage.updated_at <= 0:
        problems.append(f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has updated_at={stage.updated_at}; it must be > 0")
    if stage.completed_at < 0:
        problems.append(f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has completed_at={stage.completed_at}; it must be >= 0")
    if not _defined(model_pb.ManualOperation.DESCRIPTOR, stage.available_operation):
        problems.append(
            f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: {where} has undefined available_operation {stage.available_operation}; "
            "use MANUAL_OPERATION_NONE=3 unless the stage offers a button"
        )
    return problems


def _check_names(stages: t.Sequence[t.Any], defined_stages: t.Collection[str] | None, rpc: str) -> list[str]:
    if defined_stages is None:
        return []
    return [
        f"real piped would fail the stage: {rpc} stage {i} is named {s.name!r}, which FetchDefinedStages does not list, so piped cannot route it"
        for i, s in enumerate(stages)
        if s.name and s.name not in defined_stages
    ]


def check_pipeline_sync_stages(
    stages: t.Sequence[model_pb.PipelineStage],
    requested_indexes: t.Collection[int],
    *,
    defined_stages: t.Collection[str] | None = None,
) -> list[str]:
    """BuildPipelineSyncStages response: piped's planner checks plus the control plane's stage rules.

    Indexes must be ones piped requested; unique among non-rollback stages and
    unique among rollback stages (a rollback stage may share an index with a normal one).
    """
    problems = []
    allowed = set(requested_indexes)
    seen: dict[bool, set[int]] = {False: set(), True: set()}
    for i, stage in enumerate(stages):
        where = f"BuildPipelineSyncStages stage {i} ({stage.name or 'unnamed'})"
        if stage.index not in allowed:
            problems.append(f"{FAIL_PLAN}: {where} has index {stage.index}, which was not requested (requested: {sorted(allowed)})")
        kind = "rollback" if stage.rollback else "non-rollback"
        if stage.index in seen[stage.rollback]:
            problems.append(f"{FAIL_PLAN}: {where} repeats index {stage.index} among {kind} stages; each index may appear once per kind")
        seen[stage.rollback].add(stage.index)
        problems += check_planned_stage(stage, where=where)
    return problems + _check_names(stages, defined_stages, "BuildPipelineSyncStages")


def check_quick_sync_stages(stages: t.Sequence[model_pb.PipelineStage], *, defined_stages: t.Collection[str] | None = None) -> list[str]:
    """BuildQuickSyncStages response: the control plane's stage rules (piped fills ids and order)."""
    problems = []
    for i, stage in enumerate(stages):
        problems += check_planned_stage(stage, where=f"BuildQuickSyncStages stage {i} ({stage.name or 'unnamed'})")
    return problems + _check_names(stages, defined_stages, "BuildQuickSyncStages")


def check_quick_sync_total(stage_count: int) -> list[str]:
    """piped fails a quick sync whose plugins together returned no stage at all."""
    if stage_count:
        return []
    return [f"{FAIL_PLAN}: no plugin returned a quick-sync stage, so a QUICK_SYNC deployment has nothing to run"]


def check_versions(versions: t.Sequence[common_pb.ArtifactVersion]) -> list[str]:
    """DetermineVersions response: each version's ``kind`` must be a defined value."""
    return [
        f"{CONTROL_PLANE_REJECT} and leave the deployment PENDING: DetermineVersions version {i} ({v.version or 'no version'}) has undefined kind {v.kind}"
        for i, v in enumerate(versions)
        if not _defined(common_pb.ArtifactVersion.Kind.DESCRIPTOR, v.kind)
    ]


def check_strategy(response: t.Any) -> list[str]:
    """DetermineStrategy response: unless ``unsupported``, the strategy must be QUICK_SYNC or PIPELINE."""
    if response.unsupported or response.sync_strategy in (common_pb.QUICK_SYNC, common_pb.PIPELINE):
        return []
    return [
        f"{FAIL_PLAN} unless another plugin decides: DetermineStrategy answered sync_strategy={response.sync_strategy} without unsupported=true; "
        "answer QUICK_SYNC(1), PIPELINE(2), or unsupported=true"
    ]


# -- execution ---------------------------------------------------------------------

_FINAL_STATUSES = frozenset((model_pb.STAGE_SUCCESS, model_pb.STAGE_FAILURE, model_pb.STAGE_CANCELLED, model_pb.STAGE_SKIPPED, model_pb.STAGE_EXITED))


def check_execute_stage_status(status: int) -> list[str]:
    """ExecuteStage must end in a final status; RUNNING, NOT_STARTED_YET or an undefined value park the deployment."""
    if status in _FINAL_STATUSES:
        return []
    return [
        f"{PARK}: ExecuteStage answered status {_enum_name(model_pb.StageStatus.DESCRIPTOR, status)}, which is not final; "
        "piped stops scheduling and re-executes the stage only about an hour later. Return SUCCESS, FAILURE, SKIPPED, EXITED or CANCELLED"
    ]


# -- livestate ---------------------------------------------------------------------


def check_livestate(response: t.Any) -> list[str]:
    """GetLivestate response: ``sync_state`` set, and every resource valid for the control plane."""
    problems = []
    if not response.HasField("sync_state"):
        problems.append(f"{CRASH}: GetLivestate answered without sync_state; piped reads its reasons through a nil pointer. Always set sync_state")
    elif not _defined(app_pb.ApplicationSyncStatus.DESCRIPTOR, response.sync_state.status):
        problems.append(f"{CONTROL_PLANE_REJECT}: GetLivestate sync_state.status {response.sync_state.status} is not a defined ApplicationSyncStatus")
    for i, resource in enumerate(response.application_live_state.resources):
        where = f"GetLivestate resource {i} ({resource.id or resource.name or 'no id'})"
        consequence = f"{CONTROL_PLANE_REJECT}, and the whole live-state report with it"
        if not resource.id:
            problems.append(f"{consequence}: {where} has an empty id")
        if not resource.name:
            problems.append(f"{consequence}: {where} has an empty name")
        if not _defined(live_pb.ResourceState.HealthStatus.DESCRIPTOR, resource.health_status):
            problems.append(f"{consequence}: {where} has undefined health_status {resource.health_status}")
        if resource.created_at <= 0:
            problems.append(f"{consequence}: {where} has created_at={resource.created_at}; it must be > 0")
        if resource.updated_at <= 0:
            problems.append(f"{consequence}: {where} has updated_at={resource.updated_at}; it must be > 0")
    return problems
