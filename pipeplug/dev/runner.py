"""``pipeplug dev`` proper: trigger, plan and execute one deployment, or resume one.

A new run snapshots the application directory (its content hash plays the
commit hash), creates a PENDING deployment as piped's trigger would, plans it
and schedules it. ``--resume`` picks the app's unfinished deployment and
hands it to a new scheduler, as a restarted piped does after a hard kill: the
RUNNING stage is executed again, with its metadata intact.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import time
import typing as t
import uuid

import attrs

from .._gen.model import common_pb2 as common_pb
from .._gen.model import deployment_pb2 as model_pb
from .._gen.plugin import deployment_pb2 as deploy_pb
from . import planner
from .appconfig import AppConfigError
from .appconfig import parse_app_config
from .scheduler import Controls
from .scheduler import Scheduler
from .session import DevError
from .session import Options
from .session import Session
from .sources import Snapshot
from .sources import changed_files
from .sources import open_snapshot
from .ui import ARTIFACT_KIND
from .ui import DEPLOYMENT_STATUS
from .ui import STAGE_STATUS
from .ui import STRATEGY
from .ui import Output

SHARED_NOTIFICATION_KEY = "DeploymentNotification"


@attrs.frozen
class DeployOptions:
    resume: bool = False
    #: None: prompt (or wait for ``pipeplug dev approve``); () with approve=True: approve as the default user
    approve_as: tuple[str, ...] = ()
    approve: bool = False
    #: "" (let the planner decide), "QUICK_SYNC" or "PIPELINE": the web UI's sync button
    sync: str = ""
    commit_message: str = "pipeplug dev"
    interactive: bool = False


def approvable(stage: model_pb.PipelineStage) -> bool:
    """piped's UI offers Approve on WAIT_APPROVAL stages and stages planned with MANUAL_OPERATION_APPROVE."""
    return stage.name == "WAIT_APPROVAL" or stage.available_operation == model_pb.MANUAL_OPERATION_APPROVE


class Approvals:
    """Turns --approve / --approve-as / Enter in the terminal into APPROVE_STAGE commands."""

    def __init__(self, session: Session, out: Output, options: DeployOptions) -> None:
        self.session = session
        self.out = out
        self.options = options
        self.pending: tuple[model_pb.Deployment, model_pb.PipelineStage] | None = None

    def stage_running(self, deployment: model_pb.Deployment, stage: model_pb.PipelineStage) -> None:
        if not approvable(stage):
            return
        every = f"{self.session.options.command_interval:g}s"
        if self.options.approve or self.options.approve_as:
            users = list(self.options.approve_as) or [stage.authorized_operators[0] if stage.authorized_operators else self.session.options.who]
            for user in users:
                self.approve(deployment, stage, user, f"approved {stage.name} as {user} (plugins see it within {every}, like piped's command store)")
            return
        self.pending = (deployment, stage)
        if self.options.interactive:
            hint = f"{stage.name} waits for approval: press Enter to approve as {self.session.options.who}, or type a name and Enter (Ctrl-C cancels)"
        else:
            hint = f"{stage.name} waits for approval: run `pipeplug dev approve --state {self.session.state.path}` in another terminal"
        self.out.waiting_for_approval(stage, hint)

    def stage_done(self, deployment: model_pb.Deployment, stage: model_pb.PipelineStage) -> None:
        if self.pending is not None and self.pending[1].id == stage.id:
            self.pending = None

    def typed(self, line: str) -> None:
        """A line from the terminal: approve the waiting stage as the typed name (or the default user)."""
        if self.pending is None:
            return
        deployment, stage = self.pending
        user = line.strip() or self.session.options.who
        self.approve(deployment, stage, user, f"approved {stage.name} as {user}")

    def approve(self, deployment: model_pb.Deployment, stage: model_pb.PipelineStage, user: str, message: str) -> None:
        if stage.authorized_operators and user not in stage.authorized_operators:
            self.out.error(
                f"the control plane would refuse {user}'s approval of {stage.name}: only {', '.join(stage.authorized_operators)} may approve it"
            )
            return
        if user in self.session.state.commanders(deployment.id, stage.id):
            return  # already approved by this user (e.g. before a resume)
        assert self.session.service is not None
        self.session.service.approve(deployment.id, stage.id, user)
        self.out.note(message)


