"""gRPC servicers generated from an App: wire messages in, user handlers called, wire messages out.

This is the thin adapter between piped and user code. It validates what piped
sent, builds the values a handler asked for, calls it, normalises what it
returned, and turns every failure into a clear answer instead of a crash.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import enum
import functools
import json
import logging
import time
import types
import typing as t
from concurrent.futures import Executor

import grpc

from ._gen.model import deployment_pb2 as model_pb
from ._gen.plugin import deployment_pb2 as deploy_pb
from ._gen.plugin import deployment_pb2_grpc as deploy_grpc
from . import wire
from .configs import ConfigError
from .configs import structure
from .context import Context
from .enums import StageStatus
from .enums import SyncStrategy
from .handlers import Handler
from .inflight import STOPPED_MESSAGE
from .inflight import InFlight
from .results import normalise_stage_result
from .stagelog import current_stage
from .stagelog import route_logging
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
    from .types import StageRequest

log = logging.getLogger("pipeplug")
#: where ctx.logger writes; checked before building a stage's "finished" line
_stage_events = logging.getLogger("pipeplug.handler")

class InputError(ValueError):
    """Piped or the user sent something a handler cannot be called with."""


class HandlerResultError(TypeError):
    """A handler returned a value of the wrong shape."""


_NOT_YET: t.Any = object()


class Values:
    """Everything a handler can ask for in one call, each computed only if asked for.

    :meth:`Handler.call <pipeplug.handlers.Handler.call>` looks up
    ``values[name]()`` for the parameters the handler declares. One slotted
    object per call, not a dict of closures: thousands of stages may be held
    at once.

    :param sources: the request message holding the deployment sources, and
        the names of its target and running source fields ("" if it has none)
    :param target_names: where the deploy target names come from: the
        ``model.Deployment`` (``deploy_targets_by_plugin``) or a list of names
    :param extra: values offered as they are (``stages``, ``rollback``)
    :param stage: the stage's spec and ``stage_config``, for ``options``
    """

    __slots__ = ("_d", "_ctx", "_sources", "_target_names", "_extra", "_stage", "_target")

    def __init__(
        self,
        dispatcher: Dispatcher,
        ctx: Context,
        *,
        sources: tuple[t.Any, str, str] | None = None,
        target_names: t.Any = (),
        extra: dict[str, t.Any] | None = None,
        stage: tuple[StageSpec, bytes] | None = None,
    ) -> None:
        self._d = dispatcher
        self._ctx = ctx
        self._sources = sources
        self._target_names = target_names
        self._extra = extra
        self._stage = stage
        self._target = _NOT_YET

    def __getitem__(self, name: str) -> t.Callable[[], t.Any]:
        if self._extra is not None and name in self._extra:
            return functools.partial(self._extra.__getitem__, name)
        return getattr(self, name)  # type: ignore[no-any-return]

    def ctx(self) -> Context:
        return self._ctx

    def config(self) -> t.Any:
        return self._d.settings.config

    def deployment(self) -> t.Any:
        return self._ctx.deployment

    def target_source(self) -> t.Any:
        if self._target is _NOT_YET:
            self._target = self._source(1)
        return self._target

    def running_source(self) -> t.Any:
        return self._source(2)

    def _source(self, which: int) -> t.Any:
        if self._sources is None or not self._sources[which]:
            return None
        message, field = self._sources[0], self._sources[which]
        return wire.source_from_pb(getattr(message, field), message.HasField(field))

    def deploy_targets(self) -> list[t.Any]:
        names = self._target_names
        if isinstance(names, model_pb.Deployment):
            entry = names.deploy_targets_by_plugin.get(self._d.settings.name)
            names = entry.deploy_targets if entry is not None else []
        try:
            return self._d.settings.targets_named(list(names))
        except LookupError as exc:
            raise InputError(str(exc)) from None

    def app_spec(self) -> t.Any:
        return self._d.app_spec(self.target_source())

    def options(self) -> t.Any:
        if self._stage is None:
            raise InputError("options are offered to stage handlers only")
        return self._d.options(*self._stage)


class Dispatcher:
    """Per-process state shared by the servicers: the app, its settings, the sync pool."""

    def __init__(self, app: App, settings: PluginSettings, executor: Executor | None = None) -> None:
        self.app = app
        self.settings = settings
        self.executor = executor
        #: piped's PluginService and the stage-log flusher; set by the server when started by piped
        self.piped: PipedClient | None = None
        self.stage_logs: StageLogFlusher | None = None
        #: the stages being executed; the server cancels them all when it stops
        self.in_flight = InFlight()
        #: stage name -> {stage_config: options} for immutable options classes, None for others
        self._reuse: dict[str, dict[bytes, t.Any] | None] = {}

    # -- building handler arguments ------------------------------------------

    def app_spec(self, source: t.Any) -> t.Any:
        path = f"spec.plugins.{self.settings.name}"
        section: t.Any = {}
        if source is not None:
            try:
                app_config = source.load_app_config()
            except Exception as exc:  # noqa: BLE001 - YAML errors come in many classes
                raise InputError(f"{source.application_config_filename or 'app config'}: cannot parse: {exc}") from None
            section = ((app_config.get("spec") or {}).get("plugins") or {}).get(self.settings.name) or {}
        if self.app.app_spec_class is None:
            return section  # no class to structure into
        try:
            return structure(self.app.converter, section, self.app.app_spec_class, path=path)
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None

    def options(self, spec: StageSpec, stage_config: bytes) -> t.Any:
        """The stage's ``with:`` structured into its options class; an InputError names each bad field."""
        try:
            return self.structure_options(spec, stage_config)
        except ConfigError as exc:
            raise InputError("; ".join(exc.problems)) from None

    def structure_options(self, spec: StageSpec, stage_config: bytes) -> t.Any:
        """The stage's ``with:`` structured into its options class, or a ConfigError naming each bad field.

        piped sends the same ``with:`` for a stage in every deployment of an
        application, so an immutable options object (a frozen attrs class
        of immutable fields) is structured once per distinct config and shared.
        A rollback stage gets the ``with:`` of the forward stage at its index, so
        keys its class does not declare are ignored there.
        """
        if spec.name not in self._reuse:
            self._reuse[spec.name] = {} if _immutable(spec.handler.options_type) else None
        reuse = self._reuse[spec.name]
        if reuse:
            cached = reuse.get(stage_config)
            if cached is not None:
                return cached
        try:
            raw = json.loads(stage_config) if stage_config else {}
        except ValueError as exc:
            raise ConfigError([f"with: not valid JSON ({exc})"]) from None
        if raw is None:
            raw = {}
        cls = spec.handler.options_type
        plain = cls is None or cls is t.Any or (cls is dict and isinstance(raw, dict))  # as decoded: no decoder needed
        value = raw if plain else self.app.converter.structure(raw, cls, path="with", lenient=spec.rollback)
        if reuse is not None and len(stage_config) <= _REUSE_MAX_BYTES:
            if len(reuse) >= _REUSE_LIMIT:
                del reuse[next(iter(reuse))]
            reuse[stage_config] = value
        return value

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
        if deployment_pb is not None:
            fields.setdefault("application_id", deployment_pb.application_id)
            fields.setdefault("application_name", deployment_pb.application_name)
        return Context(self.settings.name, rpc, piped=self.piped, deployment_pb=deployment_pb, stage_logs=self.stage_logs, **fields)

    # -- calling hooks that answer with a gRPC error on failure --------------

    async def call_hook(self, context: grpc.aio.ServicerContext, handler: Handler, values: Values) -> t.Any:
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

    def stage_call(self, spec: StageSpec, inp: t.Any) -> tuple[Context, Values]:
        """The context and injectable values of one ExecuteStage call."""
        deployment, stage = inp.deployment, inp.stage
        ctx = Context(
            self.settings.name,
            "ExecuteStage",
            None,
            deployment.application_id,
            deployment.application_name,
            stage.id,
            stage.name,
            stage.index,
            stage.status,
            piped=self.piped,
            deployment_pb=deployment,
            stage_pb=stage,
            stage_logs=self.stage_logs,
        )
        values = Values(
            self,
            ctx,
            sources=(inp, "target_deployment_source", "running_deployment_source"),
            target_names=deployment,
            stage=(spec, inp.stage_config),
        )
        return ctx, values

    def stage_begins(self, ctx: Context) -> contextvars.Token[t.Any]:
        """Route ``logging`` calls made inside the stage to its log; reset the token when it ends."""
        if self.stage_logs is not None:
            route_logging()  # checked per stage: reconfiguring logging may have removed the router
        self.in_flight.begin(ctx)
        return current_stage.set(ctx)

    def stage_ended(self, spec: StageSpec, ctx: Context, status: StageStatus, message: str, started: float, logged: bool) -> asyncio.Future[None] | None:
        """Report the stage's end; return what to await before answering piped (the stage log's completion).

        Piped never shows the reply's message, so it also goes to the stage log
        (an ERROR line for a failure). The stage log is completed exactly once
        if the stage wrote to it.
        """
        if message and not logged:
            stage_log = ctx.log
            write = {StageStatus.FAILURE: stage_log.error, StageStatus.SUCCESS: stage_log.success}.get(status, stage_log.info)
            write("%s", message)
        # One line per stage in the process log: a WARNING when it did not succeed, DEBUG otherwise
        # (piped logs every stage it runs; at INFO this line would cost more than a trivial stage).
        level = logging.DEBUG if status in _FINE else logging.WARNING
        if _stage_events.isEnabledFor(level):
            ctx.logger.log(level, "%s finished %s in %.3fs%s", _where(spec, ctx), status.name, time.monotonic() - started, f": {message}" if message else "")
        # A stage piped re-executes (RUNNING) completes its log even if this process wrote nothing:
        # the process piped lost may have left lines waiting for completion.
        rerun = ctx.stage_status == model_pb.STAGE_RUNNING
        if ctx._log is None and not rerun:
            ctx._stage_logs = None  # the stage is over: a line written from now on reaches the process log only
            return None
        completed = ctx.log.complete(empty_too=rerun)
        return None if completed.done() else completed


