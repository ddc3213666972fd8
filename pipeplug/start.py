"""``<plugin> start``: what a plugin process does when piped starts it.

piped always runs ``<plugin> start --piped-plugin-service ADDR --config JSON``
and nothing else. :func:`main` recognises exactly that argv without loading
click (which alone takes longer to import than the rest of pipeplug); every other command line (more
flags, ``--help``, ``version``, a mistake) goes to the click command in
:mod:`pipeplug.cli`, which owns help and usage errors. Both end in
:func:`start`.
"""

from __future__ import annotations

import json
import logging
import sys
import typing as t

from .configs import ConfigError
from .configs import parse_duration
from .logconfig import configure_logging
from .logconfig import set_plugin_name
from .server import LOOPBACK_HOSTS
from .server import StartupError
from .server import TLSFiles
from .server import run as run_server
from .settings import parse_settings

if t.TYPE_CHECKING:
    from .app import App

log = logging.getLogger("pipeplug")

#: the flags of ``start`` piped never passes, with their defaults (the click command shows these too)
DEFAULTS: dict[str, t.Any] = {
    "grace_period": "10s",  # server.DEFAULT_GRACE_SECONDS: piped kills the plugin 30 s after SIGTERM
    "tls": False,
    "cert_file": "",
    "key_file": "",
    "enable_grpc_reflection": False,
    "log_level": "info",
    "log_encoding": "console",
    "admin_port": None,
    "maximum_concurrent_rpcs": None,
}


def main(app: App, argv: t.Sequence[str], *, version: str | None = None) -> None:
    """Run ``app`` with a plugin binary's command line; exits like a click command.

    ``version`` is the plugin's version (``pipeplug build --version``), shown by the
    ``version`` command and the admin server's ``/version``; None for a plain script.
    """
    given = _piped_argv(argv)
    if given is None:
        from .cli import plugin_command

        plugin_command(app, version=version).main(args=list(argv), prog_name=app.name)
        return
    options = dict(DEFAULTS, grace_period=parse_duration(DEFAULTS["grace_period"]).total_seconds())
    try:
        start(app, piped_plugin_service=given["--piped-plugin-service"], config_json=given["--config"], plugin_version=version, **options)
    except StartupError as exc:
        sys.exit(f"Error: {exc}")  # as click reports a usage problem: on stderr, exit status 1
    sys.exit(0)


def _piped_argv(argv: t.Sequence[str]) -> dict[str, str] | None:
    """The two flags of piped's exact argv (either order), or None for any other command line."""
    if len(argv) != 5 or argv[0] != "start":
        return None
    given = {flag: value for flag, value in (argv[1:3], argv[3:5]) if not value.startswith("-")}
    return given if given.keys() == {"--piped-plugin-service", "--config"} else None


def start(
    app: App,
    *,
    piped_plugin_service: str,
    config_json: str,
    grace_period: float,
    tls: bool,
    cert_file: str,
    key_file: str,
    enable_grpc_reflection: bool,
    log_level: str,
    log_encoding: str,
    admin_port: int | None,
    maximum_concurrent_rpcs: int | None,
    ignored: t.Sequence[str] = (),
    plugin_version: str | None = None,
) -> None:
    """Serve ``app`` for piped until SIGTERM; a bad flag or config raises StartupError saying which."""
    configure_logging(log_level, log_encoding)
    if ignored:
        log.warning("ignoring flags pipeplug does not know: %s", " ".join(ignored))
    try:
        raw = json.loads(config_json)
    except json.JSONDecodeError as exc:
        raise StartupError(f"--config is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(raw, dict):
        raise StartupError(f"--config must be a JSON object, got {type(raw).__name__}")
    if not tls and (cert_file or key_file):
        raise StartupError("--cert-file and --key-file take effect only with --tls")
    serve(
        app,
        raw,
        hosts=LOOPBACK_HOSTS,
        port=None,
        grace_period=grace_period,
        source="--config",
        piped_address=piped_plugin_service,
        server_options={
            "tls": TLSFiles(cert_file, key_file) if tls else None,
            "enable_reflection": enable_grpc_reflection,
            "admin_port": admin_port,
            "maximum_concurrent_rpcs": maximum_concurrent_rpcs,
            "plugin_version": plugin_version,
        },
    )


def serve(
    app: App,
    raw_config: t.Any,
    *,
    hosts: t.Sequence[str],
    port: int | None,
    grace_period: float,
    source: str,
    piped_address: str | None = None,
    server_options: t.Mapping[str, t.Any] | None = None,
) -> None:
    """Parse the plugin config (``source`` names where it came from in errors) and serve until stopped."""
    try:
        data = dict(raw_config)
        if port is not None:
            data["port"] = port
        settings = parse_settings(app, data)
    except ConfigError as exc:
        lines = "\n".join(f"  - {problem}" for problem in exc.problems)
        raise StartupError(f"the plugin config from {source} does not fit plugin {app.name!r}:\n{lines}") from None
    set_plugin_name(settings.name)
    run_server(app, settings, hosts=hosts, grace_period=grace_period, piped_address=piped_address, **(server_options or {}))