async def deploy(options: Options, deploy_options: DeployOptions, out: Output) -> int:
    """Run one deployment (or resume one); return the process exit code."""
    session = Session(options, out)
    loop = asyncio.get_running_loop()
    controls = Controls()
    phase = {"name": "starting"}
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1 or phase["name"] == "starting":
            out.close()
            out.error("stopped at once; plugins killed. The deployment keeps its state: continue it with --resume")
            session.kill_now()
            os._exit(130)
        if phase["name"] == "rollback":
            out.warn("Ctrl-C: rollback cannot be cancelled (as in piped); press Ctrl-C again to stop at once")
            return
        controls.canceller = options.who
        controls.cancel.set()
        out.warn("Ctrl-C: cancelling the deployment like the web UI's cancel button (rollback follows); Ctrl-C again stops at once")

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        async with session:
            out.start()
            approvals = Approvals(session, out, deploy_options)
            controls.on_stage_running = approvals.stage_running
            controls.on_stage_done = approvals.stage_done
            if deploy_options.interactive:
                _read_terminal(loop, approvals.typed)
            deployment, target, running, config, resumed = _prepare(session, deploy_options, out)
            session.deployment_id = deployment.id
            work_dir = session.state.work_dir(deployment.id)
            assert session.service is not None and session.registry is not None
            session.service.open_deployment(deployment)
            try:
                if deployment.status == model_pb.DEPLOYMENT_PENDING:
                    phase["name"] = "planning"
                    plugin_input = deploy_pb.PlanPluginInput(deployment=deployment, target_deployment_source=session.source(target, config.filename, work_dir))
                    if running is not None:
                        plugin_input.running_deployment_source.CopyFrom(session.source(running, _running_filename(session, deployment, config), work_dir))
                    result = await planner.plan(deployment, config, session.registry, plugin_input, running.commit_hash if running else "", session)
                    planner.apply_plan(deployment, result, running.commit_hash if running else "")
                    if controls.cancel.is_set():
                        deployment.status = model_pb.DEPLOYMENT_CANCELLED
                        deployment.status_reason = f"Deployment was cancelled by {controls.canceller} while planning"
                        deployment.completed_at = int(time.time())
                    session.state.save_deployment(deployment, config.path)
                    for stage in deployment.stages:
                        session.state.seed_stage_metadata(deployment.id, stage)
                    session.service.open_deployment(deployment)
                    if deployment.status == model_pb.DEPLOYMENT_PLANNED:
                        out.planned(deployment)
                    else:
                        out.error(deployment.status_reason)
                scheduler = None
                if deployment.status in (model_pb.DEPLOYMENT_PLANNED, model_pb.DEPLOYMENT_RUNNING, model_pb.DEPLOYMENT_ROLLING_BACK):
                    if resumed:
                        out.planned(deployment)
                    phase["name"] = "executing"

                    def sources() -> tuple[t.Any, t.Any]:
                        target_source = session.source(target, config.filename, work_dir)
                        running_source = session.source(running, _running_filename(session, deployment, config), work_dir) if running else None
                        return target_source, running_source

                    scheduler = Scheduler(
                        deployment, config, session.registry, session.service, session.state, _SchedulerEvents(session, phase), controls,
                        sources, lambda: changed_files(running, target),
                    )  # fmt: skip
                    await scheduler.run()
            finally:
                session.service.close_deployment(deployment.id)
                shutil.rmtree(work_dir, ignore_errors=True)
            record = build_record(session, deployment, scheduler.rollbacks_run if scheduler else [], resumed)
            out.summary(record)
            if deployment.status == model_pb.DEPLOYMENT_RUNNING:
                out.note("the deployment is parked RUNNING: rerun with --resume to execute the stage again")
            return 0 if deployment.status == model_pb.DEPLOYMENT_SUCCESS else 1
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        out.close()


