"""Test a plugin without a control plane: a fake piped, a plugin process, a test client.

- :class:`FakePiped` is a real gRPC ``PluginService`` on 127.0.0.1 that keeps
  stage logs, metadata, shared objects and commands the way piped does, and
  refuses what piped refuses, so a plugin real piped would reject fails its test.
- :class:`PluginProcess` starts a plugin exactly as piped does (same argv) and
  stops it by PID.
- :class:`TestClient` (``app.test_client()``) calls every RPC of an app with
  plain Python values in and out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import uuid

import attrs
import grpc

from . import validation
from .build import go_platform
from ._gen.model import command_pb2 as command_pb
from ._gen.model import deployment_pb2 as model_pb
from ._gen.model import logblock_pb2 as logblock_pb
from ._gen.piped import service_pb2 as svc_pb
from ._gen.piped import service_pb2_grpc as svc_grpc
from ._gen.plugin import common_pb2 as plugin_common_pb
from ._gen.plugin import deployment_pb2 as deploy_pb
from ._gen.plugin import deployment_pb2_grpc as deploy_grpc
from ._gen.plugin import livestate_pb2 as live_api_pb
from ._gen.plugin import livestate_pb2_grpc as live_grpc
from ._gen.plugin import planpreview_pb2 as preview_api_pb
from ._gen.plugin import planpreview_pb2_grpc as preview_grpc
from .server import PluginServer
from .settings import parse_settings
from .types import ArtifactKind
from .types import ArtifactVersion
from .types import DeploymentSource
from .types import HealthStatus
from .types import LiveState
from .types import ManualOperation
from .types import PlannedStage
from .types import PlanPreview
from .types import Resource
from .types import StageRequest
from .types import StageStatus
from .types import Strategy
from .types import SyncStatus
from .types import SyncStrategy

if t.TYPE_CHECKING:
    from .app import App

T = t.TypeVar("T")

#: bound on every wait this module makes on its own machinery
STARTUP_TIMEOUT = 15.0

#: defaults for the ids piped would send; tests override what they care about
DEFAULT_APP_ID = "test-app-id"
DEFAULT_APP_NAME = "test-app"
DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _LoopThread:
    """An asyncio loop in a daemon thread, so sync tests can host grpc.aio servers."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: t.Coroutine[t.Any, t.Any, T], timeout: float | None = STARTUP_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(STARTUP_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


# -- FakePiped ---------------------------------------------------------------------

SEVERITY_NAMES = {value.number: value.name for value in logblock_pb.LogSeverity.DESCRIPTOR.values}


@attrs.define
class _LogStream:
    """One stage's log as piped's control plane holds it."""

    #: what the web UI shows: the cache entry (blocks in arrival order)
    cache: list[t.Any] = attrs.field(factory=list)
    #: what the durable file store holds (checkpoint calls only)
    persisted: list[t.Any] = attrs.field(factory=list)
    completed: bool = False
    #: indexes sent with ReportStageLogs since the last checkpoint
    since_checkpoint: set[int] = attrs.field(factory=set)
    highest: int | None = None


@attrs.frozen
class _Failure:
    code: grpc.StatusCode
    message: str


RPC_NAMES = tuple(svc_pb.DESCRIPTOR.services_by_name["PluginService"].methods_by_name)


