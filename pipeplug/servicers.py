"""gRPC servicers generated from an App: wire messages in, user handlers called, wire messages out.

This is the thin adapter between piped and user code. It validates what piped
sent, builds the values a handler asked for, calls it, normalises what it
returned, and turns every failure into a clear answer instead of a crash.
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
from ._gen.plugin import livestate_pb2 as live_pb
from ._gen.plugin import livestate_pb2_grpc as live_grpc
from ._gen.plugin import planpreview_pb2 as preview_pb
from ._gen.plugin import planpreview_pb2_grpc as preview_grpc
from . import wire
from .configs import ConfigError
from .configs import structure
from .context import Context
from .handlers import Handler
from .results import normalise_stage_result
from .stagelog import StageLog
from .stagelog import current_stage_log
from .types import ArtifactVersion
from .types import LiveState
from .types import PlannedStage
from .types import PlanPreview
from .types import StageRequest
from .types import StageStatus
from .types import Strategy
from .types import SyncStrategy

if t.TYPE_CHECKING:
    from .app import App
    from .app import StageSpec
    from .piped import PipedClient
    from .stagelog import StageLogFlusher
    from .settings import PluginSettings

log = logging.getLogger("pipeplug")

Getters = dict[str, t.Callable[[], t.Any]]


class InputError(ValueError):
    """Piped or the user sent something a handler cannot be called with."""


class HandlerResultError(TypeError):
    """A handler returned a value of the wrong shape."""


class Dispatcher:
    """Per-process state shared by the servicers: the app, its settings, the sync pool."""

    def __init__(self, app: App, settings: PluginSettings, executor: Executor | None = None) -> None:
        self.app = app
        self.settings = settings
        self.executor = executor
        #: piped's PluginService and the stage-log flusher; set by the server when started by piped
        self.piped: PipedClient | None = None
        self.stage_logs: StageLogFlusher | None = None

    # -- building handler arguments ------------------------------------------

    def getters(
        self,
        ctx: Context,
        *,
        target: t.Any = None,
        running: t.Any = None,
        target_names: t.Callable[[], t.Sequence[str]] = lambda: (),
        **extra: t.Any,
    ) -> Getters:
        """Zero-argument getters for every injectable value; only requested ones run."""
        target_source = _once(lambda: target)
        values: Getters = {
            "ctx": lambda: ctx,
            "config": lambda: self.settings.config,
            "deployment": lambda: ctx.deployment,
            "target_source": target_source,
            "running_source": lambda: running,
            "deploy_targets": lambda: self._targets(target_names()),
            "app_spec": lambda: self._app_spec(target_source()),
        }
        values.update({name: (lambda value=value: value) for name, value in extra.items()})
        return values

    def _targets(self, names: t.Sequence[str]) -> list[t.Any]:
        try:
            return self.settings.targets_named(names)
        except LookupError as exc:
            raise InputError(str(exc)) from None

    def _app_spec(self, source: t.Any) -> t.Any:
        path = f"spec.plugins.{self.settings.name}"
        section: t.Any = {}
        if source is not None:
            try:
                app_config = source.load_app_config()
            except Exception as exc:  # noqa: BLE001 - YAML errors come in many classes
                raise InputError(f"{source.application_config_filename or 'app config'}: cannot parse: {exc}") from None
            section = ((app_config.get("spec") or {}).get("plugins") or {}).get(self.settings.name) or {}
        try:
            return structure(self.app.converter, section, self.app.app_spec_class, path=path)
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None

    def deployment_targets(self, deployment: t.Any) -> t.Callable[[], t.Sequence[str]]:
        def names() -> t.Sequence[str]:
            entry = deployment.deploy_targets_by_plugin.get(self.settings.name) if deployment else None
            return list(entry.deploy_targets) if entry is not None else []

        return names

    def context(self, rpc: str, deployment_pb: t.Any = None, **fields: t.Any) -> Context:
        deployment = wire.deployment_from_pb(deployment_pb) if deployment_pb is not None else None
        if deployment is not None:
            fields.setdefault("application_id", deployment.application_id)
            fields.setdefault("application_name", deployment.application_name)
        return Context(plugin_name=self.settings.name, rpc=rpc, deployment=deployment, piped=self.piped, **fields)

    # -- calling hooks that answer with a gRPC error on failure --------------

    async def call_hook(self, context: grpc.aio.ServicerContext, handler: Handler, values: Getters) -> t.Any:
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

    # -- stages ---------------------------------------------------------------

    async def run_stage(self, spec: StageSpec, ctx: Context, values: Getters, stage_config: bytes) -> tuple[StageStatus, str]:
        """Run one stage to a (status, message); never raises except on cancellation.

        Piped never shows the reply's message, so a failure also goes to the stage
        log as an ERROR line. The stage log is completed exactly once, whatever happens.
        """
        started = time.monotonic()
        ctx.log = self._stage_log(ctx, label=_where(spec, ctx))
        routed = current_stage_log.set(ctx.log)  # `logging` calls inside the stage reach its log
        logged = False
        try:
            values["options"] = _once(lambda: self._options(spec, stage_config))
            result = await spec.handler.call(values, self.executor)
            status, message = normalise_stage_result(result, f"stage {spec.name} handler {spec.handler.qualname}()")
        except asyncio.CancelledError:
            ctx._cancel()
            ctx.log.warning("Cancelled by piped after %.1fs", time.monotonic() - started)
            ctx.log.complete()  # finishes in the background; piped has stopped listening
            raise
        except InputError as exc:
            status, message = StageStatus.FAILURE, f"stage {spec.name}: {exc}"
        except Exception as exc:  # noqa: BLE001 - user code must never take the server down
            ctx.log.exception("Handler %s() raised", spec.handler.qualname)
            status, message = StageStatus.FAILURE, f"{type(exc).__name__}: {exc}"
            logged = True
        finally:
            current_stage_log.reset(routed)
        if message and not logged:
            # The reply's message is never shown by piped: the stage log is where users see it.
            write = {StageStatus.FAILURE: ctx.log.error, StageStatus.SUCCESS: ctx.log.success}.get(status, ctx.log.info)
            write("%s", message)
        level = logging.INFO if status in (StageStatus.SUCCESS, StageStatus.SKIPPED, StageStatus.EXITED) else logging.WARNING
        ctx.logger.log(level, "%s finished %s in %.3fs%s", _where(spec, ctx), status.name, time.monotonic() - started, f": {message}" if message else "")
        await asyncio.shield(ctx.log.complete())
        return status, message

    def _stage_log(self, ctx: Context, label: str) -> StageLog:
        buffer = None
        if self.stage_logs is not None and ctx.deployment_id and ctx.stage_id:
            buffer = self.stage_logs.open(ctx.deployment_id, ctx.stage_id)
        return StageLog(buffer, label=label, extra=ctx.logger.extra)

    def _options(self, spec: StageSpec, stage_config: bytes) -> t.Any:
        try:
            raw = json.loads(stage_config) if stage_config else {}
        except ValueError as exc:
            raise InputError(f"with: not valid JSON ({exc})") from None
        if raw is None:
            raw = {}
        try:
            return structure(self.app.converter, raw, spec.handler.options_type, path="with")
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None


def _where(spec: StageSpec, ctx: Context) -> str:
    return f"stage {spec.name} (stage id {ctx.stage_id}, deployment {ctx.deployment_id})"


async def _require(context: grpc.aio.ServicerContext, message: t.Any, field: str, path: str) -> t.Any:
    if not message.HasField(field):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{path} is required but was not set")
    return getattr(message, field)


def _once(func: t.Callable[[], t.Any]) -> t.Callable[[], t.Any]:
    cache: list[t.Any] = []

    def get() -> t.Any:
        if not cache:
            cache.append(func())
        return cache[0]

    return get


def _expect_list(value: t.Any, item: type, label: str) -> list[t.Any]:
    if value is None:
        return []
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
        inp = await _require(context, request, "input", "DetermineVersionsRequest.input")
        deployment = await _require(context, inp, "deployment", "DetermineVersionsRequest.input.deployment")
        handler = self.app.hooks.get("versions")
        if handler is None:
            return deploy_pb.DetermineVersionsResponse()
        values = self._plan_values("DetermineVersions", inp, deployment)
        result = await self.d.call_hook(context, handler, values)
        versions = await _checked(context, lambda: _expect_list(result, ArtifactVersion, f"@app.versions handler {handler.qualname}()"))
        return deploy_pb.DetermineVersionsResponse(versions=[wire.version_to_pb(v) for v in versions])

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
        if isinstance(result, SyncStrategy):
            result = Strategy(result)
        if not isinstance(result, Strategy) or result.strategy not in (SyncStrategy.QUICK_SYNC, SyncStrategy.PIPELINE):
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"@app.strategy handler {handler.qualname}() returned {result!r}; expected SyncStrategy.QUICK_SYNC, "
                "SyncStrategy.PIPELINE, a Strategy(...) with one of them, or None for no opinion",
            )
        return deploy_pb.DetermineStrategyResponse(sync_strategy=int(result.strategy), summary=result.summary)

    def _plan_values(self, rpc: str, inp: t.Any, deployment: t.Any) -> Getters:
        ctx = self.d.context(rpc, deployment)
        return self.d.getters(
            ctx,
            target=wire.source_from_pb(inp.target_deployment_source, inp.HasField("target_deployment_source")),
            running=wire.source_from_pb(inp.running_deployment_source, inp.HasField("running_deployment_source")),
            target_names=self.d.deployment_targets(deployment),
        )

    async def BuildPipelineSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        requested = []
        for i, stage in enumerate(request.stages):
            try:
                config = json.loads(stage.config) if stage.config else {}
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stages[{i}] ({stage.name}).config: not valid JSON ({exc})")
            requested.append(StageRequest(name=stage.name, index=stage.index, desc=stage.desc, config=config if config is not None else {}))
        handler = self.app.hooks.get("pipeline")
        if handler is None:
            planned = await _checked(context, lambda: self._default_pipeline(requested, request.rollback))
        else:
            ctx = self.d.context("BuildPipelineSyncStages")
            values = self.d.getters(ctx, stages=requested, rollback=request.rollback)
            result = await self.d.call_hook(context, handler, values)
            label = f"@app.pipeline handler {handler.qualname}()"
            planned = await _checked(context, lambda: _expect_list(result, PlannedStage, label))
            await _checked(context, lambda: self._check_planned(planned, requested, label))
        desc = {s.index: s.desc for s in requested}
        now = int(time.time())
        return deploy_pb.BuildPipelineSyncStagesResponse(stages=[wire.stage_to_pb(s, desc=desc.get(s.index, ""), now=now) for s in planned])

    def _default_pipeline(self, requested: list[StageRequest], rollback: bool) -> list[PlannedStage]:
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

    def _check_planned(self, planned: list[PlannedStage], requested: list[StageRequest], label: str) -> None:
        """The checks piped's planner makes, so a bad plan fails here with a clear reason."""
        allowed = {s.index for s in requested}
        seen: dict[bool, set[int]] = {True: set(), False: set()}
        for stage in planned:
            if stage.name not in self.app.stages:
                raise HandlerResultError(f"{label} planned stage {stage.name!r}, which this plugin does not define; piped could not route it")
            if stage.index not in allowed:
                raise HandlerResultError(f"{label} planned {stage.name!r} at index {stage.index}, which piped did not request (requested: {sorted(allowed)})")
            if stage.index in seen[stage.rollback]:
                kind = "rollback" if stage.rollback else "non-rollback"
                raise HandlerResultError(f"{label} planned two {kind} stages at index {stage.index}; piped rejects repeated indexes")
            seen[stage.rollback].add(stage.index)

    async def BuildQuickSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        handler = self.app.hooks.get("quick_sync")
        if handler is None:
            specs = [s for s in self.app.stages.values() if s.quick_sync]
            planned = [PlannedStage(name=s.name) for s in specs]
            if planned and request.rollback:
                planned += [PlannedStage(name=s.name, rollback=True) for s in self.app.stages.values() if s.rollback]
        else:
            ctx = self.d.context("BuildQuickSyncStages")
            result = await self.d.call_hook(context, handler, self.d.getters(ctx, rollback=request.rollback))
            label = f"@app.quick_sync handler {handler.qualname}()"
            planned = await _checked(context, lambda: _expect_list(result, PlannedStage, label))
            unknown = [s.name for s in planned if s.name not in self.app.stages]
            if unknown:
                await context.abort(grpc.StatusCode.INTERNAL, f"{label} planned {unknown}, which this plugin does not define")
        now = int(time.time())
        stages = [wire.stage_to_pb(s, desc=s.desc, now=now) for s in planned]
        for stage in stages:
            stage.index = 0
        return deploy_pb.BuildQuickSyncStagesResponse(stages=stages)

    async def ExecuteStage(self, request: t.Any, context: t.Any) -> t.Any:
        inp = await _require(context, request, "input", "ExecuteStageRequest.input")
        deployment = await _require(context, inp, "deployment", "ExecuteStageRequest.input.deployment")
        stage = await _require(context, inp, "stage", "ExecuteStageRequest.input.stage")
        spec = self.app.stages.get(stage.name)
        if spec is None:
            served = ", ".join(self.app.stages) or "none"
            message = f"stage {stage.name!r} is not served by plugin {self.d.settings.name!r}; it serves: {served}"
            log.error("%s (deployment %s)", message, deployment.id)
            return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_FAILURE, message=message)
        ctx = self.d.context(
            "ExecuteStage",
            deployment,
            stage_id=stage.id,
            stage_name=stage.name,
            stage_index=stage.index,
            stage_status=stage.status,
            authorized_operators=tuple(stage.authorized_operators),
        )
        values = self.d.getters(
            ctx,
            target=wire.source_from_pb(inp.target_deployment_source, inp.HasField("target_deployment_source")),
            running=wire.source_from_pb(inp.running_deployment_source, inp.HasField("running_deployment_source")),
            target_names=self.d.deployment_targets(deployment),
        )
        status, message = await self.d.run_stage(spec, ctx, values, inp.stage_config)
        return deploy_pb.ExecuteStageResponse(status=int(status), message=message)


