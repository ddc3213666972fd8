"""Registration by decorator: what is accepted, what is refused, and how it is said."""

from __future__ import annotations

import asyncio

import attrs
import pytest

import pipeplug
from pipeplug.server import PluginServer
from pipeplug.settings import parse_settings


def test_decorators_return_the_function_unchanged():
    app = pipeplug.App("p")

    def stage():
        pass

    async def versions():
        return []

    assert app.stage("A")(stage) is stage
    for name in ("versions", "strategy", "quick_sync", "pipeline", "livestate", "plan_preview", "on_startup"):
        assert getattr(app, name)(versions) is versions
    assert app.stages["A"].handler.is_async is False
    assert app.hooks["versions"].is_async is True


def test_register_twins():
    app = pipeplug.App("p")
    app.register_stage("A", lambda ctx: None, rollback=True)
    app.register_hook("strategy", lambda deployment: None)
    app.register_on_startup(lambda config: None)
    assert app.stages["A"].rollback and app.stages["A"].handler.params == ("ctx",)
    assert app.hooks["strategy"].params == ("deployment",)
    assert app.startup_hooks[0].params == ("config",)


def test_unknown_parameter_lists_what_can_be_injected():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError) as err:

        @app.stage("A")
        def handler(ctx, opts):
            pass

    message = str(err.value)
    assert "@app.stage('A') handler test_unknown_parameter_lists_what_can_be_injected.<locals>.handler() asks for parameter 'opts'" in message
    for name in ("ctx", "options", "config", "deploy_targets", "deployment", "app_spec", "target_source", "running_source"):
        assert f"  {name}: " in message


def test_hook_specific_parameters():
    app = pipeplug.App("p")
    app.pipeline(lambda stages, rollback, ctx, config: [])
    with pytest.raises(pipeplug.RegistrationError, match="'options'"):
        app.versions(lambda options: [])
    with pytest.raises(pipeplug.RegistrationError, match="'ctx'"):
        app.on_startup(lambda ctx: None)


def test_parameters_with_defaults_that_are_not_injectable_are_left_alone():
    app = pipeplug.App("p")
    app.stage("A")(lambda ctx, retries=3: None)
    assert app.stages["A"].handler.params == ("ctx",)


@attrs.frozen
class Opts:
    n: int


def test_options_annotation_is_read_once():
    app = pipeplug.App("p")

    @app.stage("A")
    def handler(options: Opts):
        pass

    assert app.stages["A"].handler.options_type is Opts


def test_duplicates_are_refused():
    app = pipeplug.App("p")
    app.stage("A")(lambda: None)
    with pytest.raises(pipeplug.RegistrationError, match="already handled by"):
        app.stage("A")(lambda: None)
    app.versions(lambda: [])
    with pytest.raises(pipeplug.RegistrationError, match=r"@app.versions is already registered"):
        app.versions(lambda: [])
    with pytest.raises(pipeplug.RegistrationError, match="non-empty string"):
        app.stage("")(lambda: None)
    with pytest.raises(pipeplug.RegistrationError, match="both the rollback and the quick-sync"):
        app.stage("B", rollback=True, quick_sync=True)(lambda: None)


def test_registering_after_start_says_why():
    app = pipeplug.App("p")
    app.stage("A")(lambda: None)
    settings = parse_settings(app, {"name": "p", "port": 0}, require_port=False)

    async def start_and_stop():
        server = PluginServer(app, settings, hosts=("127.0.0.1",))
        await server.start()
        await server.stop(0)

    asyncio.run(start_and_stop())
    with pytest.raises(RuntimeError, match="already serving.*piped reads the stage list once at startup"):
        app.stage("B")(lambda: None)
    with pytest.raises(RuntimeError, match="already serving"):
        app.livestate(lambda: None)


def test_unresolvable_annotation_is_a_registration_error():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError, match="cannot resolve the annotation of options in .*name 'Missing' is not defined"):

        @app.stage("A")
        def handler(options: Missing):  # noqa: F821 - the point of the test
            pass


def test_app_name_is_required():
    with pytest.raises(ValueError, match="must not be empty"):
        pipeplug.App("")
