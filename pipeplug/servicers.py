"""gRPC servicers generated from an App: wire messages in, user handlers called, wire messages out.

This is the thin adapter between piped and user code: each RPC decodes what
piped sent, runs the hook (a stage's whole life is :mod:`pipeplug.stagerun`'s),
encodes the answer, and checks it against piped's rules
(:mod:`pipeplug.validation`), so a handler's mistake is a clear error here
rather than a stuck deployment in piped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing as t
from concurrent.futures import Executor

import grpc

from ._gen.model import deployment_pb2 as model_pb
from ._gen.plugin import deployment_pb2 as deploy_pb
from ._gen.plugin import deployment_pb2_grpc as deploy_grpc
from . import validation
from . import wire
from .configs import ConfigError
from .context import Context
from .enums import SyncStrategy
from .handlers import Handler
from .inflight import InFlight
from .inject import InputError
from .inject import Injector
from .inject import Values
from .stagerun import StageRefused
from .stagerun import Stopped
from .stagerun import run_stage
from .suggest import did_you_mean

# The value classes (pipeplug.types) are imported by the methods that use them, so that
# starting a plugin loads neither them nor attrs.

if t.TYPE_CHECKING:
    from .app import App
    from .app import StageSpec
    from .piped import PipedClient
    from .stagelog import StageLogFlusher
    from .settings import PluginSettings
    from .types import PlannedStage
    from .types import RequestedStage

log = logging.getLogger("pipeplug")


class HandlerResultError(TypeError):
    """A handler returned a value of the wrong shape."""


class Dispatcher:
    """Per-process state shared by the servicers: the app, its settings, the sync pool, piped."""

    def __init__(self, app: App, settings: PluginSettings, executor: Executor | None = None) -> None:
        self.app = app
        self.settings = settings
        self.executor = executor
        self.injector = Injector(app, settings)
        #: piped's PluginService and the stage-log flusher; set by the server when started by piped
        self.piped: PipedClient | None = None
        self.stage_logs: StageLogFlusher | None = None
        #: the stages being executed; the server cancels them all when it stops
        self.in_flight = InFlight()

    def no_deploy_targets(self, names: t.Sized, rpc: str) -> str:
        """Why a call naming no deploy targets is refused ("" when it is fine), as the Go SDK refuses it.

        Only a plugin that declares a deploy-target config deploys *to* something;
        a call that names no target for it is a misregistered application, and a
        handler given an empty list would act on nothing (upstream #7115/#7116).
        """
        if self.app.deploy_target_config_class is None or len(names):
            return ""
        return (
            f"no deploy targets provided: plugin {self.settings.name!r} declares a deploy-target config, but piped sent "
            f"{rpc} no deploy target for it; pick the application's deploy targets for this plugin when registering it "
            "(piped copies them from the application's deploy_targets_by_plugin)"
        )

    def context(self, rpc: str, deployment_pb: t.Any = None, **fields: t.Any) -> Context:
        """The context of a call other than ExecuteStage (see :func:`pipeplug.stagerun.run_stage` for that one)."""
        if deployment_pb is not None:
            fields.setdefault("application_id", deployment_pb.application_id)
            fields.setdefault("application_name", deployment_pb.application_name)
        return Context(plugin_name=self.settings.name, rpc=rpc, piped=self.piped, deployment_pb=deployment_pb, stage_logs=self.stage_logs, **fields)

    def values(self, ctx: Context, **given: t.Any) -> Values:
        """The injectable values of one call, from what the servicer decoded (see :class:`~pipeplug.inject.Values`)."""
        return Values(self.injector, ctx, **given)

    async def call_hook(self, context: grpc.aio.ServicerContext[t.Any, t.Any], handler: Handler, values: Values) -> t.Any:
        """Call a planning, livestate or plan-preview handler; failures become gRPC errors."""
        label = f"@app.{handler.hook} handler {handler.qualname}()"
        try:
            return await handler.call(values, self.executor)
        except InputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{label}: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code must never take the server down
            log.exception("%s failed", label)
            await context.abort(grpc.StatusCode.INTERNAL, f"{label} failed: {type(exc).__name__}: {exc}")


async def _require(context: grpc.aio.ServicerContext[t.Any, t.Any], message: t.Any, field: str, path: str) -> t.Any:
    if not message.HasField(field):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{path} is required but was not set")
    return getattr(message, field)


def expect_list(value: t.Any, item: type, label: str) -> list[t.Any]:
    """A hook's answer as a list of ``item``; anything else raises HandlerResultError saying what came back.

    None is refused too: it is almost always a forgotten ``return``, and an
    empty plan or version list must be asked for with ``return []``.
    """
    if value is None:
        raise HandlerResultError(f"{label} returned None; expected a list of {item.__name__} (a missing `return`? return [] for none)")
    if isinstance(value, item) or not isinstance(value, (list, tuple)):
        raise HandlerResultError(f"{label} returned {value!r}; expected a list of {item.__name__}")
    for entry in value:
        if not isinstance(entry, item):
            raise HandlerResultError(f"{label} returned a list containing {entry!r}; expected only {item.__name__}")
    return list(value)


class DeploymentServicer(deploy_grpc.DeploymentServiceServicer):
    """``grpc.plugin.deploymentapi.v1alpha1.DeploymentService``, always served."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.app = dispatcher.app

    async def FetchDefinedStages(self, request: t.Any, context: t.Any) -> t.Any:
        return deploy_pb.FetchDefinedStagesResponse(stages=self.app.defined_stages())

    async def DetermineVersions(self, request: t.Any, context: t.Any) -> t.Any:
        from .types import ArtifactVersion

        inp = await _require(context, request, "input", "DetermineVersionsRequest.input")
        deployment = await _require(context, inp, "deployment", "DetermineVersionsRequest.input.deployment")
        handler = self.app.hooks.get("versions")
        if handler is None:
            return deploy_pb.DetermineVersionsResponse()
        values = self._plan_values("DetermineVersions", inp, deployment)
        result = await self.d.call_hook(context, handler, values)
        label = f"@app.versions handler {handler.qualname}()"
        versions = await checked(context, lambda: expect_list(result, ArtifactVersion, label))
        response = deploy_pb.DetermineVersionsResponse(versions=[wire.version_to_pb(v) for v in versions])
        return await valid_reply(context, response, validation.check_versions(response.versions), label)

    async def DetermineStrategy(self, request: t.Any, context: t.Any) -> t.Any:
        inp = await _require(context, request, "input", "DetermineStrategyRequest.input")
        # Plan preview sends a minimal deployment; tolerate empty fields but not a missing message.
        deployment = await _require(context, inp, "deployment", "DetermineStrategyRequest.input.deployment")
        handler = self.app.hooks.get("strategy")
        if handler is None:
            return deploy_pb.DetermineStrategyResponse(unsupported=True)
        values = self._plan_values("DetermineStrategy", inp, deployment)
        result = await self.d.call_hook(context, handler, values)
        if result is None:
            return deploy_pb.DetermineStrategyResponse(unsupported=True)
        from .types import StrategyDecision

        if isinstance(result, SyncStrategy):
            result = StrategyDecision(result)
        label = f"@app.strategy handler {handler.qualname}()"
        problems = [] if isinstance(result, StrategyDecision) else ["it must return a SyncStrategy, a StrategyDecision(...) or None"]
        response = deploy_pb.DetermineStrategyResponse(sync_strategy=wire.enum_number(result.strategy), summary=result.summary) if not problems else None
        if response is not None:
            problems = validation.check_strategy(response)
        if problems:
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"{label} returned {result!r}; expected SyncStrategy.QUICK_SYNC, SyncStrategy.PIPELINE, "
                f"a StrategyDecision(...) with one of them, or None for no opinion ({'; '.join(problems)})",
            )
        return response

    def _plan_values(self, rpc: str, inp: t.Any, deployment: t.Any) -> Values:
        return self.d.values(
            self.d.context(rpc, deployment),
            target_source=inp.target_deployment_source if inp.HasField("target_deployment_source") else None,
            running_source=inp.running_deployment_source if inp.HasField("running_deployment_source") else None,
            target_names=deployment,
        )

    async def BuildPipelineSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        from .types import PlannedStage
        from .types import RequestedStage

        requested = []
        for i, stage in enumerate(request.stages):
            try:
                config = json.loads(stage.config) if stage.config else {}
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stages[{i}] ({stage.name}).config: not valid JSON ({exc})")
            requested.append(RequestedStage(name=stage.name, index=stage.index, desc=stage.desc, config=config if config is not None else {}))
        # Every stage's options are checked before any stage runs, as the official SCRIPT_RUN does.
        await self._refuse_bad_options(context, [(stage.name, stage.index, stage.config, "") for stage in request.stages])
        handler = self.app.hooks.get("pipeline_stages")
        if handler is None:
            planned = await checked(context, lambda: self._default_pipeline(requested, request.rollback))
        else:
            ctx = self.d.context("BuildPipelineSyncStages")
            values = self.d.values(ctx, stages=requested, rollback=request.rollback)
            result = await self.d.call_hook(context, handler, values)
            label = f"@app.pipeline_stages handler {handler.qualname}()"
            planned = await checked(context, lambda: expect_list(result, PlannedStage, label))
        # A rollback stage is executed with the `with:` of the stage at its index (piped's scheduler does so).
        forward = {stage.index: stage for stage in request.stages}
        await self._refuse_bad_options(
            context,
            [(s.name, s.index, forward[s.index].config, f", rollback of {forward[s.index].name}") for s in planned if s.rollback and s.index in forward],
        )
        desc = {s.index: s.desc for s in requested}
        now = int(time.time())
        response = deploy_pb.BuildPipelineSyncStagesResponse(stages=[wire.stage_to_pb(s, desc=desc.get(s.index, ""), now=now) for s in planned])
        problems = validation.check_pipeline_sync_stages(response.stages, {s.index for s in requested}, defined_stages=self.app.stages)
        return await valid_reply(context, response, problems, f"@app.pipeline_stages handler {handler.qualname}()" if handler else "the default pipeline planner")

    async def _refuse_bad_options(self, context: t.Any, stages: list[tuple[str, int, bytes, str]]) -> None:
        """End the call with INVALID_ARGUMENT naming every bad option of the (name, index, with:, note) stages this plugin serves."""
        problems = []
        for name, index, config, note in stages:
            spec = self.app.stages.get(name)
            if spec is None or spec.handler.options_type is None:
                continue
            try:
                self.d.injector.structure_options(spec, config)
            except ConfigError as exc:
                problems += [f"stage {index} ({name}{note}): {problem}" for problem in exc.problems]
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))

    def _default_pipeline(self, requested: list[RequestedStage], rollback: bool) -> list[PlannedStage]:
        from .types import PlannedStage

        try:
            planned = [self.app.plan_stage(s) for s in requested]
        except Exception as exc:  # noqa: BLE001 - user code in a stage's plan= must not take the server down
            log.exception("planning a stage failed")
            raise HandlerResultError(f"{type(exc).__name__}: {exc}") from None
        if rollback and requested:
            # Each rollback stage takes a distinct requested index, smallest first (piped
            # rejects repeated rollback indexes).
            indexes = sorted({s.index for s in requested})
            rollbacks = [spec for spec in self.app.stages.values() if spec.rollback]
            planned += [PlannedStage(name=spec.name, index=i, rollback=True) for spec, i in zip(rollbacks, indexes)]
        return planned

    async def BuildQuickSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        from .types import PlannedStage

        handler = self.app.hooks.get("quick_sync_stages")
        if handler is None:
            specs = [s for s in self.app.stages.values() if s.quick_sync]
            planned = [PlannedStage(name=s.name) for s in specs]
            if planned and request.rollback:
                planned += [PlannedStage(name=s.name, rollback=True) for s in self.app.stages.values() if s.rollback]
        else:
            ctx = self.d.context("BuildQuickSyncStages")
            result = await self.d.call_hook(context, handler, self.d.values(ctx, rollback=request.rollback))
            label = f"@app.quick_sync_stages handler {handler.qualname}()"
            planned = await checked(context, lambda: expect_list(result, PlannedStage, label))
        now = int(time.time())
        stages = [wire.stage_to_pb(s, desc=s.desc, now=now) for s in planned]
        for stage in stages:
            stage.index = 0
        response = deploy_pb.BuildQuickSyncStagesResponse(stages=stages)
        problems = validation.check_quick_sync_stages(response.stages, defined_stages=self.app.stages)
        return await valid_reply(context, response, problems, f"@app.quick_sync_stages handler {handler.qualname}()" if handler else "the default quick-sync planner")

    async def ExecuteStage(self, request: t.Any, context: t.Any) -> t.Any:
        inp = request.input
        if not (request.HasField("input") and inp.HasField("deployment") and inp.HasField("stage")):
            await _require(context, request, "input", "ExecuteStageRequest.input")
            await _require(context, inp, "deployment", "ExecuteStageRequest.input.deployment")
            await _require(context, inp, "stage", "ExecuteStageRequest.input.stage")
        name = inp.stage.name
        spec = self.app.stages.get(name)
        if spec is None:
            served = ", ".join(self.app.stages) or "none"
            message = f"stage {name!r} is not served by plugin {self.d.settings.name!r}{did_you_mean(name, self.app.stages)}; it serves: {served}"
            log.error("%s (deployment %s)", message, inp.deployment.id)
            return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_FAILURE, message=message)
        try:
            ended = await run_stage(self.d, spec, inp)
        except StageRefused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if isinstance(ended, Stopped):  # piped keeps the stage RUNNING and executes it again after its restart
            return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_RUNNING, message=ended.message)
        status, message = ended
        response = deploy_pb.ExecuteStageResponse(status=wire.enum_number(status), message=message)
        problems = validation.check_execute_stage_status(response.status)
        return await valid_reply(context, response, problems) if problems else response


async def valid_reply(context: t.Any, response: t.Any, problems: list[str], label: str = "") -> t.Any:
    """``response`` if piped would accept it (``problems``, from :mod:`pipeplug.validation`, is empty); else end the call INTERNAL."""
    if problems:
        message = f"{label}: {'; '.join(problems)}" if label else "; ".join(problems)
        log.error("%s", message)
        await context.abort(grpc.StatusCode.INTERNAL, message)
    return response


async def checked(context: t.Any, check: t.Callable[[], t.Any]) -> t.Any:
    """``check()``'s value; a HandlerResultError it raises ends the call with INTERNAL and its message."""
    try:
        return check()
    except HandlerResultError as exc:
        log.error("%s", exc)
        await context.abort(grpc.StatusCode.INTERNAL, str(exc))
