"""Every RPC, default and error path of the generated servicers, over real gRPC on 127.0.0.1."""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
import typing as t

import attrs
import grpc
import pytest
import yaml

import pipeplug

from pipeplug._gen.model import common_pb2
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import common_pb2 as source_pb
from pipeplug._gen.plugin import deployment_pb2 as pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug._gen.plugin import livestate_pb2
from pipeplug._gen.plugin import planpreview_pb2

from pipeplug.testing import PluginCallError

from .support import load_test_app
from .support import served

EVERY_CONFIG = {
    "config": {"greeting": "hi"},
    "deployTargets": [
        {"name": "dev", "labels": {"env": "dev"}, "config": {"region": "eu"}},
        {"name": "prod", "config": {"region": "us"}},
    ],
}


def deployment(commit_message: str = "update", targets: tuple[str, ...] = ("dev", "prod")) -> model_pb.Deployment:
    return model_pb.Deployment(
        id="dep-1",
        application_id="app-1",
        application_name="demo",
        piped_id="piped-1",
        project_id="proj",
        deploy_targets_by_plugin={"every": model_pb.DeployTargets(deploy_targets=list(targets))},
        trigger=model_pb.DeploymentTrigger(
            commit=model_pb.Commit(hash="abc123", message=commit_message, author="alice", branch="main"), timestamp=1
        ),
    )


def source(tmp_path, commit: str = "abc123", spec: dict | None = None) -> source_pb.DeploymentSource:
    config = {"apiVersion": "pipecd.dev/v1beta1", "kind": "Application", "spec": {"plugins": {"every": spec or {"versionTag": "v7"}}}}
    return source_pb.DeploymentSource(
        application_directory=str(tmp_path),
        commit_hash=commit,
        application_config=yaml.safe_dump(config).encode(),
        application_config_filename="app.pipecd.yaml",
    )


def execute(stubs, name: str, with_: object = None, *, tmp_path=None, stage_id: str = "stage-1", running: bool = False, **kw):
    inp = pb.ExecutePluginInput(
        deployment=kw.pop("dep", None) or deployment(),
        stage=model_pb.PipelineStage(id=stage_id, name=name, index=0),
        stage_config=b"" if with_ is None else (with_ if isinstance(with_, bytes) else json.dumps(with_).encode()),
    )
    if tmp_path is not None:
        inp.target_deployment_source.CopyFrom(source(tmp_path))
        if running:
            inp.running_deployment_source.CopyFrom(source(tmp_path, commit="old"))
    return stubs.deployment.ExecuteStage(pb.ExecuteStageRequest(input=inp), **kw)


@pytest.fixture
def every(tmp_path):
    module = load_test_app("every_decorator")
    config = {**EVERY_CONFIG, "config": {"greeting": "hi", "stateDir": str(tmp_path)}}
    with served(module.app, config) as stubs:
        yield stubs


@pytest.fixture
def stage_only():
    module = load_test_app("stage_only")
    with served(module.app) as stubs:
        yield stubs


# -- registered handlers ------------------------------------------------------


def test_fetch_defined_stages_lists_every_stage(every):
    stages = every.deployment.FetchDefinedStages(pb.FetchDefinedStagesRequest()).stages
    assert list(stages) == ["EVERY_SYNC", "EVERY_ROLLBACK", "ASYNC_SLEEP", "SYNC_SLEEP", "OUTCOME", "RAISE", "BAD_RETURN"]


def test_startup_hook_ran_before_serving(every, tmp_path):
    with open(tmp_path / "startup.json") as f:
        assert json.load(f) == {"targets": ["dev", "prod"], "greeting": "hi"}


def test_versions_from_app_spec(every, tmp_path):
    inp = pb.PlanPluginInput(deployment=deployment(), target_deployment_source=source(tmp_path))
    versions = every.deployment.DetermineVersions(pb.DetermineVersionsRequest(input=inp)).versions
    assert [(v.version, v.name, v.kind) for v in versions] == [("v7", "abc123", common_pb2.ArtifactVersion.GIT_SOURCE)]


def test_versions_bad_app_spec_names_the_field(every, tmp_path):
    inp = pb.PlanPluginInput(deployment=deployment(), target_deployment_source=source(tmp_path, spec={"versionTag": "v1", "tpyo": 1}))
    with pytest.raises(grpc.RpcError) as err:
        every.deployment.DetermineVersions(pb.DetermineVersionsRequest(input=inp))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.plugins.every.tpyo: unknown field (valid: versionTag)" in err.value.details()