class _SchedulerEvents:
    def __init__(self, session: Session, phase: dict[str, str]) -> None:
        self.session = session
        self.out = session.out
        self.phase = phase

    def note(self, text: str) -> None:
        self.out.warn(text)

    def violation(self, text: str) -> None:
        self.session.violation(text)

    def deployment_status(self, deployment: model_pb.Deployment) -> None:
        if deployment.status == model_pb.DEPLOYMENT_ROLLING_BACK:
            self.phase["name"] = "rollback"
        self.out.deployment_status(deployment)

    def stage_started(self, stage: model_pb.PipelineStage, attempt: int) -> None:
        self.out.stage_started(stage, attempt)

    def stage_finished(self, stage: model_pb.PipelineStage, status: int, note: str) -> None:
        self.out.stage_finished(stage, status, note)


def _prepare(session: Session, options: DeployOptions, out: Output) -> tuple[model_pb.Deployment, Snapshot, Snapshot | None, t.Any, bool]:
    """The deployment to work on, its target and running snapshots, and the app config at its commit."""
    state = session.state
    unfinished = state.last_deployment(session.app_id, unfinished=True)
    if options.resume:
        if unfinished is None:
            raise DevError(f"nothing to resume: {session.config.path} has no unfinished deployment in {state.path}")
        target = open_snapshot(state.snapshots_dir, unfinished.trigger.commit.hash)
        if target is None:
            raise DevError(f"cannot resume deployment {unfinished.id}: its snapshot {unfinished.trigger.commit.hash[:12]} is gone from {state.snapshots_dir}")
        config = _config_at(target, session.config)
        session.check_routing(config)
        running_hash = unfinished.running_commit_hash or _last_success_hash(session)
        running = open_snapshot(state.snapshots_dir, running_hash) if running_hash else None
        out.note(f"resuming deployment {unfinished.id[:8]} ({DEPLOYMENT_STATUS[unfinished.status]}) at commit {target.commit_hash[:12]}, as a restarted piped would")
        return unfinished, target, running, config, True
    session.check_routing()
    if unfinished is not None:
        out.warn(f"deployment {unfinished.id[:8]} of this app was interrupted ({DEPLOYMENT_STATUS[unfinished.status]}); starting a new one (use --resume to continue it)")
    target = session.snapshot()
    running_hash = _last_success_hash(session)
    running = open_snapshot(state.snapshots_dir, running_hash) if running_hash else None
    deployment = _new_deployment(session, target, options)
    if session.config.notification_json:
        state.put_shared_metadata(deployment.id, SHARED_NOTIFICATION_KEY, session.config.notification_json)
    state.save_deployment(deployment, session.config.path)
    out.note(f"deployment {deployment.id[:8]} of {session.app_name}: commit {target.commit_hash[:12]} (content hash of {session.config.directory})"
             + (f", running commit {running_hash[:12]}" if running_hash else ", first deployment"))  # fmt: skip
    return deployment, target, running, session.config, False


def _config_at(snapshot: Snapshot, current: t.Any) -> t.Any:
    path = os.path.join(snapshot.tree, current.filename)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        config = parse_app_config(raw, path)
    except (OSError, AppConfigError) as exc:
        raise DevError(f"cannot read the app config of the deployment's commit ({path}): {exc}") from None
    return attrs.evolve(config, path=current.path)


def _last_success_hash(session: Session) -> str:
    last = session.state.last_successful(session.app_id)
    return last.trigger.commit.hash if last else ""


def _running_filename(session: Session, deployment: model_pb.Deployment, config: t.Any) -> str:
    last = session.state.last_successful(session.app_id)
    return last.git_path.config_filename if last is not None and last.git_path.config_filename else config.filename


