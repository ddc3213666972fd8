"""Which plugin handles what, by piped's registry rules (contract §2)."""

from __future__ import annotations

import typing as t

from ..suggest import did_you_mean

if t.TYPE_CHECKING:
    from .appconfig import AppConfig
    from .launcher import PluginProcess


class RoutingError(LookupError):
    """The app config names a stage or plugin no running plugin provides."""


class Registry:
    """Stage name -> plugin, built once from FetchDefinedStages; a later plugin wins a duplicate name."""

    def __init__(self, plugins: t.Sequence[PluginProcess]) -> None:
        self.plugins = list(plugins)
        self.by_name = {p.name: p for p in self.plugins}
        self.by_stage: dict[str, PluginProcess] = {}
        self.notes: list[str] = []
        for plugin in self.plugins:
            for stage in plugin.stages:
                other = self.by_stage.get(stage)
                if other is not None and other is not plugin:
                    self.notes.append(f"stage {stage} is offered by {other.name} and {plugin.name}; piped silently routes it to {plugin.name}, the later one")
                self.by_stage[stage] = plugin

    def for_stage(self, name: str) -> PluginProcess | None:
        return self.by_stage.get(name)

    def offered(self) -> str:
        return "; ".join(f"{p.name}: {', '.join(p.stages) or 'no stages'}" for p in self.plugins)

    def for_app(self, config: AppConfig) -> list[PluginProcess]:
        """The plugins piped asks for versions, strategy, quick sync, livestate and plan preview."""
        if config.stages:
            found: list[PluginProcess] = []
            for stage in config.stages:
                plugin = self.by_stage.get(stage.name)
                if plugin is None:
                    hint = did_you_mean(stage.name, self.by_stage)
                    raise RoutingError(
                        f"spec.pipeline.stages[{stage.index}].name: no plugin offers stage {stage.name!r}{hint}. Stages offered: {self.offered()}"
                    )
                if plugin not in found:
                    found.append(plugin)
            return found
        if config.plugins:
            found = []
            for name in config.plugins:
                if name not in self.by_name:
                    running = ", ".join(self.by_name) or "none"
                    raise RoutingError(
                        f"spec.plugins.{name}: no plugin named {name!r} is running{did_you_mean(name, self.by_name)} (running: {running}); "
                        f"set `name: {name}` in its plugin config"
                    )
                found.append(self.by_name[name])
            return found
        raise RoutingError("no plugin specified: the app config needs spec.pipeline.stages or spec.plugins.<name>")