@pytest.mark.parametrize(
    ("message", "running", "expected"),
    [
        ("update", False, (common_pb2.QUICK_SYNC, "first", False)),
        ("update", True, (common_pb2.PIPELINE, "", False)),
        ("no-opinion please", True, (0, "", True)),
    ],
)
def test_strategy(every, tmp_path, message, running, expected):
    inp = pb.PlanPluginInput(deployment=deployment(message), target_deployment_source=source(tmp_path))
    if running:
        inp.running_deployment_source.CopyFrom(source(tmp_path, "old"))
    res = every.deployment.DetermineStrategy(pb.DetermineStrategyRequest(input=inp))
    assert (res.sync_strategy, res.summary, res.unsupported) == expected


def test_pipeline_handler_gets_decoded_with_and_desc_is_copied(every):
    req = pb.BuildPipelineSyncStagesRequest(
        rollback=True,
        stages=[
            pb.BuildPipelineSyncStagesRequest.StageConfig(name="EVERY_SYNC", desc="first", index=2, config=b'{"a": 1}'),
            pb.BuildPipelineSyncStagesRequest.StageConfig(name="OUTCOME", desc="second", index=5, config=b"null"),
        ],
    )
    stages = every.deployment.BuildPipelineSyncStages(req).stages
    got = [(s.name, s.index, s.desc, s.rollback, dict(s.metadata)) for s in stages]
    assert got == [
        ("EVERY_SYNC", 2, "first", False, {"with": '{"a": 1}'}),
        ("OUTCOME", 5, "second", False, {"with": "{}"}),
        ("EVERY_ROLLBACK", 2, "first", True, {}),
    ]
    for s in stages:
        assert s.status == model_pb.STAGE_NOT_STARTED_YET and s.created_at > 0 and s.updated_at > 0
        assert s.available_operation == model_pb.MANUAL_OPERATION_NONE


def test_quick_sync_handler(every):
    stages = every.deployment.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest(rollback=True)).stages
    assert [(s.name, s.index, s.rollback, s.desc) for s in stages] == [("EVERY_SYNC", 0, False, "sync all"), ("EVERY_ROLLBACK", 0, True, "")]
    assert all(s.created_at > 0 and s.updated_at > 0 for s in stages)


def test_execute_injects_config_targets_spec_and_ctx(every, tmp_path):
    res = execute(every, "EVERY_SYNC", tmp_path=tmp_path, stage_id="s-42")
    assert (res.status, res.message) == (model_pb.STAGE_SUCCESS, "hi eu,us v7 s-42")


def test_execute_resolves_only_this_deployments_targets(every, tmp_path):
    res = execute(every, "EVERY_SYNC", tmp_path=tmp_path, dep=deployment(targets=("prod",)))
    assert res.message.startswith("hi us v7")


def test_execute_unknown_deploy_target_fails_clearly(every, tmp_path):
    res = execute(every, "EVERY_SYNC", tmp_path=tmp_path, dep=deployment(targets=("staging",)))
    assert res.status == model_pb.STAGE_FAILURE
    assert "deploy target 'staging' is not configured for plugin 'every' (configured: dev, prod)" in res.message


@pytest.mark.parametrize(("running", "status"), [(True, model_pb.STAGE_SUCCESS), (False, model_pb.STAGE_SKIPPED)])
def test_rollback_stage_returns_status(every, tmp_path, running, status):
    assert execute(every, "EVERY_ROLLBACK", tmp_path=tmp_path, running=running).status == status


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE", "CANCELLED", "SKIPPED", "EXITED"])
def test_every_status_can_be_returned(every, status):
    res = execute(every, "OUTCOME", {"status": status, "message": "m"})
    assert (model_pb.StageStatus.Name(res.status), res.message) == (f"STAGE_{status}", "m")


def test_livestate(every, tmp_path):
    req = livestate_pb2.GetLivestateRequest(application_id="app-1", deploy_source=source(tmp_path), deploy_targets=["prod"])
    res = every.livestate.GetLivestate(req)
    [resource] = res.application_live_state.resources
    assert (resource.id, resource.deploy_target, resource.plugin_name) == ("prod/app", "prod", "every")
    assert resource.created_at > 0 and resource.updated_at > 0
    assert res.HasField("sync_state") and res.sync_state.timestamp > 0
    assert (res.sync_state.status, res.sync_state.reason) == (3, "commit abc123")