_FINE = frozenset((StageStatus.SUCCESS, StageStatus.SKIPPED, StageStatus.EXITED))

#: distinct ``with:`` configs kept per stage for reuse (the oldest goes first), each at most this long
_REUSE_LIMIT = 256
_REUSE_MAX_BYTES = 16 * 1024
_IMMUTABLE_TYPES = (str, int, float, bool, bytes, type(None), datetime.timedelta, datetime.datetime, datetime.date, datetime.time, enum.Enum)


def _immutable(cls: t.Any, depth: int = 0) -> bool:
    """Whether values of ``cls`` can never change, so one instance may serve many calls."""
    if depth > 10:
        return False
    if isinstance(cls, type) and issubclass(cls, _IMMUTABLE_TYPES):
        return True
    origin, args = t.get_origin(cls), t.get_args(cls)
    if origin is t.Literal:
        return all(isinstance(arg, _IMMUTABLE_TYPES) for arg in args)
    if origin in (t.Union, types.UnionType, tuple, frozenset):
        return bool(args) and all(arg is Ellipsis or _immutable(arg, depth + 1) for arg in args)
    if isinstance(cls, type) and hasattr(cls, "__attrs_attrs__"):  # an attrs class, so attrs is loaded
        import attrs

        props = getattr(cls, "__attrs_props__", None)  # attrs >= 25.4
        frozen = props.is_frozen if props is not None else getattr(cls.__setattr__, "__name__", "") == "_frozen_setattrs"
        if not frozen:
            return False
        try:
            hints = t.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - unresolvable annotations: do not guess
            return False
        return all(_immutable(hints.get(field.name, field.type), depth + 1) for field in attrs.fields(cls))
    return False