class LivestateServicer(live_grpc.LivestateServiceServicer):
    """``LivestateService``, served only when ``@app.livestate`` is registered."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def GetLivestate(self, request: t.Any, context: t.Any) -> t.Any:
        handler = self.d.app.hooks["livestate"]
        ctx = self.d.context("GetLivestate", application_id=request.application_id, application_name=request.application_name)
        values = self.d.getters(
            ctx,
            target=wire.source_from_pb(request.deploy_source, request.HasField("deploy_source")),
            target_names=lambda: list(request.deploy_targets),
        )
        result = await self.d.call_hook(context, handler, values)
        if not isinstance(result, LiveState):
            await context.abort(grpc.StatusCode.INTERNAL, f"@app.livestate handler {handler.qualname}() returned {result!r}; expected a LiveState")
        live, sync = wire.livestate_to_pb(result, plugin_name=self.d.settings.name)
        return live_pb.GetLivestateResponse(application_live_state=live, sync_state=sync)


class PlanPreviewServicer(preview_grpc.PlanPreviewServiceServicer):
    """``PlanPreviewService``, served only when ``@app.plan_preview`` is registered."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher

    async def GetPlanPreview(self, request: t.Any, context: t.Any) -> t.Any:
        handler = self.d.app.hooks["plan_preview"]
        ctx = self.d.context("GetPlanPreview", application_id=request.application_id, application_name=request.application_name)
        values = self.d.getters(
            ctx,
            target=wire.source_from_pb(request.target_deployment_source, request.HasField("target_deployment_source")),
            running=wire.source_from_pb(request.running_deployment_source, request.HasField("running_deployment_source")),
            target_names=lambda: list(request.deploy_targets),
        )
        result = await self.d.call_hook(context, handler, values)
        label = f"@app.plan_preview handler {handler.qualname}()"
        results = await _checked(context, lambda: _expect_list(result, PlanPreview, label))
        return preview_pb.GetPlanPreviewResponse(results=[wire.preview_to_pb(r) for r in results])


async def _checked(context: t.Any, check: t.Callable[[], t.Any]) -> t.Any:
    try:
        return check()
    except HandlerResultError as exc:
        log.error("%s", exc)
        await context.abort(grpc.StatusCode.INTERNAL, str(exc))


def add_servicers(server: grpc.aio.Server, dispatcher: Dispatcher) -> list[str]:
    """Register the services the app implements; return their full names."""
    names = [deploy_pb.DESCRIPTOR.services_by_name["DeploymentService"].full_name]
    deploy_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(dispatcher), server)
    if "livestate" in dispatcher.app.hooks:
        live_grpc.add_LivestateServiceServicer_to_server(LivestateServicer(dispatcher), server)
        names.append(live_pb.DESCRIPTOR.services_by_name["LivestateService"].full_name)
    if "plan_preview" in dispatcher.app.hooks:
        preview_grpc.add_PlanPreviewServiceServicer_to_server(PlanPreviewServicer(dispatcher), server)
        names.append(preview_pb.DESCRIPTOR.services_by_name["PlanPreviewService"].full_name)
    return names