def test_plan_preview(every, tmp_path):
    req = planpreview_pb2.GetPlanPreviewRequest(application_id="a", deploy_targets=["dev", "prod"], target_deployment_source=source(tmp_path))
    results = every.planpreview.GetPlanPreview(req).results
    assert [(r.deploy_target, r.summary, r.no_change, r.details) for r in results] == [
        ("dev", "would deploy to dev", True, b"+ a\n"),
        ("prod", "would deploy to prod", True, b"+ a\n"),
    ]


def test_no_deploy_targets_is_refused_before_the_handler_runs(tmp_path):
    """The Go SDK refuses such calls (upstream #7115/#7116); an empty list used to reach the handler."""
    app = load_test_app("every_decorator").app
    targets = [{"name": "dev", "config": {"region": "eu"}}]
    with app.test_client(config={"greeting": "hi", "stateDir": str(tmp_path)}, deploy_targets=targets) as client:
        call = client.start_stage("EVERY_SYNC", deploy_targets=[])
        with pytest.raises(PluginCallError) as err:
            call.result()
        livestate = pytest.raises(PluginCallError, client.get_livestate, deploy_targets=[])
        preview = pytest.raises(PluginCallError, client.get_plan_preview, deploy_targets=[])
        lines = client.piped.log_lines(call.deployment_id, call.stage_id)
        assert client.piped.log_completed(call.deployment_id, call.stage_id)
        assert client.execute_stage("EVERY_SYNC").status == pipeplug.StageStatus.SUCCESS  # with its targets it runs
    for rpc, info in (("ExecuteStage", err), ("GetLivestate", livestate), ("GetPlanPreview", preview)):
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details.startswith(
            f"no deploy targets provided: plugin 'every' declares a deploy-target config, but piped sent {rpc} no deploy target for it;"
        )
    assert [severity for severity, text in lines if text == err.value.details] == ["ERROR"]


def test_a_plugin_without_deploy_target_config_runs_without_targets(stage_only):
    res = execute(stage_only, "NOOP", dep=deployment(targets=()))
    assert res.status == model_pb.STAGE_SUCCESS, res.message


# -- results and errors -------------------------------------------------------


def test_exception_is_failure_and_server_survives(every, caplog):
    res = execute(every, "RAISE", stage_id="s-raise")
    assert (res.status, res.message) == (model_pb.STAGE_FAILURE, "RuntimeError: boom from RAISE")
    logged = [r for r in caplog.records if r.exc_info and "boom from RAISE" in str(r.exc_info[1])]
    assert logged and "stage RAISE (stage id s-raise, deployment dep-1)" in logged[0].getMessage()
    assert execute(every, "OUTCOME", {}).status == model_pb.STAGE_SUCCESS


def test_bad_return_value_is_failure_naming_the_shapes(every):
    res = execute(every, "BAD_RETURN")
    assert res.status == model_pb.STAGE_FAILURE
    assert "returned 42; expected None (success), a pipeplug.StageStatus" in res.message


@pytest.mark.parametrize("status", ["RUNNING", "NOT_STARTED_YET"])
def test_a_non_final_status_is_failure_naming_the_handler(every, status):
    """Real piped parks the deployment on a non-final status; the Go SDK fails the stage instead, and so does pipeplug."""
    res = execute(every, "OUTCOME", {"status": status, "message": "still going"})
    assert res.status == model_pb.STAGE_FAILURE
    assert res.message == (
        f"stage OUTCOME handler outcome() returned StageResult with status StageStatus.{status}, which does not end a stage "
        "(piped would leave the deployment RUNNING); return SUCCESS, FAILURE, SKIPPED, EXITED or CANCELLED. Its message: still going"
    )


