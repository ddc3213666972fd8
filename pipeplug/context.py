"""The context object a handler receives as ``ctx``: what the call is about, and how to talk back to piped.

Talking back goes through piped's PluginService (:mod:`pipeplug.piped`),
scoped here to the stage, deployment or application being served:

- ``ctx.log``: the stage log (web UI); its warnings and errors also reach the process log.
- ``ctx.stage_metadata`` / ``ctx.deployment_metadata``: ``await get/put/put_many``.
- ``ctx.shared_metadata``: ``await get`` (piped writes it, plugins only read).
- ``ctx.shared_objects``: the application's shared objects, bytes in and out.
- ``ctx.commands()``, ``await ctx.wait_for_approval(...)``, ``await ctx.install_tool(...)``.

Sync handlers run in worker threads and call the ``*_sync`` twin of each
awaitable (``ctx.stage_metadata.get_sync(key)``). A twin submits the coroutine
to the server's event loop with :func:`asyncio.run_coroutine_threadsafe` and
waits for it: no thread is started per call, and a twin called on the event
loop itself raises at once instead of deadlocking it. If piped cancels the
stage, a waiting twin raises :class:`asyncio.CancelledError` in the handler's
thread.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import logging
import threading
import typing as t

from .approval import StageCommand
from .approval import poll_commands
from .approval import wait_for_approval
from .stagelog import StageLog
from .stagelog import complete_stage_log
from .syncbridge import SyncBridge

if t.TYPE_CHECKING:
    from .piped import PipedClient
    from .process import ProcessResult
    from .stagelog import StageLogFlusher
    from .types import Deployment

T = t.TypeVar("T")
P = t.ParamSpec("P")
S = t.TypeVar("S", bound="_Scoped")

#: guards the lazy parts of a context that threads may race for (rare: once per context that needs one)
_LAZY_LOCK = threading.Lock()


class _Call(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine of ctx's async API that knows whether it was ever started.

    Calling ``ctx.stage_metadata.put(...)`` without ``await`` does nothing, and
    Python's own "never awaited" warning comes (if at all) when the garbage
    collector gets to it, long after the stage passed. So each such coroutine
    is tracked by its context until it is started (awaited, sent, made a task)
    or closed, and a stage that ends with one untouched fails, naming the call.
    """

    __slots__ = ("_coro", "what", "_pending")

    def __init__(self, coro: t.Coroutine[t.Any, t.Any, t.Any], what: str, pending: set[_Call]) -> None:
        self._coro = coro
        #: the call as written, e.g. ``ctx.stage_metadata.put(...)``
        self.what = what
        self._pending = pending
        pending.add(self)

    def __await__(self) -> t.Generator[t.Any, None, t.Any]:
        self._pending.discard(self)
        return self._coro.__await__()

    def send(self, value: t.Any) -> t.Any:
        self._pending.discard(self)
        return self._coro.send(value)

    def throw(self, *args: t.Any) -> t.Any:
        self._pending.discard(self)
        return self._coro.throw(*args)

    def close(self) -> None:
        self._pending.discard(self)
        self._coro.close()


class _Scoped(t.Protocol):
    """What :func:`_tracked` methods belong to: something that knows its context and how users spell it."""

    def _scope(self) -> tuple[Context, str]: ...


