"""Helpers for the runtime tests: start a plugin file as piped does, build requests, stop by PID.

:class:`PluginProc` is close to :class:`pipeplug.testing.PluginProcess`, but passes extra flags
(``--admin-port``, ``--tls`` ...) and waits for readiness over TLS too, which these tests need.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t

import grpc

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.testing import free_port

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
RUNTIME_APP = os.path.join(TESTS, "apps", "runtime_app.py")
EXAMPLE_APP = os.path.join(ROOT, "example_app.py")


def port_is_free(port: int) -> bool:
    """True if a new server could bind ``port`` (servers set SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def plugin_argv(script: str, config: dict[str, t.Any], extra: t.Sequence[str] = (), piped: str = "localhost:9087") -> list[str]:
    """piped's exact argv (start, --piped-plugin-service, ADDR, --config, JSON), then test flags.

    ``piped`` is a FakePiped's address; plugins whose stages run need one, because a
    stage's result waits for its stage log to reach piped.
    """
    return [sys.executable, script, "start", "--piped-plugin-service", piped, "--config", json.dumps(config), *extra]


class PluginProc:
    """A plugin subprocess; its stderr goes to a file (a pipe could fill up and stall it)."""

    def __init__(
        self, script: str = RUNTIME_APP, *, config: dict[str, t.Any] | None = None, extra: t.Sequence[str] = (), piped: str = "localhost:9087", cwd: str = ROOT
    ) -> None:
        self.config = {"name": "runtime", **(config or {})}
        self.port = self.config.setdefault("port", free_port())
        self.log = tempfile.NamedTemporaryFile(prefix="plugin-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            plugin_argv(script, self.config, extra, piped), stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        self.pid = self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout: float = 20.0, credentials: grpc.ChannelCredentials | None = None) -> PluginProc:
        """Wait until FetchDefinedStages answers (plaintext, or over ``credentials``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"plugin exited with {self.proc.returncode}:\n{self.output()}")
            channel = grpc.secure_channel(self.address, credentials) if credentials else grpc.insecure_channel(self.address)
            try:
                deploy_grpc.DeploymentServiceStub(channel).FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=1)
                return self
            except grpc.RpcError:
                time.sleep(0.05)
            finally:
                channel.close()
        raise AssertionError(f"plugin did not answer within {timeout}s:\n{self.output()}")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; always by PID."""
        try:
            if self.proc.poll() is None:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait(5)
        finally:
            self.log.close()
            os.unlink(self.log.name)


def execute_request(stage: str, *, stage_id: str = "stage-1", deployment_id: str = "deploy-1", options: dict[str, t.Any] | None = None) -> t.Any:
    """An ExecuteStageRequest shaped like piped's, for a stage of the runtime app."""
    stage_pb = model_pb.PipelineStage(id=stage_id, name=stage, index=0, status=model_pb.STAGE_RUNNING)
    deployment = model_pb.Deployment(
        id=deployment_id, application_id="app-1", application_name="app", piped_id="piped-1", project_id="p", stages=[stage_pb]
    )
    return deploy_pb.ExecuteStageRequest(
        input=deploy_pb.ExecutePluginInput(deployment=deployment, stage=stage_pb, stage_config=json.dumps(options or {}).encode())
    )


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (gone, or a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
