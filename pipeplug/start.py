"""``<plugin> start``: what a plugin process does when piped starts it.

piped always runs ``<plugin> start --piped-plugin-service ADDR --config JSON``
and nothing else. :func:`main` recognises exactly that argv without loading
click (which alone takes longer to import than the rest of pipeplug); every other command line (more
flags, ``--help``, ``version``, a mistake) goes to the click command in
:func:`plugin_command`, which owns help and usage errors. Both end in
:func:`start`.
"""

from __future__ import annotations

import json
import logging
import sys
import typing as t

from .configs import ConfigError
from .configs import parse_duration
from .logconfig import ENCODINGS
from .logconfig import LEVELS
from .logconfig import configure_logging
from .logconfig import set_plugin_name
from .server import LOOPBACK_HOSTS
from .server import StartupError
from .server import TLSFiles
from .server import run as run_server
from .settings import parse_settings

if t.TYPE_CHECKING:
    import click

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


def plugin_command(app: App, *, version: str | None = None) -> click.Group:
    """The command line a plugin binary offers to piped, like the Go SDK's; ``version`` is the plugin's (built) version.

    click loads here, only for command lines other than piped's exact argv.
    """
    import click

    from .clicktypes import DURATION
    from .clicktypes import reported

    @click.group(help=f"PipeCD plugin {app.name!r}, built with pipeplug.")
    def group() -> None:
        pass

    @group.command("start", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.option("--piped-plugin-service", required=True, help="piped's PluginService address, e.g. localhost:9087")
    @click.option("--config", "config_json", required=True, help="the plugin's spec.plugins[] entry, as JSON")
    @click.option("--grace-period", type=DURATION, default=DEFAULTS["grace_period"], show_default=True, help="time in-flight calls other than stages get on SIGTERM (stages are cancelled at once)")
    @click.option("--tls", is_flag=True, default=DEFAULTS["tls"], help="serve TLS (piped itself always dials plaintext)")
    @click.option("--cert-file", default=DEFAULTS["cert_file"], help="TLS certificate file")
    @click.option("--key-file", default=DEFAULTS["key_file"], help="TLS key file")
    @click.option("--enable-grpc-reflection", is_flag=True, default=DEFAULTS["enable_grpc_reflection"], help="serve gRPC reflection")
    @click.option("--log-level", type=click.Choice(list(LEVELS), case_sensitive=False), default=DEFAULTS["log_level"], show_default=True)
    @click.option("--log-encoding", type=click.Choice(ENCODINGS, case_sensitive=False), default=DEFAULTS["log_encoding"], show_default=True)
    @click.option("--admin-port", type=click.IntRange(0, 65535), default=DEFAULTS["admin_port"], help="serve /healthz, /version, /metrics on 127.0.0.1:PORT (0: any free port); off by default")
    @click.option("--maximum-concurrent-rpcs", type=click.IntRange(min=1), default=DEFAULTS["maximum_concurrent_rpcs"], help="refuse calls beyond this many in flight with RESOURCE_EXHAUSTED; default: no limit")
    @click.pass_context
    def start_command(ctx: click.Context, /, **flags: t.Any) -> None:
        """Start serving, as piped does: start --piped-plugin-service ADDR --config JSON."""
        with reported():
            start(app, **flags, ignored=ctx.args, plugin_version=version)

    @group.command("version")
    def print_version() -> None:
        """Print the plugin and pipeplug versions."""
        from . import __version__

        click.echo(f"{app.name}{'' if version is None else ' ' + version} (pipeplug {__version__})")

    return group
