"""The runtime under piped's load and piped's signals: held stages, cancellation, SIGTERM, parent death, limits.

Every plugin here is a real subprocess started with piped's argv and stopped by PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginProcess
from pipeplug.testing import free_port
from tests.runtime_support import RUNTIME_APP
from tests.runtime_support import execute_request
from tests.runtime_support import port_is_free
from tests.runtime_support import process_gone

HELD_STAGES = 2000


def metric(admin_port: int, name: str) -> float:
    """One sample of the plugin's /metrics, e.g. ``pipeplug_stages_in_flight``; 0 when absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def piped():  # type: ignore[no-untyped-def]
    with FakePiped() as fake:
        yield fake


@pytest.fixture
def plugin_factory(piped):  # type: ignore[no-untyped-def]
    started: list[PluginProcess] = []

    def start(*extra: str) -> PluginProcess:
        plugin = PluginProcess(RUNTIME_APP, piped_address=piped.address, name="runtime", extra_args=extra, startup_timeout=30)
        started.append(plugin)
        return plugin.start()

    yield start
    for plugin in started:
        plugin.close()


def test_holds_2000_async_stages_in_flight_on_one_connection(plugin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--admin-port", str(admin))
    peak = 0.0

    async def main() -> list[int]:
        nonlocal peak
        async with grpc.aio.insecure_channel(plugin.address) as channel:
            stub = deploy_grpc.DeploymentServiceStub(channel)
            calls = [
                asyncio.ensure_future(stub.ExecuteStage(execute_request("HOLD", stage_id=f"s{i}", options={"seconds": 60, "gate": "g"})))
                for i in range(HELD_STAGES)
            ]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and peak < HELD_STAGES and not any(c.done() for c in calls):
                peak = max(peak, await asyncio.to_thread(metric, admin, "pipeplug_stages_in_flight"))
                await asyncio.sleep(0.2)
            await stub.ExecuteStage(execute_request("RELEASE", stage_id="release", options={"gate": "g"}))
            responses = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)
        return [r.status if isinstance(r, deploy_pb.ExecuteStageResponse) else repr(r) for r in responses]  # type: ignore[misc]

    statuses = asyncio.run(main())
    assert statuses == [model_pb.STAGE_SUCCESS] * HELD_STAGES
    assert peak == HELD_STAGES, "the stages were not all in flight at once"
    assert metric(admin, "pipeplug_stages_in_flight") == 0


def test_cancel_by_piped_reaches_async_and_sync_handlers(plugin_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--admin-port", str(admin))
    marker = tmp_path / "cancelled"
    channel = grpc.insecure_channel(plugin.address)
    stub = deploy_grpc.DeploymentServiceStub(channel)
    try:
        held = stub.ExecuteStage.future(execute_request("HOLD", stage_id="held", options={"seconds": 60, "marker": str(marker)}))
        blocked = stub.ExecuteStage.future(execute_request("BLOCK", stage_id="blocked", options={"seconds": 60}))
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 2, 10, "both stages in flight")
        cancelled_at = time.monotonic()
        held.cancel()
        blocked.cancel()
        wait_for(lambda: marker.exists() and marker.read_text() == "cancelled held\n", 5, "the async handler to see the cancellation")
        wait_for(lambda: plugin.stderr_text().lower().count("cancelled by piped") == 2, 5, "both stages to log the cancellation")
        assert time.monotonic() - cancelled_at < 5
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 0, 5, "no stage in flight")
        with pytest.raises(grpc.FutureCancelledError):
            held.result()
        # The plugin still serves after cancellations.
        response = stub.ExecuteStage(execute_request("HOLD", stage_id="after", options={"seconds": 0}), timeout=10)
        assert response.status == model_pb.STAGE_SUCCESS
    finally:
        channel.close()


def test_a_handler_that_swallows_the_cancellation_gets_no_reply_sent(plugin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--admin-port", str(admin))
    execute = 'pipeplug_rpc_requests_total{code="CANCELLED",method="/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/ExecuteStage"}'
    with grpc.insecure_channel(plugin.address) as channel:
        call = deploy_grpc.DeploymentServiceStub(channel).ExecuteStage.future(execute_request("STUBBORN", options={"seconds": 60}))
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 1, 10, "the stage to be in flight")
        call.cancel()
        wait_for(lambda: metric(admin, execute) == 1, 10, "the call to end CANCELLED")
    assert metric(admin, "pipeplug_stage_results_total") == 0, "a reply was sent on the cancelled call"
    assert "ExecuteStage: the handler returned after piped cancelled the call (it caught the cancellation); no reply sent" in plugin.stderr_text()


