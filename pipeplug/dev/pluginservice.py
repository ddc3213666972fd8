"""The PluginService plugins call during ``pipeplug dev``: a FakePiped whose store is the state file.

:class:`pipeplug.testing.FakePiped` already answers every PluginService RPC
the way piped does and records every rule a plugin breaks. ``pipeplug dev``
changes only where things live and when they are visible, through
:class:`StateFileStore` (a :class:`~pipeplug.testing.store.PipedStore`):

- metadata, shared objects, stage logs and commands live in SQLite, so a
  resumed run sees what the killed one stored;
- a deployment's metadata store exists only while it is planned or executed
  (other ids get UNKNOWN "metadata store not found", as from piped);
- commands come from the state file, refreshed every ``command_interval``
  seconds like piped's 5 s command store, so ``pipeplug dev approve`` in
  another terminal works;
- each new log line is also handed to the UI (violations go there through
  FakePiped's ``on_violation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import typing as t

from .._gen.model import command_pb2 as command_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.model import logblock_pb2 as logblock_pb
from ..testing import FakePiped
from ..testing.store import LogStream
from .state import State

#: piped's command store refresh interval, seconds
COMMAND_INTERVAL = 5.0


class StateFileStore:
    """A :class:`~pipeplug.testing.store.PipedStore` kept in ``pipeplug dev``'s SQLite state file.

    Log streams are also held in memory (seeded from the file when a
    deployment opens), since piped's rules need their bookkeeping; the file
    gets each block once.
    """

    def __init__(self, state: State, *, on_log: t.Callable[[str, str, list[t.Any]], None]) -> None:
        self.state = state
        self.on_log = on_log
        #: deployments whose metadata store is open: id -> application id
        self.active: dict[str, str] = {}
        self._lock = threading.RLock()
        self._streams: dict[tuple[str, str], LogStream] = {}
        self._stored_indexes: dict[tuple[str, str, int], set[int]] = {}
        self._commands: list[t.Any] = []

    def open(self, deployment: model_pb.Deployment) -> None:
        """Open the deployment's metadata store and load its stage logs from the file."""
        d = deployment.id
        with self._lock:
            self.active[d] = deployment.application_id
            for stage in deployment.stages:
                blocks = [logblock_pb.LogBlock(index=i, log=text, severity=t.cast(t.Any, sev), created_at=1) for i, text, sev in self.state.logs(d, stage.id)]
                if blocks:
                    self._streams[(d, stage.id)] = LogStream(
                        cache=list(blocks), persisted=list(blocks), completed=self.state.log_completed(d, stage.id, 0), highest=blocks[-1].index
                    )
                    self._stored_indexes[(d, stage.id, 0)] = {b.index for b in blocks}

    # -- stage logs

    def log_stream(self, deployment_id: str, stage_id: str) -> LogStream | None:
        with self._lock:
            return self._streams.get((deployment_id, stage_id))

    def save_log_stream(self, deployment_id: str, stage_id: str, stream: LogStream, received: t.Sequence[t.Any], *, retried_count: int, durable: bool) -> None:
        key = (deployment_id, stage_id, retried_count)
        with self._lock:
            self._streams[(deployment_id, stage_id)] = stream
            stored = self._stored_indexes.setdefault(key, set())
            new = [block for block in received if block.index not in stored]
            stored.update(block.index for block in new)
        if new:
            self.state.add_log_blocks(*key, new, durable=durable)
            self.on_log(deployment_id, stage_id, new)
        if durable and stream.completed:
            self.state.complete_log(*key)

    # -- metadata

    def metadata_store_open(self, deployment_id: str) -> bool:
        return deployment_id in self.active

    def close_metadata_store(self, deployment_id: str) -> None:
        self.active.pop(deployment_id, None)

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        return self.state.stage_metadata(deployment_id, stage_id)

    def update_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        self.state.put_stage_metadata(deployment_id, stage_id, values)

    def plugin_metadata(self, deployment_id: str, plugin_name: str) -> dict[str, str]:
        return self.state.plugin_metadata(deployment_id).get(plugin_name, {})

    def update_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        self.state.put_plugin_metadata(deployment_id, plugin_name, values)

    def shared_metadata(self, deployment_id: str) -> dict[str, str]:
        return self.state.shared_metadata(deployment_id)

    def update_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        for key, value in values.items():
            self.state.put_shared_metadata(deployment_id, key, value)

    # -- application shared objects

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        return self.state.get_shared_object(application_id, plugin_name, key)

    def put_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        self.state.put_shared_object(application_id, plugin_name, key, bytes(value))

    # -- commands: what the last refresh read from the file

    def add_command(self, command: t.Any) -> None:
        self.state.add_command(command.deployment_id, command.stage_id, command.type, command.commander)

    def stage_commands(self, deployment_id: str, stage_id: str) -> list[t.Any]:
        return [c for c in self._commands if c.deployment_id == deployment_id and c.stage_id == stage_id]

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        self.state.mark_stage_commands_handled(deployment_id, stage_id)
        self._commands = [c for c in self._commands if (c.deployment_id, c.stage_id) != (deployment_id, stage_id)]

    def refresh_commands(self) -> None:
        self._commands = self.state.unhandled_stage_commands()


