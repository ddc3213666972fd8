"""Resumable stages and approvals: example_app.py's WAIT and WAIT_APPROVAL, and ctx.wait_for_approval.

Plugins run as subprocesses started with piped's argv, against a FakePiped.
"""

from __future__ import annotations

import time
import typing as t

import grpc
import pytest

from pipeplug import ManualOperation
from pipeplug import StageStatus
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient
from tests.talkback_support import EXAMPLE_APP
from tests.talkback_support import FAST
from tests.talkback_support import client  # noqa: F401 - fixtures
from tests.talkback_support import no_violations  # noqa: F401
from tests.talkback_support import piped  # noqa: F401
from tests.talkback_support import talkback  # noqa: F401
from tests.talkback_support import texts
from tests.talkback_support import wait_until

#: the example plugin declares a deploy-target config, so piped must name one of its targets
TARGETS = [{"name": "local", "config": {"path": "/nonexistent/pipeplug-test"}}]
APPROVED_USERS = "pipecd/stage-approved-users"
DISPLAY = "pipecd/stage-display-metadata"


@pytest.fixture(scope="module")
def example(piped) -> t.Iterator[PluginProcess]:  # type: ignore[no-untyped-def]
    with PluginProcess(EXAMPLE_APP, piped_address=piped.address, deploy_targets=TARGETS, env=FAST) as plugin:
        yield plugin


@pytest.fixture
def example_client(example, piped) -> t.Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(address=example.address, piped=piped, name="example", deploy_targets=TARGETS) as test_client:
        yield test_client


def polled(piped, stage_id: str) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for rpc, r in list(piped.calls) if rpc == "ListStageCommands" and r.stage_id == stage_id)


# -- WAIT resumes after its process is killed ---------------------------------------------------


def test_wait_resumes_after_sigkill_and_waits_only_the_remainder(piped) -> None:  # type: ignore[no-untyped-def]
    duration = 6
    first = PluginProcess(EXAMPLE_APP, piped_address=piped.address, deploy_targets=TARGETS, env=FAST).start()
    second = None
    try:
        with TestClient(address=first.address, piped=piped, name="example", deploy_targets=TARGETS) as client:
            call = client.start_stage("WAIT", {"duration": f"{duration}s"}, deployment={"id": "dep-wait"}, stage_id="wait")
            started = int(wait_until(lambda: piped.stage_metadata("dep-wait", "wait").get("startTime"), "WAIT to record its start time"))
            wait_until(lambda: piped.log_lines("dep-wait", "wait") and time.time() >= started + 3, "3s of waiting")
            first.kill()  # SIGKILL, like an OOM or a lost node: piped re-executes the RUNNING stage later
            with pytest.raises(PluginCallError):
                call.result(10)
            second = PluginProcess(EXAMPLE_APP, piped_address=piped.address, deploy_targets=TARGETS, port=first.port, env=FAST).start()
            resumed_at = time.monotonic()
            run = client.execute_stage("WAIT", {"duration": f"{duration}s"}, deployment={"id": "dep-wait"}, stage_id="wait", status=StageStatus.RUNNING)
            took = time.monotonic() - resumed_at
    finally:
        first.close()
        if second is not None:
            second.close()
    assert run.status == StageStatus.SUCCESS
    assert run.metadata["startTime"] == str(started)  # the first run's start, not a new one
    lines = texts(run.logs)
    assert lines[0] == "Waiting for 0:00:06..."  # from the killed process
    assert lines[1].startswith("Resuming: 0:00:0") and lines[1].endswith(" of 0:00:06 already waited")
    assert lines[-1] == "Waited for 0:00:06"
    assert took < duration - 2, f"the resumed stage waited {took:.1f}s, not only the remainder"


def test_wait_rejects_a_zero_duration(example_client) -> None:  # type: ignore[no-untyped-def]
    run = example_client.execute_stage("WAIT", {"duration": "0s"})
    assert run.status == StageStatus.FAILURE
    assert run.logs == [("ERROR", "with.duration must be greater than 0, got 0:00:00")]


# -- WAIT_APPROVAL: planned with an Approve button for the approvers only -----------------------