def test_sigterm_refuses_new_calls_stops_the_in_flight_stage_and_exits_0(plugin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--grace-period", "10s", "--admin-port", str(admin))
    channel = grpc.insecure_channel(plugin.address)
    stub = deploy_grpc.DeploymentServiceStub(channel)
    try:
        in_flight = stub.ExecuteStage.future(execute_request("HOLD", stage_id="long", options={"seconds": 2}))
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 1, 10, "the stage to be in flight")
        plugin.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: stopping" in plugin.stderr_text(), 5, "the plugin to start stopping")
        # A call that arrives now is refused, or, if grpc had already accepted it, stopped before it runs.
        try:
            late = stub.ExecuteStage(execute_request("HOLD", stage_id="late", options={"seconds": 5}), timeout=5)
        except grpc.RpcError as refused:
            assert refused.code() != grpc.StatusCode.OK
        else:
            assert late.status == model_pb.STAGE_RUNNING
        # stopped, not finished: piped keeps the stage RUNNING and executes it again after its restart
        assert in_flight.result(timeout=10).status == model_pb.STAGE_RUNNING
        assert plugin.wait(10) == 0
    finally:
        channel.close()
    assert port_is_free(plugin.port)


def test_sigterm_cancels_running_stages_at_once_whatever_the_grace_period(plugin_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--grace-period", "60s", "--admin-port", str(admin))
    marker = tmp_path / "cancelled"
    channel = grpc.insecure_channel(plugin.address)
    try:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        stuck = stub.ExecuteStage.future(execute_request("HOLD", stage_id="stuck", options={"seconds": 60, "marker": str(marker)}))
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 1, 10, "the stage to be in flight")
        signalled = time.monotonic()
        plugin.send_signal(signal.SIGTERM)
        assert stuck.result(timeout=10).status == model_pb.STAGE_RUNNING
        assert plugin.wait(10) == 0
        assert time.monotonic() - signalled < 5, "the stage waited for the grace period"
        assert marker.read_text() == "cancelled stuck\n"
    finally:
        channel.close()


def test_second_signal_exits_at_once(plugin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--grace-period", "60s", "--admin-port", str(admin))
    channel = grpc.insecure_channel(plugin.address)
    try:
        # a handler that ignores the cancellation keeps the first stop busy for its clean-up time
        held = deploy_grpc.DeploymentServiceStub(channel).ExecuteStage.future(execute_request("DEAF", options={"seconds": 60}))
        wait_for(lambda: metric(admin, "pipeplug_stages_in_flight") == 1, 10, "the stage to be in flight")
        plugin.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: stopping" in plugin.stderr_text(), 5, "the first signal to be handled")
        plugin.send_signal(signal.SIGTERM)
        assert plugin.wait(5) == 1
        assert "second SIGTERM: exiting now" in plugin.stderr_text()
        with pytest.raises(grpc.RpcError):
            held.result(timeout=5)
    finally:
        channel.close()


def test_plugin_exits_and_frees_its_port_when_piped_is_killed(tmp_path) -> None:
    """piped SIGKILLed: no SIGTERM comes, so the plugin must notice its parent is gone (contract §1.6)."""
    port = free_port()
    argv = PluginProcess(RUNTIME_APP, piped_address="localhost:9087", name="runtime", port=port).argv()
    fake_piped = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen({argv!r})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", fake_piped], stdout=subprocess.PIPE, text=True)
    plugin_pid = 0
    try:
        plugin_pid = int(parent.stdout.readline())  # type: ignore[union-attr]
        wait_for(lambda: not port_is_free(port), 20, "the plugin to listen")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        wait_for(lambda: process_gone(plugin_pid), 15, "the orphaned plugin to exit")
        wait_for(lambda: port_is_free(port), 5, "the port to be freed")
    finally:
        if parent.poll() is None:
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(5)
        if plugin_pid and not process_gone(plugin_pid):
            os.kill(plugin_pid, signal.SIGKILL)


def test_calls_beyond_maximum_concurrent_rpcs_get_resource_exhausted(plugin_factory) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = plugin_factory("--maximum-concurrent-rpcs", "5", "--admin-port", str(admin))
    channel = grpc.insecure_channel(plugin.address)
    stub = deploy_grpc.DeploymentServiceStub(channel)
    try:
        held = [stub.ExecuteStage.future(execute_request("HOLD", stage_id=f"h{i}", options={"seconds": 3})) for i in range(5)]
        wait_for(lambda: metric(admin, "pipeplug_rpcs_in_flight") == 5, 10, "five calls in flight")
        with pytest.raises(grpc.RpcError) as refused:
            stub.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--maximum-concurrent-rpcs" in refused.value.details()
        assert [f.result(timeout=10).status for f in held] == [model_pb.STAGE_SUCCESS] * 5
        assert stub.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=5).stages
        assert metric(admin, "pipeplug_rpcs_refused_total") == 1
    finally:
        channel.close()
