"""Wire facts of PipeCD's v1alpha1 plugin API, written out by hand from upstream.

Transcribed from pipe-cd/pipecd (commit 7e228592b581aee4df56f5dc96a8dd95a7c4cc55):
pkg/plugin/api/v1alpha1/{deployment,livestate,planpreview}/api.proto,
pkg/plugin/api/v1alpha1/common/common.proto, pkg/plugin/pipedservice/service.proto and
pkg/model/{common,deployment,command,logblock,application_live_state,application}.proto.
Only the closure reachable from the services is listed (piped-contract.md section 11),
plus grpc.piped.service.DecryptSecret{Request,Response}.

Do NOT regenerate this file from pipeplug's own protos: it is the independent reference
that tests/test_wire_compat.py checks them against.

Field tuples are ``(name, number, type, label, type_name)``:
- type: scalar type name ("string", "bytes", "bool", "int32", "int64", "uint32"),
  "message", "enum" or "map";
- label: "singular", "repeated" or "map" (upstream uses no proto3 ``optional``);
- type_name: full name (no leading dot) for message/enum fields, "KEY -> VALUE" for maps
  (VALUE is a scalar type name or a full message/enum name), otherwise None.
"""

S, R, M = "singular", "repeated", "map"

DEPLOY = "grpc.plugin.deploymentapi.v1alpha1"
LIVE = "grpc.plugin.livestateapi.v1alpha1"
PREVIEW = "grpc.plugin.planpreviewapi.v1alpha1"
COMMON = "grpc.plugin.common.v1alpha1"
PIPED = "grpc.piped.service"

DEPLOYMENT_SOURCE = f"{COMMON}.DeploymentSource"

