"""The async client for piped's ``PluginService``: the calls a plugin makes back into piped.

One :class:`PipedClient` per process holds one grpc.aio channel to the address
piped passes as ``--piped-plugin-service``. Every RPC failure becomes a
:class:`PipedError` naming the RPC, the gRPC code and piped's message, and
every request piped would refuse for an empty id or key is refused here first,
before any network call, with the field named.

Handlers do not use this module directly; ``ctx`` scopes these calls to the
stage, deployment or application being served (see :mod:`pipeplug.context`).
"""

from __future__ import annotations

import os
import typing as t

import grpc

from ._gen.model import command_pb2 as command_pb
from ._gen.piped import service_pb2 as svc_pb
from ._gen.piped import service_pb2_grpc as svc_grpc
from .errors import PipeplugError

#: codes worth retrying: piped restarting, overloaded or slow; the others will not change on retry
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class PipedError(PipeplugError):
    """A PluginService call failed; ``rpc``, ``code`` and ``details`` say which, how and why."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str) -> None:
        self.rpc = rpc
        self.code = code
        self.details = details
        super().__init__(f"piped PluginService.{rpc} failed: {code.name}: {details or '(no message)'}")

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (piped unreachable, restarting or slow)."""
        return self.code in RETRYABLE_CODES


class PipedOptions(t.NamedTuple):
    """How hard pipeplug talks to piped. The defaults match the Go SDK; tests shorten them.

    Each field can be set from the environment as ``PIPEPLUG_<FIELD>`` (upper
    case), because piped starts plugins with a fixed argv and passes its
    environment on: ``PIPEPLUG_LOG_FLUSH_INTERVAL=0.2``.
    """

    #: seconds between stage-log flushes (ReportStageLogs)
    log_flush_interval: float = 5.0
    #: seconds between durable checkpoints (ReportStageLogsFromLastCheckpoint)
    log_checkpoint_interval: float = 120.0
    #: log lines one stage may hold while piped is slow or unreachable; older unsent lines are dropped (and counted) beyond it
    log_buffer_lines: int = 100_000
    #: payload bytes per log request, well under piped's 4 MiB receive limit
    log_batch_bytes: int = 1024 * 1024
    #: seconds the final flush of a stage log keeps retrying before giving up (and counting the rest as dropped)
    log_complete_timeout: float = 60.0
    #: seconds between ListStageCommands polls in ``ctx.commands()`` (piped refreshes its command cache every 5s)
    command_poll_interval: float = 5.0
    #: the longest wait between retries of a failed log flush
    retry_max_delay: float = 30.0
    #: gRPC deadline for every PluginService call except InstallTool (which may download for minutes)
    rpc_timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: t.Mapping[str, str] | None = None) -> PipedOptions:
        """Defaults overridden by ``PIPEPLUG_<FIELD>`` variables; a bad value raises ValueError naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, t.Any] = {}
        for field, default in cls._field_defaults.items():
            name = f"PIPEPLUG_{field.upper()}"
            if name not in env:
                continue
            whole = isinstance(default, int)
            try:
                value = int(env[name]) if whole else float(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r}: expected {'a whole number' if whole else 'a number of seconds'}") from None
            if value <= 0:
                raise ValueError(f"{name}={env[name]!r}: must be greater than 0")
            values[field] = value
        return cls(**values)


#: a stage log line as pipeplug reads it back from its buffer: (index, text, severity, created_at)
LogLine = tuple[int, str, int, int]


def _add_blocks(blocks: t.Any, lines: t.Iterable[LogLine]) -> None:
    """Fill a request's repeated LogBlock field in place: no Python object per line outlives the call,
    so a large request in flight gives the garbage collector nothing to walk."""
    add = blocks.add
    for index, text, severity, created_at in lines:
        add(index=index, log=text, severity=severity, created_at=created_at)


def _require(rpc: str, **fields: str) -> None:
    """Refuse what piped's validation would refuse for an empty id or key, naming the field."""
    for name, value in fields.items():
        if not isinstance(value, str):
            raise TypeError(f"{rpc}: {name} must be a str, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError(f"{rpc}: {name} must be a non-empty string; piped refuses an empty {name} with INVALID_ARGUMENT")


def _require_value(rpc: str, key: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"{rpc}: the value of {key!r} must be a str, got {type(value).__name__}; metadata values are strings "
            "on the wire, so convert it (str(...), json.dumps(...))"
        )


class PipedClient:
    """piped's PluginService over one grpc.aio channel; create it inside the running event loop."""

    def __init__(self, address: str, options: PipedOptions | None = None) -> None:
        self.address = address
        self.options = options or PipedOptions()
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = svc_grpc.PluginServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"<PipedClient {self.address}>"

    async def close(self) -> None:
        await self._channel.close(None)

    def connectivity(self) -> grpc.ChannelConnectivity:
        """The channel's state now (asking it to connect if idle), for health checks."""
        return self._channel.get_state(try_to_connect=True)

    async def _call(self, rpc: str, request: t.Any, *, no_deadline: bool = False) -> t.Any:
        try:
            return await getattr(self._stub, rpc)(request, timeout=None if no_deadline else self.options.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            raise PipedError(rpc, exc.code(), exc.details() or "") from None

    # -- tools -----------------------------------------------------------------

    async def install_tool(self, name: str, version: str, install_script: str) -> str:
        """Install ``name``-``version`` with piped's templated script; return the installed path."""
        _require("InstallTool", name=name, version=version, install_script=install_script)
        request = svc_pb.InstallToolRequest(name=name, version=version, install_script=install_script)
        response = await self._call("InstallTool", request, no_deadline=True)
        return str(response.installed_path)

    # -- stage logs ------------------------------------------------------------

    async def report_stage_logs(self, deployment_id: str, stage_id: str, lines: t.Iterable[LogLine]) -> None:
        _require("ReportStageLogs", deployment_id=deployment_id, stage_id=stage_id)
        request = svc_pb.ReportStageLogsRequest(deployment_id=deployment_id, stage_id=stage_id, retried_count=0)
        _add_blocks(request.blocks, lines)
        await self._call("ReportStageLogs", request)

    async def report_stage_logs_from_last_checkpoint(self, deployment_id: str, stage_id: str, lines: t.Iterable[LogLine], *, completed: bool) -> None:
        _require("ReportStageLogsFromLastCheckpoint", deployment_id=deployment_id, stage_id=stage_id)
        request = svc_pb.ReportStageLogsFromLastCheckpointRequest(deployment_id=deployment_id, stage_id=stage_id, retried_count=0, completed=completed)
        _add_blocks(request.blocks, lines)
        await self._call("ReportStageLogsFromLastCheckpoint", request)

    # -- metadata --------------------------------------------------------------

    async def get_stage_metadata(self, deployment_id: str, stage_id: str, key: str) -> str | None:
        _require("GetStageMetadata", deployment_id=deployment_id, stage_id=stage_id, key=key)
        request = svc_pb.GetStageMetadataRequest(deployment_id=deployment_id, stage_id=stage_id, key=key)
        response = await self._call("GetStageMetadata", request)
        return response.value if response.found else None

    async def put_stage_metadata(self, deployment_id: str, stage_id: str, key: str, value: str) -> None:
        _require("PutStageMetadata", deployment_id=deployment_id, stage_id=stage_id, key=key)
        _require_value("PutStageMetadata", key, value)
        request = svc_pb.PutStageMetadataRequest(deployment_id=deployment_id, stage_id=stage_id, key=key, value=value)
        await self._call("PutStageMetadata", request)

    async def put_stage_metadata_multi(self, deployment_id: str, stage_id: str, metadata: t.Mapping[str, str]) -> None:
        _require("PutStageMetadataMulti", deployment_id=deployment_id, stage_id=stage_id)
        _require_mapping("PutStageMetadataMulti", metadata)
        request = svc_pb.PutStageMetadataMultiRequest(deployment_id=deployment_id, stage_id=stage_id, metadata=dict(metadata))
        await self._call("PutStageMetadataMulti", request)

    async def get_deployment_plugin_metadata(self, deployment_id: str, plugin_name: str, key: str) -> str | None:
        _require("GetDeploymentPluginMetadata", deployment_id=deployment_id, plugin_name=plugin_name, key=key)
        request = svc_pb.GetDeploymentPluginMetadataRequest(deployment_id=deployment_id, plugin_name=plugin_name, key=key)
        response = await self._call("GetDeploymentPluginMetadata", request)
        return response.value if response.found else None

    async def put_deployment_plugin_metadata(self, deployment_id: str, plugin_name: str, key: str, value: str) -> None:
        _require("PutDeploymentPluginMetadata", deployment_id=deployment_id, plugin_name=plugin_name, key=key)
        _require_value("PutDeploymentPluginMetadata", key, value)
        request = svc_pb.PutDeploymentPluginMetadataRequest(deployment_id=deployment_id, plugin_name=plugin_name, key=key, value=value)
        await self._call("PutDeploymentPluginMetadata", request)

    async def put_deployment_plugin_metadata_multi(self, deployment_id: str, plugin_name: str, metadata: t.Mapping[str, str]) -> None:
        _require("PutDeploymentPluginMetadataMulti", deployment_id=deployment_id, plugin_name=plugin_name)
        _require_mapping("PutDeploymentPluginMetadataMulti", metadata)
        request = svc_pb.PutDeploymentPluginMetadataMultiRequest(deployment_id=deployment_id, plugin_name=plugin_name, metadata=dict(metadata))
        await self._call("PutDeploymentPluginMetadataMulti", request)

    async def get_deployment_shared_metadata(self, deployment_id: str, key: str) -> str | None:
        _require("GetDeploymentSharedMetadata", deployment_id=deployment_id, key=key)
        request = svc_pb.GetDeploymentSharedMetadataRequest(deployment_id=deployment_id, key=key)
        response = await self._call("GetDeploymentSharedMetadata", request)
        return response.value if response.found else None

    # -- commands --------------------------------------------------------------

    async def list_stage_commands(self, deployment_id: str, stage_id: str) -> list[command_pb.Command]:
        """The stage's unhandled APPROVE/SKIP commands; piped lists the same ones until the stage ends."""
        _require("ListStageCommands", deployment_id=deployment_id, stage_id=stage_id)
        request = svc_pb.ListStageCommandsRequest(deployment_id=deployment_id, stage_id=stage_id)
        response = await self._call("ListStageCommands", request)
        return list(response.commands)

    # -- application shared objects ---------------------------------------------

    async def get_application_shared_object(self, application_id: str, plugin_name: str, key: str) -> bytes | None:
        """The object's bytes, or None when piped answers NOT_FOUND."""
        _require("GetApplicationSharedObject", application_id=application_id, plugin_name=plugin_name, key=key)
        request = svc_pb.GetApplicationSharedObjectRequest(application_id=application_id, plugin_name=plugin_name, key=key)
        try:
            response = await self._call("GetApplicationSharedObject", request)
        except PipedError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return bytes(response.object)

    async def put_application_shared_object(self, application_id: str, plugin_name: str, key: str, data: bytes) -> None:
        _require("PutApplicationSharedObject", application_id=application_id, plugin_name=plugin_name, key=key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"PutApplicationSharedObject: the object {key!r} must be bytes, got {type(data).__name__}; encode text first")
        request = svc_pb.PutApplicationSharedObjectRequest(application_id=application_id, plugin_name=plugin_name, key=key, object=bytes(data))
        await self._call("PutApplicationSharedObject", request)


def _require_mapping(rpc: str, metadata: t.Mapping[str, str]) -> None:
    if not isinstance(metadata, t.Mapping):
        raise TypeError(f"{rpc}: expected a mapping of str keys to str values, got {type(metadata).__name__}")
    for key, value in metadata.items():
        _require(rpc, key=key)
        _require_value(rpc, key, value)
