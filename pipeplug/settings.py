"""Piped's ``--config`` JSON: the plugin's own entry of ``spec.plugins[]``.

Piped sends ``{"name", "url", "port", "config"?, "deployTargets"?}``. The
envelope is piped's, so unknown keys in it are ignored (piped may add some);
``config`` and each deploy target's ``config`` are the user's, so they are
structured strictly into the App's classes and every bad field is reported.
"""

from __future__ import annotations

import json
import typing as t

from .configs import ConfigError

if t.TYPE_CHECKING:
    from .app import App
    from .types import DeployTarget


class PluginSettings:
    """The plugin's runtime settings, decoded and typed.

    A plain class, not attrs: creating attrs classes costs every plugin start time.
    """

    __slots__ = ("name", "port", "url", "config", "deploy_targets")

    def __init__(self, *, name: str, port: int, url: str = "", config: t.Any = None, deploy_targets: t.Mapping[str, DeployTarget] | None = None) -> None:
        self.name = name
        self.port = port
        self.url = url
        self.config = config
        #: deploy targets by name, in piped's config order
        self.deploy_targets: t.Mapping[str, DeployTarget] = {} if deploy_targets is None else deploy_targets

    def __repr__(self) -> str:
        return f"PluginSettings(name={self.name!r}, port={self.port}, url={self.url!r}, deploy_targets={list(self.deploy_targets)})"

    def targets_named(self, names: t.Iterable[str]) -> list[DeployTarget]:
        """Resolve deploy target names sent by piped; unknown names are an error."""
        found = []
        for name in names:
            if name not in self.deploy_targets:
                known = ", ".join(self.deploy_targets) or "none"
                raise LookupError(f"deploy target {name!r} is not configured for plugin {self.name!r} (configured: {known})")
            found.append(self.deploy_targets[name])
        return found


def parse_settings(app: App, raw: str | bytes | t.Mapping[str, t.Any], *, require_port: bool = True) -> PluginSettings:
    """Decode piped's ``--config`` value; raise :class:`ConfigError` listing every bad field."""
    if isinstance(raw, (str, bytes)):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"--config: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]) from None
    else:
        data = dict(raw)
    if not isinstance(data, dict):
        raise ConfigError([f"--config: expected a JSON object, got {type(data).__name__}"])

    problems: list[str] = []
    name = data.get("name") or app.name
    if not isinstance(name, str):
        problems.append(f"name: expected a string, got {name!r}")
        name = app.name
    port = data.get("port", 0)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        problems.append(f"port: expected a port number from 1 to 65535, got {port!r}")
        port = 0
    elif require_port and port == 0:
        problems.append("port: required; piped dials localhost:<port> (set spec.plugins[].port)")

    config = None
    try:
        config = _structure_optional(app, data.get("config"), app.config_class, "config")
    except ConfigError as exc:
        problems.extend(exc.problems)

    targets: dict[str, DeployTarget] = {}
    raw_targets = data.get("deployTargets") or []
    if not isinstance(raw_targets, list):
        problems.append(f"deployTargets: expected a list, got {type(raw_targets).__name__}")
        raw_targets = []
    for i, entry in enumerate(raw_targets):
        where = f"deployTargets[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            problems.append(f"{where}.name: required, a non-empty string")
            continue
        where = f"deployTargets[{i}] ({entry['name']})"
        try:
            target_config = _structure_optional(app, entry.get("config"), app.deploy_target_config_class, f"{where}.config")
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        labels = entry.get("labels") or {}
        from .types import DeployTarget  # not at the top: a plugin without targets never loads it

        targets[entry["name"]] = DeployTarget(name=entry["name"], labels=dict(labels), config=target_config)

    if problems:
        raise ConfigError(problems)
    return PluginSettings(name=name, port=port, url=data.get("url") or "", config=config, deploy_targets=targets)


def _structure_optional(app: App, value: t.Any, cls: type | None, path: str) -> t.Any:
    # Piped omits an empty config and sends a target without one as null: both mean {}.
    if value is None:
        value = {}
    if cls is None:  # kept as decoded
        return value
    return app.converter.structure(value, cls, path=path)