def _tracked(method: t.Callable[t.Concatenate[S, P], t.Coroutine[t.Any, t.Any, T]]) -> t.Callable[t.Concatenate[S, P], t.Coroutine[t.Any, t.Any, T]]:
    """Make ``method``'s coroutine a :class:`_Call` its context checks was started by the end of the stage."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> t.Coroutine[t.Any, t.Any, T]:
        ctx, label = self._scope()
        pending = ctx._pending
        if pending is None:
            with _LAZY_LOCK:  # a sync handler's thread and the loop may both get here first
                if ctx._pending is None:
                    ctx._pending = set()
                pending = ctx._pending
        return _Call(method(self, *args, **kwargs), f"{label}.{name}(...)", pending)

    return call


class Metadata:
    """String key/value metadata that piped keeps for the deployment being planned or executed.

    It exists only while piped plans or executes this deployment: in
    livestate or plan preview handlers, or for another deployment, piped
    answers with an error (UNKNOWN "metadata store not found"), raised as
    :class:`~pipeplug.PipedError`. ``put`` is a synchronous round trip to
    the control plane. An empty key raises ValueError before any call.
    """

    __slots__ = ("_label", "_get", "_put", "_put_many", "_ctx")

    def __init__(
        self,
        label: str,
        get: t.Callable[[str], t.Awaitable[str | None]],
        put: t.Callable[[str, str], t.Awaitable[None]] | None,
        put_many: t.Callable[[t.Mapping[str, str]], t.Awaitable[None]] | None,
        ctx: Context,
    ) -> None:
        self._label = label
        self._get = get
        self._put = put
        self._put_many = put_many
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"<{self._label}>"

    @_tracked
    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        return await self._get(key)

    @_tracked
    async def put(self, key: str, value: str) -> None:
        """Store ``value`` (a str) under ``key``."""
        await self._writer(self._put)(key, value)

    @_tracked
    async def put_many(self, values: t.Mapping[str, str]) -> None:
        """Store several keys in one call."""
        if values:
            await self._writer(self._put_many)(values)

    def get_sync(self, key: str) -> str | None:
        """:meth:`get` for sync handlers."""
        return self._ctx._bridge.run(self.get(key), f"{self._label}.get")

    def put_sync(self, key: str, value: str) -> None:
        """:meth:`put` for sync handlers."""
        self._ctx._bridge.run(self.put(key, value), f"{self._label}.put")

    def put_many_sync(self, values: t.Mapping[str, str]) -> None:
        """:meth:`put_many` for sync handlers."""
        self._ctx._bridge.run(self.put_many(values), f"{self._label}.put_many")

    def _scope(self) -> tuple[Context, str]:
        return self._ctx, self._label

    def _writer(self, func: t.Callable[..., t.Awaitable[None]] | None) -> t.Callable[..., t.Awaitable[None]]:
        if func is None:
            raise TypeError(f"{self._label} is read-only: piped writes it, plugins only read it")
        return func


class SharedObjects:
    """The application's shared objects: bytes kept by the control plane per (application, plugin, key).

    They outlive deployments and work wherever an application id is known,
    including livestate and plan preview. An empty key raises ValueError
    before any call.
    """

    __slots__ = ("_client", "application_id", "plugin_name", "_ctx")

    def __init__(self, client: PipedClient, application_id: str, plugin_name: str, ctx: Context) -> None:
        self._client = client
        self.application_id = application_id
        self.plugin_name = plugin_name
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"<SharedObjects application_id={self.application_id!r} plugin_name={self.plugin_name!r}>"

    @_tracked
    async def get(self, key: str) -> bytes | None:
        """The object stored under ``key``, or None when there is none."""
        return await self._client.get_application_shared_object(self.application_id, self.plugin_name, key)

    @_tracked
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        await self._client.put_application_shared_object(self.application_id, self.plugin_name, key, data)

    def _scope(self) -> tuple[Context, str]:
        return self._ctx, "ctx.shared_objects"

    def get_sync(self, key: str) -> bytes | None:
        """:meth:`get` for sync handlers."""
        return self._ctx._bridge.run(self.get(key), "ctx.shared_objects.get")

    def put_sync(self, key: str, data: bytes) -> None:
        """:meth:`put` for sync handlers."""
        self._ctx._bridge.run(self.put(key, data), "ctx.shared_objects.put")


class Context:
    """What a handler knows about the call it serves, and how it talks back to piped.

    Every RPC gets a fresh context. ``stage_*`` fields are set only for
    ExecuteStage, ``deployment`` only where piped sends one. Parts that need
    what a call lacks (``ctx.stage_metadata`` outside a stage, anything
    talking to piped when the plugin runs without it) raise RuntimeError
    saying so.

    A context is built for every call, and thousands may be held at once,
    so it is a slotted object whose costlier parts (the deployment view, the
    process logger, the sync bridge) are built on first use.

    Attributes:
        plugin_name: the plugin's name in piped's config (``spec.plugins[].name``).
        rpc: the RPC being served, e.g. ``ExecuteStage``.
        application_id, application_name: the application the call is about.
        stage_id, stage_name, stage_index: the stage being executed (ExecuteStage only).
        stage_status: the stage status piped sent: RUNNING means piped re-executes a stage it lost.
    """

    __slots__ = (
        "plugin_name",
        "rpc",
        "application_id",
        "application_name",
        "stage_id",
        "stage_name",
        "stage_index",
        "stage_status",
        "_operators",
        "_stage_pb",
        "_deployment",
        "_deployment_pb",
        "_logger",
        "_log",
        "_piped",
        "_stage_logs",
        "_loop",
        "_cancel_requested",
        "_sync",
        "_pending",
    )

    def __init__(
        self,
        *,
        plugin_name: str,
        rpc: str,
        deployment: Deployment | None = None,
        application_id: str = "",
        application_name: str = "",
        stage_id: str = "",
        stage_name: str = "",
        stage_index: int = 0,
        stage_status: int = 0,
        authorized_operators: tuple[str, ...] | None = None,
        logger: logging.LoggerAdapter[logging.Logger] | None = None,
        log: StageLog | None = None,
        piped: PipedClient | None = None,
        deployment_pb: t.Any = None,
        stage_pb: t.Any = None,
        stage_logs: StageLogFlusher | None = None,
    ) -> None:
        self.plugin_name = plugin_name
        self.rpc = rpc
        self.application_id = application_id
        self.application_name = application_name
        self.stage_id = stage_id
        self.stage_name = stage_name
        self.stage_index = stage_index
        self.stage_status = stage_status
        self._operators = authorized_operators
        #: the ``model.PipelineStage`` message, read on first use (authorized_operators)
        self._stage_pb = stage_pb
        #: the ``model.Deployment`` message; converted to :attr:`deployment` on first use
        self._deployment = deployment
        self._deployment_pb = deployment_pb
        self._logger = logger
        self._log = log
        self._piped = piped
        #: ships the stage log to piped; None when the plugin runs without piped
        self._stage_logs = stage_logs
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._cancel_requested = False
        self._sync: SyncBridge | None = None
        #: coroutines of the async API not started yet (see _Call); None until the first call
        self._pending: set[_Call] | None = None

    def __repr__(self) -> str:
        ids = f" stage={self.stage_name}/{self.stage_id}" if self.stage_id else ""
        return f"<Context {self.plugin_name} {self.rpc} deployment={self.deployment_id!r}{ids}>"

    @property
    def authorized_operators(self) -> tuple[str, ...]:
        """Who may approve this stage, as planned (``authorized_operators``); empty means anyone."""
        if self._operators is None:
            self._operators = tuple(self._stage_pb.authorized_operators) if self._stage_pb is not None else ()
        return self._operators

    @property
    def deployment(self) -> Deployment | None:
        """The deployment being planned or executed, where piped sends one."""
        if self._deployment is None and self._deployment_pb is not None:
            from .wire import deployment_from_pb

            self._deployment = deployment_from_pb(self._deployment_pb)
        return self._deployment

    @property
    def deployment_id(self) -> str:
        """The deployment's id, or "" where piped sends none."""
        if self._deployment is not None:
            return self._deployment.id
        return self._deployment_pb.id if self._deployment_pb is not None else ""

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """The process logger, carrying this call's ids (process log only; ``ctx.log`` writes the stage log)."""
        if self._logger is None:
            self._logger = logging.LoggerAdapter(logging.getLogger("pipeplug.handler"), self._log_ids())
        return self._logger

    @property
    def log(self) -> StageLog:
        """The stage log in the web UI, and the process log; see :class:`~pipeplug.stagelog.StageLog`.

        Built on first use: a stage that never logs costs neither memory nor a call to piped.
        """
        stage_log = self._log
        if stage_log is None:
            opener = None
            if self.stage_id and self.deployment_id:
                label = f"stage {self.stage_name} (stage id {self.stage_id}, deployment {self.deployment_id})"
                if self._stage_logs is not None:
                    opener = functools.partial(self._stage_logs.open, self.deployment_id, self.stage_id)
            else:
                label = self.stage_name or self.rpc
            made = StageLog(label=label, extra=self._log_ids(), opener=opener)
            with _LAZY_LOCK:  # a sync handler's thread and the loop may both get here first
                if self._log is None:
                    self._log = made
                stage_log = self._log
        return stage_log

    def _log_ids(self) -> dict[str, t.Any]:
        """The ids every process log line of this call carries (JSON log fields)."""
        return {"plugin": self.plugin_name, "deployment_id": self.deployment_id, "stage_id": self.stage_id, "stage_name": self.stage_name}

    @property
    def cancelled(self) -> bool:
        """True once piped has cancelled this call. Sync handlers should poll it."""
        return self._cancel_requested

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block a sync handler up to ``timeout`` seconds; True if the call was cancelled.

        ``if ctx.wait_cancelled(10): return`` is a cancellable ``time.sleep(10)``.
        """
        return self._bridge.event.wait(timeout)

    @property
    def _bridge(self) -> SyncBridge:
        sync = self._sync
        if sync is None:
            with _LAZY_LOCK:
                if self._sync is None:
                    self._sync = SyncBridge(self._loop, self._cancel_requested)
                sync = self._sync
        return sync

    def _scope(self) -> tuple[Context, str]:
        return self, "ctx"

    def _never_awaited(self) -> list[str]:
        """The async API calls made but never started, closed now so Python does not warn again later."""
        pending = list(self._pending or ())
        for call in pending:
            call.close()
        return sorted({call.what for call in pending})

    def _cancel(self) -> None:
        with _LAZY_LOCK:
            self._cancel_requested = True
            sync = self._sync
        if sync is not None:
            sync.cancel()

    # -- scoped PluginService calls ---------------------------------------------------

    def _client(self, what: str, **needs: str) -> PipedClient:
        if self._piped is None:
            raise RuntimeError(
                f"ctx.{what} talks to piped, but this plugin runs without piped (no --piped-plugin-service, e.g. under "
                "`pipeplug run`); start it as piped does, or test it against pipeplug.testing.FakePiped"
            )
        missing = [name for name, value in needs.items() if not value]
        if missing:
            raise RuntimeError(f"ctx.{what} needs a {' and a '.join(missing)}, which piped does not send to {self.rpc}")
        return self._piped

    @property
    def stage_metadata(self) -> Metadata:
        """This stage's metadata (ExecuteStage only). It survives a re-execution of the stage, so resume from it."""
        client = self._client("stage_metadata", deployment=self.deployment_id, stage=self.stage_id)
        ids = (self.deployment_id, self.stage_id)
        return Metadata(
            "ctx.stage_metadata",
            functools.partial(client.get_stage_metadata, *ids),
            functools.partial(client.put_stage_metadata, *ids),
            functools.partial(client.put_stage_metadata_multi, *ids),
            self,
        )

    @property
    def deployment_metadata(self) -> Metadata:
        """This plugin's metadata for the whole deployment (namespace = plugin name), shared by its stages."""
        client = self._client("deployment_metadata", deployment=self.deployment_id)
        ids = (self.deployment_id, self.plugin_name)
        return Metadata(
            "ctx.deployment_metadata",
            functools.partial(client.get_deployment_plugin_metadata, *ids),
            functools.partial(client.put_deployment_plugin_metadata, *ids),
            functools.partial(client.put_deployment_plugin_metadata_multi, *ids),
            self,
        )

    @property
    def shared_metadata(self) -> Metadata:
        """The deployment's shared metadata, read-only (piped writes e.g. ``DeploymentNotification``)."""
        client = self._client("shared_metadata", deployment=self.deployment_id)
        get = functools.partial(client.get_deployment_shared_metadata, self.deployment_id)
        return Metadata("ctx.shared_metadata", get, None, None, self)

    @property
    def shared_objects(self) -> SharedObjects:
        """The application's shared objects (bytes), kept across deployments."""
        client = self._client("shared_objects", application=self.application_id)
        return SharedObjects(client, self.application_id, self.plugin_name, self)

    @_tracked
    async def install_tool(self, name: str, version: str, script: str) -> str:
        """Have piped install a tool once per host and return its path (``<tools dir>/<name>-<version>``).

        ``script`` is a shell script and a Go template: it must create
        ``{{ .OutPath }}``; ``{{ .Name }}``, ``{{ .Version }}``, ``{{ .TmpDir }}``,
        ``{{ .Os }}`` and ``{{ .Arch }}`` are filled in by piped.
        """
        return await self._client("install_tool").install_tool(name, version, script)

    def install_tool_sync(self, name: str, version: str, script: str) -> str:
        """:meth:`install_tool` for sync handlers."""
        return self._bridge.run(self.install_tool(name, version, script), "ctx.install_tool")

    # -- commands and approval ---------------------------------------------------------

    def commands(self, *, interval: float | None = None) -> t.AsyncIterator[StageCommand]:
        """Yield each Approve/Skip command for this stage once, polling piped every ``interval`` seconds.

        Piped lists a command until the stage ends, so commands are
        deduplicated by id. The iteration ends only when the caller stops it
        or piped cancels the stage. ``interval`` defaults to 5s
        (``PIPEPLUG_COMMAND_POLL_INTERVAL``).
        """
        client = self._client("commands()", deployment=self.deployment_id, stage=self.stage_id)
        every = client.options.command_poll_interval if interval is None else interval
        return poll_commands(self, client, every)

    def commands_sync(self, *, interval: float | None = None) -> t.Iterator[StageCommand]:
        """:meth:`commands` for sync handlers: a blocking iterator."""
        commands = self.commands(interval=interval)

        async def step() -> StageCommand:
            return await commands.__anext__()

        try:
            while True:
                try:
                    yield self._bridge.run(step(), "ctx.commands")
                except StopAsyncIteration:
                    return
        finally:
            if not self.cancelled:
                self._bridge.run(t.cast(t.Any, commands).aclose(), "ctx.commands")

    @_tracked
    async def wait_for_approval(self, min_approvers: int = 1, *, approvers: t.Sequence[str] | None = None, interval: float | None = None) -> list[str]:
        """Wait until ``min_approvers`` different users approved this stage; return who approved.

        Works like the official WAIT_APPROVAL plugin: approvers are recorded in
        stage metadata (``pipecd/stage-approved-users``, and
        ``pipecd/stage-display-metadata`` for the web UI) and read back first,
        so approvals given before piped re-executed the stage still count.
        ``approvers`` defaults to the stage's planned ``authorized_operators``;
        when it is not empty, approvals from anyone else are ignored. The web
        UI shows the Approve button only on stages planned with
        ``available_operation=ManualOperation.APPROVE`` (or named WAIT_APPROVAL).
        """
        return await wait_for_approval(self, min_approvers, approvers, interval)

    def wait_for_approval_sync(self, min_approvers: int = 1, *, approvers: t.Sequence[str] | None = None, interval: float | None = None) -> list[str]:
        """:meth:`wait_for_approval` for sync handlers."""
        return self._bridge.run(self.wait_for_approval(min_approvers, approvers=approvers, interval=interval), "ctx.wait_for_approval")

    # -- running commands (pipeplug.process) -------------------------------------------

    async def run(self, command: str | t.Sequence[str], **options: t.Any) -> ProcessResult:
        """Run a command, streaming its stdout and stderr to the stage log line by line; return how it ended.

        ``command`` is a shell command line (run by ``/bin/sh -c``) or an argv
        list (no shell). Options, all keyword-only:

        - ``env``: variables added to the plugin's environment (``inherit_env=False``: the only ones).
        - ``cwd``: the working directory. ``timeout``: seconds, None (default) for no limit.
        - ``capture=True``: keep the output in the result (the last ``capture_limit`` bytes of each stream, 1 MiB).
        - ``check=True``: raise :class:`pipeplug.process.ProcessError` unless it exits 0 in time.
        - ``stderr_level``: "info" (default), "warning" or "error" for stderr lines.
        - ``kill_grace``: seconds between SIGTERM and SIGKILL (5).

        The command leads its own process group. On timeout, on cancellation of
        the stage, and when the command exits, the whole group is stopped
        (SIGTERM, then SIGKILL), so nothing it started outlives the stage.
        """
        from .process import run_command

        return await run_command(self, command, **options)

    def run_sync(self, command: str | t.Sequence[str], **options: t.Any) -> ProcessResult:
        """:meth:`run` for sync handlers; a cancelled stage stops the command the same way."""
        return self._bridge.run(self.run(command, **options), "ctx.run")


# -- what the framework does to a context when its call ends (functions, so users never see them as methods) --


def cancel(ctx: Context) -> None:
    """Mark ``ctx`` cancelled: ``ctx.cancelled`` turns true and a waiting ``*_sync`` twin raises CancelledError."""
    ctx._cancel()


def never_awaited(ctx: Context) -> list[str]:
    """The async API calls the handler made but never started (closed now), as written, e.g. ``ctx.stage_metadata.put(...)``."""
    return ctx._never_awaited() if ctx._pending else []


def end_stage_log(ctx: Context, *, rerun: bool) -> asyncio.Future[None] | None:
    """Complete the stage's log when the stage ends; return what to await first (None: nothing).

    A log nothing was written to is left alone unless ``rerun`` (piped
    re-executes the stage, and the process it lost may have left lines waiting
    for completion). From now on, a line written reaches the process log only.
    """
    if ctx._log is None and not rerun:
        ctx._stage_logs = None
        return None
    completed = complete_stage_log(ctx.log, empty_too=rerun)
    return None if completed.done() else completed