def test_list_hooks_returning_none_name_the_hook():
    app = pipeplug.App("forgetful")
    app.stage("A")(lambda: None)
    for hook in ("versions", "pipeline_stages", "quick_sync_stages", "plan_preview"):
        getattr(app, hook)(lambda: None)
    with served(app) as stubs:
        inp = pb.PlanPluginInput(deployment=model_pb.Deployment(id="d"))
        calls = {
            "versions": lambda: stubs.deployment.DetermineVersions(pb.DetermineVersionsRequest(input=inp)),
            "pipeline_stages": lambda: stubs.deployment.BuildPipelineSyncStages(pb.BuildPipelineSyncStagesRequest()),
            "quick_sync_stages": lambda: stubs.deployment.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest()),
            "plan_preview": lambda: stubs.planpreview.GetPlanPreview(planpreview_pb2.GetPlanPreviewRequest()),
        }
        for hook, call in calls.items():
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert err.value.details().startswith(f"@app.{hook} handler test_list_hooks_returning_none_name_the_hook.<locals>.<lambda>() returned None;")
            assert "a missing `return`? return [] for none" in err.value.details()


def test_invalid_options_name_the_field(every):
    res = execute(every, "ASYNC_SLEEP", {"duration": 5})
    assert (res.status, res.message) == (model_pb.STAGE_FAILURE, 'stage ASYNC_SLEEP: with.duration: expected a duration such as "30s", got 5')
    res = execute(every, "ASYNC_SLEEP", {})
    assert res.message == "stage ASYNC_SLEEP: with.duration: required field is missing"
    res = execute(every, "ASYNC_SLEEP", {"duration": "1s", "durration": "2s"})
    assert res.message == 'stage ASYNC_SLEEP: with.durration: unknown option; did you mean "duration"?'
    res = execute(every, "ASYNC_SLEEP", b"{not json")
    assert res.message.startswith("stage ASYNC_SLEEP: with: not valid JSON")


def test_unknown_stage_lists_served_stages(every):
    res = execute(every, "K8S_SYNC")
    assert res.status == model_pb.STAGE_FAILURE
    assert res.message == (
        "stage 'K8S_SYNC' is not served by plugin 'every'; it serves: "
        "EVERY_SYNC, EVERY_ROLLBACK, ASYNC_SLEEP, SYNC_SLEEP, OUTCOME, RAISE, BAD_RETURN"
    )
    assert execute(every, "EVERY_SINC").message.startswith("stage 'EVERY_SINC' is not served by plugin 'every' (did you mean 'EVERY_SYNC'?); it serves: ")