_TEMPLATE_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render_install_script(script: str, values: t.Mapping[str, str]) -> str:
    """Render the subset of Go text/template piped's install scripts use: ``{{ .Field }}``.

    Raises ValueError for an unknown field or any other action, as the Go
    template would fail for an unknown field.
    """

    def replace(match: re.Match[str]) -> str:
        expr = match.group(2)
        if not expr.startswith(".") or expr[1:] not in values:
            known = ", ".join("{{ .%s }}" % k for k in values)
            raise ValueError(f"install script: cannot evaluate {{{{ {expr} }}}}; piped's template has {known}")
        return values[expr[1:]]

    out = []
    pos = 0
    for match in _TEMPLATE_ACTION.finditer(script):
        text = script[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(text)
        out.append(replace(match))
        pos = match.end()
        if match.group(3):
            rest = script[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(script[pos:])
    return "".join(out)


class FakePiped:
    """A real gRPC ``PluginService`` on 127.0.0.1 that behaves like piped towards a plugin.

    Use it as ``with FakePiped() as fake:`` in sync code (served from a
    background thread) or ``async with FakePiped() as fake:`` in async code
    (served on the running loop). Point a plugin at ``fake.address``.

    Requests piped would refuse get INVALID_ARGUMENT with the reason, and every
    reason is kept in :attr:`violations`; mistakes piped would accept but that
    lose or misplace data (repeated log indexes, a checkpoint that leaves out
    lines) are only recorded there, so check ``fake.violations`` (the pytest
    fixture does it for you).
    """

    def __init__(self, *, tools_dir: str | None = None, piped_id: str = "piped-test", install_timeout: float = 300.0) -> None:
        self.piped_id = piped_id
        self.install_timeout = install_timeout
        #: every rule a plugin broke, in order, as human-readable text
        self.violations: list[str] = []
        #: every call received, in order: (rpc name, request)
        self.calls: list[tuple[str, t.Any]] = []
        self.port = 0
        self._tools_dir = tools_dir
        self._own_tools_dir = False
        self._tmp_root = ""
        self._lock = threading.RLock()
        self._logs: dict[tuple[str, str], _LogStream] = {}
        self._stage_metadata: dict[tuple[str, str], dict[str, str]] = {}
        self._plugin_metadata: dict[tuple[str, str], dict[str, str]] = {}
        self._shared_metadata: dict[str, dict[str, str]] = {}
        self._closed_deployments: set[str] = set()
        self._shared_objects: dict[tuple[str, str, str], bytes] = {}
        self._commands: dict[tuple[str, str], list[t.Any]] = {}
        self._installed: set[str] = set()
        self._install_locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self._outages = 0
        self._server: grpc.aio.Server | None = None
        self._thread: _LoopThread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: pass it as the plugin's ``--piped-plugin-service``."""
        if not self.port:
            raise RuntimeError("FakePiped is not started; use `with FakePiped() as fake:` or call start()")
        return f"127.0.0.1:{self.port}"

    @property
    def tools_dir(self) -> str:
        """Where InstallTool puts tools (``<tools_dir>/<name>-<version>``)."""
        if not self._tools_dir:
            raise RuntimeError("FakePiped is not started")
        return self._tools_dir

    async def start_async(self) -> FakePiped:
        """Serve on the running event loop."""
        if self._server is not None:
            raise RuntimeError("FakePiped is already started")
        self._tmp_root = tempfile.mkdtemp(prefix="pipeplug-fake-piped-")
        if self._tools_dir is None:
            self._tools_dir = os.path.join(self._tmp_root, "tools")
            self._own_tools_dir = True
        os.makedirs(self._tools_dir, exist_ok=True)
        # piped counts every file already in its tools dir as installed
        self._installed = {e.name for e in os.scandir(self._tools_dir) if e.is_file()}
        server = grpc.aio.server()
        svc_grpc.add_PluginServiceServicer_to_server(_PluginServiceServicer(self), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("FakePiped could not bind a port on 127.0.0.1")
        await server.start()
        self._server = server
        return self

    async def stop_async(self, grace: float | None = 0.5) -> None:
        """Stop serving and remove the temp dirs this fake created."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        self.port = 0
        if self._tmp_root:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            if self._own_tools_dir:
                self._tools_dir = None
                self._own_tools_dir = False
            self._tmp_root = ""

    def start(self) -> FakePiped:
        """Serve from a background thread with its own event loop (for sync tests)."""
        self._thread = _LoopThread("pipeplug-fake-piped")
        try:
            self._thread.run(self.start_async())
        except BaseException:
            self._thread.close()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop a fake started with :meth:`start`."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                thread.run(self.stop_async())
            finally:
                thread.close()

    def __enter__(self) -> FakePiped:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakePiped:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self.port}" if self.port else "not started"
        return f"<FakePiped {where} violations={len(self.violations)}>"

    # -- failure injection -----------------------------------------------------

    def fail_next(self, rpc: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, n: int = 1, message: str = "") -> None:
        """Answer the next ``n`` calls of ``rpc`` (an RPC name, or ``"*"`` for any) with ``code``."""
        self._check_rpc(rpc)
        failure = _Failure(code, message or f"FakePiped: injected {code.name} for {rpc}")
        with self._lock:
            self._failures.setdefault(rpc, []).extend([failure] * n)

    @contextlib.contextmanager
    def outage(self) -> t.Iterator[None]:
        """While inside, every call gets UNAVAILABLE, as when piped is down or restarting."""
        with self._lock:
            self._outages += 1
        try:
            yield
        finally:
            with self._lock:
                self._outages -= 1

    @contextlib.contextmanager
    def slow(self, rpc: str, seconds: float) -> t.Iterator[None]:
        """While inside, calls of ``rpc`` (or ``"*"``) wait ``seconds`` before being served."""
        self._check_rpc(rpc)
        with self._lock:
            previous = self._delays.get(rpc)
            self._delays[rpc] = seconds
        try:
            yield
        finally:
            with self._lock:
                if previous is None:
                    self._delays.pop(rpc, None)
                else:
                    self._delays[rpc] = previous

    def _check_rpc(self, rpc: str) -> None:
        if rpc != "*" and rpc not in RPC_NAMES:
            raise ValueError(f"unknown PluginService RPC {rpc!r}; expected '*' or one of {', '.join(RPC_NAMES)}")

    # -- commands --------------------------------------------------------------

    def approve(self, deployment_id: str, stage_id: str, commander: str = "tester") -> str:
        """Queue an APPROVE_STAGE command from ``commander``, as a click in the web UI; return its id."""
        return self._add_command(deployment_id, stage_id, commander, command_pb.Command.APPROVE_STAGE)

    def skip(self, deployment_id: str, stage_id: str, commander: str = "tester") -> str:
        """Queue a SKIP_STAGE command; return its id. (Real piped only allows it on stages named ANALYSIS.)"""
        return self._add_command(deployment_id, stage_id, commander, command_pb.Command.SKIP_STAGE)

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        """What piped does after the stage's ExecuteStage returns: its commands stop being listed."""
        with self._lock:
            self._commands.pop((deployment_id, stage_id), None)

    def _add_command(self, deployment_id: str, stage_id: str, commander: str, kind: t.Any) -> str:
        now = int(time.time())
        command = command_pb.Command(
            id=str(uuid.uuid4()),
            piped_id=self.piped_id,
            deployment_id=deployment_id,
            stage_id=stage_id,
            commander=commander,
            status=command_pb.COMMAND_NOT_HANDLED_YET,
            type=kind,
            created_at=now,
            updated_at=now,
        )
        if kind == command_pb.Command.APPROVE_STAGE:
            command.approve_stage.deployment_id, command.approve_stage.stage_id = deployment_id, stage_id
        else:
            command.skip_stage.deployment_id, command.skip_stage.stage_id = deployment_id, stage_id
        with self._lock:
            self._commands.setdefault((deployment_id, stage_id), []).append(command)
        return command.id

    # -- seeding and reading state ---------------------------------------------

    def log_lines(self, deployment_id: str, stage_id: str) -> list[tuple[str, str]]:
        """The stage log as the web UI would show it: ``(severity, text)`` in index order."""
        return [(SEVERITY_NAMES.get(b.severity, str(b.severity)), b.log) for b in self.log_blocks(deployment_id, stage_id)]

    def log_blocks(self, deployment_id: str, stage_id: str) -> list[t.Any]:
        """The stage's ``model.LogBlock`` messages as the web UI would show them, in index order."""
        with self._lock:
            stream = self._logs.get((deployment_id, stage_id))
            return sorted(stream.cache, key=lambda b: b.index) if stream else []

    def log_completed(self, deployment_id: str, stage_id: str) -> bool:
        """Whether the plugin sent ``completed=true`` for this stage's log."""
        with self._lock:
            stream = self._logs.get((deployment_id, stage_id))
            return bool(stream and stream.completed)

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        """A copy of one stage's metadata."""
        with self._lock:
            return dict(self._stage_metadata.get((deployment_id, stage_id), {}))

    def set_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        """Seed stage metadata, as piped does from the planned stage's metadata."""
        with self._lock:
            self._stage_metadata.setdefault((deployment_id, stage_id), {}).update(values)

    def plugin_metadata(self, deployment_id: str, plugin_name: str) -> dict[str, str]:
        """A copy of one plugin's deployment metadata."""
        with self._lock:
            return dict(self._plugin_metadata.get((deployment_id, plugin_name), {}))

    def set_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        """Seed deployment plugin metadata (namespace ``plugin_name``)."""
        with self._lock:
            self._plugin_metadata.setdefault((deployment_id, plugin_name), {}).update(values)

    def set_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        """Seed the deployment's shared metadata, which piped writes and plugins only read."""
        with self._lock:
            self._shared_metadata.setdefault(deployment_id, {}).update(values)

    def close_deployment(self, deployment_id: str) -> None:
        """Drop the deployment's metadata store, as piped does once planning or execution ends.

        Metadata calls for it then fail with UNKNOWN, as with real piped.
        """
        with self._lock:
            self._closed_deployments.add(deployment_id)

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        """An application shared object, or None."""
        with self._lock:
            return self._shared_objects.get((application_id, plugin_name, key))

    def set_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        """Seed an application shared object."""
        with self._lock:
            self._shared_objects[(application_id, plugin_name, key)] = bytes(value)

    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every rule the plugin broke."""
        with self._lock:
            found = list(self.violations)
        if found:
            raise AssertionError("the plugin broke piped's rules:\n" + "\n".join(f"  - {v}" for v in found))

    # -- serving (called by the servicer on the server's loop) -----------------

    async def _serve(self, rpc: str, request: t.Any, context: grpc.aio.ServicerContext) -> t.Any:
        with self._lock:
            self.calls.append((rpc, request))
            failure = None
            if self._outages:
                failure = _Failure(grpc.StatusCode.UNAVAILABLE, "FakePiped: outage")
            else:
                for key in (rpc, "*"):
                    queue = self._failures.get(key)
                    if queue:
                        failure = queue.pop(0)
                        break
            delay = self._delays.get(rpc, self._delays.get("*", 0.0))
        if failure is not None:
            await context.abort(failure.code, failure.message)
        if delay:
            await asyncio.sleep(delay)
        problems = validation.check_plugin_service_request(rpc, request)
        if problems:
            self._record(problems)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        return await getattr(self, f"_rpc_{rpc}")(request, context)

    def _record(self, problems: t.Iterable[str]) -> None:
        with self._lock:
            self.violations.extend(problems)

    async def _rpc_ReportStageLogs(self, request: t.Any, context: t.Any) -> t.Any:
        key = (request.deployment_id, request.stage_id)
        with self._lock:
            stream = self._logs.setdefault(key, _LogStream())
            completed = stream.completed
            if not completed:
                self._record(validation.check_log_retried_count(request.retried_count, stage=request.stage_id))
                self._record(validation.check_log_indexes(request.blocks, after=stream.highest, stage=request.stage_id))
                # the control plane drops blocks whose index it already holds
                held = {b.index for b in stream.cache}
                stream.cache.extend(b for b in request.blocks if b.index not in held)
                stream.since_checkpoint.update(b.index for b in request.blocks)
                stream.highest = max([b.index for b in request.blocks] + ([stream.highest] if stream.highest is not None else []), default=None)
        if completed:
            self._record([f"real piped would refuse this: ReportStageLogs for stage {request.stage_id} after its log was completed"])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the stage log of {request.stage_id} is already completed")
        return svc_pb.ReportStageLogsResponse()

    async def _rpc_ReportStageLogsFromLastCheckpoint(self, request: t.Any, context: t.Any) -> t.Any:
        key = (request.deployment_id, request.stage_id)
        with self._lock:
            stream = self._logs.setdefault(key, _LogStream())
            completed = stream.completed
            if not completed:
                persisted_top = max((b.index for b in stream.persisted), default=None)
                self._record(validation.check_log_retried_count(request.retried_count, stage=request.stage_id))
                self._record(validation.check_checkpoint_covers(stream.since_checkpoint, request.blocks, stage=request.stage_id))
                self._record(
                    validation.check_log_indexes(
                        request.blocks, after=persisted_top, stage=request.stage_id, method="ReportStageLogsFromLastCheckpoint"
                    )
                )
                held = {b.index for b in stream.persisted}
                stream.persisted.extend(b for b in request.blocks if b.index not in held)
                # the merged durable view replaces the cache entry
                stream.cache = list(stream.persisted)
                stream.since_checkpoint = set()
                stream.highest = max([b.index for b in request.blocks] + ([stream.highest] if stream.highest is not None else []), default=None)
                stream.completed = request.completed
        if completed:
            self._record([f"real piped would refuse this: ReportStageLogsFromLastCheckpoint for stage {request.stage_id} after its log was completed"])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the stage log of {request.stage_id} is already completed")
        return svc_pb.ReportStageLogsFromLastCheckpointResponse()

    async def _metadata_store(self, deployment_id: str, context: t.Any) -> None:
        with self._lock:
            closed = deployment_id in self._closed_deployments
        if closed:
            await context.abort(grpc.StatusCode.UNKNOWN, f"metadata store not found for deployment {deployment_id}")

    async def _rpc_GetStageMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        with self._lock:
            values = self._stage_metadata.get((request.deployment_id, request.stage_id), {})
            return svc_pb.GetStageMetadataResponse(value=values.get(request.key, ""), found=request.key in values)

    async def _rpc_PutStageMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        self.set_stage_metadata(request.deployment_id, request.stage_id, {request.key: request.value})
        return svc_pb.PutStageMetadataResponse()

    async def _rpc_PutStageMetadataMulti(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        self.set_stage_metadata(request.deployment_id, request.stage_id, dict(request.metadata))
        return svc_pb.PutStageMetadataMultiResponse()

    async def _rpc_GetDeploymentPluginMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        with self._lock:
            values = self._plugin_metadata.get((request.deployment_id, request.plugin_name), {})
            return svc_pb.GetDeploymentPluginMetadataResponse(value=values.get(request.key, ""), found=request.key in values)

    async def _rpc_PutDeploymentPluginMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        self.set_plugin_metadata(request.deployment_id, request.plugin_name, {request.key: request.value})
        return svc_pb.PutDeploymentPluginMetadataResponse()

    async def _rpc_PutDeploymentPluginMetadataMulti(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        self.set_plugin_metadata(request.deployment_id, request.plugin_name, dict(request.metadata))
        return svc_pb.PutDeploymentPluginMetadataMultiResponse()

    async def _rpc_GetDeploymentSharedMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        with self._lock:
            values = self._shared_metadata.get(request.deployment_id, {})
            return svc_pb.GetDeploymentSharedMetadataResponse(value=values.get(request.key, ""), found=request.key in values)

    async def _rpc_ListStageCommands(self, request: t.Any, context: t.Any) -> t.Any:
        with self._lock:
            commands = list(self._commands.get((request.deployment_id, request.stage_id), []))
        return svc_pb.ListStageCommandsResponse(commands=commands)

    async def _rpc_GetApplicationSharedObject(self, request: t.Any, context: t.Any) -> t.Any:
        value = self.shared_object(request.application_id, request.plugin_name, request.key)
        if value is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "the requested application shared object was not found")
        return svc_pb.GetApplicationSharedObjectResponse(object=value)

    async def _rpc_PutApplicationSharedObject(self, request: t.Any, context: t.Any) -> t.Any:
        self.set_shared_object(request.application_id, request.plugin_name, request.key, request.object)
        return svc_pb.PutApplicationSharedObjectResponse()

    async def _rpc_InstallTool(self, request: t.Any, context: t.Any) -> t.Any:
        target = f"{request.name}-{request.version}"
        lock = self._install_locks.setdefault(target, asyncio.Lock())
        async with lock:  # concurrent installs of one name-version run once, like piped's singleflight
            try:
                path = await self._install(target, request)
            except (OSError, ValueError, RuntimeError) as exc:
                await context.abort(grpc.StatusCode.UNKNOWN, f"failed to install the tool {target}: {exc}")
        return svc_pb.InstallToolResponse(installed_path=path)

    async def _install(self, target: str, request: t.Any) -> str:
        tool_path = os.path.join(self.tools_dir, target)
        with self._lock:
            if target in self._installed:
                return tool_path
        work = tempfile.mkdtemp(dir=self._tmp_root, prefix="install-")
        try:
            out_dir, tmp_dir = os.path.join(work, "out"), os.path.join(work, "tmp")
            os.makedirs(out_dir)
            os.makedirs(tmp_dir)
            out_path = os.path.join(out_dir, "out")
            values = {
                "Name": request.name,
                "Version": request.version,
                "OutPath": out_path,
                "TmpDir": tmp_dir,
                "Arch": go_platform()[1],
                "Os": go_platform()[0],
            }
            script = render_install_script(request.install_script, values)
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            try:
                output, _ = await asyncio.wait_for(proc.communicate(), self.install_timeout)
            except asyncio.TimeoutError:
                raise RuntimeError(f"the install script did not finish within {self.install_timeout:.0f}s") from None
            finally:
                if proc.returncode is None:  # timed out, or the caller cancelled: piped kills the script too
                    proc.kill()
                    await proc.wait()
            if proc.returncode != 0:
                text = output.decode(errors="replace")
                raise RuntimeError(f"failed to execute the install script: exit status {proc.returncode}, output: {text}")
            if not os.path.isfile(out_path):
                raise RuntimeError(f"the install script exited 0 but did not create {{{{ .OutPath }}}} ({out_path})")
            os.chmod(out_path, 0o755)
            shutil.move(out_path, tool_path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self._lock:
            self._installed.add(target)
        return tool_path


class _PluginServiceServicer(svc_grpc.PluginServiceServicer):
    """Routes every PluginService RPC to its FakePiped."""

    def __init__(self, fake: FakePiped) -> None:
        self.fake = fake


def _make_method(rpc: str) -> t.Callable[..., t.Any]:
    async def method(self: _PluginServiceServicer, request: t.Any, context: grpc.aio.ServicerContext) -> t.Any:
        return await self.fake._serve(rpc, request, context)

    method.__name__ = rpc
    return method


for _rpc in RPC_NAMES:
    setattr(_PluginServiceServicer, _rpc, _make_method(_rpc))
del _rpc


# -- PluginProcess -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PluginStartError(RuntimeError):
    """The plugin process died or never answered on its port."""


_LAUNCHER = "import sys; from pipeplug.loading import load_app; load_app(sys.argv.pop(1)).main(sys.argv[1:])"


class PluginProcess:
    """A plugin started as a real subprocess with piped's argv, stopped by PID.

    ``target`` is a plugin file (run as ``<python> file.py``, or with
    ``executable`` when given, e.g. the file itself for a shebang script) or a
    ``MODULE:APP`` / ``file.py:app`` target (run through a tiny ``python -c``
    launcher). After the program, argv is exactly piped's:
    ``start --piped-plugin-service <addr> --config <json>``.

    :param name: ``spec.plugins[].name``; omitted from the config when None,
        so a pipeplug app uses its own name.
    :param config: the plugin's ``config`` (omitted when None, as piped does).
    :param deploy_targets: piped's ``deployTargets`` entries ``{"name", "labels"?, "config"}``.
    """

    def __init__(
        self,
        target: str,
        *,
        piped_address: str,
        name: str | None = None,
        config: t.Any = None,
        deploy_targets: t.Sequence[t.Mapping[str, t.Any]] = (),
        port: int = 0,
        executable: str | t.Sequence[str] | None = None,
        env: t.Mapping[str, str] | None = None,
        cwd: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.target = target
        self.piped_address = piped_address
        self.name = name
        self.config = config
        self.deploy_targets = [dict(d) for d in deploy_targets]
        self.port = port or free_port()
        self.executable = [executable] if isinstance(executable, str) else list(executable or [])
        self.env = env
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._output: t.IO[bytes] | None = None
        self._kept_output = ""

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: where the plugin serves."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the plugin process is not started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended (negative: killed by that signal), else None."""
        return None if self.process is None else self.process.poll()

    def config_json(self) -> str:
        """The ``--config`` value, shaped like piped's ``json.Marshal`` of ``spec.plugins[]``."""
        entry: dict[str, t.Any] = {}
        if self.name is not None:
            entry["name"] = self.name
        entry["url"] = "file://" + os.path.abspath(self._file())
        entry["port"] = self.port
        if self.config is not None:
            entry["config"] = self.config
        if self.deploy_targets:
            entry["deployTargets"] = [{"config": None, **d} for d in self.deploy_targets]
        return json.dumps(entry, separators=(",", ":"))

    def _file(self) -> str:
        if os.path.isfile(self.target):
            return self.target
        head, sep, _ = self.target.rpartition(":")
        return head if sep and os.path.isfile(head) else self.target

    def argv(self) -> list[str]:
        """The full argv: the program, then piped's five arguments."""
        if os.path.isfile(self.target):
            program = self.executable or [sys.executable, self.target]
        else:
            program = [*(self.executable or [sys.executable]), "-c", _LAUNCHER, self.target]
        return [*program, "start", "--piped-plugin-service", self.piped_address, "--config", self.config_json()]

    def start(self) -> PluginProcess:
        """Start the process and wait until it answers FetchDefinedStages, as piped does."""
        if self.process is not None:
            raise RuntimeError("the plugin process is already started")
        self._output = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._output, stderr=self._output, env=env, cwd=self.cwd)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(grace=1.0)
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with grpc.insecure_channel(self.address) as channel:
            fetch = channel.unary_unary(
                "/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/FetchDefinedStages",
                request_serializer=lambda _: b"",
                response_deserializer=lambda data: data,
            )
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise PluginStartError(
                        f"plugin {self.target} exited with status {self.process.returncode} before serving on {self.address}; "
                        f"its output ends with:\n{self.stderr_text(tail=40)}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PluginStartError(
                        f"plugin {self.target} (pid {self.pid}) did not answer on {self.address} within {self.startup_timeout:.0f}s "
                        f"(real piped would hang here); its output ends with:\n{self.stderr_text(tail=40)}"
                    )
                try:
                    fetch(None, timeout=min(1.0, remaining))
                    return
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        return  # it answers, even if with an error: piped's next step reports that
                time.sleep(0.05)

    def stderr_text(self, tail: int | None = None) -> str:
        """What the plugin wrote to stdout and stderr (which piped shares with it); ``tail`` keeps the last lines."""
        if self._output is None:
            text = self._kept_output
        else:
            self._output.flush()
            self._output.seek(0)
            text = self._output.read().decode(errors="replace")
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after ``grace`` seconds, as piped does; return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STARTUP_TIMEOUT)
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL by PID, as when piped's host dies; return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait(STARTUP_TIMEOUT)
        return process.returncode

    def close(self) -> None:
        """Stop the process and release its output file."""
        self.stop()
        if self._output is not None:
            self._kept_output = self.stderr_text()
            self._output.close()
            self._output = None

    def __enter__(self) -> PluginProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "not started" if self.process is None else f"pid {self.process.pid}" + (f" exited {self.returncode}" if self.returncode is not None else "")
        return f"<PluginProcess {self.target} {self.address} {state}>"


# -- TestClient -------------------------------------------------------------------------


class PluginCallError(Exception):
    """The plugin answered an RPC with a gRPC error."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{rpc} failed with {code.name}: {details}")
        self.rpc = rpc
        self.code = code
        self.details = details


class PipedWouldRefuse(AssertionError):
    """The plugin answered with something real piped (or its control plane) would refuse."""

    def __init__(self, rpc: str, violations: t.Sequence[str]) -> None:
        super().__init__(f"{rpc} answered with what piped would not accept:\n" + "\n".join(f"  - {v}" for v in violations))
        self.rpc = rpc
        self.violations = list(violations)


@attrs.frozen
class StageRun:
    """What one ExecuteStage call produced, as a test wants to see it."""

    status: StageStatus
    message: str
    deployment_id: str
    stage_id: str
    #: the stage log as the web UI would show it: (severity, text)
    logs: list[tuple[str, str]]
    #: whether the plugin completed the stage log
    log_completed: bool
    #: the stage's metadata after the call
    metadata: dict[str, str]

    @property
    def log_text(self) -> str:
        """The log lines joined by newlines, for ``in`` checks."""
        return "\n".join(text for _, text in self.logs)


class StageCall:
    """An ExecuteStage call in flight (see :meth:`TestClient.start_stage`)."""

    def __init__(self, client: TestClient, future: t.Any, deployment_id: str, stage_id: str) -> None:
        self._client = client
        self._future = future
        self.deployment_id = deployment_id
        self.stage_id = stage_id

    def result(self, timeout: float | None = 60.0) -> StageRun:
        """Wait for the plugin's answer (bounded by ``timeout`` seconds).

        Raises :class:`PluginCallError` on a gRPC error, CANCELLED after :meth:`cancel`.
        """
        try:
            response = self._future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise TimeoutError(f"ExecuteStage of stage {self.stage_id} did not answer within {timeout}s") from None
        except grpc.FutureCancelledError:
            details = "the test cancelled ExecuteStage; piped records such a stage CANCELLED whatever the plugin answers"
            raise PluginCallError("ExecuteStage", grpc.StatusCode.CANCELLED, details) from None
        except grpc.RpcError as exc:
            raise PluginCallError("ExecuteStage", exc.code(), exc.details() or "") from None
        finally:
            # piped marks the stage's commands handled once ExecuteStage returns, whatever the result
            self._client.piped.mark_commands_handled(self.deployment_id, self.stage_id)
        return self._client._stage_run(response, self.deployment_id, self.stage_id)

    def cancel(self) -> None:
        """Cancel the RPC, as piped does on a UI cancel, a timeout or its own shutdown."""
        self._future.cancel()

    def done(self) -> bool:
        return bool(self._future.done())


def _source_pb(source: DeploymentSource) -> t.Any:
    return plugin_common_pb.DeploymentSource(
        application_directory=source.application_directory,
        commit_hash=source.commit_hash,
        application_config=source.application_config,
        application_config_filename=source.application_config_filename,
        shared_config_directory=source.shared_config_directory,
    )


def _planned_from_pb(stage: t.Any) -> PlannedStage:
    return PlannedStage(
        name=stage.name,
        index=stage.index,
        desc=stage.desc,
        rollback=stage.rollback,
        metadata=dict(stage.metadata),
        available_operation=ManualOperation(stage.available_operation),
        authorized_operators=tuple(stage.authorized_operators),
    )


class TestClient:
    """Call every RPC of a plugin with plain Python values, over real gRPC.

    In-process (``app.test_client()``): the app is served by a PluginServer on
    127.0.0.1 in a background thread. Over loopback (``TestClient(address=...)``):
    against a plugin already started, e.g. by :class:`PluginProcess`. Either way
    the plugin talks to ``piped`` (a :class:`FakePiped`, created when not given),
    answers are checked against piped's rules (:class:`PipedWouldRefuse`), and
    gRPC errors raise :class:`PluginCallError`.

    Required ids and timestamps get realistic defaults, so tests name only
    what they care about. Use it as a context manager (or call :meth:`close`).

    :param name: the plugin's ``spec.plugins[].name`` (default: the app's name);
        over loopback, pass the name the started plugin was given.
    :param config: the plugin's ``config`` from piped's config (in-process only).
    :param deploy_targets: piped's ``deployTargets`` entries ``{"name", "labels"?, "config"}``;
        their names are what deployments list for this plugin by default.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App | None = None,
        *,
        address: str | None = None,
        piped: FakePiped | None = None,
        name: str | None = None,
        config: t.Any = None,
        deploy_targets: t.Sequence[t.Mapping[str, t.Any]] = (),
    ) -> None:
        if (app is None) == (address is None):
            raise TypeError("TestClient needs either an app (served in-process) or the address of a started plugin, not both")
        self.app = app
        self._own_piped = piped is None
        self.piped = piped or FakePiped()
        self._raw_settings: dict[str, t.Any] = {"name": name or (app.name if app else ""), "port": 0}
        if config is not None:
            self._raw_settings["config"] = config
        if deploy_targets:
            self._raw_settings["deployTargets"] = [{"config": None, **d} for d in deploy_targets]
        #: the plugin's name in piped's config: keys deploy targets and plugin metadata
        self.plugin_name = name or (app.name if app else "")
        self.deploy_target_names = [d["name"] for d in deploy_targets]
        self.address = address or ""
        self.server: PluginServer | None = None
        self._loop: _LoopThread | None = None
        self._channel: grpc.Channel | None = None
        self._tmp = ""
        self._defined: list[str] | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> TestClient:
        """Start the FakePiped (if owned) and, in-process, the app's server."""
        if self._started:
            return self
        if self._own_piped:
            self.piped.start()
        try:
            if self.app is not None:
                settings = parse_settings(self.app, self._raw_settings, require_port=False)
                self.plugin_name = self.plugin_name or settings.name
                self._loop = _LoopThread("pipeplug-test-client")
                self.server = PluginServer(
                    self.app, settings, hosts=("127.0.0.1",), grace_period=1.0, piped_address=self.piped.address, watch_parent=False
                )
                self._loop.run(self.server.start())
                self.address = f"127.0.0.1:{self.server.port}"
            self._channel = grpc.insecure_channel(self.address)
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    def close(self) -> None:
        """Stop everything this client started."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._loop is not None:
            try:
                if self.server is not None:
                    self._loop.run(self.server.stop(0.5))
            finally:
                self._loop.close()
                self._loop = None
        if self._own_piped:
            self.piped.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""
        self._started = False

    def __enter__(self) -> TestClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stub(self, module: t.Any, service: str) -> t.Any:
        if not self._started:
            self.start()
        return getattr(module, f"{service}Stub")(self._channel)

    def _call(self, rpc: str, method: t.Any, request: t.Any, timeout: float | None = 60.0) -> t.Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise PluginCallError(rpc, exc.code(), exc.details() or "") from None

    @staticmethod
    def _check(rpc: str, violations: t.Sequence[str]) -> None:
        if violations:
            raise PipedWouldRefuse(rpc, violations)

    # -- building what piped sends ------------------------------------------------------

    def _default_source(self) -> DeploymentSource:
        if not self._tmp:
            self._tmp = tempfile.mkdtemp(prefix="pipeplug-test-client-")
        app_dir = os.path.join(self._tmp, "app")
        os.makedirs(app_dir, exist_ok=True)
        return self.source(app_dir)

    def source(self, application_directory: str, *, commit_hash: str = DEFAULT_COMMIT, config_filename: str = "app.pipecd.yaml") -> DeploymentSource:
        """A DeploymentSource for a directory; its app config is read from ``config_filename`` there, if present."""
        path = os.path.join(application_directory, config_filename)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                raw = f.read()
        else:
            raw = f"apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  name: {DEFAULT_APP_NAME}\n".encode()
        return DeploymentSource(
            application_directory=application_directory,
            commit_hash=commit_hash,
            application_config=raw,
            application_config_filename=config_filename,
        )

    def _target_source(self, source: DeploymentSource | str | None) -> t.Any:
        """piped always sends the target source: default to an empty application directory."""
        if source is None:
            return _source_pb(self._default_source())
        return _source_pb(self.source(source) if isinstance(source, str) else source)

    def _set_running_source(self, field: t.Any, source: DeploymentSource | str | None) -> None:
        """piped leaves the running source unset on an application's first deployment."""
        if source is not None:
            field.CopyFrom(_source_pb(self.source(source) if isinstance(source, str) else source))

    def deployment(self, overrides: t.Mapping[str, t.Any] | t.Any = None, *, deploy_targets: t.Sequence[str] | None = None) -> t.Any:
        """A ``model.Deployment`` as piped sends it, with realistic defaults.

        ``overrides`` is a ``model.Deployment`` (used as is) or a mapping of
        :class:`pipeplug.Deployment` field names (``id``, ``application_id``,
        ``commit_hash``, ``commander``, ``labels``, ...).
        """
        if overrides is not None and not isinstance(overrides, t.Mapping):
            return overrides
        values = dict(overrides or {})
        now = int(time.time())
        targets = list(self.deploy_target_names if deploy_targets is None else deploy_targets)
        pb = model_pb.Deployment(
            id=values.pop("id", None) or str(uuid.uuid4()),
            application_id=values.pop("application_id", DEFAULT_APP_ID),
            application_name=values.pop("application_name", DEFAULT_APP_NAME),
            piped_id=values.pop("piped_id", self.piped.piped_id),
            project_id=values.pop("project_id", "test-project"),
            labels=values.pop("labels", {}),
            summary=values.pop("summary", ""),
            running_commit_hash=values.pop("running_commit_hash", ""),
            status=model_pb.DEPLOYMENT_RUNNING,
            created_at=values.pop("created_at", now),
            updated_at=now,
        )
        pb.git_path.repo.id = "test-repo"
        pb.git_path.repo.remote = values.pop("repository_url", "https://example.com/test/repo.git")
        pb.git_path.repo.branch = values.pop("commit_branch", "main")
        pb.git_path.path = "app"
        pb.git_path.config_filename = "app.pipecd.yaml"
        trigger = pb.trigger
        trigger.commit.hash = values.pop("commit_hash", DEFAULT_COMMIT)
        trigger.commit.message = values.pop("commit_message", "Update the app")
        trigger.commit.author = values.pop("commit_author", "tester")
        trigger.commit.branch = pb.git_path.repo.branch
        trigger.commit.created_at = now
        trigger.commander = values.pop("commander", "")
        trigger.timestamp = now
        trigger.sync_strategy = t.cast(t.Any, int(values.pop("sync_strategy", SyncStrategy.PIPELINE)))
        by_plugin = values.pop("deploy_targets_by_plugin", None)
        if by_plugin is None:
            by_plugin = {self.plugin_name: targets} if self.plugin_name else {}
        for plugin, names in by_plugin.items():
            pb.deploy_targets_by_plugin[plugin].deploy_targets.extend(names)
        if values:
            raise TypeError(f"unknown deployment field(s): {', '.join(sorted(values))}")
        return pb

    def _plan_input(self, deployment: t.Any, target_source: t.Any, running_source: t.Any, deploy_targets: t.Any) -> t.Any:
        inp = deploy_pb.PlanPluginInput(deployment=self.deployment(deployment, deploy_targets=deploy_targets))
        inp.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(inp.running_deployment_source, running_source)
        return inp

    # -- DeploymentService ---------------------------------------------------------------

    def _deploy(self) -> t.Any:
        return self._stub(deploy_grpc, "DeploymentService")

    def fetch_defined_stages(self) -> list[str]:
        """FetchDefinedStages: every stage name the plugin can emit."""
        response = self._call("FetchDefinedStages", self._deploy().FetchDefinedStages, deploy_pb.FetchDefinedStagesRequest())
        self._defined = list(response.stages)
        return list(response.stages)

    def _defined_stages(self) -> list[str]:
        return self._defined if self._defined is not None else self.fetch_defined_stages()

    def determine_versions(
        self, *, deployment: t.Any = None, target_source: t.Any = None, running_source: t.Any = None, deploy_targets: t.Sequence[str] | None = None
    ) -> list[ArtifactVersion]:
        """DetermineVersions: the artifact versions of the target source."""
        request = deploy_pb.DetermineVersionsRequest(input=self._plan_input(deployment, target_source, running_source, deploy_targets))
        response = self._call("DetermineVersions", self._deploy().DetermineVersions, request)
        self._check("DetermineVersions", validation.check_versions(response.versions))
        return [ArtifactVersion(version=v.version, name=v.name, url=v.url, kind=ArtifactKind(v.kind)) for v in response.versions]

    def determine_strategy(
        self, *, deployment: t.Any = None, target_source: t.Any = None, running_source: t.Any = None, deploy_targets: t.Sequence[str] | None = None
    ) -> Strategy | None:
        """DetermineStrategy: the plugin's choice, or None when it answers ``unsupported``."""
        request = deploy_pb.DetermineStrategyRequest(input=self._plan_input(deployment, target_source, running_source, deploy_targets))
        response = self._call("DetermineStrategy", self._deploy().DetermineStrategy, request)
        self._check("DetermineStrategy", validation.check_strategy(response))
        if response.unsupported:
            return None
        return Strategy(SyncStrategy(response.sync_strategy), response.summary)

    def build_pipeline_sync_stages(self, stages: t.Sequence[t.Mapping[str, t.Any] | StageRequest], *, rollback: bool = True) -> list[PlannedStage]:
        """BuildPipelineSyncStages for ``spec.pipeline.stages`` entries ``{"name", "index"?, "desc"?, "with"?}``.

        ``index`` defaults to the entry's position, as piped numbers the pipeline.
        """
        request = deploy_pb.BuildPipelineSyncStagesRequest(rollback=rollback)
        for position, stage in enumerate(stages):
            if isinstance(stage, StageRequest):
                name, index, desc, config = stage.name, stage.index, stage.desc, stage.config
            else:
                name, index, desc = stage["name"], stage.get("index", position), stage.get("desc", "")
                config = stage.get("with")
            request.stages.add(name=name, index=index, desc=desc, config=json.dumps(config).encode() if config is not None else b"")
        response = self._call("BuildPipelineSyncStages", self._deploy().BuildPipelineSyncStages, request)
        requested = [s.index for s in request.stages]
        self._check(
            "BuildPipelineSyncStages",
            validation.check_pipeline_sync_stages(response.stages, requested, defined_stages=self._defined_stages()),
        )
        return [_planned_from_pb(s) for s in response.stages]

    def build_quick_sync_stages(self, *, rollback: bool = True) -> list[PlannedStage]:
        """BuildQuickSyncStages (the request carries only ``rollback``, as with piped)."""
        response = self._call("BuildQuickSyncStages", self._deploy().BuildQuickSyncStages, deploy_pb.BuildQuickSyncStagesRequest(rollback=rollback))
        self._check("BuildQuickSyncStages", validation.check_quick_sync_stages(response.stages, defined_stages=self._defined_stages()))
        return [_planned_from_pb(s) for s in response.stages]

    def start_stage(
        self,
        name: str,
        with_: t.Any = None,
        *,
        deployment: t.Any = None,
        stage_id: str | None = None,
        index: int = 0,
        rollback: bool = False,
        status: StageStatus = StageStatus.NOT_STARTED_YET,
        metadata: t.Mapping[str, str] | None = None,
        deploy_targets: t.Sequence[str] | None = None,
        target_source: DeploymentSource | str | None = None,
        running_source: DeploymentSource | str | None = None,
    ) -> StageCall:
        """Send ExecuteStage and return at once, so the test can approve, skip or cancel meanwhile.

        ``with_`` is the stage's ``with:`` block (sent as JSON; None sends
        nothing, as for a quick sync). ``status=RUNNING`` is what piped sends
        when it re-executes a stage after a crash. ``metadata`` seeds the
        stage's metadata in the FakePiped, as piped does from the plan.
        """
        deployment_pb = self.deployment(deployment, deploy_targets=deploy_targets)
        now = int(time.time())
        stage = model_pb.PipelineStage(
            id=stage_id or str(uuid.uuid4()),
            name=name,
            index=index,
            rollback=rollback,
            status=t.cast(t.Any, int(status)),
            metadata=dict(metadata or {}),
            available_operation=model_pb.MANUAL_OPERATION_NONE,
            created_at=now,
            updated_at=now,
        )
        deployment_pb.stages.append(stage)
        if metadata:
            self.piped.set_stage_metadata(deployment_pb.id, stage.id, metadata)
        inp = deploy_pb.ExecutePluginInput(deployment=deployment_pb, stage=stage)
        inp.stage_config = json.dumps(with_).encode() if with_ is not None else b""
        inp.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(inp.running_deployment_source, running_source)
        future = self._deploy().ExecuteStage.future(deploy_pb.ExecuteStageRequest(input=inp))
        return StageCall(self, future, deployment_pb.id, stage.id)

    def execute_stage(self, name: str, with_: t.Any = None, *, timeout: float | None = 60.0, **options: t.Any) -> StageRun:
        """ExecuteStage and wait for the result; see :meth:`start_stage` for the options."""
        return self.start_stage(name, with_, **options).result(timeout)

    def _stage_run(self, response: t.Any, deployment_id: str, stage_id: str) -> StageRun:
        self._check("ExecuteStage", validation.check_execute_stage_status(response.status))
        return StageRun(
            status=StageStatus(response.status),
            message=response.message,
            deployment_id=deployment_id,
            stage_id=stage_id,
            logs=self.piped.log_lines(deployment_id, stage_id),
            log_completed=self.piped.log_completed(deployment_id, stage_id),
            metadata=self.piped.stage_metadata(deployment_id, stage_id),
        )

    # -- LivestateService and PlanPreviewService ------------------------------------------

    def get_livestate(
        self,
        *,
        deploy_targets: t.Sequence[str] | None = None,
        deploy_source: DeploymentSource | str | None = None,
        application_id: str = DEFAULT_APP_ID,
        application_name: str = DEFAULT_APP_NAME,
    ) -> LiveState:
        """GetLivestate for one application, as piped's minute-by-minute reporter asks."""
        request = live_api_pb.GetLivestateRequest(
            piped_id=self.piped.piped_id,
            application_id=application_id,
            application_name=application_name,
            deploy_targets=list(self.deploy_target_names if deploy_targets is None else deploy_targets),
        )
        request.deploy_source.CopyFrom(self._target_source(deploy_source))
        response = self._call("GetLivestate", self._stub(live_grpc, "LivestateService").GetLivestate, request)
        self._check("GetLivestate", validation.check_livestate(response))
        resources = [
            Resource(
                id=r.id,
                name=r.name,
                resource_type=r.resource_type,
                health=HealthStatus(r.health_status),
                health_description=r.health_description,
                parent_ids=tuple(r.parent_ids),
                metadata=dict(r.resource_metadata),
                deploy_target=r.deploy_target,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in response.application_live_state.resources
        ]
        sync = response.sync_state
        return LiveState(resources, SyncStatus(sync.status), sync.short_reason, sync.reason)

    def get_plan_preview(
        self,
        *,
        deploy_targets: t.Sequence[str] | None = None,
        target_source: DeploymentSource | str | None = None,
        running_source: DeploymentSource | str | None = None,
        application_id: str = DEFAULT_APP_ID,
        application_name: str = DEFAULT_APP_NAME,
    ) -> list[PlanPreview]:
        """GetPlanPreview, as piped asks for ``pipectl plan-preview``."""
        request = preview_api_pb.GetPlanPreviewRequest(
            application_id=application_id,
            application_name=application_name,
            piped_id=self.piped.piped_id,
            deploy_targets=list(self.deploy_target_names if deploy_targets is None else deploy_targets),
        )
        request.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(request.running_deployment_source, running_source)
        response = self._call("GetPlanPreview", self._stub(preview_grpc, "PlanPreviewService").GetPlanPreview, request)
        return [
            PlanPreview(r.summary, deploy_target=r.deploy_target, no_change=r.no_change, details=bytes(r.details), diff_language=r.diff_language)
            for r in response.results
        ]
