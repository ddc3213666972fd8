"""The PluginService plugins call during ``pipeplug dev``: FakePiped, backed by the state file.

:class:`pipeplug.testing.FakePiped` already answers every PluginService RPC
the way piped does and records every rule a plugin breaks. This subclass only
changes where things live and when they are visible:

- metadata, shared objects, stage logs and commands are written through to
  SQLite, so a resumed run sees what the killed one stored;
- a deployment's metadata store exists only while it is planned or executed
  (other ids get UNKNOWN "metadata store not found", as from piped);
- commands come from the state file, refreshed every ``command_interval``
  seconds like piped's 5 s command store, so ``pipeplug dev approve`` in
  another terminal works;
- each violation and each new log line is also handed to the UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import typing as t

import grpc

from .._gen.model import command_pb2 as command_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.model import logblock_pb2 as logblock_pb
from .._gen.piped import service_pb2 as svc_pb
from ..testing import FakePiped
from ..testing.fake_piped import _LogStream
from .state import State

#: piped's command store refresh interval, seconds
COMMAND_INTERVAL = 5.0


class DevPiped(FakePiped):
    """piped's PluginService for one ``pipeplug dev`` run."""

    def __init__(
        self,
        state: State,
        *,
        command_interval: float = COMMAND_INTERVAL,
        on_violation: t.Callable[[str], None] = lambda message: None,
        on_log: t.Callable[[str, str, list[t.Any]], None] = lambda deployment_id, stage_id, blocks: None,
    ) -> None:
        super().__init__(tools_dir=state.tools_dir, piped_id="pipeplug-dev")
        self.state = state
        self.command_interval = command_interval
        self.on_violation = on_violation
        self.on_log = on_log
        #: deployments whose metadata store is open: id -> application id
        self.active: dict[str, str] = {}
        self._commands_cache: list[t.Any] = []
        self._refresher: asyncio.Task[None] | None = None
        self._stored_indexes: dict[tuple[str, str, int], set[int]] = {}

    @property
    def service_address(self) -> str:
        """What plugins get as ``--piped-plugin-service``: ``localhost:<port>``, as piped passes it."""
        return f"localhost:{self.port}"

    async def start_async(self) -> DevPiped:
        await super().start_async()
        self.refresh_commands()
        self._refresher = asyncio.ensure_future(self._refresh_commands_forever())
        return self

    async def stop_async(self, grace: float | None = 0.5) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await super().stop_async(grace)

    # -- deployments ----------------------------------------------------------------

    def open_deployment(self, deployment: model_pb.Deployment) -> None:
        """Open the deployment's metadata store, seeded from the state file (as piped seeds it from the control plane)."""
        d = deployment.id
        self.active[d] = deployment.application_id
        with self._lock:
            self._closed_deployments.discard(d)
            for stage in deployment.stages:
                values = self.state.stage_metadata(d, stage.id)
                if values:
                    self._stage_metadata.setdefault((d, stage.id), {}).update(values)
                blocks = [logblock_pb.LogBlock(index=i, log=text, severity=sev, created_at=1) for i, text, sev in self.state.logs(d, stage.id)]
                if blocks:
                    self._logs[(d, stage.id)] = _LogStream(
                        cache=list(blocks), persisted=list(blocks), completed=self.state.log_completed(d, stage.id, 0), highest=blocks[-1].index
                    )
                    self._stored_indexes[(d, stage.id, 0)] = {b.index for b in blocks}
        for plugin, values in self.state.plugin_metadata(d).items():
            FakePiped.set_plugin_metadata(self, d, plugin, values)
        shared = self.state.shared_metadata(d)
        if shared:
            FakePiped.set_shared_metadata(self, d, shared)

    def close_deployment(self, deployment_id: str) -> None:
        self.active.pop(deployment_id, None)
        super().close_deployment(deployment_id)

    async def _metadata_store(self, deployment_id: str, context: t.Any) -> None:
        if deployment_id not in self.active:
            await context.abort(grpc.StatusCode.UNKNOWN, f"metadata store not found for deployment {deployment_id}")

    # -- write-through storage ------------------------------------------------------

    def set_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        super().set_stage_metadata(deployment_id, stage_id, values)
        self.state.put_stage_metadata(deployment_id, stage_id, values)

    def set_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        super().set_plugin_metadata(deployment_id, plugin_name, values)
        self.state.put_plugin_metadata(deployment_id, plugin_name, values)

    def set_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        super().set_shared_metadata(deployment_id, values)
        for key, value in values.items():
            self.state.put_shared_metadata(deployment_id, key, value)

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        return self.state.get_shared_object(application_id, plugin_name, key)

    def set_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        self.state.put_shared_object(application_id, plugin_name, key, bytes(value))

    # -- violations and logs --------------------------------------------------------

    def _record(self, problems: t.Iterable[str]) -> None:
        found = list(problems)
        if not found:
            return
        super()._record(found)
        for problem in found:
            self.on_violation(problem)

    async def _rpc_ReportStageLogs(self, request: t.Any, context: t.Any) -> t.Any:
        response = await super()._rpc_ReportStageLogs(request, context)
        self._store_logs(request, durable=False)
        return response

    async def _rpc_ReportStageLogsFromLastCheckpoint(self, request: t.Any, context: t.Any) -> t.Any:
        response = await super()._rpc_ReportStageLogsFromLastCheckpoint(request, context)
        self._store_logs(request, durable=True)
        if request.completed:
            self.state.complete_log(request.deployment_id, request.stage_id, request.retried_count)
        return response

    def _store_logs(self, request: t.Any, *, durable: bool) -> None:
        key = (request.deployment_id, request.stage_id, request.retried_count)
        stored = self._stored_indexes.setdefault(key, set())
        new = []
        for block in request.blocks:
            if block.index not in stored:
                stored.add(block.index)
                new.append(block)
        if new:
            self.state.add_log_blocks(*key, new, durable=durable)
            self.on_log(request.deployment_id, request.stage_id, new)

    # -- commands -------------------------------------------------------------------

    def approve(self, deployment_id: str, stage_id: str, commander: str = "pipeplug-dev") -> str:
        """An APPROVE_STAGE command, stored; plugins see it after the next command refresh."""
        return self.state.add_command(deployment_id, stage_id, command_pb.Command.APPROVE_STAGE, commander)

    def skip(self, deployment_id: str, stage_id: str, commander: str = "pipeplug-dev") -> str:
        return self.state.add_command(deployment_id, stage_id, command_pb.Command.SKIP_STAGE, commander)

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        """What piped does after a stage's ExecuteStage returns: its commands stop being listed."""
        self.state.mark_stage_commands_handled(deployment_id, stage_id)
        self._commands_cache = [c for c in self._commands_cache if (c.deployment_id, c.stage_id) != (deployment_id, stage_id)]

    def refresh_commands(self) -> None:
        self._commands_cache = self.state.unhandled_stage_commands()

    async def _refresh_commands_forever(self) -> None:
        while True:
            await asyncio.sleep(self.command_interval)
            self.refresh_commands()
            with self._lock:
                self.calls.clear()  # FakePiped keeps every call for tests; a long dev run needs none of them

    async def _rpc_ListStageCommands(self, request: t.Any, context: t.Any) -> t.Any:
        commands = [c for c in self._commands_cache if c.deployment_id == request.deployment_id and c.stage_id == request.stage_id]
        return svc_pb.ListStageCommandsResponse(commands=commands)

