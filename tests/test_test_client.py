"""TestClient and PluginProcess over real gRPC: example_app.py in-process and started as piped starts it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import textwrap
import time

import grpc
import pytest

import pipeplug
from pipeplug import ArtifactKind
from pipeplug import ArtifactVersion
from pipeplug import PlannedStage
from pipeplug import StageStatus
from pipeplug import SyncStatus
from pipeplug import SyncStrategy
from pipeplug._gen.model import common_pb2
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug._gen.plugin import livestate_pb2 as live_api_pb
from pipeplug._gen.plugin import livestate_pb2_grpc as live_grpc
from pipeplug._gen.piped import service_pb2 as svc_pb
from pipeplug._gen.piped import service_pb2_grpc as svc_grpc
from pipeplug._gen.model import application_live_state_pb2 as live_pb
from pipeplug.testing import PipedWouldRefuse
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import PluginStartError
from pipeplug.testing import TestClient

from .conftest import EXAMPLE_APP

APP_CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: Application
spec:
  name: site
  plugins:
    example:
      source: public
"""

PIPELINE = [
    {"name": "WAIT", "with": {"duration": "1s"}},
    {"name": "DIR_SYNC"},
    {"name": "DIR_VERIFY", "with": {"files": ["index.html"]}},
]


def make_site(root, version="1.2.0", page="hello"):
    app_dir = root / "app"
    public = app_dir / "public"
    public.mkdir(parents=True)
    (app_dir / "app.pipecd.yaml").write_text(APP_CONFIG)
    (public / "VERSION").write_text(version + "\n")
    (public / "index.html").write_text(page)
    return str(app_dir)


@pytest.fixture
def site(tmp_path):
    return make_site(tmp_path / "v1")


@pytest.fixture
def targets(tmp_path):
    return [{"name": "dev", "config": {"path": str(tmp_path / "dev")}}]


@pytest.fixture
def client(example_module, fake_piped, targets):
    with example_module.app.test_client(piped=fake_piped, deploy_targets=targets) as client:
        yield client


# -- in-process: every RPC of example_app.py -----------------------------------------


def test_fetch_defined_stages(client, example_module):
    stages = client.fetch_defined_stages()
    assert stages == list(example_module.app.stages)
    assert {"WAIT", "DIR_SYNC", "DIR_VERIFY", "DIR_ROLLBACK"} <= set(stages)


def test_determine_versions(client, site):
    assert client.determine_versions(target_source=site) == [ArtifactVersion("1.2.0", name="site", kind=ArtifactKind.GIT_SOURCE)]


def test_determine_strategy(client, site, tmp_path):
    first = client.determine_strategy(target_source=site)
    assert (first.strategy, first.summary) == (SyncStrategy.QUICK_SYNC, "first deployment")
    same = client.determine_strategy(target_source=site, running_source=make_site(tmp_path / "same", page="other"))
    assert same.strategy == SyncStrategy.QUICK_SYNC
    older = client.determine_strategy(target_source=site, running_source=make_site(tmp_path / "old", version="1.1.0"))
    assert (older.strategy, older.summary) == (SyncStrategy.PIPELINE, "VERSION changed")


def test_build_pipeline_sync_stages(client):
    assert client.build_pipeline_sync_stages(PIPELINE, rollback=True) == [
        PlannedStage("WAIT", 0),
        PlannedStage("DIR_SYNC", 1),
        PlannedStage("DIR_VERIFY", 2),
        PlannedStage("DIR_ROLLBACK", 1, rollback=True),
    ]
    assert [s.name for s in client.build_pipeline_sync_stages(PIPELINE, rollback=False)] == ["WAIT", "DIR_SYNC", "DIR_VERIFY"]


def test_build_quick_sync_stages(client):
    assert [(s.name, s.rollback) for s in client.build_quick_sync_stages(rollback=True)] == [("DIR_SYNC", False), ("DIR_ROLLBACK", True)]
    assert [s.name for s in client.build_quick_sync_stages(rollback=False)] == ["DIR_SYNC"]


