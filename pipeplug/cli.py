"""Command lines: ``pipeplug run`` for people, ``<plugin> start`` for piped (see :mod:`pipeplug.start`)."""

from __future__ import annotations

import contextlib
import os
import sys
import typing as t

import click

from .configs import parse_duration
from .logconfig import ENCODINGS
from .logconfig import LEVELS
from .logconfig import configure_logging
from .server import LOOPBACK_HOSTS
from .server import StartupError
from .start import DEFAULTS
from .start import serve
from .start import start as start_plugin

if t.TYPE_CHECKING:
    from .app import App


class _Duration(click.ParamType):  # type: ignore[type-arg]  # older clicks that pyproject allows cannot subscript ParamType at run time
    name = "duration"

    def convert(self, value: t.Any, param: t.Any, ctx: t.Any) -> float:
        try:
            return parse_duration(value).total_seconds() if isinstance(value, str) else float(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()


def plugin_command(app: App, *, version: str | None = None) -> click.Group:
    """The command line a plugin binary offers to piped, like the Go SDK's; ``version`` is the plugin's (built) version."""

    @click.group(help=f"PipeCD plugin {app.name!r}, built with pipeplug.")
    def group() -> None:
        pass

    @group.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
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
    def start(ctx: click.Context, /, **flags: t.Any) -> None:
        """Start serving, as piped does: start --piped-plugin-service ADDR --config JSON."""
        with _reported():
            start_plugin(app, **flags, ignored=ctx.args, plugin_version=version)

    @group.command("version")
    def print_version() -> None:
        """Print the plugin and pipeplug versions."""
        from . import __version__

        click.echo(f"{app.name}{'' if version is None else ' ' + version} (pipeplug {__version__})")

    return group


@contextlib.contextmanager
def _reported() -> t.Iterator[None]:
    """A start-up problem becomes click's usage error: one line on stderr, exit status 1."""
    try:
        yield
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


class _MainGroup(click.Group):
    """Loads ``pipeplug dev`` only when it is asked for, so plugin processes never import it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "dev"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "dev":
            from .dev.cli import dev

            return dev
        return super().get_command(ctx, name)


@click.group(cls=_MainGroup)
@click.version_option(package_name="pipeplug")
def main() -> None:
    """pipeplug: write PipeCD v1 plugins in Python."""


@main.command()
@click.argument("target", metavar="MODULE:APP")
@click.option("--host", "hosts", multiple=True, help="address to listen on (repeatable); default: 127.0.0.1 and ::1")
@click.option("--port", type=int, default=None, help="port to listen on; default: the config file's port, else 7001")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="plugin config file (YAML or JSON), shaped like piped's spec.plugins[] entry")
@click.option("--grace-period", type=DURATION, default="10s", show_default=True)
@click.option("--log-level", default="info", show_default=True)
def run(target: str, hosts: tuple[str, ...], port: int | None, config_file: str | None, grace_period: float, log_level: str) -> None:
    """Serve the App found in MODULE:APP (a file path or a dotted module)."""
    # imported here: plugin processes (`<plugin> start`) load neither
    import yaml

    from .loading import load_app

    configure_logging(log_level)
    app = load_app(target)
    raw: dict[str, t.Any] = {"name": app.name, "port": 7001}
    if config_file:
        try:
            with open(config_file, "rb") as f:
                loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise click.ClickException(f"{config_file}: not valid YAML or JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.ClickException(f"{config_file}: expected a mapping like piped's spec.plugins[] entry")
        raw.update(loaded)
    with _reported():
        serve(app, raw, hosts=hosts or LOOPBACK_HOSTS, port=port, grace_period=grace_period, source=config_file or "defaults")


@main.command()
@click.argument("target", metavar="MODULE:APP")
@click.option("-o", "--output", default=None, help="file to write; a directory (existing, or ending in /) gets <name>_<version>_<os>_<arch>  [default: dist/]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["static", "onefile", "shiv"]),
    default="static",
    show_default=True,
    help="static: runs on any Linux of this architecture, with no libc, Python or /usr (piped's Alpine image included). "
    "onefile: needs a glibc host at least as new as this one (not Alpine/musl); no Python. "
    "shiv: smallest; needs the host's python3 of the same minor version, OS and architecture as here (grpcio is native code).",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="the plugin's version: in the file name, `<file> version` and the admin /version, e.g. v0.1.0  [default: the module's __version__, else dev]",
)
def build(target: str, output: str | None, fmt: str, version: str | None) -> None:
    """Build MODULE:APP into one executable file piped can download (file://, https:// or oci://) and start.

    Writes FILE.sha256 and FILE.piped.yaml (the piped config for it) beside it.
    Needs the build tools: pip install 'pipeplug[build]'.
    """
    from .build import build_plugin

    artifact = build_plugin(target, output, fmt, version=version, progress=lambda message: click.echo(message, err=True))
    click.echo(f"built {artifact.path} ({artifact.size / 1e6:.1f} MB, {artifact.format}, version {artifact.version}) in {artifact.seconds:.0f}s")
    click.echo(f"sha256 {artifact.sha256}  ({artifact.sha256_path.name})")
    click.echo(f"\npiped config ({artifact.piped_config_path.name}): add this plugin under spec.plugins (piped caches it as ~/.piped/plugins/{artifact.plugin_name};")
    click.echo("after a rebuild, restart piped with --force-plugin-redownload):\n")
    click.echo(artifact.piped_config())


@main.command()
@click.argument("url", metavar="URL")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--insecure", is_flag=True, help="talk plain HTTP to the registry (pipectl's meaning); piped itself pulls over HTTPS only")
def push(url: str, files: tuple[str, ...], insecure: bool) -> None:
    """Publish built plugin files to URL (oci://HOST[:PORT]/REPO[:TAG]) as one multi-platform artifact piped can pull.

    Each FILE is OS/ARCH=PATH (e.g. linux/arm64=dist/plugin) or a file named
    <name>_<version>_<os>_<arch>, as pipeplug build names them. Credentials:
    PIPEPLUG_REGISTRY_USERNAME and PIPEPLUG_REGISTRY_PASSWORD, else docker's config
    ($DOCKER_CONFIG/config.json or ~/.docker/config.json, as docker login writes it).
    """
    from .oci import RegistryError
    from .push import piped_snippet
    from .push import push as push_files

    try:
        pushed = push_files(url, files, insecure=insecure, progress=lambda message: click.echo(message, err=True))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    platforms = ", ".join(f.platform for f in pushed.files)
    click.echo(f"pushed {pushed.url} ({platforms})")
    click.echo(f"digest {pushed.digest}; to pin exactly this push, use url {pushed.pinned_url}")
    if insecure:
        click.echo("note: pushed over plain HTTP; piped pulls over HTTPS only, so it cannot pull from this registry as it is", err=True)
    click.echo("\npiped config: add this plugin under spec.plugins (piped pulls over HTTPS only, and caches the plugin by name:")
    click.echo("after pushing a new version, restart piped with --force-plugin-redownload):\n")
    click.echo(piped_snippet(pushed))


@main.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(["stage", "deployment"]), default="stage", show_default=True, help="stage: stages only (like WAIT); deployment: versions, strategy, sync and rollback stages, live state and plan preview")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None, help="where to write the project  [default: ./NAME]")
@click.option("--force", is_flag=True, help="write into a directory that is not empty, replacing the files the project has")
def init(name: str, kind: str, directory: str | None, force: bool) -> None:
    """Write a new plugin project NAME: plugin file, tests, dev configs, pyproject.toml, README."""
    from .scaffold import init_project

    written = init_project(name, kind, directory, force=force)
    root = os.path.commonpath([str(path.parent) for path in written])
    for path in written:
        click.echo(f"wrote {os.path.relpath(path)}")
    click.echo(f"\nnext: cd {os.path.relpath(root)} && pip install -e '.[test]' && python -m pytest  (see README.md for pipeplug dev, build and push)")


@main.command()
@click.argument("target", metavar="MODULE:APP")
@click.option("--app-config", "app_config", type=click.Path(dir_okay=False), default=None, help="check this app.pipecd.yaml's with: blocks and spec.plugins.<name> instead of printing the schema")
def schema(target: str, app_config: str | None) -> None:
    """Print the JSON Schema (2020-12) of each stage's with: and of the plugin's configs, as one JSON document.

    With --app-config FILE, check that app config instead: every problem is
    printed with its YAML path, and the exit status is 1 when there is one.
    """
    import json

    from .loading import load_app
    from .schema import SchemaError
    from .schema import check_app_config
    from .schema import plugin_schema

    app = load_app(target)
    try:
        if app_config is None:
            click.echo(json.dumps(plugin_schema(app), indent=2))  # ASCII: any terminal or file encoding takes it
            return
        problems, notes = check_app_config(app, app_config)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        click.echo(note, err=True)
    if problems:
        click.echo(f"{app_config}: {len(problems)} problem(s):", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    click.echo(f"{app_config}: ok")


@main.command()
@click.argument("target", metavar="MODULE:APP")
@click.option("--format", "fmt", type=click.Choice(["markdown"]), default="markdown", show_default=True, help="the reference's format")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None, help="file to write  [default: standard output]")
def docs(target: str, fmt: str, output: str | None) -> None:
    """Write a reference for MODULE:APP: its stages and their options, the hooks it serves, its configs, and an example per stage."""
    from .docs import render_markdown
    from .loading import load_app
    from .schema import SchemaError

    app = load_app(target)
    try:
        text = render_markdown(app)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
