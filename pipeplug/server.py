"""Serving an App over grpc.aio: startup hooks, binding, signals, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import typing as t
from concurrent.futures import ThreadPoolExecutor

import grpc

from .servicers import Dispatcher
from .servicers import add_servicers

if t.TYPE_CHECKING:
    from .app import App
    from .settings import PluginSettings

log = logging.getLogger("pipeplug")

#: piped dials ``localhost:<port>``, which may resolve to either family.
LOOPBACK_HOSTS = ("127.0.0.1", "::1")

#: Sync handlers run here. Async handlers never touch it, so a pool full of
#: blocking stages cannot stall them.
DEFAULT_SYNC_WORKERS = 64


class StartupError(RuntimeError):
    """The plugin cannot start: a startup hook failed or no address could be bound."""


class PluginServer:
    """One running plugin process: a grpc.aio server serving one App."""

    def __init__(
        self,
        app: App,
        settings: PluginSettings,
        *,
        hosts: t.Sequence[str] = LOOPBACK_HOSTS,
        grace_period: float = 30.0,
        sync_workers: int = DEFAULT_SYNC_WORKERS,
        piped_address: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.hosts = tuple(hosts)
        self.grace_period = grace_period
        #: piped's PluginService address (``--piped-plugin-service``); None when run without piped
        self.piped_address = piped_address
        self.executor = ThreadPoolExecutor(max_workers=sync_workers, thread_name_prefix="pipeplug-sync")
        self.dispatcher = Dispatcher(app, settings, self.executor)
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.addresses: list[str] = []
        self._stopping: asyncio.Event | None = None

    async def start(self) -> None:
        """Run startup hooks, then bind and start serving."""
        self.app._started = True
        self._stopping = asyncio.Event()
        targets = list(self.settings.deploy_targets.values())
        for hook in self.app.startup_hooks:
            values = {"config": lambda: self.settings.config, "deploy_targets": lambda: targets}
            try:
                await hook.call(values, self.executor)
            except Exception as exc:
                raise StartupError(f"@app.on_startup handler {hook.qualname}() failed: {type(exc).__name__}: {exc}") from exc
        server = grpc.aio.server()
        services = add_servicers(server, self.dispatcher)
        port = self.settings.port
        for host in self.hosts:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                bound = server.add_insecure_port(address)
            except RuntimeError as exc:
                bound = 0
                error = exc
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
        await server.start()
        self.server = server
        log.info("plugin %s serving %s on %s", self.settings.name, ", ".join(s.rsplit(".", 1)[-1] for s in services), ", ".join(self.addresses))

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls and give in-flight ones ``grace`` seconds."""
        if self.server is not None:
            await self.server.stop(self.grace_period if grace is None else grace)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._stopping is not None:
            self._stopping.set()

    async def serve_forever(self) -> None:
        """Serve until SIGTERM or SIGINT; a second signal exits at once."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s: stopping, in-flight calls get %.0fs", signal.Signals(signum).name, self.grace_period)
            loop.create_task(self.stop())

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        assert self.server is not None and self._stopping is not None
        await self._stopping.wait()
        await self.server.wait_for_termination()


def run(app: App, settings: PluginSettings, **options: t.Any) -> None:
    """Start the server and block until it is stopped by a signal."""

    async def main() -> None:
        server = PluginServer(app, settings, **options)
        await server.start()
        await server.serve_forever()

    asyncio.run(main())
