"""Serving an App over grpc.aio: startup hooks, binding, health, signals, parent death, graceful stop.

Async handlers run on the event loop with no thread hop; sync handlers run in a
bounded thread pool, so a blocking handler never stalls the loop and a pool full
of blocking stages never delays async ones. Every call passes through
:mod:`pipeplug.guard` (concurrency limit, metrics, malformed requests).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import types
import typing as t

import grpc

from . import logconfig
from ._gen.plugin import deployment_pb2 as deploy_pb
from ._gen.plugin import deployment_pb2_grpc as deploy_grpc
from .errors import PipeplugError
from .handlers import RegistrationError
from .guard import GenericOnly
from .guard import GuardedRegistrar
from .loopwatch import LoopWatch
from .loopwatch import threshold_from_env
from .piped import PipedClient
from .piped import PipedOptions
from .servicers import Dispatcher
from .servicers import DeploymentServicer
from .stagelog import StageLogFlusher

if t.TYPE_CHECKING:
    from concurrent.futures import Executor

    from .admin import AdminServer
    from .app import App
    from .settings import PluginSettings

log = logging.getLogger("pipeplug")

#: piped dials ``localhost:<port>``, which may resolve to either family.
LOOPBACK_HOSTS = ("127.0.0.1", "::1")

#: Sync handlers run here. Async handlers never touch it, so a pool full of
#: blocking stages cannot stall them.
DEFAULT_SYNC_WORKERS = 64

#: How often the plugin checks that piped (its parent process) is still alive.
PARENT_POLL_SECONDS = 1.0

#: Stage-log flushes and other stop callbacks get at most this long.
STOP_CALLBACK_SECONDS = 5.0

#: Seconds calls in flight get after SIGTERM. Piped kills a plugin 30 s after its SIGTERM: grace,
#: plus the stop callbacks, plus a stuck handler's clean-up, must stay well inside that.
DEFAULT_GRACE_SECONDS = 10.0

#: grpc core options. Each was checked by experiment on grpcio 1.85 (bench/README.md, "Server options").
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    # Calls that arrive faster than the event loop accepts them wait in grpc core's
    # pending queue. Past `max_pending_requests` (default 1000) core refuses new calls
    # at random, and every one past the hard limit (default 3000); the client sees
    # CANCELLED. With the defaults a burst of 10,000 held stages on one connection lost
    # 56% of its calls. piped opens one call per running stage and never retries it, so
    # queue generously; the hard limit still bounds the memory a flood can take.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    # A queued call that the loop has not accepted within this many seconds is cancelled
    # (default 30). Only a loop stalled that long gets there, and piped sets no deadline:
    # rather serve late than fail the stage.
    ("grpc.server_max_unrequested_time_in_server", 300),
    # grpc sets SO_REUSEPORT by default, so a second plugin process (a new piped's, next to
    # an orphan of the old one) binds the same port and silently shares its calls. Refuse.
    ("grpc.so_reuseport", 0),
)


class StartupError(PipeplugError, RuntimeError):
    """The plugin cannot start: a startup hook failed, a file is missing, or no address could be bound."""


class TLSFiles(t.NamedTuple):
    """``--tls --cert-file --key-file``: PEM files for serving TLS."""

    cert_file: str
    key_file: str

    def credentials(self) -> grpc.ServerCredentials:
        pem = {}
        for flag, path in (("--cert-file", self.cert_file), ("--key-file", self.key_file)):
            if not path:
                raise StartupError(f"--tls needs {flag}: the PEM file of the server's {flag[2:-5]}")
            try:
                with open(path, "rb") as f:
                    pem[flag] = f.read()
            except OSError as exc:
                raise StartupError(f"{flag} {path}: cannot read it: {exc.strerror}") from None
        return grpc.ssl_server_credentials([(pem["--key-file"], pem["--cert-file"])])


class PluginServer:
    """One running plugin process: a grpc.aio server serving one App.

    :param grace_period: seconds in-flight calls other than stages get after SIGTERM before they are
        cancelled; stages are cancelled at once (see :mod:`pipeplug.inflight`).
    :param maximum_concurrent_rpcs: calls beyond this many in flight get RESOURCE_EXHAUSTED.
    :param admin_port: serve /healthz, /version and /metrics on 127.0.0.1 at this port (0: any free port).
    :param watch_parent: stop when the parent process (piped) dies; default: when started by piped.
    :param plugin_version: the version a built plugin carries (``pipeplug build --version``), shown by ``/version``.
    """

    def __init__(
        self,
        app: App,
        settings: PluginSettings,
        *,
        hosts: t.Sequence[str] = LOOPBACK_HOSTS,
        grace_period: float = DEFAULT_GRACE_SECONDS,
        sync_workers: int = DEFAULT_SYNC_WORKERS,
        piped_address: str | None = None,
        tls: TLSFiles | None = None,
        enable_reflection: bool = False,
        maximum_concurrent_rpcs: int | None = None,
        admin_port: int | None = None,
        watch_parent: bool | None = None,
        plugin_version: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.hosts = tuple(hosts)
        self.grace_period = grace_period
        #: piped's PluginService address (``--piped-plugin-service``); None when run without piped
        self.piped_address = piped_address
        self.tls = tls
        self.enable_reflection = enable_reflection
        if maximum_concurrent_rpcs is not None and maximum_concurrent_rpcs < 1:
            raise StartupError(f"--maximum-concurrent-rpcs must be at least 1, got {maximum_concurrent_rpcs}")
        self.maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self.admin_port = admin_port
        self.plugin_version = plugin_version
        self.watch_parent = piped_address is not None if watch_parent is None else watch_parent
        #: the bounded pool sync handlers run in; an app of async handlers only has none (nor loads the module)
        self.executor = _sync_pool(app, sync_workers)
        self.dispatcher = Dispatcher(app, settings, self.executor)
        #: the client of piped's PluginService, connected by start() when piped_address is given
        self.piped: PipedClient | None = None
        self.server: grpc.aio.Server | None = None
        self.admin: AdminServer | None = None
        self.port = 0
        self.addresses: list[str] = []
        #: awaited, in order, after the gRPC server has stopped and before the process exits
        #: (e.g. the stage log persister's final flush); each gets STOP_CALLBACK_SECONDS
        self.on_stop: list[t.Callable[[], t.Awaitable[t.Any]]] = []
        self._health: t.Any = None
        self._stopped: asyncio.Event | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.loop_watch: LoopWatch | None = None
        logconfig.register_secrets(logconfig.secret_values(settings.config))
        logconfig.register_secrets(logconfig.secret_values([target.config for target in settings.deploy_targets.values()]))

    async def start(self) -> None:
        """Run startup hooks, then bind and start serving."""
        try:
            self.app.finalize()
        except RegistrationError as exc:
            raise StartupError(str(exc)) from None
        self._stopped = asyncio.Event()
        try:
            blocked_threshold = threshold_from_env()
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        if self.piped_address:
            self._connect_piped(self.piped_address)
        targets = list(self.settings.deploy_targets.values())
        for hook in self.app.startup_hooks:
            values = types.SimpleNamespace(config=lambda: self.settings.config, deploy_targets=lambda: targets)
            try:
                await hook.call(values, self.executor)
            except Exception as exc:
                raise StartupError(logconfig.redact(f"@app.on_startup handler {hook.qualname}() failed: {type(exc).__name__}: {exc}")) from exc
        credentials = self.tls.credentials() if self.tls is not None else None
        server = grpc.aio.server(options=SERVER_OPTIONS)
        services = _add_services(GuardedRegistrar(server, maximum_concurrent_rpcs=self.maximum_concurrent_rpcs), self.dispatcher)  # type: ignore[arg-type]
        self._health = await _add_health(server, services)
        if self.enable_reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection([*services, "grpc.health.v1.Health", reflection.SERVICE_NAME], server)
        self._bind(server, credentials)
        await server.start()
        self.server = server
        log.info(
            "plugin %s serving %s on %s%s",
            self.settings.name,
            ", ".join(s.rsplit(".", 1)[-1] for s in services),
            ", ".join(self.addresses),
            " (TLS)" if credentials else "",
        )
        if self.admin_port is not None:
            await self._start_admin()
        if self.watch_parent:
            self._watcher = asyncio.ensure_future(self._watch_parent(_launcher_pid()))
        if blocked_threshold:
            self.loop_watch = LoopWatch(asyncio.get_running_loop(), blocked_threshold)
            self.loop_watch.start()

    def _connect_piped(self, address: str) -> None:
        """Open the channel to piped's PluginService and the stage-log flusher; stop() closes both."""
        try:
            options = PipedOptions.from_env()
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        piped = self.piped = self.dispatcher.piped = PipedClient(address, options)
        stage_logs = self.dispatcher.stage_logs = StageLogFlusher(piped)
        self.on_stop += [lambda: stage_logs.aclose(STOP_CALLBACK_SECONDS - 1), piped.close]
        log.info("talking to piped's PluginService at %s", address)

    def _bind(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> None:
        port = self.settings.port
        for host in self.hosts:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
            except RuntimeError as exc:
                bound = 0
                error: RuntimeError | None = exc
            else:
                error = None
            if not bound:
                if host == "::1" and self.addresses:
                    log.warning("could not bind %s (no IPv6 loopback?); serving on IPv4 only", address)
                    continue
                raise StartupError(f"cannot listen on {address}: {error or 'address in use or unavailable'}")
            port = bound  # with port 0, every family shares the first one chosen
            self.addresses.append(address.rsplit(":", 1)[0] + f":{bound}")
        self.port = port

    async def _start_admin(self) -> None:
        from . import __version__
        from .admin import AdminServer

        version = {"plugin": self.settings.name, "pipeplug": __version__, "grpcio": grpc.__version__}
        if self.plugin_version is not None:
            version["version"] = self.plugin_version
        self.admin = AdminServer(t.cast(int, self.admin_port), health=self.health_problems, version=version)
        try:
            await self.admin.start()
        except OSError as exc:
            raise StartupError(f"--admin-port {self.admin_port}: cannot listen on 127.0.0.1: {exc.strerror}") from None

    def health_problems(self) -> list[str]:
        """What is broken now: the gRPC server, or the connection to piped. Empty when healthy."""
        problems = []
        if self.server is None or self._stop_task is not None:
            problems.append("gRPC server is not serving (stopping or not started)")
        if self.piped is not None:
            state = self.piped.connectivity()
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                problems.append(f"connection to piped at {self.piped_address} is {state.name}")
        return problems

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, cancel running stages, give other calls ``grace`` seconds, run the stop callbacks.

        A stage's handler gets :data:`~pipeplug.inflight.CLEANUP_SECONDS` to clean up;
        its log is flushed but left open and its call answers STAGE_RUNNING, so
        piped executes the stage again after its restart.

        Safe to call more than once and from several places (signal, parent death).
        """
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop(self.grace_period if grace is None else grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        # Refuses new calls at once (once started); cancels the calls still running when grace ends.
        stopping = asyncio.ensure_future(self.server.stop(grace)) if self.server is not None else None
        await asyncio.sleep(0)
        stages = self.dispatcher.in_flight.stop_all()
        if stages:
            log.info("stopping %d running stage(s); piped executes them again when it restarts", stages)
        # Meanwhile, stages piped cancelled just before may still be waiting for their handlers.
        closing = self.dispatcher.in_flight.wait_closing(STOP_CALLBACK_SECONDS)
        await asyncio.gather(closing, *([stopping] if stopping is not None else []))
        for callback in self.on_stop:
            try:
                await asyncio.wait_for(callback(), STOP_CALLBACK_SECONDS)
            except Exception:  # noqa: BLE001 - one failed flush must not keep the process alive
                log.exception("stop callback %r failed", callback)
        if self.admin is not None:
            await self.admin.stop()
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.loop_watch is not None:
            self.loop_watch.stop()
        if self._stopped is not None:
            self._stopped.set()

    async def _watch_parent(self, parent: int) -> None:
        """Stop when the parent process dies, so an orphan never holds the port.

        piped starts plugins without a parent-death signal, and a SIGKILLed piped
        cannot send SIGTERM. When the parent dies the kernel re-parents us (to init
        or a subreaper), so getppid() changes. Polling is used rather than
        prctl(PR_SET_PDEATHSIG): that signal fires when the *thread* that forked us
        exits, which in a Go parent like piped can happen while piped lives on.
        """
        while _launcher_pid() == parent:
            await asyncio.sleep(PARENT_POLL_SECONDS)
        log.warning("parent process %d (piped) is gone; stopping so the port is freed", parent)
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve until stopped by SIGTERM/SIGINT or the parent's death; a second signal exits at once."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                logging.shutdown()
                os._exit(1)
            log.info("%s: stopping, running stages are cancelled, other in-flight calls get %gs", signal.Signals(signum).name, self.grace_period)
            loop.create_task(self.stop())

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        assert self.server is not None and self._stopped is not None
        await self._stopped.wait()
        log.info("plugin %s stopped", self.settings.name)


def _add_services(server: grpc.aio.Server, dispatcher: Dispatcher) -> list[str]:
    """Register the services the app implements; return their full names.

    LivestateService and PlanPreviewService (and their generated code) load
    only for an app that registers their hooks.
    """
    names = [deploy_pb.DESCRIPTOR.services_by_name["DeploymentService"].full_name]
    deploy_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(dispatcher), server)
    if "livestate" in dispatcher.app.hooks or "plan_preview" in dispatcher.app.hooks:
        from .optional_services import add_optional_servicers

        names += add_optional_servicers(server, dispatcher)
    return names


async def _add_health(server: grpc.aio.Server, services: t.Sequence[str]) -> t.Any:
    """The standard grpc.health.v1.Health service: SERVING for "" and each service until stop."""
    from grpc_health.v1 import health
    from grpc_health.v1 import health_pb2
    from grpc_health.v1 import health_pb2_grpc

    servicer = health.aio.HealthServicer()
    for name in ("", *services):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, GenericOnly(server))  # type: ignore[arg-type]
    return servicer


def _freeze_startup_heap() -> None:
    """Hide what startup loaded (modules, grpc, the app) from the garbage collector for good.

    It lives as long as the process, and a full collection while stages run
    would otherwise scan all of it inside whichever handler set it off
    (bench/README.md, "Performance tricks in the core").
    """
    gc.freeze()


def _sync_pool(app: App, workers: int) -> Executor | None:
    handlers = [*(spec.handler for spec in app.stages.values()), *app.hooks.values(), *app.startup_hooks]
    if all(handler.is_async for handler in handlers):
        return None
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipeplug-sync")


def _launcher_pid() -> int:
    """The process that started the plugin: our parent, unless it is a layer ``pipeplug build``
    wrapped the plugin in, with piped further up. Those layers are PyInstaller's bootloader,
    which runs the same file as we do (sys.executable), and in a static build staticx's
    bootloader, which runs the file piped started (``STATICX_PROG_PATH``). Linux only;
    elsewhere the parent."""
    pid = os.getppid()
    if not getattr(sys, "frozen", False):
        return pid
    layers = {os.path.realpath(path) for path in (sys.executable, os.environ.get("STATICX_PROG_PATH")) if path}
    for _ in range(len(layers)):  # each layer at most once
        try:
            if os.path.realpath(f"/proc/{pid}/exe") not in layers:
                break
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pid


def run(app: App, settings: PluginSettings, **options: t.Any) -> None:
    """Start the server and block until it is stopped by a signal or by the parent's death."""

    async def main() -> PluginServer:
        server = PluginServer(app, settings, **options)
        await server.start()
        _freeze_startup_heap()
        await server.serve_forever()
        return server

    server = asyncio.run(main())
    stuck = server.dispatcher.in_flight.abandoned
    if stuck:
        # Worker threads are joined at interpreter exit: a handler that never returns would keep
        # the process alive until piped kills it.
        log.warning("exiting without waiting for %d def handler(s) that ignored the cancellation", stuck)
        logging.shutdown()
        os._exit(0)
