"""Executing a planned deployment exactly as piped's scheduler does (contract §4).

One ExecuteStage per stage attempt, with no gRPC deadline: timeouts and
cancel work by cancelling the call, after which piped ignores the plugin's
reply and records CANCELLED. The status table decides what follows (EXITED
ends with success, RUNNING parks the deployment), and rollback stages run
after FAILURE or CANCELLED, each getting the ``with`` of the pipeline stage
that shares its index.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing as t

import attrs
import grpc

from .. import validation
from .._gen.model import common_pb2 as common_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.plugin import deployment_pb2 as deploy_pb
from .sources import all_match

if t.TYPE_CHECKING:
    from .appconfig import AppConfig
    from .pluginservice import DevPiped
    from .registry import Registry
    from .state import State

#: stage statuses piped commits as the stage's result (scheduler.go executeStage)
COMMITTED = (model_pb.STAGE_SUCCESS, model_pb.STAGE_CANCELLED, model_pb.STAGE_SKIPPED, model_pb.STAGE_EXITED, model_pb.STAGE_FAILURE)
ROLLBACK_NAMES = ("ROLLBACK", "SCRIPT_RUN_ROLLBACK")


class Events(t.Protocol):
    """What the scheduler tells the outside world (the UI and the approval helper)."""

    def note(self, text: str) -> None: ...
    def violation(self, text: str) -> None: ...
    def deployment_status(self, deployment: model_pb.Deployment) -> None: ...
    def stage_started(self, stage: model_pb.PipelineStage, attempt: int) -> None: ...
    def stage_finished(self, stage: model_pb.PipelineStage, status: int, note: str) -> None: ...


@attrs.define
class Controls:
    """How the user steers a run: Ctrl-C cancels (like the UI's cancel button)."""

    cancel: asyncio.Event = attrs.field(factory=asyncio.Event)
    #: who cancelled, for piped's "Cancelled by <commander>" reason
    canceller: str = ""
    on_stage_running: t.Callable[[model_pb.Deployment, model_pb.PipelineStage], None] = lambda d, s: None
    on_stage_done: t.Callable[[model_pb.Deployment, model_pb.PipelineStage], None] = lambda d, s: None


class Scheduler:
    """Runs one deployment's stages; ``sources()`` yields a fresh (target, running) pair per call, like piped."""

    def __init__(
        self,
        deployment: model_pb.Deployment,
        config: AppConfig,
        registry: Registry,
        service: DevPiped,
        state: State,
        events: Events,
        controls: Controls,
        sources: t.Callable[[], tuple[t.Any, t.Any]],
        changed_files: t.Callable[[], list[str]],
    ) -> None:
        self.d = deployment
        self.config = config
        self.registry = registry
        self.service = service
        self.state = state
        self.events = events
        self.controls = controls
        self.sources = sources
        self.changed_files = changed_files
        #: the deployment as the scheduler found it; piped sends this snapshot, with stale stage statuses
        self.snapshot = model_pb.Deployment()
        self.snapshot.CopyFrom(deployment)
        #: rollback stages that were executed, in order
        self.rollbacks_run: list[str] = []

    def _save(self) -> None:
        self.d.updated_at = int(time.time())
        self.state.save_deployment(self.d, self.config.path)

    def _set_status(self, status: int, reason: str) -> None:
        self.d.status = t.cast(t.Any, status)  # an int from piped's enum
        self.d.status_reason = reason
        if status in (model_pb.DEPLOYMENT_SUCCESS, model_pb.DEPLOYMENT_FAILURE, model_pb.DEPLOYMENT_CANCELLED):
            self.d.completed_at = int(time.time())
        self._save()
        self.events.deployment_status(self.d)

    async def run(self) -> int:
        """Execute the deployment; return its status (RUNNING when a stage parked it)."""
        if self.d.status in (model_pb.DEPLOYMENT_SUCCESS, model_pb.DEPLOYMENT_FAILURE, model_pb.DEPLOYMENT_CANCELLED):
            return self.d.status
        self._set_status(model_pb.DEPLOYMENT_RUNNING, "The piped started handling this deployment")
        status, reason = model_pb.DEPLOYMENT_SUCCESS, "The deployment was completed successfully"
        deadline = time.monotonic() + self.config.timeout
        last_stage: model_pb.PipelineStage | None = None
        for stage in self.d.stages:
            last_stage = stage
            if stage.status == model_pb.STAGE_SUCCESS or stage.rollback:
                continue
            if stage.status == model_pb.STAGE_CANCELLED:
                status, reason = model_pb.DEPLOYMENT_CANCELLED, f"Deployment was cancelled while executing stage {stage.id}"
                break
            if stage.status == model_pb.STAGE_FAILURE:
                status, reason = model_pb.DEPLOYMENT_FAILURE, f"Failed while executing stage {stage.id}"
                break
            if stage.status == model_pb.STAGE_SKIPPED:
                reason = f"Stage {stage.id} has been already skipped"
                continue
            if stage.status == model_pb.STAGE_EXITED:
                status, reason = model_pb.DEPLOYMENT_SUCCESS, f"Deployment was exited before stage {stage.id}"
                break
            stage_config = self.config.stage_at(stage.index)
            stage_deadline = time.monotonic() + stage_config.timeout if stage_config else None
            result, signal = await self._execute(stage, deadlines=[deadline, stage_deadline], cancellable=True)
            self.service.mark_commands_handled(self.d.id, stage.id)
            if result in (model_pb.STAGE_SUCCESS, model_pb.STAGE_SKIPPED):
                continue
            if result == model_pb.STAGE_EXITED:
                status = model_pb.DEPLOYMENT_SUCCESS
                break
            if result == model_pb.STAGE_CANCELLED:
                status, reason = model_pb.DEPLOYMENT_CANCELLED, f"Cancelled by {self.controls.canceller} while executing stage {stage.id}"
                break
            if result == model_pb.STAGE_FAILURE:
                status = model_pb.DEPLOYMENT_FAILURE
                reason = f"Timed out while executing stage {stage.id}" if signal == "timeout" else f"Failed while executing stage {stage.id}"
                break
            self.events.note(
                f"{validation.PARK}: stage {stage.name} stays RUNNING. piped stops this scheduler and calls ExecuteStage again "
                "about an hour later (or after a restart); run `pipeplug dev --resume` to do that now"
            )
            self._save()
            return model_pb.DEPLOYMENT_RUNNING

        if status in (model_pb.DEPLOYMENT_FAILURE, model_pb.DEPLOYMENT_CANCELLED):
            rollbacks = [s for s in self.d.stages if s.rollback or s.name in ROLLBACK_NAMES]
            if rollbacks:
                self._set_status(model_pb.DEPLOYMENT_ROLLING_BACK, reason)
                for stage in rollbacks:
                    del stage.requires[:]
                    if last_stage is not None:
                        stage.requires.append(last_stage.id)
                    self.rollbacks_run.append(stage.name)
                    await self._execute(stage, deadlines=[], cancellable=False)
        self._set_status(status, reason)
        return status

    async def _execute(self, stage: model_pb.PipelineStage, *, deadlines: list[float | None], cancellable: bool) -> tuple[int, str]:
        """One stage attempt; returns (final status, stop signal: "", "cancel" or "timeout")."""
        attempt = self.state.stage_started(self.d.id, stage)
        sent = model_pb.PipelineStage()
        sent.CopyFrom(stage)  # piped sends the stage as it was before reporting RUNNING
        status, signal, note = await self._attempt(stage, sent, deadlines, cancellable)
        stage.status = t.cast(t.Any, status)  # an int from piped's enum
        if status in COMMITTED:
            stage.completed_at = int(time.time())
        stage.updated_at = int(time.time())
        self.state.stage_finished(attempt, status, note)
        self._save()
        self.events.stage_finished(stage, status, note)
        return status, signal

    async def _attempt(
        self, stage: model_pb.PipelineStage, sent: model_pb.PipelineStage, deadlines: list[float | None], cancellable: bool
    ) -> tuple[int, str, str]:
        target, running = self.sources()
        stage_config = self.config.stage_at(stage.index)
        if stage_config is not None and self._should_skip(stage_config.skip_on):
            return model_pb.STAGE_SKIPPED, "", "skipped by skipOn"
        limits = [d for d in deadlines if d is not None]
        if cancellable and self.controls.cancel.is_set():
            return model_pb.STAGE_CANCELLED, "cancel", "cancelled before it started"
        if limits and min(limits) <= time.monotonic():
            return model_pb.STAGE_FAILURE, "timeout", "the deployment timed out before the stage started"
        stage.status = model_pb.STAGE_RUNNING
        self._save()
        self.events.stage_started(stage, len([r for r in self.state.stage_runs(self.d.id) if r["stage_id"] == stage.id]))
        self.controls.on_stage_running(self.d, stage)
        try:
            plugin = self.registry.for_stage(stage.name)
            if plugin is None:
                return model_pb.STAGE_FAILURE, "", f"no plugin offers stage {stage.name}; piped fails it. Stages offered: {self.registry.offered()}"
            stage_config_bytes = b""
            if self.d.trigger.sync_strategy != common_pb.QUICK_SYNC:
                if stage_config is None:
                    return model_pb.STAGE_FAILURE, "", f"no spec.pipeline.stages[{stage.index}] to take `with` from; piped fails the stage"
                stage_config_bytes = stage_config.with_json
            request = deploy_pb.ExecuteStageRequest(
                input=deploy_pb.ExecutePluginInput(deployment=self.snapshot, stage=sent, stage_config=stage_config_bytes, target_deployment_source=target)
            )
            if running is not None:
                request.input.running_deployment_source.CopyFrom(running)
            call = plugin.deployment.ExecuteStage(request)
            signal = await self._wait(call, limits, cancellable)
            if signal:
                call.cancel()
                what = "the deployment was cancelled" if signal == "cancel" else "it timed out"
                return model_pb.STAGE_CANCELLED, signal, f"{what}; piped cancels the call, ignores the reply and records CANCELLED"
            try:
                response = await call
            except grpc.aio.AioRpcError as exc:
                return model_pb.STAGE_FAILURE, "", await self._call_error(plugin, exc)
            except asyncio.CancelledError:
                raise
            for problem in validation.check_execute_stage_status(response.status):
                self.events.violation(problem)
            if response.status in COMMITTED:
                return response.status, "", response.message
            return model_pb.STAGE_RUNNING, "", response.message
        finally:
            self.controls.on_stage_done(self.d, stage)

    async def _wait(self, call: t.Any, limits: list[float], cancellable: bool) -> str:
        """Wait for the call; return "cancel" or "timeout" if piped's stop signal fires first."""
        finished = asyncio.ensure_future(_settled(call))
        waiters: set[asyncio.Future[t.Any]] = {finished}
        cancel = asyncio.ensure_future(self.controls.cancel.wait()) if cancellable else None
        if cancel is not None:
            waiters.add(cancel)
        timeout = max(0.0, min(limits) - time.monotonic()) if limits else None
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if cancel is not None:
                cancel.cancel()
        if finished.done():
            return ""
        finished.cancel()
        return "cancel" if cancel is not None and self.controls.cancel.is_set() else "timeout"

    async def _call_error(self, plugin: t.Any, exc: grpc.aio.AioRpcError) -> str:
        code = plugin.exited()
        if code is None and exc.code() == grpc.StatusCode.UNAVAILABLE:
            for _ in range(20):  # the connection drops a moment before the exit status is known
                await asyncio.sleep(0.025)
                code = plugin.exited()
                if code is not None:
                    break
        if code is not None:
            return f"plugin {plugin.name} crashed (exit code {code}) during the stage; piped records FAILURE. Its last output:\n{plugin.tail_text()}"
        return f"ExecuteStage failed with {exc.code().name}: {exc.details()}; piped records FAILURE"

    def _should_skip(self, skip_on: t.Any) -> bool:
        """skipOn: every changed file matches ``paths``, or the commit message has one of the prefixes."""
        if not skip_on.paths and not skip_on.commit_message_prefixes:
            return False
        if skip_on.paths and all_match(self.changed_files(), skip_on.paths):
            return True
        message = self.d.trigger.commit.message
        return any(message.startswith(prefix) for prefix in skip_on.commit_message_prefixes)


async def _settled(call: t.Any) -> None:
    with contextlib.suppress(Exception):
        await call