def _where(spec: StageSpec, ctx: Context) -> str:
    return f"stage {spec.name} (stage id {ctx.stage_id}, deployment {ctx.deployment_id})"


async def _require(context: grpc.aio.ServicerContext, message: t.Any, field: str, path: str) -> t.Any:
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
        versions = await checked(context, lambda: expect_list(result, ArtifactVersion, f"@app.versions handler {handler.qualname}()"))
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
        from .types import Strategy

        if isinstance(result, SyncStrategy):
            result = Strategy(result)
        if not isinstance(result, Strategy) or result.strategy not in (SyncStrategy.QUICK_SYNC, SyncStrategy.PIPELINE):
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"@app.strategy handler {handler.qualname}() returned {result!r}; expected SyncStrategy.QUICK_SYNC, "
                "SyncStrategy.PIPELINE, a Strategy(...) with one of them, or None for no opinion",
            )
        return deploy_pb.DetermineStrategyResponse(sync_strategy=int(result.strategy), summary=result.summary)

    def _plan_values(self, rpc: str, inp: t.Any, deployment: t.Any) -> Values:
        ctx = self.d.context(rpc, deployment)
        return Values(self.d, ctx, sources=(inp, "target_deployment_source", "running_deployment_source"), target_names=deployment)

    async def BuildPipelineSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        from .types import PlannedStage
        from .types import StageRequest

        requested = []
        for i, stage in enumerate(request.stages):
            try:
                config = json.loads(stage.config) if stage.config else {}
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"stages[{i}] ({stage.name}).config: not valid JSON ({exc})")
            requested.append(StageRequest(name=stage.name, index=stage.index, desc=stage.desc, config=config if config is not None else {}))
        # Every stage's options are checked before any stage runs, as the official SCRIPT_RUN does.
        await self._refuse_bad_options(context, [(stage.name, stage.index, stage.config, "") for stage in request.stages])
        handler = self.app.hooks.get("pipeline")
        if handler is None:
            planned = await checked(context, lambda: self._default_pipeline(requested, request.rollback))
        else:
            ctx = self.d.context("BuildPipelineSyncStages")
            values = Values(self.d, ctx, extra={"stages": requested, "rollback": request.rollback})
            result = await self.d.call_hook(context, handler, values)
            label = f"@app.pipeline handler {handler.qualname}()"
            planned = await checked(context, lambda: expect_list(result, PlannedStage, label))
            await checked(context, lambda: self._check_planned(planned, requested, label))
        # A rollback stage is executed with the `with:` of the stage at its index (piped's scheduler does so).
        forward = {stage.index: stage for stage in request.stages}
        await self._refuse_bad_options(
            context,
            [(s.name, s.index, forward[s.index].config, f", rollback of {forward[s.index].name}") for s in planned if s.rollback and s.index in forward],
        )
        desc = {s.index: s.desc for s in requested}
        now = int(time.time())
        return deploy_pb.BuildPipelineSyncStagesResponse(stages=[wire.stage_to_pb(s, desc=desc.get(s.index, ""), now=now) for s in planned])

    async def _refuse_bad_options(self, context: t.Any, stages: list[tuple[str, int, bytes, str]]) -> None:
        """End the call with INVALID_ARGUMENT naming every bad option of the (name, index, with:, note) stages this plugin serves."""
        problems = []
        for name, index, config, note in stages:
            spec = self.app.stages.get(name)
            if spec is None or spec.handler.options_type is None:
                continue
            try:
                self.d.structure_options(spec, config)
            except ConfigError as exc:
                problems += [f"stage {index} ({name}{note}): {problem}" for problem in exc.problems]
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))

    def _default_pipeline(self, requested: list[StageRequest], rollback: bool) -> list[PlannedStage]:
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

    def _check_planned(self, planned: list[PlannedStage], requested: list[StageRequest], label: str) -> None:
        """The checks piped's planner makes, so a bad plan fails here with a clear reason."""
        allowed = {s.index for s in requested}
        seen: dict[bool, set[int]] = {True: set(), False: set()}
        for stage in planned:
            if stage.name not in self.app.stages:
                raise HandlerResultError(
                    f"{label} planned stage {stage.name!r}{did_you_mean(stage.name, self.app.stages)}, "
                    "which this plugin does not define; piped could not route it"
                )
            if stage.index not in allowed:
                raise HandlerResultError(f"{label} planned {stage.name!r} at index {stage.index}, which piped did not request (requested: {sorted(allowed)})")
            if stage.index in seen[stage.rollback]:
                kind = "rollback" if stage.rollback else "non-rollback"
                raise HandlerResultError(f"{label} planned two {kind} stages at index {stage.index}; piped rejects repeated indexes")
            seen[stage.rollback].add(stage.index)

    async def BuildQuickSyncStages(self, request: t.Any, context: t.Any) -> t.Any:
        from .types import PlannedStage

        handler = self.app.hooks.get("quick_sync")
        if handler is None:
            specs = [s for s in self.app.stages.values() if s.quick_sync]
            planned = [PlannedStage(name=s.name) for s in specs]
            if planned and request.rollback:
                planned += [PlannedStage(name=s.name, rollback=True) for s in self.app.stages.values() if s.rollback]
        else:
            ctx = self.d.context("BuildQuickSyncStages")
            result = await self.d.call_hook(context, handler, Values(self.d, ctx, extra={"rollback": request.rollback}))
            label = f"@app.quick_sync handler {handler.qualname}()"
            planned = await checked(context, lambda: expect_list(result, PlannedStage, label))
            unknown = [s.name for s in planned if s.name not in self.app.stages]
            if unknown:
                hint = did_you_mean(unknown[0], self.app.stages)
                await context.abort(grpc.StatusCode.INTERNAL, f"{label} planned {unknown}, which this plugin does not define{hint}")
        now = int(time.time())
        stages = [wire.stage_to_pb(s, desc=s.desc, now=now) for s in planned]
        for stage in stages:
            stage.index = 0
        return deploy_pb.BuildQuickSyncStagesResponse(stages=stages)

    async def ExecuteStage(self, request: t.Any, context: t.Any) -> t.Any:
        inp = request.input
        if not (request.HasField("input") and inp.HasField("deployment") and inp.HasField("stage")):
            await _require(context, request, "input", "ExecuteStageRequest.input")
            await _require(context, inp, "deployment", "ExecuteStageRequest.input.deployment")
            await _require(context, inp, "stage", "ExecuteStageRequest.input.stage")
        stage = inp.stage
        spec = self.app.stages.get(stage.name)
        if spec is None:
            served = ", ".join(self.app.stages) or "none"
            message = f"stage {stage.name!r} is not served by plugin {self.d.settings.name!r}{did_you_mean(stage.name, self.app.stages)}; it serves: {served}"
            log.error("%s (deployment %s)", message, inp.deployment.id)
            return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_FAILURE, message=message)
        # The stage runs right here, not in a helper coroutine: a held stage then costs one
        # frame less, and a plugin may hold thousands.
        ctx, values = self.d.stage_call(spec, inp)
        started = time.monotonic()
        if self.app.deploy_target_config_class is not None:
            entry = inp.deployment.deploy_targets_by_plugin.get(self.d.settings.name)
            refused = self.d.no_deploy_targets(entry.deploy_targets if entry is not None else (), "ExecuteStage")
            if refused:
                # piped shows no gRPC error text: the stage log is where users read why
                completed = self.d.stage_ended(spec, ctx, StageStatus.FAILURE, refused, started, False)
                if completed is not None:
                    await asyncio.shield(completed)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refused)
        routed = self.d.stage_begins(ctx)
        logged = False
        running: t.Any = None
        try:
            running = spec.handler.call(values, self.d.executor)
            # A def handler's thread outlives a cancellation: shielded, its future stays to be waited for.
            result = await (running if spec.handler.is_async else asyncio.shield(running))
            if result is None:
                status, message = StageStatus.SUCCESS, ""
            else:
                status, message = normalise_stage_result(result, f"stage {spec.name} handler {spec.handler.qualname}()")
        except asyncio.CancelledError:
            stopped = self.d.in_flight.cancelled(ctx, started, spec.handler.qualname, None if spec.handler.is_async else running)
            if stopped is None:
                raise
            await stopped
            return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_RUNNING, message=STOPPED_MESSAGE)
        except InputError as exc:
            status, message = StageStatus.FAILURE, f"stage {spec.name}: {exc}"
        except Exception as exc:  # noqa: BLE001 - user code must never take the server down
            ctx.log.exception("Handler %s() raised", spec.handler.qualname)
            status, message = StageStatus.FAILURE, f"{type(exc).__name__}: {exc}"
            logged = True
        finally:
            current_stage.reset(routed)
            self.d.in_flight.end(ctx)
        if ctx._pending:
            status, message, logged = never_awaited(ctx, spec, status, message, logged)
        completed = self.d.stage_ended(spec, ctx, status, message, started, logged)
        if completed is not None:
            await asyncio.shield(completed)
        return deploy_pb.ExecuteStageResponse(status=int(status), message=message)


