"""FakePiped follows piped's PluginService rules, checked over real gRPC with a raw stub."""

from __future__ import annotations

import asyncio
import os
import time

import grpc
import pytest

from pipeplug._gen.model import command_pb2
from pipeplug._gen.model import logblock_pb2
from pipeplug._gen.piped import service_pb2 as svc
from pipeplug._gen.piped import service_pb2_grpc as svc_grpc
from pipeplug.testing import FakePiped
from pipeplug.testing import render_install_script
from pipeplug.testing import MemoryStore


@pytest.fixture
def fake():
    with FakePiped() as fake:
        yield fake


@pytest.fixture
def stub(fake):
    with grpc.insecure_channel(fake.address) as channel:
        yield svc_grpc.PluginServiceStub(channel)


def block(index, text, severity=logblock_pb2.INFO, created_at=None):
    return logblock_pb2.LogBlock(index=index, log=text, severity=severity, created_at=created_at or int(time.time()))


def logs(stub, *blocks, stage="s1"):
    stub.ReportStageLogs(svc.ReportStageLogsRequest(deployment_id="d1", stage_id=stage, blocks=list(blocks)))


def checkpoint(stub, *blocks, completed=False, stage="s1"):
    stub.ReportStageLogsFromLastCheckpoint(
        svc.ReportStageLogsFromLastCheckpointRequest(deployment_id="d1", stage_id=stage, blocks=list(blocks), completed=completed)
    )