def test_wait_approval_is_planned_with_an_approve_button_for_its_approvers(example_client) -> None:  # type: ignore[no-untyped-def]
    planned = example_client.build_pipeline_sync_stages(
        [{"name": "WAIT", "with": {"duration": "1m"}}, {"name": "WAIT_APPROVAL", "with": {"approvers": ["alice", "bob"], "minApproverNum": 2}}],
        rollback=False,
    )
    assert [(s.name, s.index, s.available_operation, tuple(s.authorized_operators)) for s in planned] == [
        ("WAIT", 0, ManualOperation.NONE, ()),
        ("WAIT_APPROVAL", 1, ManualOperation.APPROVE, ("alice", "bob")),
    ]


def test_a_bad_approvers_list_fails_the_plan_clearly(example_client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PluginCallError) as failed:
        example_client.build_pipeline_sync_stages([{"name": "WAIT_APPROVAL", "with": {"approvers": "alice"}}], rollback=False)
    assert failed.value.code == grpc.StatusCode.INVALID_ARGUMENT  # checked against ApprovalOptions before plan= runs
    assert failed.value.details == 'stage 0 (WAIT_APPROVAL): with.approvers: expected a list of strings, got "alice"'


def test_wait_approval_counts_only_its_approvers_once_each(example_client, piped) -> None:  # type: ignore[no-untyped-def]
    options = {"approvers": ["alice", "bob"], "minApproverNum": 2}
    call = example_client.start_stage("WAIT_APPROVAL", options, deployment={"id": "dep-approve"})
    wait_until(lambda: polled(piped, call.stage_id), "the stage to poll its commands")
    for user in ("mallory", "alice", "alice"):
        piped.approve("dep-approve", call.stage_id, user)
    seen = polled(piped, call.stage_id)
    wait_until(lambda: polled(piped, call.stage_id) >= seen + 2, "two more polls")
    assert piped.stage_metadata("dep-approve", call.stage_id) == {APPROVED_USERS: "alice", DISPLAY: "Approved by: alice"}
    assert not call.done()
    piped.approve("dep-approve", call.stage_id, "bob")
    run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert run.metadata == {APPROVED_USERS: "alice, bob", DISPLAY: "Approved by: alice, bob"}
    assert texts(run.logs) == [
        "Waiting for approval of at least 2 user(s) from alice, bob...",
        "WARNING: Ignoring an approval from 'mallory': not one of the approvers (alice, bob)",
        "Got approval from alice",
        "Waiting for 1 more approver(s)...",
        "Got approval from bob",
        "Approved by alice, bob",
    ]


def test_approvals_recorded_before_a_re_execution_still_count(example_client, piped) -> None:  # type: ignore[no-untyped-def]
    options = {"approvers": ["alice", "bob"], "minApproverNum": 2}
    call = example_client.start_stage(
        "WAIT_APPROVAL", options, deployment={"id": "dep-again"}, status=StageStatus.RUNNING, metadata={APPROVED_USERS: "alice"}
    )
    wait_until(lambda: polled(piped, call.stage_id), "the stage to poll its commands")
    piped.approve("dep-again", call.stage_id, "bob")
    run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert run.metadata[APPROVED_USERS] == "alice, bob"
    assert "Got approval from alice" not in texts(run.logs)

    done = example_client.execute_stage("WAIT_APPROVAL", options, status=StageStatus.RUNNING, metadata={APPROVED_USERS: "alice, bob"})
    assert done.status == StageStatus.SUCCESS
    assert texts(done.logs) == ["Already approved by alice, bob"]


# -- ctx.wait_for_approval without a list, with the planned list, from sync code -----------------


def test_without_authorized_operators_anyone_may_approve(client, piped) -> None:  # type: ignore[no-untyped-def]
    call = client.start_stage("APPROVAL", {"min": 1}, deployment={"id": "dep-anyone"})
    wait_until(lambda: polled(piped, call.stage_id), "the stage to poll its commands")
    piped.approve("dep-anyone", call.stage_id, "zed")
    run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert texts(run.logs) == ["Waiting for approval of at least 1 user(s)...", "Got approval from zed", "Approved by zed", "result=zed"]


