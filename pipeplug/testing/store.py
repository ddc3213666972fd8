"""Where a FakePiped keeps what piped's control plane would keep.

:class:`FakePiped` owns piped's rules (what it refuses, what it records as a
violation, when a log is complete); a :class:`PipedStore` only holds the
data. Tests use :class:`MemoryStore`; ``pipeplug dev`` passes a store backed
by its SQLite state file, so a resumed run sees what a killed one stored.

A store is called from the fake's serving loop and from test threads; it
must be safe to call from both. FakePiped holds its own lock around each
read-modify-write of a :class:`LogStream`, so a store need not.
"""

from __future__ import annotations

import threading
import typing as t

import attrs


@attrs.define
class LogStream:
    """One stage's log as piped's control plane holds it."""

    #: what the web UI shows: the cache entry (blocks in arrival order)
    cache: list[t.Any] = attrs.field(factory=list)
    #: what the durable file store holds (checkpoint calls only)
    persisted: list[t.Any] = attrs.field(factory=list)
    completed: bool = False
    #: indexes sent with ReportStageLogs since the last checkpoint
    since_checkpoint: set[int] = attrs.field(factory=set)
    highest: int | None = None


class PipedStore(t.Protocol):
    """The storage a :class:`FakePiped` uses: stage logs, metadata, shared objects, commands."""

    # -- stage logs

    def log_stream(self, deployment_id: str, stage_id: str) -> LogStream | None:
        """The stage's log stream, or None before its first block."""

    def save_log_stream(self, deployment_id: str, stage_id: str, stream: LogStream, received: t.Sequence[t.Any], *, retried_count: int, durable: bool) -> None:
        """Keep ``stream`` after the fake accepted ``received`` (``model.LogBlock`` messages).

        ``durable`` is True for ReportStageLogsFromLastCheckpoint, whose
        blocks piped writes to its file store.
        """

    # -- metadata

    def metadata_store_open(self, deployment_id: str) -> bool:
        """Whether metadata calls for the deployment are served (piped drops the store once a deployment is done)."""

    def close_metadata_store(self, deployment_id: str) -> None:
        """Drop the deployment's metadata store: later metadata calls get UNKNOWN."""

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        """A copy of one stage's metadata."""

    def update_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        """Add or replace keys of one stage's metadata."""

    def plugin_metadata(self, deployment_id: str, plugin_name: str) -> dict[str, str]:
        """A copy of one plugin's deployment metadata."""

    def update_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        """Add or replace keys of one plugin's deployment metadata."""

    def shared_metadata(self, deployment_id: str) -> dict[str, str]:
        """A copy of the deployment's shared metadata (piped writes it, plugins only read it)."""

    def update_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        """Add or replace keys of the deployment's shared metadata."""

    # -- application shared objects

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        """An application shared object, or None."""

    def put_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        """Add or replace an application shared object."""

    # -- commands

    def add_command(self, command: t.Any) -> None:
        """Queue a ``model.Command`` (APPROVE_STAGE or SKIP_STAGE) for its stage."""

    def stage_commands(self, deployment_id: str, stage_id: str) -> list[t.Any]:
        """The stage's unhandled commands, oldest first, as ListStageCommands lists them."""

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        """The stage's commands stop being listed (piped does it once ExecuteStage returns)."""


class MemoryStore:
    """A :class:`PipedStore` in memory, for one test."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._logs: dict[tuple[str, str], LogStream] = {}
        self._closed: set[str] = set()
        self._stage_metadata: dict[tuple[str, str], dict[str, str]] = {}
        self._plugin_metadata: dict[tuple[str, str], dict[str, str]] = {}
        self._shared_metadata: dict[str, dict[str, str]] = {}
        self._shared_objects: dict[tuple[str, str, str], bytes] = {}
        self._commands: dict[tuple[str, str], list[t.Any]] = {}

    def log_stream(self, deployment_id: str, stage_id: str) -> LogStream | None:
        with self._lock:
            return self._logs.get((deployment_id, stage_id))

    def save_log_stream(self, deployment_id: str, stage_id: str, stream: LogStream, received: t.Sequence[t.Any], *, retried_count: int, durable: bool) -> None:
        with self._lock:
            self._logs[(deployment_id, stage_id)] = stream

    def metadata_store_open(self, deployment_id: str) -> bool:
        with self._lock:
            return deployment_id not in self._closed

    def close_metadata_store(self, deployment_id: str) -> None:
        with self._lock:
            self._closed.add(deployment_id)

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._stage_metadata.get((deployment_id, stage_id), {}))

    def update_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        with self._lock:
            self._stage_metadata.setdefault((deployment_id, stage_id), {}).update(values)

    def plugin_metadata(self, deployment_id: str, plugin_name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._plugin_metadata.get((deployment_id, plugin_name), {}))

    def update_plugin_metadata(self, deployment_id: str, plugin_name: str, values: t.Mapping[str, str]) -> None:
        with self._lock:
            self._plugin_metadata.setdefault((deployment_id, plugin_name), {}).update(values)

    def shared_metadata(self, deployment_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self._shared_metadata.get(deployment_id, {}))

    def update_shared_metadata(self, deployment_id: str, values: t.Mapping[str, str]) -> None:
        with self._lock:
            self._shared_metadata.setdefault(deployment_id, {}).update(values)

    def shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        with self._lock:
            return self._shared_objects.get((application_id, plugin_name, key))

    def put_shared_object(self, application_id: str, plugin_name: str, key: str, value: bytes) -> None:
        with self._lock:
            self._shared_objects[(application_id, plugin_name, key)] = bytes(value)

    def add_command(self, command: t.Any) -> None:
        with self._lock:
            self._commands.setdefault((command.deployment_id, command.stage_id), []).append(command)

    def stage_commands(self, deployment_id: str, stage_id: str) -> list[t.Any]:
        with self._lock:
            return list(self._commands.get((deployment_id, stage_id), []))

    def mark_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        with self._lock:
            self._commands.pop((deployment_id, stage_id), None)