def test_execute_stages_publish_and_verify(client, site, tmp_path):
    run = client.execute_stage("DIR_SYNC", {}, target_source=site, index=1)
    assert run.status == StageStatus.SUCCESS, run
    assert (tmp_path / "dev" / "current" / "index.html").read_text() == "hello"
    assert client.execute_stage("DIR_VERIFY", {"files": ["index.html"]}, target_source=site).status == StageStatus.SUCCESS
    missing = client.execute_stage("DIR_VERIFY", {"files": ["nope.txt"]}, target_source=site)
    assert missing.status == StageStatus.FAILURE and "nope.txt" in missing.message


def test_execute_wait_and_bad_options(client):
    assert client.execute_stage("WAIT", {"duration": "0.1s"}).status == StageStatus.SUCCESS
    bad = client.execute_stage("WAIT", {})
    assert bad.status == StageStatus.FAILURE and "with.duration" in bad.message


def test_execute_stage_ids_and_deployment_overrides(client, site):
    run = client.execute_stage("DIR_SYNC", {}, target_source=site, deployment={"id": "deploy-7"}, stage_id="stage-3")
    assert (run.deployment_id, run.stage_id) == ("deploy-7", "stage-3")
    with pytest.raises(TypeError, match="unknown deployment field"):
        client.execute_stage("DIR_SYNC", deployment={"commit": "x"})


def test_execute_stage_without_a_deploy_target_is_refused(client, site):
    with pytest.raises(PluginCallError) as err:
        client.execute_stage("DIR_SYNC", {}, target_source=site, deploy_targets=[])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.details.startswith("no deploy targets provided")


def test_get_livestate(client, site):
    before = client.get_livestate(deploy_source=site)
    assert before.sync_status == SyncStatus.OUT_OF_SYNC and before.resources == []
    client.execute_stage("DIR_SYNC", {}, target_source=site)
    after = client.get_livestate(deploy_source=site)
    assert after.sync_status == SyncStatus.SYNCED
    assert sorted(r.id for r in after.resources) == ["dev:VERSION", "dev:index.html"]
    assert all(r.created_at > 0 and r.updated_at > 0 for r in after.resources)


def test_get_plan_preview(client, site):
    [preview] = client.get_plan_preview(target_source=site)
    assert (preview.deploy_target, preview.summary, preview.no_change) == ("dev", "2 added, 0 changed, 0 removed", False)
    digest = {name: hashlib.sha256(open(os.path.join(site, "public", name), "rb").read()).hexdigest() for name in ("VERSION", "index.html")}
    # pipeplug.diff's rendering, the Go SDK renderer's layout: "#path", then the added value
    assert preview.details.decode() == "".join(f"#{name}\n+ {name}: {digest[name]}\n\n" for name in ("VERSION", "index.html"))


def test_the_client_makes_its_own_fake_piped(example_module, targets):
    with example_module.app.test_client(deploy_targets=targets) as client:
        assert client.piped.address.startswith("127.0.0.1:")
        assert client.fetch_defined_stages()
    with pytest.raises(RuntimeError, match="not started"):
        client.piped.address


def test_commands_are_marked_handled_when_the_stage_ends(client, fake_piped):
    fake_piped.approve("deploy-1", "stage-1", "alice")
    request = svc_pb.ListStageCommandsRequest(deployment_id="deploy-1", stage_id="stage-1")
    with grpc.insecure_channel(fake_piped.address) as channel:
        stub = svc_grpc.PluginServiceStub(channel)
        assert len(stub.ListStageCommands(request).commands) == 1
        client.execute_stage("WAIT", {"duration": "0.1s"}, deployment={"id": "deploy-1"}, stage_id="stage-1")
        assert len(stub.ListStageCommands(request).commands) == 0