def _new_deployment(session: Session, target: Snapshot, options: DeployOptions) -> model_pb.Deployment:
    """A PENDING deployment, shaped as piped's trigger builds one."""
    now = int(time.time())
    config = session.config
    d = model_pb.Deployment(
        id=str(uuid.uuid4()),
        application_id=session.app_id,
        application_name=session.app_name,
        piped_id="pipeplug-dev",
        project_id="local",
        labels=dict(config.labels),
        status=model_pb.DEPLOYMENT_PENDING,
        status_reason="The deployment is waiting to be planned",
        created_at=now,
        updated_at=now,
    )
    d.git_path.repo.id = "local"
    d.git_path.repo.remote = config.directory
    d.git_path.repo.branch = "local"
    d.git_path.path = "."
    d.git_path.config_filename = config.filename
    d.trigger.commit.hash = target.commit_hash
    d.trigger.commit.message = options.commit_message
    d.trigger.commit.author = session.options.who
    d.trigger.commit.branch = "local"
    d.trigger.commit.created_at = now
    d.trigger.timestamp = now
    if options.sync:
        d.trigger.sync_strategy = t.cast(t.Any, common_pb.SyncStrategy.Value(options.sync))
        d.trigger.commander = session.options.who
        d.trigger.strategy_summary = f"Forced {options.sync} by {session.options.who} (the web UI's sync button)"
    for plugin, names in session.targets_by_plugin().items():
        d.deploy_targets_by_plugin[plugin].deploy_targets.extend(names)
    if config.notification_json:
        d.metadata_v2.shared.keyValues[SHARED_NOTIFICATION_KEY] = config.notification_json
    return d


def build_record(session: Session, d: model_pb.Deployment, rollbacks_run: list[str], resumed: bool) -> dict[str, t.Any]:
    """The ``--json`` record: strategy, versions, stages with status and duration, rollbacks, final status."""
    runs = session.state.stage_runs(d.id)
    stages = []
    for s in d.stages:
        attempts = [r for r in runs if r["stage_id"] == s.id]
        last = attempts[-1] if attempts else None
        duration = (last["finished_at"] - last["started_at"]) if last and last["finished_at"] else None
        stages.append(
            {
                "id": s.id,
                "name": s.name,
                "index": s.index,
                "rollback": s.rollback,
                "status": STAGE_STATUS.get(s.status, str(s.status)),
                "duration_seconds": round(duration, 3) if duration is not None else None,
                "attempts": len(attempts),
                "requires": list(s.requires),
                "note": last["note"] if last else "",
                "metadata": session.state.stage_metadata(d.id, s.id),
            }
        )
    return {
        "deployment_id": d.id,
        "application_id": d.application_id,
        "application_name": d.application_name,
        "status": DEPLOYMENT_STATUS.get(d.status, str(d.status)),
        "status_reason": d.status_reason,
        "strategy": STRATEGY.get(d.trigger.sync_strategy, str(d.trigger.sync_strategy)),
        "strategy_summary": d.summary,
        "commit_hash": d.trigger.commit.hash,
        "running_commit_hash": d.running_commit_hash,
        "versions": [{"kind": ARTIFACT_KIND.get(v.kind, str(v.kind)), "name": v.name, "version": v.version, "url": v.url} for v in d.versions],
        "stages": stages,
        "rollback_stages_run": rollbacks_run,
        "violations": session.state.violations(d.id),
        "resumed": resumed,
        "state_file": session.state.path,
    }


def _read_terminal(loop: asyncio.AbstractEventLoop, handle: t.Callable[[str], None]) -> None:
    """Lines typed in the terminal go to ``handle`` on the loop (a daemon thread, so exit never waits for it)."""

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(handle, line)

    threading.Thread(target=read, name="pipeplug-dev-stdin", daemon=True).start()
