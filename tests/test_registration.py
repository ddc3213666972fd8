"""Registration by decorator: what is accepted, what is refused, and how it is said."""

from __future__ import annotations

import asyncio
import functools

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
    for name in ("versions", "strategy", "quick_sync_stages", "pipeline_stages", "livestate", "plan_preview", "on_startup"):
        assert getattr(app, name)(versions) is versions
    assert app.stages["A"].handler.is_async is False
    assert app.hooks["versions"].is_async is True


def test_register_twins():
    app = pipeplug.App("p")
    stage, startup = (lambda ctx: None), (lambda config: None)
    assert app.register_stage("A", stage, rollback=True) is stage
    assert app.register_on_startup(startup) is startup
    assert app.stages["A"].rollback and app.stages["A"].handler.params == ("ctx",)
    assert app.startup_hooks[0].params == ("config",)

    def strategy(deployment):
        return None

    assert app.register_strategy(strategy) is strategy
    assert app.hooks["strategy"].params == ("deployment",)
    for name in ("versions", "pipeline_stages", "quick_sync_stages", "livestate", "plan_preview"):

        def handler():
            return []

        assert getattr(app, f"register_{name}")(handler) is handler
        assert app.hooks[name].func is handler and app.hooks[name].hook == name
    assert not hasattr(app, "register_hook")


def test_a_hook_registered_twice_names_the_decorator():
    app = pipeplug.App("p")
    app.register_quick_sync_stages(lambda: [])
    with pytest.raises(pipeplug.RegistrationError, match=r"@app.quick_sync_stages is already registered as .*<lambda>\(\); an app has one"):
        app.quick_sync_stages(lambda: [])


def test_unknown_parameter_lists_what_can_be_injected():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError) as err:

        @app.stage("A")
        def handler(ctx, opts):
            pass

    message = str(err.value)
    assert "@app.stage('A') handler test_unknown_parameter_lists_what_can_be_injected.<locals>.handler(): unknown parameter 'opts'" in message
    assert "(did you mean 'options'?)" in message
    for name in ("ctx", "options", "config", "deploy_targets", "deployment", "app_spec", "target_source", "running_source"):
        assert f"  {name}: " in message


def test_hook_specific_parameters():
    app = pipeplug.App("p")
    app.pipeline_stages(lambda stages, rollback, ctx, config: [])
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
    with pytest.raises(RuntimeError, match=r"already serving, so register_pipeline_stages\(\) can no longer change it"):
        app.register_pipeline_stages(lambda: [])


def test_unresolvable_annotation_is_a_registration_error():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError, match="cannot resolve the annotation of options in .*name 'Missing' is not defined"):

        @app.stage("A")
        def handler(options: Missing):  # noqa: F821 - the point of the test
            pass


def test_app_name_is_required():
    with pytest.raises(ValueError, match="must not be empty"):
        pipeplug.App("")


def test_a_bare_stage_decorator_raises_at_import():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError, match=r'needs the stage\'s name: write @app.stage\("NAME"\) above .*\.deploy\(\)'):

        @app.stage
        def deploy(ctx):
            pass

    assert app.stages == {}


def test_hooks_work_bare_and_called():
    for name in ("versions", "strategy", "quick_sync_stages", "pipeline_stages", "livestate", "plan_preview", "on_startup"):
        bare, called = pipeplug.App("bare"), pipeplug.App("called")

        def handler():
            return []

        assert getattr(bare, name)(handler) is handler
        assert getattr(called, name)()(handler) is handler
        registered = [a.startup_hooks[0] if name == "on_startup" else a.hooks[name] for a in (bare, called)]
        assert [h.func for h in registered] == [handler, handler]


def test_unknown_names_suggest_the_closest():
    app = pipeplug.App("p")
    with pytest.raises(pipeplug.RegistrationError, match=r"unknown parameter 'dpeloy_targets' \(did you mean 'deploy_targets'\?\)"):
        app.versions(lambda dpeloy_targets: [])
    with pytest.raises(pipeplug.RegistrationError, match=r"'options' \(.*\) is not offered to @app.versions"):
        app.versions(lambda options: [])


