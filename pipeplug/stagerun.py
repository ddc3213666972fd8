"""The life of one stage, in one place: begin, inject, call, normalise the result, end.

The servicer decodes ExecuteStage and encodes the reply; everything between
happens here, in order, in :func:`run_stage`:

1. begin: build the stage's :class:`~pipeplug.context.Context`, route
   ``logging`` to its stage log, record it as in flight;
2. inject: compute only the values the handler declares;
3. call: on the loop (``async def``) or in the sync pool (``def``);
4. normalise: whatever came back, or was raised, becomes one final status and message;
5. end: fail calls never awaited, write the message to the stage log, complete the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing as t

from ._gen.model import deployment_pb2 as model_pb
from .context import Context
from .context import end_stage_log
from .context import never_awaited
from .enums import StageStatus
from .errors import StageFailed
from .inflight import STOPPED_MESSAGE
from .inject import InputError
from .inject import Values
from .results import normalise_stage_result
from .stagelog import current_stage
from .stagelog import route_logging

if t.TYPE_CHECKING:
    from .app import StageSpec
    from .servicers import Dispatcher

#: where ctx.logger writes; checked before building a stage's "finished" line
_stage_events = logging.getLogger("pipeplug.handler")
_FINE = frozenset((StageStatus.SUCCESS, StageStatus.SKIPPED, StageStatus.EXITED))


class StageRefused(Exception):
    """The stage cannot run as piped sent it (no deploy target): the call ends INVALID_ARGUMENT with this message."""


class Stopped(t.NamedTuple):
    """The stage was stopped by this process's shutdown: piped must keep it RUNNING and execute it again."""

    message: str = STOPPED_MESSAGE


async def run_stage(dispatcher: Dispatcher, spec: StageSpec, inp: t.Any) -> tuple[StageStatus, str] | Stopped:
    """Execute one stage for ``inp`` (an ``ExecuteStageRequest.input`` with deployment and stage set).

    Returns the final status and message, or :class:`Stopped`. A cancellation
    by piped propagates (piped has stopped listening); the stage's log is then
    completed in the background once its handler is done.
    """
    deployment, stage = inp.deployment, inp.stage
    ctx = Context(
        plugin_name=dispatcher.settings.name,
        rpc="ExecuteStage",
        application_id=deployment.application_id,
        application_name=deployment.application_name,
        stage_id=stage.id,
        stage_name=stage.name,
        stage_index=stage.index,
        stage_status=stage.status,
        piped=dispatcher.piped,
        deployment_pb=deployment,
        stage_pb=stage,
        stage_logs=dispatcher.stage_logs,
    )
    started = time.monotonic()
    if dispatcher.app.deploy_target_config_class is not None:
        entry = deployment.deploy_targets_by_plugin.get(dispatcher.settings.name)
        refused = dispatcher.no_deploy_targets(entry.deploy_targets if entry is not None else (), "ExecuteStage")
        if refused:
            completed = _end(spec, ctx, StageStatus.FAILURE, refused, started, logged=False)
            if completed is not None:
                await asyncio.shield(completed)
            raise StageRefused(refused)
    handler = spec.handler
    wants = handler.params  # read the source messages only for a handler that asks for them (app_spec is read from the target)
    values = Values(
        dispatcher.injector,
        ctx,
        target_source=inp.target_deployment_source if ("target_source" in wants or "app_spec" in wants) and inp.HasField("target_deployment_source") else None,
        running_source=inp.running_deployment_source if "running_source" in wants and inp.HasField("running_deployment_source") else None,
        target_names=deployment,
        stage=(spec, inp.stage_config),
    )
    if dispatcher.stage_logs is not None:
        route_logging()  # checked per stage: reconfiguring logging may have removed the router
    in_flight = dispatcher.in_flight
    in_flight.begin(ctx)
    routed = current_stage.set(ctx)
    logged = False
    running: t.Any = None
    try:
        running = handler.call(values, dispatcher.executor)
        # A def handler's thread outlives a cancellation: shielded, its future stays to be waited for.
        result = await (running if handler.is_async else asyncio.shield(running))
        if result is None:
            status, message = StageStatus.SUCCESS, ""
        else:
            status, message = normalise_stage_result(result, f"stage {spec.name} handler {handler.qualname}()")
    except asyncio.CancelledError:
        stopped = in_flight.cancelled(ctx, started, handler.qualname, None if handler.is_async else running)
        if stopped is None:
            raise
        await stopped
        return Stopped()
    except StageFailed as exc:  # the handler's own verdict: its message, no traceback
        status, message = StageStatus.FAILURE, exc.message
    except InputError as exc:
        status, message = StageStatus.FAILURE, f"stage {spec.name}: {exc}"
    except Exception as exc:  # noqa: BLE001 - user code must never take the server down
        ctx.log.exception("Handler %s() raised", handler.qualname)
        status, message = StageStatus.FAILURE, f"{type(exc).__name__}: {exc}"
        logged = True
    finally:
        current_stage.reset(routed)
        in_flight.end(ctx)
    calls = never_awaited(ctx)
    if calls:
        status, message = _fail_never_awaited(ctx, spec, calls, message, logged)
    completed = _end(spec, ctx, status, message, started, logged=logged)
    if completed is not None:  # answer piped once the stage's log reached it
        await asyncio.shield(completed)
    return status, message


def _fail_never_awaited(ctx: Context, spec: StageSpec, calls: list[str], message: str, logged: bool) -> tuple[StageStatus, str]:
    """Fail a stage whose handler called ctx's async API without awaiting it: that call did nothing.

    The stage's own message is kept after the reason; if it is already in the
    stage log, only the reason is written there.
    """
    verb = "was" if len(calls) == 1 else "were"
    reason = (
        f"stage {spec.name} handler {spec.handler.qualname}(): {' and '.join(calls)} {verb} never awaited, so it did nothing; "
        "add await (or, in a sync handler, call its _sync twin)"
    )
    if logged:
        ctx.log.error("%s", reason)
    return StageStatus.FAILURE, f"{reason}. {message}" if message else reason


def _end(spec: StageSpec, ctx: Context, status: StageStatus, message: str, started: float, *, logged: bool) -> asyncio.Future[None] | None:
    """Report the stage's end; return what to await before answering piped (the log's completion), if anything.

    Piped never shows the reply's message, so it also goes to the stage log
    (an ERROR line for a failure) unless it is there already.
    """
    if message and not logged:
        stage_log = ctx.log
        write = {StageStatus.FAILURE: stage_log.error, StageStatus.SUCCESS: stage_log.success}.get(status, stage_log.info)
        write("%s", message)
    # One line per stage in the process log: a WARNING when it did not succeed, DEBUG otherwise
    # (piped logs every stage it runs; at INFO this line would cost more than a trivial stage).
    level = logging.DEBUG if status in _FINE else logging.WARNING
    if _stage_events.isEnabledFor(level):
        where = f"stage {spec.name} (stage id {ctx.stage_id}, deployment {ctx.deployment_id})"
        ctx.logger.log(level, "%s finished %s in %.3fs%s", where, status.name, time.monotonic() - started, f": {message}" if message else "")
    # A stage piped re-executes (RUNNING) completes its log even if this process wrote nothing.
    return end_stage_log(ctx, rerun=ctx.stage_status == model_pb.STAGE_RUNNING)
