"""How a stage ends when it does not end by itself: piped's cancel, SIGTERM, SIGKILL, a blocked event loop.

Each plugin (tests/apps/lifecycle_app.py) is a subprocess started with piped's
argv; FakePiped keeps each stage log as piped's control plane does (plain
flushes in its cache only, checkpoints rebuilt from its durable store) and
records a violation for anything real piped would refuse, lose or misplace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import typing as t
import uuid

import grpc
import pytest

from pipeplug import StageStatus
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.inflight import CLEANUP_SECONDS
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import PluginStartError
from pipeplug.testing import TestClient
from tests.talkback_support import FAST
from tests.talkback_support import no_violations  # noqa: F401 - fixture
from tests.talkback_support import piped  # noqa: F401 - fixture
from tests.talkback_support import texts
from tests.talkback_support import wait_until

LIFECYCLE_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "lifecycle_app.py")

#: plain flushes every 50ms, but no periodic checkpoint during a test: only the first flush can make lines durable
NO_PERIODIC_CHECKPOINT = {**FAST, "PIPEPLUG_LOG_CHECKPOINT_INTERVAL": "600"}


@pytest.fixture
def start_plugin(piped: FakePiped) -> t.Iterator[t.Callable[..., PluginProcess]]:  # noqa: F811
    started: list[PluginProcess] = []

    def start(env: t.Mapping[str, str] = FAST) -> PluginProcess:
        plugin = PluginProcess(LIFECYCLE_APP, piped_address=piped.address, env=env)
        started.append(plugin)
        return plugin.start()

    yield start
    for plugin in started:
        plugin.close()


def execute_request(stage: str, options: dict[str, t.Any], *, deployment_id: str, stage_id: str, status: int) -> t.Any:
    """An ExecuteStageRequest as piped builds it (status RUNNING: a re-execution)."""
    stage_pb = model_pb.PipelineStage(id=stage_id, name=stage, index=0, status=status)  # type: ignore[arg-type]
    now = int(time.time())
    deployment = model_pb.Deployment(
        id=deployment_id, application_id="app-1", application_name="app", piped_id="piped-test", project_id="p",
        stages=[stage_pb], created_at=now, updated_at=now,
    )  # fmt: skip
    return deploy_pb.ExecuteStageRequest(
        input=deploy_pb.ExecutePluginInput(deployment=deployment, stage=stage_pb, stage_config=json.dumps(options).encode())
    )


@pytest.mark.parametrize("stage", ["CLEANUP_SYNC", "CLEANUP_ASYNC"])
def test_lines_logged_while_cleaning_up_after_pipeds_cancel_reach_the_log(start_plugin, piped, stage) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    plugin = start_plugin()
    with TestClient(address=plugin.address, piped=piped, name="lifecycle") as client:
        call = client.start_stage(stage, {"cleanup": 1.0})
        wait_until(lambda: texts(piped.log_lines(call.deployment_id, call.stage_id)) == ["started"], "the stage to start")
        call.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(PluginCallError) as ended:
            call.result(10)
        assert ended.value.code == grpc.StatusCode.CANCELLED
        wait_until(lambda: piped.log_completed(call.deployment_id, call.stage_id), "the stage log to be completed", timeout=10)
        lines = texts(piped.log_lines(call.deployment_id, call.stage_id))
        assert lines[0] == "started" and "cleaned up" in lines, lines
        assert any(line.startswith("WARNING: Cancelled by piped after") for line in lines)
        # the log waited for the clean-up, not longer than it took
        assert time.monotonic() - cancelled_at < CLEANUP_SECONDS


def test_a_def_handler_that_ignores_the_cancel_holds_its_log_open_for_a_bounded_time(start_plugin, piped) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    plugin = start_plugin()
    with TestClient(address=plugin.address, piped=piped, name="lifecycle") as client:
        call = client.start_stage("CLEANUP_SYNC", {"cleanup": CLEANUP_SECONDS + 3})
        wait_until(lambda: texts(piped.log_lines(call.deployment_id, call.stage_id)) == ["started"], "the stage to start")
        call.cancel()
        with pytest.raises(PluginCallError):
            call.result(10)
        wait_until(lambda: piped.log_completed(call.deployment_id, call.stage_id), "the stage log to be completed", timeout=CLEANUP_SECONDS + 3)
        lines = texts(piped.log_lines(call.deployment_id, call.stage_id))
        assert "cleaned up" not in lines
        assert any("Handler cleanup_sync() had not returned" in line for line in lines), lines
        # its late line is not lost: the process log has it
        wait_until(lambda: "cleaned up" in plugin.stderr_text(), "the late line in the process log", timeout=10)


def test_the_first_flush_is_a_checkpoint_so_a_hard_kill_keeps_the_first_lines(start_plugin, piped) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    deployment_id, stage_id = str(uuid.uuid4()), str(uuid.uuid4())
    first = start_plugin(NO_PERIODIC_CHECKPOINT)
    with grpc.insecure_channel(first.address) as channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        request = execute_request("LINES", {"lines": 10}, deployment_id=deployment_id, stage_id=stage_id, status=model_pb.STAGE_NOT_STARTED_YET)
        running = stub.ExecuteStage.future(request)
        wait_until(lambda: len(piped.log_lines(deployment_id, stage_id)) == 10, "the first run's lines to reach piped")
        first.kill()  # as when the host dies: no clean-up at all
        with pytest.raises(grpc.RpcError):
            running.result(10)
    # piped, restarted, executes the RUNNING stage again on a new plugin process
    second = start_plugin(NO_PERIODIC_CHECKPOINT)
    with TestClient(address=second.address, piped=piped, name="lifecycle") as client:
        run = client.execute_stage("LINES", {"lines": 10}, deployment={"id": deployment_id}, stage_id=stage_id, status=StageStatus.RUNNING)
    assert run.status == StageStatus.SUCCESS and run.log_completed
    assert texts(run.logs) == [f"line {i}" for i in range(10)] + ["resumed"]


@pytest.mark.parametrize("stage", ["CLEANUP_SYNC", "CLEANUP_ASYNC"])
def test_sigterm_stops_running_stages_at_once_and_leaves_their_logs_open_for_the_rerun(start_plugin, piped, stage) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    deployment_id, stage_id = str(uuid.uuid4()), str(uuid.uuid4())
    first = start_plugin()
    with grpc.insecure_channel(first.address) as channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        request = execute_request(stage, {"cleanup": 0.5}, deployment_id=deployment_id, stage_id=stage_id, status=model_pb.STAGE_NOT_STARTED_YET)
        running = stub.ExecuteStage.future(request)
        wait_until(lambda: texts(piped.log_lines(deployment_id, stage_id)) == ["started"], "the stage to start")
        signalled = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        response = running.result(CLEANUP_SECONDS + 5)
        assert first.process is not None and first.process.wait(CLEANUP_SECONDS + 5) == 0
        took = time.monotonic() - signalled
    # STAGE_RUNNING: piped keeps the stage RUNNING and executes it again after its restart
    assert response.status == model_pb.STAGE_RUNNING, response
    assert took < CLEANUP_SECONDS, f"the plugin took {took:.1f}s to exit; piped kills it after 30s"
    lines = texts(piped.log_lines(deployment_id, stage_id))
    assert lines[0] == "started" and "cleaned up" in lines, lines
    assert not piped.log_completed(deployment_id, stage_id), "the log was completed: the re-execution could not continue it"

    second = start_plugin()
    with TestClient(address=second.address, piped=piped, name="lifecycle") as client:
        run = client.execute_stage(stage, {}, deployment={"id": deployment_id}, stage_id=stage_id, status=StageStatus.RUNNING)
    assert run.status == StageStatus.SUCCESS and run.log_completed
    assert texts(run.logs) == [*lines, "resumed"]


def test_a_blocked_event_loop_is_reported_naming_the_handler(start_plugin, piped) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    plugin = start_plugin({**FAST, "PIPEPLUG_LOOP_BLOCKED_SECONDS": "0.5"})
    with TestClient(address=plugin.address, piped=piped, name="lifecycle") as client:
        run = client.execute_stage("BLOCK_LOOP", {"seconds": 2})
        assert client.execute_stage("QUICK").status == StageStatus.SUCCESS
    assert run.status == StageStatus.SUCCESS
    wait_until(lambda: piped.log_completed(run.deployment_id, run.stage_id), "the stage log to be completed")
    lines = texts(piped.log_lines(run.deployment_id, run.stage_id))
    warnings = [line for line in lines if line.startswith("WARNING: The event loop has been blocked for")]
    assert len(warnings) == 1 and "by block_loop() at " in warnings[0] and "lifecycle_app.py:" in warnings[0], lines
    assert "The event loop has been blocked for" in plugin.stderr_text()
    wait_until(lambda: re.search(r"the event loop was blocked for \d+\.\ds in total by block_loop\(\)", plugin.stderr_text()), "the total in the process log", timeout=5)


def test_a_bad_loop_threshold_stops_the_start_naming_the_variable(piped) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    plugin = PluginProcess(LIFECYCLE_APP, piped_address=piped.address, env={"PIPEPLUG_LOOP_BLOCKED_SECONDS": "soon"})
    try:
        with pytest.raises(PluginStartError) as failed:
            plugin.start()
    finally:
        plugin.close()
    assert "PIPEPLUG_LOOP_BLOCKED_SECONDS='soon'" in str(failed.value) + plugin.stderr_text()