def test_stage_logs_and_metadata_reach_the_fake_piped(client, fake_piped):
    run = client.execute_stage("WAIT", {"duration": "0.1s"})
    assert run.status == StageStatus.SUCCESS
    assert run.log_completed and run.logs and run.logs[-1][0] == "SUCCESS"
    assert run.metadata["startTime"].isdigit()
    assert run.logs == fake_piped.log_lines(run.deployment_id, run.stage_id)


def test_seeded_metadata_lets_a_re_executed_wait_resume(client):
    started = str(int(time.time()) - 100)
    run = client.execute_stage("WAIT", {"duration": "60s"}, metadata={"startTime": started}, status=StageStatus.RUNNING, timeout=10)
    assert run.status == StageStatus.SUCCESS and run.metadata["startTime"] == started


def test_an_approval_queued_in_the_fake_piped_is_seen(client, fake_piped):
    fake_piped.approve("deploy-9", "approval", "alice")
    run = client.execute_stage("WAIT_APPROVAL", {"approvers": ["alice"]}, deployment={"id": "deploy-9"}, stage_id="approval", timeout=30)
    assert run.status == StageStatus.SUCCESS
    assert "alice" in run.metadata["pipecd/stage-approved-users"]


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def test_a_running_stage_can_be_cancelled(client, fake_piped):
    call = client.start_stage("WAIT", {"duration": "30s"})
    wait_until(lambda: "startTime" in fake_piped.stage_metadata(call.deployment_id, call.stage_id), 10, "the WAIT stage to start")
    call.cancel()
    with pytest.raises(PluginCallError):
        call.result(timeout=10)
    # what the plugin did: its handler saw the cancellation, and pipeplug closed the stage log saying so
    wait_until(lambda: fake_piped.log_completed(call.deployment_id, call.stage_id), 10, "the plugin to complete the cancelled stage's log")
    text = [line for _, line in fake_piped.log_lines(call.deployment_id, call.stage_id)]
    assert "Wait cancelled" in text
    assert any("Cancelled by piped after " in line for line in text), text


# -- what piped would refuse ---------------------------------------------------------


def test_a_resource_without_id_is_refused():
    app = pipeplug.App("bad-live")

    @app.livestate
    def live():
        return pipeplug.Livestate([pipeplug.Resource(id="", name="x")], pipeplug.SyncStatus.SYNCED)

    with app.test_client() as client:
        with pytest.raises(PluginCallError, match="resource 0 .* has an empty id"):
            client.get_livestate()


def test_a_handler_error_is_a_plugin_call_error():
    app = pipeplug.App("raises")

    @app.versions
    def versions():
        raise RuntimeError("registry down")

    with app.test_client() as client:
        with pytest.raises(PluginCallError) as info:
            client.determine_versions()
    assert info.value.code == grpc.StatusCode.INTERNAL and "registry down" in info.value.details


class CarelessPlugin(deploy_grpc.DeploymentServiceServicer):
    """A plugin written without pipeplug, answering what piped refuses."""

    def FetchDefinedStages(self, request, context):
        return deploy_pb.FetchDefinedStagesResponse(stages=["A"])

    def BuildPipelineSyncStages(self, request, context):
        return deploy_pb.BuildPipelineSyncStagesResponse(
            stages=[
                model_pb.PipelineStage(name="A", index=0, available_operation=model_pb.MANUAL_OPERATION_NONE, created_at=1, updated_at=1),
                model_pb.PipelineStage(name="A", index=0, available_operation=model_pb.MANUAL_OPERATION_NONE, created_at=1, updated_at=1),
                model_pb.PipelineStage(name="B", index=5, available_operation=9, created_at=1),
            ]
        )

    def DetermineStrategy(self, request, context):
        return deploy_pb.DetermineStrategyResponse()

    def DetermineVersions(self, request, context):
        return deploy_pb.DetermineVersionsResponse(versions=[common_pb2.ArtifactVersion(kind=42, version="1")])

    def ExecuteStage(self, request, context):
        return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_RUNNING)


