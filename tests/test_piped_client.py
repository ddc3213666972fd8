"""Every PluginService call a handler makes through ``ctx``, over real gRPC to a FakePiped.

The stage handlers live in tests/apps/talkback_app.py, served by a plugin
process started with piped's argv; the client itself is also checked directly.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from pipeplug import Context
from pipeplug import PipedError
from pipeplug import StageStatus
from pipeplug.piped import PipedClient
from pipeplug.piped import PipedOptions
from pipeplug.testing import FakePiped
from tests.talkback_support import client  # noqa: F401 - fixtures
from tests.talkback_support import no_violations  # noqa: F401
from tests.talkback_support import piped  # noqa: F401
from tests.talkback_support import talkback  # noqa: F401
from tests.talkback_support import texts
from tests.talkback_support import wait_until

APP_ID = "test-app-id"  # TestClient's default application id


def test_metadata_and_shared_objects_from_an_async_stage(client, piped) -> None:  # type: ignore[no-untyped-def]
    piped.set_shared_metadata("dep-meta", {"DeploymentNotification": '{"mentions":[]}'})
    run = client.execute_stage("METADATA", deployment={"id": "dep-meta"})
    assert run.status == StageStatus.SUCCESS, run.logs
    assert texts(run.logs) == [
        "missing=None",
        "stage=1,2,3",
        "plugin=x,y",
        'shared={"mentions":[]}',
        "object-missing=None",
        "object=b'\\x00\\xffdata'",
    ]
    assert run.metadata == {"one": "1", "two": "2", "three": "3"}
    assert piped.plugin_metadata("dep-meta", "talkback") == {"p": "x", "q": "y"}  # namespaced by the plugin's name
    assert piped.shared_object(APP_ID, "talkback", "blob") == b"\x00\xffdata"


def test_sync_handlers_use_the_sync_twins(client, piped) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("METADATA_SYNC", deployment={"id": "dep-sync"})
    assert run.status == StageStatus.SUCCESS, run.logs
    assert texts(run.logs) == ["missing=None", "stage=1,2", "plugin=sync,sync", "shared=None", "object=b'sync'"]
    assert run.metadata == {"one": "1", "two": "2"}


def test_install_tool_returns_the_installed_path(client, piped) -> None:  # type: ignore[no-untyped-def]
    script = "printf '#!/bin/sh\\necho {{ .Name }} {{ .Version }}\\n' > {{ .OutPath }}"
    run = client.execute_stage("TOOL", {"script": script})
    assert run.status == StageStatus.SUCCESS, run.logs
    path = f"{piped.tools_dir}/hello-1.0"
    assert texts(run.logs) == [f"installed={path}", f"again={path}"]
    with open(path) as f:
        assert f.read() == "#!/bin/sh\necho hello 1.0\n"


def test_bad_calls_are_refused_before_reaching_piped_and_piped_errors_name_rpc_code_and_message(client, piped) -> None:  # type: ignore[no-untyped-def]
    piped.close_deployment("dep-closed")  # piped drops a deployment's metadata store once it is done
    calls_before = len(piped.calls)
    run = client.execute_stage("REFUSED", deployment={"id": "dep-closed"})
    lines = texts(run.logs)
    assert lines[:6] == [
        "empty-key: ValueError: GetStageMetadata: key must be a non-empty string; piped refuses an empty key with INVALID_ARGUMENT",
        "empty-put-many-key: ValueError: PutDeploymentPluginMetadataMulti: key must be a non-empty string; "
        "piped refuses an empty key with INVALID_ARGUMENT",
        "not-a-str: TypeError: PutStageMetadata: the value of 'k' must be a str, got int; metadata values are strings on the wire, "
        "so convert it (str(...), json.dumps(...))",
        "not-bytes: TypeError: PutApplicationSharedObject: the object 'k' must be bytes, got str; encode text first",
        "read-only: TypeError: ctx.shared_metadata is read-only: piped writes it, plugins only read it",
        "empty-tool: ValueError: InstallTool: name must be a non-empty string; piped refuses an empty name with INVALID_ARGUMENT",
    ]
    assert lines[6] == (
        "piped-error: rpc=GetStageMetadata code=UNKNOWN details=metadata store not found for deployment dep-closed | "
        "piped PluginService.GetStageMetadata failed: UNKNOWN: metadata store not found for deployment dep-closed"
    )
    sent = [rpc for rpc, _ in piped.calls[calls_before:] if not rpc.startswith("ReportStageLogs")]
    assert sent == ["GetStageMetadata"]  # only the last call reached piped


def test_a_sync_twin_called_on_the_event_loop_fails_instead_of_deadlocking(client) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("SYNC_ON_LOOP")
    assert run.status == StageStatus.FAILURE
    assert "ctx.stage_metadata.get_sync() waits for piped, so it cannot run on the event loop" in run.log_text
    assert "write `await ctx.stage_metadata.get(...)`" in run.log_text


def test_commands_are_yielded_once_each_although_piped_lists_them_on_every_poll(client, piped) -> None:  # type: ignore[no-untyped-def]
    call = client.start_stage("COMMANDS", {"count": 3}, deployment={"id": "dep-cmd"})

    def polls() -> int:
        return sum(1 for rpc, r in list(piped.calls) if rpc == "ListStageCommands" and r.stage_id == call.stage_id)

    ids = []
    for add in (lambda: piped.approve("dep-cmd", call.stage_id, "alice"), lambda: piped.skip("dep-cmd", call.stage_id, "bob")):
        ids.append(add())
        seen = polls()
        wait_until(lambda: polls() >= seen + 3, "three more polls that list the same command again")
    ids.append(piped.approve("dep-cmd", call.stage_id, "carol"))
    run = call.result(30)
    assert run.status == StageStatus.SUCCESS, run.logs
    assert texts(run.logs) == [
        f"command {ids[0]} APPROVE_STAGE by alice",
        f"command {ids[1]} SKIP_STAGE by bob",
        f"command {ids[2]} APPROVE_STAGE by carol",
    ]


# -- the client on its own -----------------------------------------------------------------------


def run_async(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_client_maps_not_found_to_none_and_other_errors_to_piped_error() -> None:
    async def main() -> None:
        async with FakePiped() as fake:
            client = PipedClient(fake.address)
            try:
                assert await client.get_application_shared_object("app", "plugin", "nothing") is None
                assert await client.get_deployment_shared_metadata("dep", "nothing") is None
                fake.fail_next("PutStageMetadata", grpc.StatusCode.UNAVAILABLE, message="piped is restarting")
                with pytest.raises(PipedError) as failed:
                    await client.put_stage_metadata("dep", "stage", "k", "v")
                assert (failed.value.rpc, failed.value.code, failed.value.details) == ("PutStageMetadata", grpc.StatusCode.UNAVAILABLE, "piped is restarting")
                assert str(failed.value) == "piped PluginService.PutStageMetadata failed: UNAVAILABLE: piped is restarting"
                assert failed.value.retryable
                fake.fail_next("ListStageCommands", grpc.StatusCode.PERMISSION_DENIED)
                with pytest.raises(PipedError) as denied:
                    await client.list_stage_commands("dep", "stage")
                assert not denied.value.retryable
            finally:
                await client.close()
            assert fake.violations == []

    run_async(main())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_stage_metadata("dep", "", "k"), "GetStageMetadata: stage_id must be a non-empty string"),
        (lambda c: c.put_deployment_plugin_metadata("dep", "", "k", "v"), "PutDeploymentPluginMetadata: plugin_name must be a non-empty string"),
        (lambda c: c.list_stage_commands("", "stage"), "ListStageCommands: deployment_id must be a non-empty string"),
        (lambda c: c.get_application_shared_object("app", "plugin", ""), "GetApplicationSharedObject: key must be a non-empty string"),
        (lambda c: c.install_tool("kubectl", "1.30", ""), "InstallTool: install_script must be a non-empty string"),
    ],
)
def test_empty_ids_and_keys_are_refused_before_any_call(call, message) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with FakePiped() as fake:
            client = PipedClient(fake.address)
            try:
                with pytest.raises(ValueError, match=message):
                    await call(client)
            finally:
                await client.close()
            assert fake.calls == []

    run_async(main())


def test_options_come_from_the_environment_with_clear_errors() -> None:
    options = PipedOptions.from_env({"PIPEPLUG_LOG_FLUSH_INTERVAL": "0.5", "PIPEPLUG_LOG_BUFFER_LINES": "500", "PATH": "/bin"})
    assert (options.log_flush_interval, options.log_buffer_lines, options.command_poll_interval) == (0.5, 500, 5.0)
    with pytest.raises(ValueError, match=r"PIPEPLUG_LOG_BUFFER_LINES='many': expected a whole number"):
        PipedOptions.from_env({"PIPEPLUG_LOG_BUFFER_LINES": "many"})
    with pytest.raises(ValueError, match=r"PIPEPLUG_COMMAND_POLL_INTERVAL='0': must be greater than 0"):
        PipedOptions.from_env({"PIPEPLUG_COMMAND_POLL_INTERVAL": "0"})


def test_context_parts_say_what_a_call_lacks(caplog: pytest.LogCaptureFixture) -> None:
    no_piped = Context(plugin_name="p", rpc="ExecuteStage", stage_id="s")
    with pytest.raises(RuntimeError, match=r"ctx.stage_metadata talks to piped, but this plugin runs without piped"):
        no_piped.stage_metadata  # noqa: B018
    with caplog.at_level(logging.INFO):
        no_piped.log.info("still goes to the process log")  # ctx.log works without piped, lines keep their level
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, "ExecuteStage: still goes to the process log")]

    async def main() -> None:
        async with FakePiped() as fake:
            client = PipedClient(fake.address)
            try:
                livestate = Context(plugin_name="p", rpc="GetLivestate", application_id="app", piped=client)
                with pytest.raises(RuntimeError, match="ctx.stage_metadata needs a deployment and a stage, which piped does not send to GetLivestate"):
                    livestate.stage_metadata  # noqa: B018
                with pytest.raises(RuntimeError, match="ctx.commands.. needs a deployment and a stage"):
                    livestate.commands()
                assert await livestate.shared_objects.get("none") is None  # shared objects work wherever the app is known
            finally:
                await client.close()

    run_async(main())


def test_a_plugin_started_with_a_bad_tuning_variable_says_which(piped, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeplug.testing import PluginProcess
    from pipeplug.testing import PluginStartError
    from tests.talkback_support import TALKBACK_APP

    plugin = PluginProcess(TALKBACK_APP, piped_address=piped.address, env={"PIPEPLUG_LOG_FLUSH_INTERVAL": "soon"}, startup_timeout=10)
    with pytest.raises(PluginStartError, match=r"PIPEPLUG_LOG_FLUSH_INTERVAL='soon': expected a number of seconds"):
        plugin.start()
    plugin.close()