def error_of(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


# -- validation ----------------------------------------------------------------


def test_an_empty_log_line_rejects_the_whole_batch(fake, stub):
    err = error_of(logs, stub, block(1, "first"), block(2, ""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "log block 1 (index 2) of stage s1 has an empty `log`" in err.details()
    assert err.details().startswith("real piped would reject this")
    assert fake.log_lines("d1", "s1") == []  # nothing of the batch was kept
    assert len(fake.violations) == 1


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (block(1, "x", severity=9), "undefined severity 9"),
        (logblock_pb2.LogBlock(index=1, log="x"), "created_at=0"),
    ],
)
def test_log_block_rules(fake, stub, bad, expected):
    err = error_of(checkpoint, stub, bad)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.details()
    fake.violations.clear()


@pytest.mark.parametrize(
    ("rpc", "request_", "field"),
    [
        ("GetStageMetadata", svc.GetStageMetadataRequest(deployment_id="d1", stage_id="s1"), "key"),
        ("PutDeploymentPluginMetadata", svc.PutDeploymentPluginMetadataRequest(deployment_id="d1", key="k"), "plugin_name"),
        ("ListStageCommands", svc.ListStageCommandsRequest(stage_id="s1"), "deployment_id"),
        ("InstallTool", svc.InstallToolRequest(name="kubectl", version="1.0"), "install_script"),
        ("PutApplicationSharedObject", svc.PutApplicationSharedObjectRequest(plugin_name="p", key="k"), "application_id"),
    ],
)
def test_empty_required_fields_are_rejected_naming_the_field(fake, stub, rpc, request_, field):
    err = error_of(getattr(stub, rpc), request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{rpc}Request.{field} is empty" in err.details()
    assert fake.violations == [err.details()]
    fake.violations.clear()


def test_plugin_name_may_be_empty_on_get_plugin_metadata(fake, stub):
    # upstream validates plugin_name on Put but not on Get
    reply = stub.GetDeploymentPluginMetadata(svc.GetDeploymentPluginMetadataRequest(deployment_id="d1", key="k"))
    assert not reply.found


# -- logs ----------------------------------------------------------------------


def test_logs_show_in_index_order_with_severity(fake, stub):
    logs(stub, block(10, "start"), block(11, "oops", logblock_pb2.ERROR))
    checkpoint(stub, block(10, "start"), block(11, "oops", logblock_pb2.ERROR), block(12, "done", logblock_pb2.SUCCESS), completed=True)
    assert fake.log_lines("d1", "s1") == [("INFO", "start"), ("ERROR", "oops"), ("SUCCESS", "done")]
    assert fake.log_completed("d1", "s1")
    assert fake.violations == []


def test_completed_log_refuses_more_lines(fake, stub):
    checkpoint(stub, block(1, "only"), completed=True)
    assert error_of(checkpoint, stub, block(2, "late")).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_of(logs, stub, block(3, "later")).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert fake.log_lines("d1", "s1") == [("INFO", "only")]
    assert len(fake.violations) == 2
    fake.violations.clear()


def test_a_checkpoint_replaces_the_cached_view(fake, stub):
    logs(stub, block(1, "one"), block(2, "two"))
    assert [text for _, text in fake.log_lines("d1", "s1")] == ["one", "two"]
    checkpoint(stub, block(2, "two"), block(3, "three"))  # forgot block 1
    assert [text for _, text in fake.log_lines("d1", "s1")] == ["two", "three"]
    assert len(fake.violations) == 1 and "left out blocks 1" in fake.violations[0]
    fake.violations.clear()


def test_a_repeated_index_is_dropped_and_recorded(fake, stub):
    logs(stub, block(5, "first"))
    logs(stub, block(5, "again"), block(6, "next"))
    assert [text for _, text in fake.log_lines("d1", "s1")] == ["first", "next"]
    assert len(fake.violations) == 1 and "index 5, not above the previous index 5" in fake.violations[0]
    fake.violations.clear()


def test_streams_are_kept_per_stage(fake, stub):
    logs(stub, block(1, "a"), stage="s1")
    logs(stub, block(1, "b"), stage="s2")
    assert fake.log_lines("d1", "s1") == [("INFO", "a")]
    assert fake.log_lines("d1", "s2") == [("INFO", "b")]
    assert fake.violations == []


# -- metadata and shared objects -----------------------------------------------


def test_stage_metadata_roundtrip(fake, stub):
    get = svc.GetStageMetadataRequest(deployment_id="d1", stage_id="s1", key="startTime")
    assert not stub.GetStageMetadata(get).found
    stub.PutStageMetadata(svc.PutStageMetadataRequest(deployment_id="d1", stage_id="s1", key="startTime", value="123"))
    stub.PutStageMetadataMulti(svc.PutStageMetadataMultiRequest(deployment_id="d1", stage_id="s1", metadata={"a": "1", "b": ""}))
    reply = stub.GetStageMetadata(get)
    assert (reply.found, reply.value) == (True, "123")
    assert fake.stage_metadata("d1", "s1") == {"startTime": "123", "a": "1", "b": ""}
    assert fake.stage_metadata("d1", "other") == {}


def test_plugin_metadata_is_namespaced_by_plugin_name(fake, stub):
    stub.PutDeploymentPluginMetadata(svc.PutDeploymentPluginMetadataRequest(deployment_id="d1", plugin_name="p1", key="k", value="v1"))
    stub.PutDeploymentPluginMetadataMulti(svc.PutDeploymentPluginMetadataMultiRequest(deployment_id="d1", plugin_name="p2", metadata={"k": "v2"}))
    reply = stub.GetDeploymentPluginMetadata(svc.GetDeploymentPluginMetadataRequest(deployment_id="d1", plugin_name="p1", key="k"))
    assert (reply.found, reply.value) == (True, "v1")
    assert fake.plugin_metadata("d1", "p2") == {"k": "v2"}


def test_shared_metadata_is_seeded_by_the_test(fake, stub):
    request = svc.GetDeploymentSharedMetadataRequest(deployment_id="d1", key="DeploymentNotification")
    assert not stub.GetDeploymentSharedMetadata(request).found
    fake.set_shared_metadata("d1", {"DeploymentNotification": "{}"})
    assert stub.GetDeploymentSharedMetadata(request).value == "{}"


def test_metadata_of_a_closed_deployment_fails_like_piped(fake, stub):
    fake.close_deployment("d1")
    err = error_of(stub.GetStageMetadata, svc.GetStageMetadataRequest(deployment_id="d1", stage_id="s1", key="k"))
    assert err.code() == grpc.StatusCode.UNKNOWN
    assert "metadata store not found for deployment d1" in err.details()


def test_missing_shared_object_is_not_found(fake, stub):
    get = svc.GetApplicationSharedObjectRequest(application_id="app", plugin_name="p", key="state")
    assert error_of(stub.GetApplicationSharedObject, get).code() == grpc.StatusCode.NOT_FOUND
    stub.PutApplicationSharedObject(svc.PutApplicationSharedObjectRequest(application_id="app", plugin_name="p", key="state", object=b"\x00\x01"))
    assert stub.GetApplicationSharedObject(get).object == b"\x00\x01"
    assert fake.shared_object("app", "p", "state") == b"\x00\x01"


# -- commands ------------------------------------------------------------------


def test_commands_are_listed_on_every_call_until_handled(fake, stub):
    request = svc.ListStageCommandsRequest(deployment_id="d1", stage_id="s1")
    assert list(stub.ListStageCommands(request).commands) == []
    approval = fake.approve("d1", "s1", "alice")
    skip = fake.skip("d1", "s1", "bob")
    for _ in range(2):
        commands = stub.ListStageCommands(request).commands
        assert [(c.id, c.type, c.commander) for c in commands] == [
            (approval, command_pb2.Command.APPROVE_STAGE, "alice"),
            (skip, command_pb2.Command.SKIP_STAGE, "bob"),
        ]
    assert commands[0].approve_stage.stage_id == "s1" and commands[0].created_at > 0
    assert list(stub.ListStageCommands(svc.ListStageCommandsRequest(deployment_id="d1", stage_id="s2")).commands) == []
    fake.mark_commands_handled("d1", "s1")
    assert list(stub.ListStageCommands(request).commands) == []


# -- tools ---------------------------------------------------------------------


def test_install_tool_runs_the_rendered_script_once(fake, stub):
    script = (
        "cd {{ .TmpDir }}\n"
        "printf '%s %s %s %s' {{ .Name }} {{.Version}} {{ .Os }} {{ .Arch }} > {{ .OutPath }}\n"
        "cat {{ .OutPath }} >> " + os.path.join(fake.tools_dir, "..", "log") + "\n"
    )
    request = svc.InstallToolRequest(name="mytool", version="1.2.3", install_script=script)
    path = stub.InstallTool(request).installed_path
    assert path == os.path.join(fake.tools_dir, "mytool-1.2.3")
    assert os.access(path, os.X_OK)
    with open(path) as f:
        name, version, goos, goarch = f.read().split()
    assert (name, version) == ("mytool", "1.2.3") and goos in ("linux", "darwin") and goarch
    assert stub.InstallTool(request).installed_path == path
    with open(os.path.join(fake.tools_dir, "..", "log")) as f:
        assert f.read().count("mytool") == 1  # the second call did not run the script again


def test_install_tool_failure_carries_the_script_output(fake, stub):
    request = svc.InstallToolRequest(name="bad", version="1", install_script="echo nope >&2; exit 3")
    err = error_of(stub.InstallTool, request)
    assert err.code() == grpc.StatusCode.UNKNOWN
    assert "failed to install the tool bad-1" in err.details() and "exit status 3" in err.details() and "nope" in err.details()


def test_install_tool_unknown_template_field(fake, stub):
    err = error_of(stub.InstallTool, svc.InstallToolRequest(name="t", version="1", install_script="cp x {{ .Output }}"))
    assert err.code() == grpc.StatusCode.UNKNOWN and "{{ .Output }}" in err.details()


def test_render_install_script_trims_like_go():
    assert render_install_script("a  {{- .Name -}}  b", {"Name": "n"}) == "anb"


# -- failure injection -----------------------------------------------------------


def test_fail_next_fails_exactly_n_calls(fake, stub):
    request = svc.ListStageCommandsRequest(deployment_id="d1", stage_id="s1")
    fake.fail_next("ListStageCommands", grpc.StatusCode.UNAVAILABLE, n=2)
    assert error_of(stub.ListStageCommands, request).code() == grpc.StatusCode.UNAVAILABLE
    assert error_of(stub.ListStageCommands, request).code() == grpc.StatusCode.UNAVAILABLE
    stub.ListStageCommands(request)
    fake.fail_next("*", grpc.StatusCode.INTERNAL)
    assert error_of(stub.ListStageCommands, request).code() == grpc.StatusCode.INTERNAL
    with pytest.raises(ValueError, match="unknown PluginService RPC"):
        fake.fail_next("ListCommands")


def test_outage_makes_every_call_unavailable_and_loses_nothing_after(fake, stub):
    with fake.outage():
        assert error_of(logs, stub, block(1, "lost?")).code() == grpc.StatusCode.UNAVAILABLE
    logs(stub, block(1, "kept"))
    assert fake.log_lines("d1", "s1") == [("INFO", "kept")]


def test_slow_delays_answers(fake, stub):
    request = svc.ListStageCommandsRequest(deployment_id="d1", stage_id="s1")
    with fake.slow("ListStageCommands", 5):
        assert error_of(stub.ListStageCommands, request, timeout=0.2).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        stub.GetStageMetadata(svc.GetStageMetadataRequest(deployment_id="d1", stage_id="s1", key="k"), timeout=2)
    stub.ListStageCommands(request, timeout=2)


# -- async use -------------------------------------------------------------------


def test_usable_from_async_code():
    async def main():
        async with FakePiped() as fake:
            async with grpc.aio.insecure_channel(fake.address) as channel:
                stub = svc_grpc.PluginServiceStub(channel)
                await stub.PutStageMetadata(svc.PutStageMetadataRequest(deployment_id="d", stage_id="s", key="k", value="v"))
                reply = await stub.GetStageMetadata(svc.GetStageMetadataRequest(deployment_id="d", stage_id="s", key="k"))
            return reply.value, fake.stage_metadata("d", "s")

    assert asyncio.run(main()) == ("v", {"k": "v"})


def test_address_before_start_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not started"):
        FakePiped().address


# -- storage: what FakePiped keeps lives in its store ------------------------------------


def test_what_a_plugin_stores_lands_in_the_given_store_and_violations_are_reported_as_they_happen():
    store = MemoryStore()
    seen: list[str] = []
    with FakePiped(store=store, on_violation=seen.append, record_calls=False) as fake:
        with grpc.insecure_channel(fake.address) as channel:
            stub = svc_grpc.PluginServiceStub(channel)
            stub.PutStageMetadata(svc.PutStageMetadataRequest(deployment_id="d1", stage_id="s1", key="k", value="v"))
            logs(stub, block(1, "one"))
            checkpoint(stub, block(1, "one"), completed=True)
            logs(stub, block(1, "one"), stage="s2")
            checkpoint(stub, stage="s2")  # leaves out block 1: a violation
        assert fake.calls == []
    assert store.stage_metadata("d1", "s1") == {"k": "v"}
    stream = store.log_stream("d1", "s1")
    assert stream is not None and stream.completed and [b.log for b in stream.persisted] == ["one"]
    assert len(seen) == 1 and "left out blocks 1" in seen[0]
    assert seen == fake.violations


def test_a_closed_metadata_store_is_the_stores_to_say():
    store = MemoryStore()
    store.close_metadata_store("d1")
    with FakePiped(store=store) as fake:
        with grpc.insecure_channel(fake.address) as channel:
            stub = svc_grpc.PluginServiceStub(channel)
            err = error_of(stub.GetStageMetadata, svc.GetStageMetadataRequest(deployment_id="d1", stage_id="s1", key="k"))
    assert err.code() == grpc.StatusCode.UNKNOWN and "metadata store not found for deployment d1" in err.details()
