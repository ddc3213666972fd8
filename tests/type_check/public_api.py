"""The public API's types as a plugin author sees them; checked by ``mypy --strict`` in tests/test_mypy.py, never run.

Each ``assert_type`` fails the check if a decorator or a class loses a type. Each
``# type: ignore[...]`` marks a call mypy must refuse: strict mode reports an
ignore that silences nothing, so a decorator that erased the handler's
signature to ``Any`` fails the check there too. The ``reveal_type`` at the end
prints the decorated handler's signature, which the test compares.
"""

from __future__ import annotations

import typing as t

import attrs
from typing_extensions import assert_type
from typing_extensions import reveal_type

import pipeplug


@attrs.frozen
class CanaryOptions:
    replicas: pipeplug.Replicas
    weight: pipeplug.Percentage = pipeplug.Percentage(10, has_suffix=True)
    note: str = ""


@attrs.frozen
class PluginConfig:
    region: str


app = pipeplug.App("typed", config=PluginConfig)


@app.stage("CANARY_ROLLOUT")
def rollout(ctx: pipeplug.Context, options: CanaryOptions) -> pipeplug.StageResult:
    # options classes keep their field types, units included
    assert_type(options.replicas.calculate(total=4, default=1), int)
    assert_type(int(options.weight), int)
    assert_type(options.note, str)
    assert_type(ctx.cancelled, bool)
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, "rolled out")


@app.stage("CANARY_CLEAN", rollback=True)
async def clean(ctx: pipeplug.Context) -> pipeplug.StageStatus:
    return pipeplug.StageStatus.SUCCESS


@app.versions
def versions() -> list[pipeplug.ArtifactVersion]:
    return [pipeplug.ArtifactVersion("v1")]


@app.versions()
def versions_called() -> list[pipeplug.ArtifactVersion]:
    return []


@app.on_startup
def warm_up() -> None:
    pass


@app.strategy
def strategy(running_source: pipeplug.DeploymentSource | None) -> pipeplug.StrategyDecision | None:
    return None if running_source else pipeplug.StrategyDecision(pipeplug.SyncStrategy.QUICK_SYNC, "first")


@app.pipeline_stages
def plan_pipeline(stages: list[pipeplug.RequestedStage]) -> list[pipeplug.PlannedStage]:
    return [app.plan_stage(stage) for stage in stages]


def plan_quick_sync() -> list[pipeplug.PlannedStage]:
    return [pipeplug.PlannedStage(name="CANARY_ROLLOUT")]


def livestate() -> pipeplug.Livestate:
    return pipeplug.Livestate()


def decorators_keep_the_handlers_type(ctx: pipeplug.Context) -> None:
    options = CanaryOptions(replicas=pipeplug.Replicas(3))
    assert_type(rollout(ctx, options), pipeplug.StageResult)
    assert_type(versions(), list[pipeplug.ArtifactVersion])
    assert_type(versions_called(), list[pipeplug.ArtifactVersion])
    assert_type(warm_up(), None)
    assert_type(strategy(None), pipeplug.StrategyDecision | None)
    assert_type(plan_pipeline([]), list[pipeplug.PlannedStage])
    # the register_* twins return the function they were given, type and all
    assert_type(app.register_quick_sync_stages(plan_quick_sync), t.Callable[[], list[pipeplug.PlannedStage]])
    assert_type(app.register_livestate(livestate)(), pipeplug.Livestate)
    assert_type(app.register_on_startup(warm_up)(), None)
    assert_type(app.register_stage("ROLLOUT_AGAIN", rollout)(ctx, options), pipeplug.StageResult)
    rollout(ctx, "not options")  # type: ignore[arg-type]
    versions(1)  # type: ignore[call-arg]


async def async_handlers_stay_coroutines(ctx: pipeplug.Context) -> None:
    assert_type(await clean(ctx), pipeplug.StageStatus)


def options_classes_are_typed() -> None:
    CanaryOptions(replicas=3)  # type: ignore[arg-type]
    PluginConfig(region=1)  # type: ignore[arg-type]


# tests/test_mypy.py reads this note: the decorated handler's whole signature, as mypy sees it
reveal_type(rollout)