@pytest.mark.parametrize(
    ("call", "request_", "field"),
    [
        ("ExecuteStage", pb.ExecuteStageRequest(), "ExecuteStageRequest.input"),
        ("ExecuteStage", pb.ExecuteStageRequest(input=pb.ExecutePluginInput(stage=model_pb.PipelineStage(name="OUTCOME"))), "ExecuteStageRequest.input.deployment"),
        ("ExecuteStage", pb.ExecuteStageRequest(input=pb.ExecutePluginInput(deployment=model_pb.Deployment(id="d"))), "ExecuteStageRequest.input.stage"),
        ("DetermineVersions", pb.DetermineVersionsRequest(), "DetermineVersionsRequest.input"),
        ("DetermineStrategy", pb.DetermineStrategyRequest(input=pb.PlanPluginInput()), "DetermineStrategyRequest.input.deployment"),
    ],
)
def test_missing_input_is_invalid_argument(every, call, request_, field):
    with pytest.raises(grpc.RpcError) as err:
        getattr(every.deployment, call)(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == f"{field} is required but was not set"


@pytest.mark.parametrize("stage", ["ASYNC_SLEEP", "SYNC_SLEEP"])
def test_cancellation_reaches_async_and_sync_handlers(every, tmp_path, stage):
    inp = pb.ExecutePluginInput(deployment=deployment(), stage=model_pb.PipelineStage(id=f"c-{stage}", name=stage), stage_config=b'{"duration": "30s"}')
    call = every.deployment.ExecuteStage.future(pb.ExecuteStageRequest(input=inp))
    time.sleep(0.5)
    started = time.monotonic()
    call.cancel()
    marker = tmp_path / f"cancelled-c-{stage}"
    deadline = time.monotonic() + 5
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == ("async" if stage == "ASYNC_SLEEP" else "sync")
    assert time.monotonic() - started < 2
    assert execute(every, "OUTCOME", {}).status == model_pb.STAGE_SUCCESS


def test_sync_and_async_stages_run_concurrently(every):
    results = []

    def run(stage: str) -> None:
        results.append(execute(every, stage, {"duration": "0.5s"}).status)

    threads = [threading.Thread(target=run, args=(s,)) for s in ("ASYNC_SLEEP", "SYNC_SLEEP") * 10]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert results == [model_pb.STAGE_SUCCESS] * 20
    assert time.monotonic() - started < 4  # 20 half-second stages, not run one by one


# -- defaults -----------------------------------------------------------------


def test_defaults_for_a_stage_only_plugin(stage_only):
    d = stage_only.deployment
    assert list(d.FetchDefinedStages(pb.FetchDefinedStagesRequest()).stages) == ["NOOP", "NOOP_ROLLBACK", "NOOP_QUICK"]
    inp = pb.PlanPluginInput(deployment=deployment())
    assert list(d.DetermineVersions(pb.DetermineVersionsRequest(input=inp)).versions) == []
    strategy = d.DetermineStrategy(pb.DetermineStrategyRequest(input=inp))
    assert strategy.unsupported is True


def test_default_pipeline_adds_rollback_at_a_requested_index(stage_only):
    req = pb.BuildPipelineSyncStagesRequest(
        rollback=True,
        stages=[
            pb.BuildPipelineSyncStagesRequest.StageConfig(name="NOOP", desc="a", index=3),
            pb.BuildPipelineSyncStagesRequest.StageConfig(name="NOOP", desc="b", index=1),
        ],
    )
    stages = stage_only.deployment.BuildPipelineSyncStages(req).stages
    assert [(s.name, s.index, s.desc, s.rollback) for s in stages] == [("NOOP", 3, "a", False), ("NOOP", 1, "b", False), ("NOOP_ROLLBACK", 1, "b", True)]
    for s in stages:
        assert s.status == model_pb.STAGE_NOT_STARTED_YET and s.created_at > 0 and s.updated_at > 0
        assert s.available_operation == model_pb.MANUAL_OPERATION_NONE and s.id == ""
    req.rollback = False
    assert [s.name for s in stage_only.deployment.BuildPipelineSyncStages(req).stages] == ["NOOP", "NOOP"]


def test_default_quick_sync(stage_only):
    stages = stage_only.deployment.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest(rollback=True)).stages
    assert [(s.name, s.index, s.rollback) for s in stages] == [("NOOP_QUICK", 0, False), ("NOOP_ROLLBACK", 0, True)]
    stages = stage_only.deployment.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest(rollback=False)).stages
    assert [s.name for s in stages] == ["NOOP_QUICK"]


def test_quick_sync_default_is_empty_without_quick_sync_stages():
    import pipeplug

    app = pipeplug.App("bare")
    app.stage("ONLY")(lambda: None)
    with served(app) as stubs:
        assert list(stubs.deployment.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest(rollback=True)).stages) == []