def never_awaited(ctx: Context, spec: StageSpec, status: StageStatus, message: str, logged: bool) -> tuple[StageStatus, str, bool]:
    """Fail a stage whose handler called ctx's async API without awaiting it: that call did nothing.

    The stage's own message is kept after the reason; if it is already in the
    stage log, only the reason is written there.
    """
    calls = ctx._never_awaited()
    if not calls:  # each was started after all (by a thread the handler left running)
        return status, message, logged
    verb = "was" if len(calls) == 1 else "were"
    reason = (
        f"stage {spec.name} handler {spec.handler.qualname}(): {' and '.join(calls)} {verb} never awaited, so it did nothing; "
        "add await (or, in a sync handler, call its _sync twin)"
    )
    if logged:
        ctx.log.error("%s", reason)
    return StageStatus.FAILURE, f"{reason}. {message}" if message else reason, logged


async def checked(context: t.Any, check: t.Callable[[], t.Any]) -> t.Any:
    """``check()``'s value; a HandlerResultError it raises ends the call with INTERNAL and its message."""
    try:
        return check()
    except HandlerResultError as exc:
        log.error("%s", exc)
        await context.abort(grpc.StatusCode.INTERNAL, str(exc))


def add_servicers(server: grpc.aio.Server, dispatcher: Dispatcher) -> list[str]:
    """Register the services the app implements; return their full names."""
    names = [deploy_pb.DESCRIPTOR.services_by_name["DeploymentService"].full_name]
    deploy_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(dispatcher), server)
    if "livestate" in dispatcher.app.hooks or "plan_preview" in dispatcher.app.hooks:
        from .optional_services import add_optional_servicers

        names += add_optional_servicers(server, dispatcher)
    return names