MESSAGES: dict[str, list[tuple]] = {
    # ---- pkg/plugin/api/v1alpha1/common/common.proto
    DEPLOYMENT_SOURCE: [
        ("application_directory", 1, "string", S, None),
        ("commit_hash", 2, "string", S, None),
        ("application_config", 3, "bytes", S, None),
        ("application_config_filename", 4, "string", S, None),
        ("shared_config_directory", 5, "string", S, None),
    ],
    # ---- pkg/plugin/api/v1alpha1/deployment/api.proto
    f"{DEPLOY}.DetermineVersionsRequest": [
        ("input", 1, "message", S, f"{DEPLOY}.PlanPluginInput"),
    ],
    f"{DEPLOY}.DetermineVersionsResponse": [
        ("versions", 1, "message", R, "model.ArtifactVersion"),
    ],
    f"{DEPLOY}.DetermineStrategyRequest": [
        ("input", 1, "message", S, f"{DEPLOY}.PlanPluginInput"),
    ],
    f"{DEPLOY}.DetermineStrategyResponse": [
        ("sync_strategy", 1, "enum", S, "model.SyncStrategy"),
        ("summary", 2, "string", S, None),
        ("unsupported", 3, "bool", S, None),
    ],
    f"{DEPLOY}.BuildPipelineSyncStagesRequest": [
        ("rollback", 1, "bool", S, None),
        ("stages", 2, "message", R, f"{DEPLOY}.BuildPipelineSyncStagesRequest.StageConfig"),
    ],
    f"{DEPLOY}.BuildPipelineSyncStagesRequest.StageConfig": [
        ("name", 2, "string", S, None),
        ("desc", 3, "string", S, None),
        ("timeout", 4, "string", S, None),
        ("index", 5, "int32", S, None),
        ("config", 6, "bytes", S, None),
    ],
    f"{DEPLOY}.BuildPipelineSyncStagesResponse": [
        ("stages", 1, "message", R, "model.PipelineStage"),
    ],
    f"{DEPLOY}.BuildQuickSyncStagesRequest": [
        ("rollback", 1, "bool", S, None),
    ],
    f"{DEPLOY}.BuildQuickSyncStagesResponse": [
        ("stages", 1, "message", R, "model.PipelineStage"),
    ],
    f"{DEPLOY}.FetchDefinedStagesRequest": [],
    f"{DEPLOY}.FetchDefinedStagesResponse": [
        ("stages", 1, "string", R, None),
    ],
    f"{DEPLOY}.ExecuteStageRequest": [
        ("input", 1, "message", S, f"{DEPLOY}.ExecutePluginInput"),
    ],
    f"{DEPLOY}.ExecuteStageResponse": [
        ("status", 1, "enum", S, "model.StageStatus"),
        ("message", 2, "string", S, None),
    ],
    f"{DEPLOY}.PlanPluginInput": [
        ("deployment", 1, "message", S, "model.Deployment"),
        ("running_deployment_source", 2, "message", S, DEPLOYMENT_SOURCE),
        ("target_deployment_source", 3, "message", S, DEPLOYMENT_SOURCE),
    ],
    f"{DEPLOY}.ExecutePluginInput": [
        ("deployment", 1, "message", S, "model.Deployment"),
        ("stage", 2, "message", S, "model.PipelineStage"),
        ("stage_config", 3, "bytes", S, None),
        ("running_deployment_source", 4, "message", S, DEPLOYMENT_SOURCE),
        ("target_deployment_source", 5, "message", S, DEPLOYMENT_SOURCE),
    ],
    # ---- pkg/plugin/api/v1alpha1/livestate/api.proto
    f"{LIVE}.GetLivestateRequest": [
        ("piped_id", 1, "string", S, None),
        ("application_id", 2, "string", S, None),
        ("application_name", 3, "string", S, None),
        ("deploy_source", 4, "message", S, DEPLOYMENT_SOURCE),
        ("deploy_targets", 5, "string", R, None),
    ],
    f"{LIVE}.GetLivestateResponse": [
        ("application_live_state", 1, "message", S, "model.ApplicationLiveState"),
        ("sync_state", 2, "message", S, "model.ApplicationSyncState"),
    ],
    # ---- pkg/plugin/api/v1alpha1/planpreview/api.proto
    f"{PREVIEW}.GetPlanPreviewRequest": [
        ("application_id", 1, "string", S, None),
        ("deploy_targets", 2, "string", R, None),
        ("target_deployment_source", 3, "message", S, DEPLOYMENT_SOURCE),
        ("running_deployment_source", 4, "message", S, DEPLOYMENT_SOURCE),
        ("application_name", 5, "string", S, None),
        ("piped_id", 6, "string", S, None),
    ],
    f"{PREVIEW}.GetPlanPreviewResponse": [
        ("results", 1, "message", R, f"{PREVIEW}.PlanPreviewResult"),
    ],
    f"{PREVIEW}.PlanPreviewResult": [
        ("deploy_target", 1, "string", S, None),
        ("summary", 2, "string", S, None),
        ("no_change", 3, "bool", S, None),
        ("details", 4, "bytes", S, None),
        ("diff_language", 5, "string", S, None),
    ],
    # ---- pkg/plugin/pipedservice/service.proto
    f"{PIPED}.DecryptSecretRequest": [
        ("secret", 1, "string", S, None),
    ],
    f"{PIPED}.DecryptSecretResponse": [
        ("decrypted_secret", 1, "string", S, None),
    ],
    f"{PIPED}.InstallToolRequest": [
        ("name", 1, "string", S, None),
        ("version", 2, "string", S, None),
        ("install_script", 3, "string", S, None),
    ],
    f"{PIPED}.InstallToolResponse": [
        ("installed_path", 1, "string", S, None),
    ],
    f"{PIPED}.ReportStageLogsRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
        ("retried_count", 3, "int32", S, None),
        ("blocks", 4, "message", R, "model.LogBlock"),
    ],
    f"{PIPED}.ReportStageLogsResponse": [],
    f"{PIPED}.ReportStageLogsFromLastCheckpointRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
        ("retried_count", 3, "int32", S, None),
        ("blocks", 4, "message", R, "model.LogBlock"),
        ("completed", 5, "bool", S, None),
    ],
    f"{PIPED}.ReportStageLogsFromLastCheckpointResponse": [],
    f"{PIPED}.GetStageMetadataRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
        ("key", 3, "string", S, None),
    ],
    f"{PIPED}.GetStageMetadataResponse": [
        ("value", 1, "string", S, None),
        ("found", 2, "bool", S, None),
    ],
    f"{PIPED}.PutStageMetadataRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
        ("key", 3, "string", S, None),
        ("value", 4, "string", S, None),
    ],
    f"{PIPED}.PutStageMetadataResponse": [],
    f"{PIPED}.PutStageMetadataMultiRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
        ("metadata", 3, "map", M, "string -> string"),
    ],
    f"{PIPED}.PutStageMetadataMultiResponse": [],
    f"{PIPED}.GetDeploymentPluginMetadataRequest": [
        ("deployment_id", 1, "string", S, None),
        ("plugin_name", 2, "string", S, None),
        ("key", 3, "string", S, None),
    ],
    f"{PIPED}.GetDeploymentPluginMetadataResponse": [
        ("value", 1, "string", S, None),
        ("found", 2, "bool", S, None),
    ],
    f"{PIPED}.PutDeploymentPluginMetadataRequest": [
        ("deployment_id", 1, "string", S, None),
        ("plugin_name", 2, "string", S, None),
        ("key", 3, "string", S, None),
        ("value", 4, "string", S, None),
    ],
    f"{PIPED}.PutDeploymentPluginMetadataResponse": [],
    f"{PIPED}.PutDeploymentPluginMetadataMultiRequest": [
        ("deployment_id", 1, "string", S, None),
        ("plugin_name", 2, "string", S, None),
        ("metadata", 3, "map", M, "string -> string"),
    ],
    f"{PIPED}.PutDeploymentPluginMetadataMultiResponse": [],
    f"{PIPED}.GetDeploymentSharedMetadataRequest": [
        ("deployment_id", 1, "string", S, None),
        ("key", 2, "string", S, None),
    ],
    f"{PIPED}.GetDeploymentSharedMetadataResponse": [
        ("value", 1, "string", S, None),
        ("found", 2, "bool", S, None),
    ],
    f"{PIPED}.ListStageCommandsRequest": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
    ],
    f"{PIPED}.ListStageCommandsResponse": [
        ("commands", 1, "message", R, "model.Command"),
    ],
    f"{PIPED}.GetApplicationSharedObjectRequest": [
        ("application_id", 1, "string", S, None),
        ("plugin_name", 2, "string", S, None),
        ("key", 3, "string", S, None),
    ],
    f"{PIPED}.GetApplicationSharedObjectResponse": [
        ("object", 1, "bytes", S, None),
    ],
    f"{PIPED}.PutApplicationSharedObjectRequest": [
        ("application_id", 1, "string", S, None),
        ("plugin_name", 2, "string", S, None),
        ("key", 3, "string", S, None),
        ("object", 4, "bytes", S, None),
    ],
    f"{PIPED}.PutApplicationSharedObjectResponse": [],
    # ---- pkg/model/common.proto
    "model.ApplicationGitPath": [
        ("repo", 1, "message", S, "model.ApplicationGitRepository"),
        ("path", 2, "string", S, None),
        ("config_filename", 4, "string", S, None),
        ("url", 5, "string", S, None),
    ],
    "model.ApplicationGitRepository": [
        ("id", 1, "string", S, None),
        ("remote", 2, "string", S, None),
        ("branch", 3, "string", S, None),
    ],
    "model.ArtifactVersion": [
        ("kind", 1, "enum", S, "model.ArtifactVersion.Kind"),
        ("version", 2, "string", S, None),
        ("name", 3, "string", S, None),
        ("url", 4, "string", S, None),
    ],
    # ---- pkg/model/deployment.proto
    "model.Deployment": [
        ("id", 1, "string", S, None),
        ("application_id", 2, "string", S, None),
        ("application_name", 3, "string", S, None),
        ("piped_id", 5, "string", S, None),
        ("project_id", 6, "string", S, None),
        ("kind", 7, "enum", S, "model.ApplicationKind"),
        ("git_path", 8, "message", S, "model.ApplicationGitPath"),
        ("cloud_provider", 9, "string", S, None),
        ("platform_provider", 11, "string", S, None),
        ("deploy_targets_by_plugin", 12, "map", M, "string -> model.DeployTargets"),
        ("labels", 10, "map", M, "string -> string"),
        ("trigger", 20, "message", S, "model.DeploymentTrigger"),
        ("summary", 22, "string", S, None),
        ("versions", 24, "message", R, "model.ArtifactVersion"),
        ("running_commit_hash", 21, "string", S, None),
        ("running_config_filename", 60, "string", S, None),
        ("status", 30, "enum", S, "model.DeploymentStatus"),
        ("status_reason", 31, "string", S, None),
        ("stages", 32, "message", R, "model.PipelineStage"),
        ("metadata", 33, "map", M, "string -> string"),
        ("metadata_v2", 34, "message", S, "model.DeploymentMetadata"),
        ("deployment_chain_id", 40, "string", S, None),
        ("deployment_chain_block_index", 41, "uint32", S, None),
        ("deployment_trace_commit_hash", 50, "string", S, None),
        ("completed_at", 100, "int64", S, None),
        ("created_at", 101, "int64", S, None),
        ("updated_at", 102, "int64", S, None),
    ],
    "model.DeployTargets": [
        ("deploy_targets", 1, "string", R, None),
    ],
    "model.DeploymentTrigger": [
        ("commit", 1, "message", S, "model.Commit"),
        ("commander", 2, "string", S, None),
        ("timestamp", 3, "int64", S, None),
        ("sync_strategy", 4, "enum", S, "model.SyncStrategy"),
        ("strategy_summary", 5, "string", S, None),
    ],
    "model.PipelineStage": [
        ("id", 1, "string", S, None),
        ("name", 2, "string", S, None),
        ("desc", 3, "string", S, None),
        ("index", 4, "int32", S, None),
        ("predefined", 5, "bool", S, None),
        ("requires", 6, "string", R, None),
        ("visible", 7, "bool", S, None),
        ("status", 8, "enum", S, "model.StageStatus"),
        ("status_reason", 9, "string", S, None),
        ("metadata", 10, "map", M, "string -> string"),
        ("retried_count", 11, "int32", S, None),
        ("rollback", 12, "bool", S, None),
        ("completed_at", 13, "int64", S, None),
        ("created_at", 14, "int64", S, None),
        ("updated_at", 15, "int64", S, None),
        ("available_operation", 16, "enum", S, "model.ManualOperation"),
        ("authorized_operators", 17, "string", R, None),
    ],
    "model.Commit": [
        ("hash", 1, "string", S, None),
        ("message", 2, "string", S, None),
        ("author", 3, "string", S, None),
        ("branch", 4, "string", S, None),
        ("pull_request", 5, "int64", S, None),
        ("url", 6, "string", S, None),
        ("created_at", 14, "int64", S, None),
    ],
    "model.DeploymentMetadata": [
        ("shared", 1, "message", S, "model.DeploymentMetadata.KeyValues"),
        ("plugins", 2, "map", M, "string -> model.DeploymentMetadata.KeyValues"),
    ],
    "model.DeploymentMetadata.KeyValues": [
        ("keyValues", 1, "map", M, "string -> string"),
    ],
    # ---- pkg/model/command.proto
    "model.Command": [
        ("id", 1, "string", S, None),
        ("piped_id", 2, "string", S, None),
        ("application_id", 3, "string", S, None),
        ("deployment_id", 4, "string", S, None),
        ("stage_id", 5, "string", S, None),
        ("commander", 6, "string", S, None),
        ("project_id", 7, "string", S, None),
        ("status", 20, "enum", S, "model.CommandStatus"),
        ("metadata", 21, "map", M, "string -> string"),
        ("handled_at", 22, "int64", S, None),
        ("type", 30, "enum", S, "model.Command.Type"),
        ("sync_application", 31, "message", S, "model.Command.SyncApplication"),
        ("update_application_config", 32, "message", S, "model.Command.UpdateApplicationConfig"),
        ("cancel_deployment", 33, "message", S, "model.Command.CancelDeployment"),
        ("approve_stage", 34, "message", S, "model.Command.ApproveStage"),
        ("build_plan_preview", 35, "message", S, "model.Command.BuildPlanPreview"),
        ("chain_sync_application", 36, "message", S, "model.Command.ChainSyncApplication"),
        ("skip_stage", 37, "message", S, "model.Command.SkipStage"),
        ("restart_piped", 38, "message", S, "model.Command.RestartPiped"),
        ("created_at", 100, "int64", S, None),
        ("updated_at", 101, "int64", S, None),
    ],
    "model.Command.SyncApplication": [
        ("application_id", 1, "string", S, None),
        ("sync_strategy", 2, "enum", S, "model.SyncStrategy"),
    ],
    "model.Command.UpdateApplicationConfig": [
        ("application_id", 1, "string", S, None),
        ("config_path", 2, "string", S, None),
        ("config", 3, "string", S, None),
    ],
    "model.Command.CancelDeployment": [
        ("deployment_id", 1, "string", S, None),
        ("force_rollback", 2, "bool", S, None),
        ("force_no_rollback", 3, "bool", S, None),
    ],
    "model.Command.ApproveStage": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
    ],
    "model.Command.BuildPlanPreview": [
        ("repository_id", 1, "string", S, None),
        ("head_branch", 2, "string", S, None),
        ("head_commit", 3, "string", S, None),
        ("base_branch", 4, "string", S, None),
        ("timeout", 5, "int64", S, None),
    ],
    "model.Command.ChainSyncApplication": [
        ("deployment_chain_id", 1, "string", S, None),
        ("block_index", 2, "uint32", S, None),
        ("application_id", 3, "string", S, None),
        ("sync_strategy", 4, "enum", S, "model.SyncStrategy"),
    ],
    "model.Command.SkipStage": [
        ("deployment_id", 1, "string", S, None),
        ("stage_id", 2, "string", S, None),
    ],
    "model.Command.RestartPiped": [
        ("piped_id", 1, "string", S, None),
    ],
    # ---- pkg/model/logblock.proto
    "model.LogBlock": [
        ("index", 1, "int64", S, None),
        ("log", 2, "string", S, None),
        ("severity", 3, "enum", S, "model.LogSeverity"),
        ("created_at", 14, "int64", S, None),
    ],
    # ---- pkg/model/application_live_state.proto
    "model.ApplicationLiveState": [
        ("resources", 1, "message", R, "model.ResourceState"),
        ("health_status", 2, "enum", S, "model.ApplicationLiveState.Status"),
    ],
    "model.ResourceState": [
        ("id", 1, "string", S, None),
        ("parent_ids", 2, "string", R, None),
        ("name", 3, "string", S, None),
        ("resource_type", 4, "string", S, None),
        ("resource_metadata", 5, "map", M, "string -> string"),
        ("health_status", 6, "enum", S, "model.ResourceState.HealthStatus"),
        ("health_description", 7, "string", S, None),
        ("deploy_target", 8, "string", S, None),
        ("plugin_name", 9, "string", S, None),
        ("created_at", 10, "int64", S, None),
        ("updated_at", 11, "int64", S, None),
    ],
    # ---- pkg/model/application.proto
    "model.ApplicationSyncState": [
        ("status", 1, "enum", S, "model.ApplicationSyncStatus"),
        ("short_reason", 2, "string", S, None),
        ("reason", 3, "string", S, None),
        ("head_deployment_id", 4, "string", S, None),
        ("timestamp", 5, "int64", S, None),
    ],
}

