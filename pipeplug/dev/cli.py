"""The ``pipeplug dev`` command group.

``pipeplug dev [TARGET] --app-config FILE ...`` runs a deployment;
``livestate``, ``plan-preview`` and ``approve`` are subcommands. The group
routes anything that is not a subcommand name to the deployment command, so
the common case needs no subcommand.
"""

from __future__ import annotations

import asyncio
import os
import sys
import typing as t

import click

from . import DEFAULT_STATE

if t.TYPE_CHECKING:
    from .session import Options

COMMAND_INTERVAL_ENV = "PIPEPLUG_DEV_COMMAND_INTERVAL"


class _DevGroup(click.Group):
    """A group whose default command is ``deploy``: ``pipeplug dev app.py --app-config x.yaml``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["deploy", *args]
        return super().parse_args(ctx, args)


def _plugin_options(func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    options = [
        click.argument("target", required=False, metavar="[MODULE:APP | PLUGIN]"),
        click.option("--app-config", "app_config", required=True, type=click.Path(dir_okay=False), help="the application config (app.pipecd.yaml)"),
        click.option("--plugin-config", type=click.Path(dir_okay=False), help="TARGET's entry of piped's spec.plugins[] (name, port, config, deployTargets), YAML or JSON"),
        click.option("--plugin", "extra", multiple=True, metavar="TARGET[=PLUGIN_CONFIG]", help="another plugin, launched after TARGET in this order (repeatable)"),
        click.option("--state", "state_path", default=DEFAULT_STATE, show_default=True, type=click.Path(dir_okay=False), help="SQLite state file; snapshots and plugin logs go next to it"),
        click.option("--port-timeout", default=30.0, show_default=True, type=float, help="seconds a plugin gets to open its port and answer FetchDefinedStages"),
        click.option("--command-interval", type=float, default=None, help=f"seconds between command refreshes (piped: 5; env {COMMAND_INTERVAL_ENV})"),
        click.option("--grace-period", default=10.0, show_default=True, type=float, help="seconds between SIGTERM and SIGKILL when stopping plugins"),
        click.option("--json", "as_json", is_flag=True, help="print one JSON record on stdout instead of the terminal view"),
        click.option("-v", "--verbose", is_flag=True, help="also show the plugins' own output"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _options(target: str | None, plugin_config: str | None, extra: tuple[str, ...], **kw: t.Any) -> Options:
    from .session import Options

    plugins: list[tuple[str, str | None]] = []
    if target:
        plugins.append((target, plugin_config))
    elif plugin_config:
        raise click.UsageError("--plugin-config belongs to TARGET; for --plugin use TARGET=PLUGIN_CONFIG")
    for item in extra:
        name, sep, config = item.partition("=")
        plugins.append((name, config if sep else None))
    interval = kw["command_interval"]
    if interval is None:
        interval = float(os.environ.get(COMMAND_INTERVAL_ENV, "5"))
    return Options(
        app_config=kw["app_config"], plugins=tuple(plugins), state_path=kw["state_path"], port_timeout=kw["port_timeout"],
        command_interval=interval, grace_period=kw["grace_period"],
    )  # fmt: skip


def _output(as_json: bool, verbose: bool) -> t.Any:
    from .ui import JsonOutput
    from .ui import RichOutput

    return JsonOutput() if as_json else RichOutput(verbose=verbose)


def _run(coro_factory: t.Callable[[t.Any], t.Coroutine[t.Any, t.Any, int]], out: t.Any) -> None:
    from .session import DevError

    try:
        code = asyncio.run(coro_factory(out))
    except DevError as exc:
        out.close()
        out.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        out.close()
        sys.exit(130)
    sys.exit(code)


@click.group(cls=_DevGroup)
def dev() -> None:
    """Run a whole deployment locally, as piped would, with no control plane.

    \b
    pipeplug dev example_app.py --app-config examples/pipeline-success.pipecd.yaml \\
        --plugin-config examples/plugin-example.yaml
    """


@dev.command("deploy")
@_plugin_options
@click.option("--resume", is_flag=True, help="re-run the app's unfinished deployment, as piped does after a hard kill")
@click.option("--approve", is_flag=True, help="approve every approval stage as the default user (or its first authorized operator)")
@click.option("--approve-as", "approve_as", multiple=True, metavar="USER", help="approve every approval stage as USER (repeatable)")
@click.option("--sync", type=click.Choice(["quick-sync", "pipeline"]), help="force the strategy, like the web UI's sync button")
@click.option("--commit-message", default="pipeplug dev", show_default=True, help="the commit message commitMatcher and skipOn see")
def deploy_command(target: str | None, plugin_config: str | None, extra: tuple[str, ...], **kw: t.Any) -> None:
    """Plan and execute a deployment of the app with the plugin(s)."""
    from .runner import DeployOptions
    from .runner import deploy

    options = _options(target, plugin_config, extra, **kw)
    interactive = not kw["as_json"] and not kw["approve"] and not kw["approve_as"] and sys.stdin.isatty()
    deploy_options = DeployOptions(
        resume=kw["resume"], approve=kw["approve"], approve_as=tuple(kw["approve_as"]),
        sync={"quick-sync": "QUICK_SYNC", "pipeline": "PIPELINE"}.get(kw["sync"] or "", ""),
        commit_message=kw["commit_message"], interactive=interactive,
    )  # fmt: skip
    _run(lambda out: deploy(options, deploy_options, out), _output(kw["as_json"], kw["verbose"]))


@dev.command("livestate")
@_plugin_options
def livestate_command(target: str | None, plugin_config: str | None, extra: tuple[str, ...], **kw: t.Any) -> None:
    """Call GetLivestate as piped's reporter does and show resources, health and sync state."""
    from .views import livestate

    options = _options(target, plugin_config, extra, **kw)
    _run(lambda out: livestate(options, out), _output(kw["as_json"], kw["verbose"]))