class DevPiped:
    """piped's PluginService for one ``pipeplug dev`` run: a FakePiped over a :class:`StateFileStore`."""

    def __init__(
        self,
        state: State,
        *,
        command_interval: float = COMMAND_INTERVAL,
        on_violation: t.Callable[[str], None] = lambda message: None,
        on_log: t.Callable[[str, str, list[t.Any]], None] = lambda deployment_id, stage_id, blocks: None,
    ) -> None:
        self.state = state
        self.command_interval = command_interval
        self.store = StateFileStore(state, on_log=on_log)
        # a long dev run needs none of the calls FakePiped keeps for tests
        self.fake = FakePiped(tools_dir=state.tools_dir, piped_id="pipeplug-dev", store=self.store, on_violation=on_violation, record_calls=False)
        self._refresher: asyncio.Task[None] | None = None

    @property
    def service_address(self) -> str:
        """What plugins get as ``--piped-plugin-service``: ``localhost:<port>``, as piped passes it."""
        return f"localhost:{self.fake.port}"

    async def start_async(self) -> DevPiped:
        await self.fake.start_async()
        self.store.refresh_commands()
        self._refresher = asyncio.ensure_future(self._refresh_commands_forever())
        return self

    async def stop_async(self, grace: float | None = 0.5) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.fake.stop_async(grace)

    async def _refresh_commands_forever(self) -> None:
        while True:
            await asyncio.sleep(self.command_interval)
            self.store.refresh_commands()

    # -- deployments ----------------------------------------------------------------

    def open_deployment(self, deployment: model_pb.Deployment) -> None:
        """Open the deployment's metadata store, seeded from the state file (as piped seeds it from the control plane)."""
        self.store.open(deployment)

    def close_deployment(self, deployment_id: str) -> None:
        """Drop the deployment's metadata store, as piped does once planning or execution ends."""
        self.fake.close_deployment(deployment_id)

    # -- commands -------------------------------------------------------------------

    def approve(self, deployment_id: str, stage_id: str, commander: str = "pipeplug-dev") -> str:
        """An APPROVE_STAGE command, stored; plugins see it after the next command refresh."""
        return self.state.add_command(deployment_id, stage_id, command_pb.Command.APPROVE_STAGE, commander)

    def skip(self, deployment_id: str, stage_id: str, commander: str = "pipeplug-dev") -> str:
        return self.state.add_command(deployment_id, stage_id, command_pb.Command.SKIP_STAGE, commander)

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        """What piped does after a stage's ExecuteStage returns: its commands stop being listed."""
        self.fake.mark_commands_handled(deployment_id, stage_id)