# Reserved field numbers, per message. Messages not listed here declare none.
RESERVED: dict[str, list[int]] = {
    f"{DEPLOY}.BuildPipelineSyncStagesRequest.StageConfig": [1],
    "model.Deployment": [4, 23],
    "model.ApplicationGitPath": [3],
}

# Fields marked ``[deprecated = true]`` upstream (kept: they are still on the wire).
DEPRECATED: dict[str, list[str]] = {
    "model.Deployment": ["kind", "cloud_provider", "platform_provider", "metadata"],
    "model.PipelineStage": ["predefined", "visible"],
    "model.ArtifactVersion": ["kind"],
}

ENUMS: dict[str, list[tuple[str, int]]] = {
    "model.ApplicationKind": [
        ("KUBERNETES", 0), ("TERRAFORM", 1), ("LAMBDA", 3), ("CLOUDRUN", 4), ("ECS", 5),
    ],
    "model.SyncStrategy": [("AUTO", 0), ("QUICK_SYNC", 1), ("PIPELINE", 2)],
    "model.ArtifactVersion.Kind": [
        ("UNKNOWN", 0), ("CONTAINER_IMAGE", 1), ("S3_OBJECT", 2), ("GIT_SOURCE", 3),
        ("TERRAFORM_MODULE", 4),
    ],
    "model.DeploymentStatus": [
        ("DEPLOYMENT_PENDING", 0), ("DEPLOYMENT_PLANNED", 1), ("DEPLOYMENT_RUNNING", 2),
        ("DEPLOYMENT_ROLLING_BACK", 3), ("DEPLOYMENT_SUCCESS", 4), ("DEPLOYMENT_FAILURE", 5),
        ("DEPLOYMENT_CANCELLED", 6),
    ],
    "model.StageStatus": [
        ("STAGE_NOT_STARTED_YET", 0), ("STAGE_RUNNING", 1), ("STAGE_SUCCESS", 2),
        ("STAGE_FAILURE", 3), ("STAGE_CANCELLED", 4), ("STAGE_SKIPPED", 5), ("STAGE_EXITED", 6),
    ],
    "model.ManualOperation": [
        ("MANUAL_OPERATION_UNKNOWN", 0), ("MANUAL_OPERATION_SKIP", 1),
        ("MANUAL_OPERATION_APPROVE", 2), ("MANUAL_OPERATION_NONE", 3),
    ],
    "model.CommandStatus": [
        ("COMMAND_NOT_HANDLED_YET", 0), ("COMMAND_SUCCEEDED", 1), ("COMMAND_FAILED", 2),
        ("COMMAND_TIMEOUT", 3),
    ],
    "model.Command.Type": [
        ("SYNC_APPLICATION", 0), ("UPDATE_APPLICATION_CONFIG", 1), ("CANCEL_DEPLOYMENT", 2),
        ("APPROVE_STAGE", 3), ("BUILD_PLAN_PREVIEW", 4), ("CHAIN_SYNC_APPLICATION", 5),
        ("SKIP_STAGE", 6), ("RESTART_PIPED", 7),
    ],
    "model.LogSeverity": [("INFO", 0), ("SUCCESS", 1), ("ERROR", 2)],
    "model.ApplicationLiveState.Status": [("UNKNOWN", 0), ("HEALTHY", 1), ("OTHER", 2)],
    "model.ResourceState.HealthStatus": [("UNKNOWN", 0), ("HEALTHY", 1), ("UNHEALTHY", 2)],
    "model.ApplicationSyncStatus": [
        ("UNKNOWN", 0), ("SYNCED", 1), ("DEPLOYING", 2), ("OUT_OF_SYNC", 3), ("INVALID_CONFIG", 4),
    ],
}