@dev.command("plan-preview")
@_plugin_options
def plan_preview_command(target: str | None, plugin_config: str | None, extra: tuple[str, ...], **kw: t.Any) -> None:
    """Call GetPlanPreview as piped does for `pipectl plan-preview` and show the diff."""
    from .views import plan_preview

    options = _options(target, plugin_config, extra, **kw)
    _run(lambda out: plan_preview(options, out), _output(kw["as_json"], kw["verbose"]))


@dev.command("approve")
@click.option("--state", "state_path", default=DEFAULT_STATE, show_default=True, type=click.Path(dir_okay=False))
@click.option("--as", "user", default="", help="who approves (default: the current user)")
@click.option("--deployment", "deployment_id", default="", help="deployment id (default: the newest unfinished one)")
def approve_command(state_path: str, user: str, deployment_id: str) -> None:
    """Approve the stage a running `pipeplug dev` waits on, from another terminal."""
    from .._gen.model import command_pb2 as command_pb
    from .._gen.model import deployment_pb2 as model_pb
    from .runner import approvable
    from .session import default_user
    from .state import State

    if not os.path.exists(state_path):
        raise click.ClickException(f"{state_path}: no state file; pass the --state of the running pipeplug dev")
    state = State(state_path)
    try:
        deployment = state.running_deployment(deployment_id or None)
        if deployment is None:
            raise click.ClickException("no unfinished deployment to approve")
        stages = [s for s in deployment.stages if s.status == model_pb.STAGE_RUNNING and approvable(s)]
        if not stages:
            raise click.ClickException(f"deployment {deployment.id[:8]} has no running stage waiting for approval")
        who = user or default_user()
        for stage in stages:
            if stage.authorized_operators and who not in stage.authorized_operators:
                raise click.ClickException(f"the control plane would refuse: only {', '.join(stage.authorized_operators)} may approve {stage.name}")
            state.add_command(deployment.id, stage.id, command_pb.Command.APPROVE_STAGE, who)
            click.echo(f"approved {stage.name} of deployment {deployment.id[:8]} as {who}")
    finally:
        state.close()
