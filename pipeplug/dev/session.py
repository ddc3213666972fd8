"""One ``pipeplug dev`` process: the app config, the state file, piped's PluginService and the plugins.

Startup follows piped: the PluginService first, then each plugin in order,
then a connection and FetchDefinedStages per plugin. Teardown stops every
plugin by PID (SIGTERM, then SIGKILL) and the service. Bad input becomes a
:class:`DevError` with one clear message.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import typing as t
import uuid

import attrs

from .._gen.plugin import common_pb2 as source_pb
from ..launcher import LaunchError
from . import DEFAULT_STATE
from .appconfig import AppConfig
from .appconfig import AppConfigError
from .appconfig import load_app_config
from .launcher import PluginProcess
from .launcher import PluginSpec
from .launcher import build_spec
from .launcher import load_entry
from .launcher import stop_leftovers
from .pluginservice import DevPiped
from .registry import Registry
from .registry import RoutingError
from .sources import Snapshot
from .sources import deployment_source
from .sources import take_snapshot
from .state import State
from .ui import Output


class DevError(Exception):
    """Bad input or a plugin that cannot start: shown as one message, exit code 2."""

    exit_code = 2


@attrs.frozen
class Options:
    """Everything the command line decides."""

    app_config: str
    #: (target, plugin config file or None), in spec.plugins order
    plugins: tuple[tuple[str, str | None], ...]
    state_path: str = DEFAULT_STATE
    port_timeout: float = 30.0
    command_interval: float = 5.0
    grace_period: float = 10.0
    user: str = ""

    @property
    def who(self) -> str:
        return self.user or default_user()


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return "pipeplug-dev"


def application_id(config: AppConfig) -> str:
    """A stable id per app config file, as piped has one per registered application."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "pipeplug-dev:" + os.path.abspath(config.path)))


def application_name(config: AppConfig) -> str:
    return config.name or config.filename.split(".", 1)[0]


class Session:
    """Holds the run's resources; ``async with Session(...)`` starts and always stops them."""

    def __init__(self, options: Options, out: Output) -> None:
        self.options = options
        self.out = out
        self.config = self._load_config()
        for warning in self.config.warnings:
            out.warn(f"{self.config.path}: {warning}")
        self.specs = self._plugin_specs()
        self.state = State(options.state_path)
        self.app_id = application_id(self.config)
        self.app_name = application_name(self.config)
        self.service: DevPiped | None = None
        self.plugins: list[PluginProcess] = []
        self.registry: Registry | None = None
        self.deployment_id = ""

    def _load_config(self) -> AppConfig:
        try:
            return load_app_config(self.options.app_config)
        except AppConfigError as exc:
            raise DevError(exc.render()) from None

    def _plugin_specs(self) -> list[PluginSpec]:
        if not self.options.plugins:
            raise DevError("no plugin given: pass MODULE:APP, a plugin file or executable, or --plugin TARGET[=PLUGIN_CONFIG]")
        specs = []
        try:
            for target, config_path in self.options.plugins:
                entry = load_entry(config_path) if config_path else {}
                specs.append(build_spec(target, entry, config_path or target))
        except LaunchError as exc:
            raise DevError(str(exc)) from None
        named: tuple[tuple[str, list[object]], ...] = (("name", [s.name for s in specs]), ("port", [s.port for s in specs]))
        for kind, values in named:
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise DevError(f"two plugins share the {kind} {', '.join(repeated)}; piped needs a distinct {kind} per spec.plugins[] entry")
        for spec in specs:
            for note in spec.notes:
                self.out.note(note)
        return specs

    async def __aenter__(self) -> Session:
        leftovers = self.state.live_plugin_processes()
        for pid in stop_leftovers(leftovers, self.out.note):
            self.state.plugin_stopped(pid)
        self.service = DevPiped(
            self.state, command_interval=self.options.command_interval, on_violation=self.violation, on_log=self._log
        )
        await self.service.start_async()
        loop = asyncio.get_running_loop()
        try:
            for spec in self.specs:  # one after another, in spec.plugins order, as piped does
                log_path = os.path.join(self.state.directory, "logs", f"{spec.name}.log")
                plugin = PluginProcess(
                    spec, self.service.service_address, log_path=log_path, on_output=lambda n, line: loop.call_soon_threadsafe(self.out.plugin_output, n, line)
                )
                plugin.start()
                self.plugins.append(plugin)
                self.state.plugin_started(plugin.pid, plugin.name, plugin.argv)
            for plugin in self.plugins:
                await plugin.connect(self.options.port_timeout)
        except LaunchError as exc:
            await self.close()
            raise DevError(str(exc)) from None
        except BaseException:
            await self.close()
            raise
        self.registry = Registry(self.plugins)
        for note in self.registry.notes:
            self.out.note(note)
        self.out.plugins_ready(self.plugins)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(self._stop(p) for p in self.plugins))
        if self.service is not None:
            await self.service.stop_async()
            self.service = None
        self.state.close()

    async def _stop(self, plugin: PluginProcess) -> None:
        await plugin.stop(self.options.grace_period)
        self.state.plugin_stopped(plugin.pid)

    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL every plugin by PID at once."""
        for plugin in self.plugins:
            plugin.kill_now()
            self.state.plugin_stopped(plugin.pid)

    def check_routing(self, config: AppConfig | None = None) -> None:
        assert self.registry is not None
        try:
            self.registry.for_app(config or self.config)
        except RoutingError as exc:
            raise DevError(f"{self.config.path}: {exc}") from None

    def targets_by_plugin(self) -> dict[str, list[str]]:
        """Deploy targets per plugin name: all of each plugin's configured targets (piped takes them from the app's registration)."""
        return {s.name: s.deploy_target_names for s in self.specs if s.deploy_target_names}

    def snapshot(self) -> Snapshot:
        return take_snapshot(self.config.directory, self.state.snapshots_dir, exclude=[self.state.directory])

    def source(self, snapshot: Snapshot, filename: str, work_dir: str) -> source_pb.DeploymentSource:
        return deployment_source(snapshot, filename, work_dir)

    def violation(self, message: str) -> None:
        """Record what real piped would not accept (in the state file, against the deployment) and say it."""
        if self.deployment_id:
            self.state.add_violation(self.deployment_id, message)
        self.out.violation(message)

    def note(self, text: str) -> None:
        self.out.note(text)

    def _log(self, deployment_id: str, stage_id: str, blocks: list[t.Any]) -> None:
        self.out.stage_log(stage_id, blocks)