# Full service name -> [(method, input full name, output full name)]; all methods are unary.
SERVICES: dict[str, list[tuple[str, str, str]]] = {
    f"{DEPLOY}.DeploymentService": [
        (m, f"{DEPLOY}.{m}Request", f"{DEPLOY}.{m}Response")
        for m in (
            "FetchDefinedStages",
            "DetermineVersions",
            "DetermineStrategy",
            "BuildPipelineSyncStages",
            "BuildQuickSyncStages",
            "ExecuteStage",
        )
    ],
    f"{LIVE}.LivestateService": [
        ("GetLivestate", f"{LIVE}.GetLivestateRequest", f"{LIVE}.GetLivestateResponse"),
    ],
    f"{PREVIEW}.PlanPreviewService": [
        ("GetPlanPreview", f"{PREVIEW}.GetPlanPreviewRequest", f"{PREVIEW}.GetPlanPreviewResponse"),
    ],
    f"{PIPED}.PluginService": [
        (m, f"{PIPED}.{m}Request", f"{PIPED}.{m}Response")
        for m in (
            "InstallTool",
            "ReportStageLogs",
            "ReportStageLogsFromLastCheckpoint",
            "GetStageMetadata",
            "PutStageMetadata",
            "PutStageMetadataMulti",
            "GetDeploymentPluginMetadata",
            "PutDeploymentPluginMetadata",
            "PutDeploymentPluginMetadataMulti",
            "GetDeploymentSharedMetadata",
            "ListStageCommands",
            "GetApplicationSharedObject",
            "PutApplicationSharedObject",
        )
    ],
}

# All upstream files in the closure are proto3 (affects packing and field presence).
SYNTAX = "proto3"