def test_unregistered_services_are_unimplemented(stage_only):
    with pytest.raises(grpc.RpcError) as err:
        stage_only.livestate.GetLivestate(livestate_pb2.GetLivestateRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:
        stage_only.planpreview.GetPlanPreview(planpreview_pb2.GetPlanPreviewRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_bad_pipeline_plan_is_refused_with_reason():
    import pipeplug

    app = pipeplug.App("badplan")
    app.stage("A")(lambda: None)

    @app.pipeline_stages
    def plan(stages):
        return [pipeplug.PlannedStage(name="A", index=99)]

    with served(app) as stubs:
        req = pb.BuildPipelineSyncStagesRequest(stages=[pb.BuildPipelineSyncStagesRequest.StageConfig(name="A", index=0)])
        with pytest.raises(grpc.RpcError) as err:
            stubs.deployment.BuildPipelineSyncStages(req)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "plan(): real piped would fail the plan: BuildPipelineSyncStages stage 0 (A) has index 99, which was not requested (requested: [0])" in err.value.details()


@pytest.mark.parametrize(
    ("status", "severity"), [("SUCCESS", "SUCCESS"), ("EXITED", "INFO"), ("SKIPPED", "INFO"), ("FAILURE", "ERROR")]
)
def test_result_message_reaches_the_stage_log(status, severity):
    """piped never shows ExecuteStageResponse.message, so every result message is logged."""
    app = load_test_app("every_decorator").app
    with app.test_client(deploy_targets=[{"name": "dev", "config": {"region": "eu"}}]) as client:
        run = client.execute_stage("OUTCOME", {"status": status, "message": "enough"})
    assert run.status.name == status
    assert (severity, "enough") in run.logs
    assert run.log_completed


# -- options reuse --------------------------------------------------------------------------------


@attrs.frozen
class FrozenOptions:
    names: tuple[str, ...] = ()
    pause: datetime.timedelta = datetime.timedelta(0)
    mode: t.Literal["fast", "safe"] = "fast"


@attrs.define
class MutableOptions:
    names: list[str] = attrs.Factory(list)


@attrs.frozen
class FrozenHoldingAList:
    names: list[str] = attrs.Factory(list)


def test_immutable_options_are_structured_once_per_config_and_others_every_call() -> None:
    app = pipeplug.App("reuse")
    seen: dict[str, list[t.Any]] = {"FROZEN": [], "MUTABLE": [], "FROZEN_LIST": []}

    @app.stage("FROZEN")
    def frozen(options: FrozenOptions) -> None:
        seen["FROZEN"].append(options)

    @app.stage("MUTABLE")
    def mutable(options: MutableOptions) -> None:
        options.names.append("changed by the handler")
        seen["MUTABLE"].append(options)

    @app.stage("FROZEN_LIST")
    def frozen_list(options: FrozenHoldingAList) -> None:
        seen["FROZEN_LIST"].append(options)

    with app.test_client() as client:
        for name in ("FROZEN", "FROZEN", "MUTABLE", "MUTABLE", "FROZEN_LIST", "FROZEN_LIST"):
            assert client.execute_stage(name, {"names": ["a"]}).status == pipeplug.StageStatus.SUCCESS
        assert client.execute_stage("FROZEN", {"names": ["b"], "pause": "1s"}).status == pipeplug.StageStatus.SUCCESS
        bad = client.execute_stage("FROZEN", {"names": ["a"], "mode": "reckless"})
    first, again, other = seen["FROZEN"]
    assert first is again and first == FrozenOptions(names=("a",))
    assert other == FrozenOptions(names=("b",), pause=datetime.timedelta(seconds=1))
    # a handler may change a mutable options object: every call gets its own
    assert [m.names for m in seen["MUTABLE"]] == [["a", "changed by the handler"]] * 2
    assert seen["FROZEN_LIST"][0] is not seen["FROZEN_LIST"][1]
    assert bad.status == pipeplug.StageStatus.FAILURE and "with.mode" in bad.message


# -- async API calls never awaited ---------------------------------------------------------------


def test_a_metadata_call_never_awaited_fails_the_stage_naming_it():
    import asyncio

    app = pipeplug.App("forgetful")

    @app.stage("FORGET")
    async def forget(ctx):
        ctx.stage_metadata.put("k", "v")

    @app.stage("FORGET_IN_SYNC")
    def forget_in_sync(ctx):
        ctx.deployment_metadata.put_many({"k": "v"})
        ctx.stage_metadata.get("k")
        return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, "all done")

    @app.stage("AWAITED")
    async def awaited(ctx):
        await ctx.stage_metadata.put("k", "v")
        await asyncio.gather(ctx.stage_metadata.get("k"), ctx.deployment_metadata.put("a", "b"))
        await asyncio.create_task(ctx.stage_metadata.put("t", "task"))

    @app.stage("SYNC_TWINS")
    def sync_twins(ctx):
        ctx.stage_metadata.put_sync("k", ctx.stage_metadata.get_sync("missing") or "v")

    with app.test_client() as client:
        forgot = client.execute_stage("FORGET")
        forgot_in_sync = client.execute_stage("FORGET_IN_SYNC")
        fine = client.execute_stage("AWAITED")
        twins = client.execute_stage("SYNC_TWINS")
    assert (forgot.status, forgot.metadata) == (pipeplug.StageStatus.FAILURE, {})
    assert forgot.message == (
        "stage FORGET handler test_a_metadata_call_never_awaited_fails_the_stage_naming_it.<locals>.forget(): "
        "ctx.stage_metadata.put(...) was never awaited, so it did nothing; add await (or, in a sync handler, call its _sync twin)"
    )
    assert ("ERROR", forgot.message) in forgot.logs
    assert forgot_in_sync.status == pipeplug.StageStatus.FAILURE
    assert "ctx.deployment_metadata.put_many(...) and ctx.stage_metadata.get(...) were never awaited" in forgot_in_sync.message
    assert forgot_in_sync.message.endswith(". all done")
    assert (fine.status, fine.metadata) == (pipeplug.StageStatus.SUCCESS, {"k": "v", "t": "task"})
    assert (twins.status, twins.metadata) == (pipeplug.StageStatus.SUCCESS, {"k": "v"})


# -- StageFailed: a handler fails its stage on purpose -------------------------------------------


@pytest.mark.parametrize("is_async", [True, False])
def test_stage_failed_ends_the_stage_with_its_message_and_no_traceback(is_async):
    import pipeplug

    app = pipeplug.App("fails")

    def check(ctx):
        ctx.log.info("checking")
        raise pipeplug.StageFailed("the canary's error rate is 7%, above 5%")

    async def check_async(ctx):
        check(ctx)

    app.stage("CHECK")(check_async if is_async else check)
    with app.test_client() as client:
        run = client.execute_stage("CHECK")
    assert run.status.name == "FAILURE"
    assert run.message == "the canary's error rate is 7%, above 5%"
    assert run.logs == [("INFO", "checking"), ("ERROR", "the canary's error rate is 7%, above 5%")]
    assert run.log_completed



def test_grpc_private_api_still_holds():
    """pipeplug.grpc_private reads grpc's generic handler table; a grpcio release that changes it must fail here."""
    from pipeplug.grpc_private import generic_handler_methods

    recorded: list[t.Any] = []

    class Recorder:  # what the generated add_*_to_server function sees as a server
        def add_generic_rpc_handlers(self, handlers):
            recorded.extend(handlers)

        def add_registered_method_handlers(self, service, handlers):
            pass

    servicer = deploy_grpc.DeploymentServiceServicer()
    deploy_grpc.add_DeploymentServiceServicer_to_server(servicer, Recorder())
    (handler,) = recorded
    found = generic_handler_methods(handler)
    assert found is not None, "grpc's generic handler no longer exposes its method table: update pipeplug/grpc_private.py"
    service, methods = found
    assert service == "grpc.plugin.deploymentapi.v1alpha1.DeploymentService"
    assert set(methods) == {m.name for m in pb.DESCRIPTOR.services_by_name["DeploymentService"].methods}
    assert all(callable(m.unary_unary) for m in methods.values())
    assert generic_handler_methods(object()) is None


def test_services_are_served_through_generic_handlers_only():
    """grpc.aio waits on one pending accept per registered method for every call it accepts (bench/README.md, performance tricks).

    So pipeplug registers every service's methods as a generic handler only: a
    generated ``add_*_to_server`` gives both, a table given only as registered
    methods is served generically too, and each method is guarded once.
    """
    from grpc_health.v1 import health
    from grpc_health.v1 import health_pb2_grpc

    from pipeplug.grpc_private import generic_handler_methods
    from pipeplug.guard import GenericOnly
    from pipeplug.guard import GuardedRegistrar

    class Recorder:  # what the generated add_*_to_server functions see as a server
        def __init__(self) -> None:
            self.generic: list[t.Any] = []
            self.registered: list[str] = []

        def add_generic_rpc_handlers(self, handlers):
            self.generic.extend(handlers)

        def add_registered_method_handlers(self, service, handlers):
            self.registered.append(service)

    server = Recorder()
    registrar = GuardedRegistrar(t.cast(t.Any, server))
    deploy_grpc.add_DeploymentServiceServicer_to_server(deploy_grpc.DeploymentServiceServicer(), registrar)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), GenericOnly(t.cast(t.Any, server)))  # type: ignore[arg-type]
    assert server.registered == []
    deployment, health_handler = server.generic
    service, methods = generic_handler_methods(deployment)  # type: ignore[misc]
    assert service == "grpc.plugin.deploymentapi.v1alpha1.DeploymentService"
    assert set(methods) == {m.name for m in pb.DESCRIPTOR.services_by_name["DeploymentService"].methods}
    assert all(m.unary_unary.__qualname__.startswith("GuardedRegistrar.guard") for m in methods.values()), "each method wrapped by the guard"
    assert health_handler.service_name() == "grpc.health.v1.Health"

    # A service that came only as registered methods is still served, generically and guarded.
    only_registered = {"Ping": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    registrar.add_registered_method_handlers("test.Pinger", only_registered)
    assert server.registered == []
    service, methods = generic_handler_methods(server.generic[-1])  # type: ignore[misc]
    assert (service, list(methods)) == ("test.Pinger", ["Ping"])
    assert methods["Ping"].unary_unary.__qualname__.startswith("GuardedRegistrar.guard")