class CarelessLivestate(live_grpc.LivestateServiceServicer):
    def GetLivestate(self, request, context):
        resource = live_pb.ResourceState(id="r", name="r", health_status=7, updated_at=1)
        return live_api_pb.GetLivestateResponse(application_live_state=live_pb.ApplicationLiveState(resources=[resource]))


@pytest.fixture
def careless_address():
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(2))
    deploy_grpc.add_DeploymentServiceServicer_to_server(CarelessPlugin(), server)
    live_grpc.add_LivestateServiceServicer_to_server(CarelessLivestate(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait(5)


def test_planning_rules_over_loopback(careless_address, fake_piped):
    with TestClient(address=careless_address, piped=fake_piped) as client:
        with pytest.raises(PipedWouldRefuse) as info:
            client.build_pipeline_sync_stages([{"name": "A"}])
        text = str(info.value)
        assert "repeats index 0 among non-rollback stages" in text
        assert "index 5, which was not requested" in text
        assert "undefined available_operation 9" in text
        assert "updated_at=0" in text
        assert "named 'B', which FetchDefinedStages does not list" in text
        with pytest.raises(PipedWouldRefuse, match="undefined kind 42"):
            client.determine_versions()
        with pytest.raises(PipedWouldRefuse, match="sync_strategy=0 without unsupported=true"):
            client.determine_strategy()
        with pytest.raises(PipedWouldRefuse, match="leave the deployment RUNNING: ExecuteStage answered status STAGE_RUNNING"):
            client.execute_stage("A")
        with pytest.raises(PipedWouldRefuse) as info:
            client.get_livestate()
        text = str(info.value)
        assert "crash: GetLivestate answered without sync_state" in text
        assert "undefined health_status 7" in text and "created_at=0" in text


# -- over loopback against a plugin started with piped's argv ------------------------------


def test_every_rpc_against_a_started_plugin(fake_piped, targets, site, tmp_path):
    with PluginProcess(EXAMPLE_APP, piped_address=fake_piped.address, name="example", deploy_targets=targets) as plugin:
        with TestClient(address=plugin.address, piped=fake_piped, name="example", deploy_targets=targets) as client:
            assert {"WAIT", "DIR_SYNC", "DIR_VERIFY", "DIR_ROLLBACK"} <= set(client.fetch_defined_stages())
            assert client.determine_versions(target_source=site)[0].version == "1.2.0"
            assert client.determine_strategy(target_source=site).strategy == SyncStrategy.QUICK_SYNC
            assert len(client.build_pipeline_sync_stages(PIPELINE)) == 4
            assert len(client.build_quick_sync_stages()) == 2
            assert client.execute_stage("DIR_SYNC", {}, target_source=site).status == StageStatus.SUCCESS
            assert os.path.isfile(tmp_path / "dev" / "current" / "VERSION")
            assert client.get_livestate(deploy_source=site).sync_status == SyncStatus.SYNCED
            assert client.get_plan_preview(target_source=site)[0].no_change
    assert plugin.returncode == 0  # SIGTERM gave a clean exit


# -- PluginProcess -------------------------------------------------------------------------


def write_plugin(tmp_path, body):
    path = tmp_path / "plugin.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_the_plugin_gets_pipeds_argv(tmp_path, fake_piped):
    script = write_plugin(
        tmp_path,
        """
        import json, sys
        import pipeplug
        print("ARGV " + json.dumps(sys.argv[1:]), file=sys.stderr, flush=True)
        app = pipeplug.App("argv")
        app.stage("A")(lambda: None)
        app.main()
        """,
    )
    with PluginProcess(script, piped_address=fake_piped.address, config={"x": 1}) as plugin:
        line = next(l for l in plugin.stderr_text().splitlines() if l.startswith("ARGV "))
        argv = json.loads(line[5:])
        assert argv[:4] == ["start", "--piped-plugin-service", fake_piped.address, "--config"] and len(argv) == 5
        assert json.loads(argv[4]) == {"url": "file://" + script, "port": plugin.port, "config": {"x": 1}}


def test_stop_terminates_by_pid_and_kill_kills(fake_piped):
    plugin = PluginProcess(EXAMPLE_APP, piped_address=fake_piped.address).start()
    try:
        pid = plugin.pid
        assert plugin.stop() == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        again = PluginProcess(EXAMPLE_APP, piped_address=fake_piped.address).start()
        assert again.kill() == -signal.SIGKILL
    finally:
        plugin.close()
        again.close()


def test_a_module_app_target_starts_through_the_launcher(fake_piped):
    with PluginProcess(EXAMPLE_APP + ":app", piped_address=fake_piped.address) as plugin:
        with TestClient(address=plugin.address, piped=fake_piped) as client:
            assert "WAIT" in client.fetch_defined_stages()


def test_a_plugin_that_never_listens_times_out_with_its_output(tmp_path, fake_piped):
    script = write_plugin(tmp_path, "import sys, time\nprint('booting slowly', file=sys.stderr)\ntime.sleep(60)\n")
    plugin = PluginProcess(script, piped_address=fake_piped.address, startup_timeout=1.5)
    with pytest.raises(PluginStartError, match=r"(?s)did not answer on 127\.0\.0\.1:\d+ within 2s.*booting slowly"):
        plugin.start()
    assert plugin.returncode is not None  # stopped, not leaked
    plugin.close()


def test_a_plugin_that_dies_reports_its_stderr_tail(tmp_path, fake_piped):
    script = write_plugin(tmp_path, "import sys\nprint('config is broken', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(PluginStartError, match=r"(?s)exited with status 3.*config is broken"):
        PluginProcess(script, piped_address=fake_piped.address).start()


def test_plugin_process_fixture_stops_at_teardown(pytester, tmp_path):
    """An inner session records its plugin's PID; once that session's teardown ran, the PID is gone."""
    pid_file = tmp_path / "plugin.pid"
    pytester.makepyfile(
        f"""
        def test_starts_a_plugin(plugin_process):
            plugin = plugin_process({EXAMPLE_APP!r}, deploy_targets=[{{"name": "dev", "config": {{"path": {str(tmp_path / "dev")!r}}}}}])
            assert plugin.returncode is None and plugin.address.startswith("127.0.0.1:")
            with open({str(pid_file)!r}, "w") as f:
                f.write(str(plugin.pid))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")  # in this process: a plugin left running would still be our child
    result.assert_outcomes(passed=1)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.pipeplug_app(EXAMPLE_APP + ":app")
def test_pipeplug_client_fixture(pipeplug_client, fake_piped):
    assert pipeplug_client.piped is fake_piped
    assert pipeplug_client.fetch_defined_stages()[0] == "WAIT"


def test_fake_piped_fixture_fails_a_test_that_broke_pipeds_rules(pytester):
    pytester.makepyfile(
        """
        import grpc
        from pipeplug._gen.model import logblock_pb2
        from pipeplug._gen.piped import service_pb2, service_pb2_grpc

        def test_checkpoint_leaves_out_a_block(fake_piped):
            with grpc.insecure_channel(fake_piped.address) as channel:
                stub = service_pb2_grpc.PluginServiceStub(channel)
                # a checkpoint that leaves out a block sent before: accepted by piped, but lines are lost
                block = logblock_pb2.LogBlock(index=1, log="one", created_at=1)
                stub.ReportStageLogs(service_pb2.ReportStageLogsRequest(deployment_id="d", stage_id="s", blocks=[block]))
                stub.ReportStageLogsFromLastCheckpoint(service_pb2.ReportStageLogsFromLastCheckpointRequest(deployment_id="d", stage_id="s"))

        def test_clean(fake_piped):
            assert fake_piped.violations == []
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the plugin broke piped's rules*", "*left out blocks 1*"])
