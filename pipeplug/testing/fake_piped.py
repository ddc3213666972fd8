"""FakePiped: a real gRPC ``PluginService`` on 127.0.0.1 that behaves like piped towards a plugin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import threading
import time
import typing as t
import uuid

import attrs
import grpc

from .. import validation
from .._gen.model import command_pb2 as command_pb
from .._gen.model import logblock_pb2 as logblock_pb
from .._gen.piped import service_pb2 as svc_pb
from .._gen.piped import service_pb2_grpc as svc_grpc
from ..goplatform import go_platform
from ._loop import LoopThread
from .store import LogStream
from .store import MemoryStore
from .store import PipedStore

SEVERITY_NAMES = {value.number: value.name for value in logblock_pb.LogSeverity.DESCRIPTOR.values}


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

    :param store: where logs, metadata, shared objects and commands live
        (default: a fresh :class:`~pipeplug.testing.store.MemoryStore`).
    :param on_violation: also called with each violation as it is recorded.
    :param record_calls: keep every call in :attr:`calls` (a long-running
        emulator turns it off).
    """

    def __init__(
        self,
        *,
        tools_dir: str | None = None,
        piped_id: str = "piped-test",
        install_timeout: float = 300.0,
        store: PipedStore | None = None,
        on_violation: t.Callable[[str], None] | None = None,
        record_calls: bool = True,
    ) -> None:
        self.piped_id = piped_id
        self.install_timeout = install_timeout
        self.store: PipedStore = store if store is not None else MemoryStore()
        self.on_violation = on_violation
        self.record_calls = record_calls
        #: every rule a plugin broke, in order, as human-readable text
        self.violations: list[str] = []
        #: every call received, in order: (rpc name, request)
        self.calls: list[tuple[str, t.Any]] = []
        self.port = 0
        self._tools_dir = tools_dir
        self._own_tools_dir = False
        self._tmp_root = ""
        self._lock = threading.RLock()
        self._installed: set[str] = set()
        self._install_locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self._outages = 0
        self._server: grpc.aio.Server | None = None
        self._thread: LoopThread | None = None

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
        servicer = _PluginServiceServicer(self)  # type: ignore[abstract]  # its methods are attached below, one per RPC
        svc_grpc.add_PluginServiceServicer_to_server(servicer, server)
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
        self._thread = LoopThread("pipeplug-fake-piped")
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
        self.store.mark_commands_handled(deployment_id, stage_id)

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
        self.store.add_command(command)
        return command.id

    # -- seeding and reading state ---------------------------------------------

    def log_lines(self, deployment_id: str, stage_id: str) -> list[tuple[str, str]]:
        """The stage log as the web UI would show it: ``(severity, text)`` in index order."""
        return [(SEVERITY_NAMES.get(b.severity, str(b.severity)), b.log) for b in self.log_blocks(deployment_id, stage_id)]

    def log_blocks(self, deployment_id: str, stage_id: str) -> list[t.Any]:
        """The stage's ``model.LogBlock`` messages as the web UI would show them, in index order."""
        with self._lock:
            stream = self.store.log_stream(deployment_id, stage_id)
            return sorted(stream.cache, key=lambda b: b.index) if stream else []

    def log_completed(self, deployment_id: str, stage_id: str) -> bool:
        """Whether the plugin sent ``completed=true`` for this stage's log."""
        with self._lock:
            stream = self.store.log_stream(deployment_id, stage_id)
            return bool(stream and stream.completed)

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        """A copy of one stage's metadata."""
        return self.store.stage_metadata(deployment_id, stage_id)

    def set_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        """Seed stage metadata, as piped does from the planned stage's metadata."""
        self.store.update_stage_metadata(deployment_id, stage_id, values)

    def plugin_metadata(self, deployment_id: str, plugin_name: str) -> dict[str, str]:
        """A copy of one plugin's deployment metadata."""
        return self.store.plugin_metadata(deployment_id, plugin_name)

    def set_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        """Seed deployment plugin metadata (namespace ``plugin_name``)."""
        self.store.update_plugin_metadata(deployment_id, plugin_name, values)

    def set_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        """Seed the deployment's shared metadata, which piped writes and plugins only read."""
        self.store.update_shared_metadata(deployment_id, values)

    def close_deployment(self, deployment_id: str) -> None:
        """Drop the deployment's metadata store, as piped does once planning or execution ends.

        Metadata calls for it then fail with UNKNOWN, as with real piped.
        """
        self.store.close_metadata_store(deployment_id)

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        """An application shared object, or None."""
        return self.store.shared_object(application_id, plugin_name, key)

    def set_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        """Seed an application shared object."""
        self.store.put_shared_object(application_id, plugin_name, key, bytes(value))

    def assert_no_violations(self) -> None:
        """Raise AssertionError listing every rule the plugin broke."""
        with self._lock:
            found = list(self.violations)
        if found:
            raise AssertionError("the plugin broke piped's rules:\n" + "\n".join(f"  - {v}" for v in found))

    # -- serving (called by the servicer on the server's loop) -----------------

    async def _serve(self, rpc: str, request: t.Any, context: grpc.aio.ServicerContext[t.Any, t.Any]) -> t.Any:
        with self._lock:
            if self.record_calls:
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
        found = list(problems)
        with self._lock:
            self.violations.extend(found)
        if self.on_violation is not None:
            for problem in found:
                self.on_violation(problem)

    async def _rpc_ReportStageLogs(self, request: t.Any, context: t.Any) -> t.Any:
        key = (request.deployment_id, request.stage_id)
        with self._lock:
            stream = self.store.log_stream(*key) or LogStream()
            completed = stream.completed
            if not completed:
                self._record(validation.check_log_retried_count(request.retried_count, stage=request.stage_id))
                self._record(validation.check_log_indexes(request.blocks, after=stream.highest, stage=request.stage_id))
                # the control plane drops blocks whose index it already holds
                held = {b.index for b in stream.cache}
                stream.cache.extend(b for b in request.blocks if b.index not in held)
                stream.since_checkpoint.update(b.index for b in request.blocks)
                stream.highest = max([b.index for b in request.blocks] + ([stream.highest] if stream.highest is not None else []), default=None)
                self.store.save_log_stream(*key, stream, request.blocks, retried_count=request.retried_count, durable=False)
        if completed:
            self._record([f"real piped would refuse this: ReportStageLogs for stage {request.stage_id} after its log was completed"])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the stage log of {request.stage_id} is already completed")
        return svc_pb.ReportStageLogsResponse()

    async def _rpc_ReportStageLogsFromLastCheckpoint(self, request: t.Any, context: t.Any) -> t.Any:
        key = (request.deployment_id, request.stage_id)
        with self._lock:
            stream = self.store.log_stream(*key) or LogStream()
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
                self.store.save_log_stream(*key, stream, request.blocks, retried_count=request.retried_count, durable=True)
        if completed:
            self._record([f"real piped would refuse this: ReportStageLogsFromLastCheckpoint for stage {request.stage_id} after its log was completed"])
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the stage log of {request.stage_id} is already completed")
        return svc_pb.ReportStageLogsFromLastCheckpointResponse()

    async def _metadata_store(self, deployment_id: str, context: t.Any) -> None:
        if not self.store.metadata_store_open(deployment_id):
            await context.abort(grpc.StatusCode.UNKNOWN, f"metadata store not found for deployment {deployment_id}")

    async def _rpc_GetStageMetadata(self, request: t.Any, context: t.Any) -> t.Any:
        await self._metadata_store(request.deployment_id, context)
        values = self.store.stage_metadata(request.deployment_id, request.stage_id)
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
        values = self.store.plugin_metadata(request.deployment_id, request.plugin_name)
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
        values = self.store.shared_metadata(request.deployment_id)
        return svc_pb.GetDeploymentSharedMetadataResponse(value=values.get(request.key, ""), found=request.key in values)

    async def _rpc_ListStageCommands(self, request: t.Any, context: t.Any) -> t.Any:
        commands = self.store.stage_commands(request.deployment_id, request.stage_id)
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
    async def method(self: _PluginServiceServicer, request: t.Any, context: grpc.aio.ServicerContext[t.Any, t.Any]) -> t.Any:
        return await self.fake._serve(rpc, request, context)

    method.__name__ = rpc
    return method


for _rpc in RPC_NAMES:
    setattr(_PluginServiceServicer, _rpc, _make_method(_rpc))
del _rpc