def test_the_planned_authorized_operators_are_honoured(client, piped, talkback) -> None:  # type: ignore[no-untyped-def]
    deployment = client.deployment({"id": "dep-planned"})
    stage = model_pb.PipelineStage(
        id="planned", name="APPROVAL", status=model_pb.STAGE_RUNNING, available_operation=model_pb.MANUAL_OPERATION_APPROVE, authorized_operators=["alice"]
    )
    deployment.stages.append(stage)
    request = deploy_pb.ExecuteStageRequest(input=deploy_pb.ExecutePluginInput(deployment=deployment, stage=stage, stage_config=b'{"min": 1}'))
    with grpc.insecure_channel(talkback.address) as channel:
        call = deploy_grpc.DeploymentServiceStub(channel).ExecuteStage.future(request)
        wait_until(lambda: polled(piped, "planned"), "the stage to poll its commands")
        piped.approve("dep-planned", "planned", "eve")
        piped.approve("dep-planned", "planned", "alice")
        response = call.result(30)
    assert response.status == model_pb.STAGE_SUCCESS
    assert texts(piped.log_lines("dep-planned", "planned"))[1:] == [
        "WARNING: Ignoring an approval from 'eve': not one of the approvers (alice)",
        "Got approval from alice",
        "Approved by alice",
        "result=alice",
    ]


def test_sync_handlers_wait_for_approval_too(client, piped) -> None:  # type: ignore[no-untyped-def]
    call = client.start_stage("APPROVAL_SYNC", {"min": 2}, deployment={"id": "dep-sync-approve"})
    wait_until(lambda: polled(piped, call.stage_id), "the stage to poll its commands")
    piped.approve("dep-sync-approve", call.stage_id, "ann")
    piped.approve("dep-sync-approve", call.stage_id, "ben")
    run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert texts(run.logs)[-1] == "result=ann,ben"
    assert run.metadata == {APPROVED_USERS: "ann, ben", DISPLAY: "Approved by: ann, ben"}


def test_a_cancelled_sync_wait_unblocks_its_thread(client, piped, talkback) -> None:  # type: ignore[no-untyped-def]
    call = client.start_stage("APPROVAL_SYNC", {"min": 1}, deployment={"id": "dep-sync-cancel"})
    wait_until(lambda: polled(piped, call.stage_id), "the stage to poll its commands")
    call.cancel()
    wait_until(lambda: piped.log_completed("dep-sync-cancel", call.stage_id), "the cancelled stage's log to be completed")
    # pipeplug completes a cancelled stage's log once the handler's thread has returned, or
    # after a bound with a warning that it had not: so the thread is gone, and polls no more
    lines = texts(piped.log_lines("dep-sync-cancel", call.stage_id))
    assert not [line for line in lines if "had not returned" in line], lines
    assert not [line for line in lines if line.startswith("result=")], lines  # the wait raised, it did not return approvals


def test_an_approval_that_can_never_be_met_fails_clearly(client) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("APPROVAL", {"min": 3, "approvers": ["ann", "ben"]})
    assert run.status == StageStatus.FAILURE
    assert "wait_for_approval(min_approvers=3) can never be met: only 2 user(s) may approve (ann, ben)" in run.log_text


# -- plan=: a stage shapes how it is planned --------------------------------------------------------


def test_the_default_pipeline_planner_applies_each_stages_plan() -> None:
    import pipeplug

    app = pipeplug.App("planned")

    @app.stage("GATE", plan=lambda stage: pipeplug.PlannedStage(stage.name, stage.index, available_operation=ManualOperation.APPROVE, authorized_operators=stage.config["who"]))
    async def gate(ctx: pipeplug.Context) -> None:
        await ctx.wait_for_approval()

    @app.stage("BROKEN", plan=lambda stage: pipeplug.PlannedStage(stage.name, stage.index + 1))
    def broken() -> None:
        pass

    @app.stage("PLAIN")
    def plain() -> None:
        pass

    with pytest.raises(pipeplug.RegistrationError, match=r"@app.stage\('ODD'\): plan='approve' is not callable"):
        app.register_stage("ODD", plain, plan="approve")  # type: ignore[arg-type]

    with app.test_client() as test_client:
        planned = test_client.build_pipeline_sync_stages([{"name": "PLAIN"}, {"name": "GATE", "with": {"who": ["ann"]}}], rollback=False)
        assert [(s.name, s.index, s.available_operation, tuple(s.authorized_operators)) for s in planned] == [
            ("PLAIN", 0, ManualOperation.NONE, ()),
            ("GATE", 1, ManualOperation.APPROVE, ("ann",)),
        ]
        with pytest.raises(PluginCallError) as failed:
            test_client.build_pipeline_sync_stages([{"name": "BROKEN"}], rollback=False)
        assert failed.value.code == grpc.StatusCode.INTERNAL
        assert "@app.stage('BROKEN', plan=" in failed.value.details
        assert "expected PlannedStage(name='BROKEN', index=0, ...)" in failed.value.details