async def _deploy(ctx, options, region):
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, f"{region} {options['n']} {ctx.stage_name}")


def _logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)  # a sync wrapper: returns the coroutine of the async function it wraps

    return wrapper


class Deployer:
    """A callable object with an async __call__."""

    def __init__(self, region: str) -> None:
        self.region = region

    async def __call__(self, ctx, options):
        return await _deploy(ctx, options, self.region)


def test_partials_wrappers_and_callable_objects_get_their_injections():
    app = pipeplug.App("p")
    app.stage("PARTIAL")(functools.partial(_deploy, region="eu"))
    app.stage("WRAPPED")(_logged(functools.partial(_deploy, region="us")))
    app.stage("OBJECT")(Deployer("ap"))
    assert [app.stages[n].handler.qualname for n in ("PARTIAL", "WRAPPED", "OBJECT")] == ["_deploy", "_deploy", "Deployer"]
    assert app.stages["PARTIAL"].handler.params == ("ctx", "options")
    with app.test_client() as client:
        runs = {name: client.execute_stage(name, {"n": 1}) for name in ("PARTIAL", "WRAPPED", "OBJECT")}
    assert {name: (run.status, run.message) for name, run in runs.items()} == {
        "PARTIAL": (pipeplug.StageStatus.SUCCESS, "eu 1 PARTIAL"),
        "WRAPPED": (pipeplug.StageStatus.SUCCESS, "us 1 WRAPPED"),
        "OBJECT": (pipeplug.StageStatus.SUCCESS, "ap 1 OBJECT"),
    }


def test_a_partial_with_an_unknown_parameter_is_named_by_its_function():
    def deploy(ctx, region):
        pass

    with pytest.raises(pipeplug.RegistrationError, match=r"handler .*deploy\(\): unknown parameter 'region'"):
        pipeplug.App("p").stage("A")(functools.partial(deploy, 1))


# -- App.finalize: what piped could not use is refused before serving ------------------------


def _start(app: pipeplug.App) -> None:
    settings = parse_settings(app, {"name": "p", "port": 0}, require_port=False)

    async def start_and_stop() -> None:
        server = PluginServer(app, settings, hosts=("127.0.0.1",))
        try:
            await server.start()
        finally:
            await server.stop(0)

    asyncio.run(start_and_stop())


def test_an_app_that_registers_nothing_is_refused_at_start():
    app = pipeplug.App("empty")
    with pytest.raises(pipeplug.RegistrationError, match="registers nothing piped can call"):
        app.finalize()
    with pytest.raises(pipeplug.PipeplugError, match="'empty' registers nothing piped can call: add @app.stage"):
        _start(app)
    app.stage("A")(lambda: None)  # still open for registration: nothing was served
    _start(app)


def test_a_planner_without_stages_is_refused():
    app = pipeplug.App("planner")
    app.pipeline_stages(lambda stages: [])
    with pytest.raises(pipeplug.RegistrationError, match="registers @app.pipeline_stages but no stage"):
        app.finalize()


def test_a_livestate_only_app_is_accepted_and_finalize_closes_registration():
    app = pipeplug.App("live")
    app.livestate(lambda: None)
    app.finalize()
    app.finalize()  # again: nothing changes
    with pytest.raises(RuntimeError, match="already serving"):
        app.stage("A")(lambda: None)


def test_pipeplug_exceptions_share_one_root_and_keep_their_builtin_bases():
    from pipeplug.server import StartupError

    for error, builtin in (
        (pipeplug.RegistrationError, TypeError),
        (pipeplug.ConfigError, ValueError),
        (pipeplug.PipedError, Exception),
        (pipeplug.ProcessError, RuntimeError),
        (StartupError, RuntimeError),
        (pipeplug.StageFailed, Exception),
    ):
        assert issubclass(error, pipeplug.PipeplugError) and issubclass(error, builtin), error
