"""TestClient: every RPC of a plugin with plain Python values in and out, over real gRPC."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import typing as t
import uuid

import attrs
import grpc

from .. import validation
from .. import wire
from .._gen.model import deployment_pb2 as model_pb
from .._gen.plugin import common_pb2 as plugin_common_pb
from .._gen.plugin import deployment_pb2 as deploy_pb
from .._gen.plugin import deployment_pb2_grpc as deploy_grpc
from .._gen.plugin import livestate_pb2 as live_api_pb
from .._gen.plugin import livestate_pb2_grpc as live_grpc
from .._gen.plugin import planpreview_pb2 as preview_api_pb
from .._gen.plugin import planpreview_pb2_grpc as preview_grpc
from ..server import PluginServer
from ..settings import parse_settings
from ..types import ArtifactKind
from ..types import ArtifactVersion
from ..types import DeploymentSource
from ..types import HealthStatus
from ..types import Livestate
from ..types import PlannedStage
from ..types import PlanPreview
from ..types import Resource
from ..types import RequestedStage
from ..types import StageStatus
from ..types import StrategyDecision
from ..types import SyncStatus
from ..types import SyncStrategy
from ._loop import LoopThread
from .fake_piped import FakePiped

if t.TYPE_CHECKING:
    from ..app import App



DEFAULT_APP_ID = "test-app-id"
DEFAULT_APP_NAME = "test-app"
DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class PluginCallError(Exception):
    """The plugin answered an RPC with a gRPC error."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{rpc} failed with {code.name}: {details}")
        self.rpc = rpc
        self.code = code
        self.details = details


class PipedWouldRefuse(AssertionError):
    """The plugin answered with something real piped (or its control plane) would refuse."""

    def __init__(self, rpc: str, violations: t.Sequence[str]) -> None:
        super().__init__(f"{rpc} answered with what piped would not accept:\n" + "\n".join(f"  - {v}" for v in violations))
        self.rpc = rpc
        self.violations = list(violations)


@attrs.frozen
class StageRun:
    """What one ExecuteStage call produced, as a test wants to see it."""

    status: StageStatus
    message: str
    deployment_id: str
    stage_id: str
    #: the stage log as the web UI would show it: (severity, text)
    logs: list[tuple[str, str]]
    #: whether the plugin completed the stage log
    log_completed: bool
    #: the stage's metadata after the call
    metadata: dict[str, str]

    @property
    def log_text(self) -> str:
        """The log lines joined by newlines, for ``in`` checks."""
        return "\n".join(text for _, text in self.logs)


class StageCall:
    """An ExecuteStage call in flight (see :meth:`TestClient.start_stage`)."""

    def __init__(self, client: TestClient, future: t.Any, deployment_id: str, stage_id: str) -> None:
        self._client = client
        self._future = future
        self.deployment_id = deployment_id
        self.stage_id = stage_id

    def result(self, timeout: float | None = 60.0) -> StageRun:
        """Wait for the plugin's answer (bounded by ``timeout`` seconds).

        Raises :class:`PluginCallError` on a gRPC error, CANCELLED after :meth:`cancel`.
        """
        try:
            response = self._future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise TimeoutError(f"ExecuteStage of stage {self.stage_id} did not answer within {timeout}s") from None
        except grpc.FutureCancelledError:
            details = "the test cancelled ExecuteStage; piped records such a stage CANCELLED whatever the plugin answers"
            raise PluginCallError("ExecuteStage", grpc.StatusCode.CANCELLED, details) from None
        except grpc.RpcError as exc:
            raise PluginCallError("ExecuteStage", exc.code(), exc.details() or "") from None
        finally:
            # piped marks the stage's commands handled once ExecuteStage returns, whatever the result
            self._client.piped.mark_commands_handled(self.deployment_id, self.stage_id)
        return self._client._stage_run(response, self.deployment_id, self.stage_id)

    def cancel(self) -> None:
        """Cancel the RPC, as piped does on a UI cancel, a timeout or its own shutdown."""
        self._future.cancel()

    def done(self) -> bool:
        return bool(self._future.done())


def _source_pb(source: DeploymentSource) -> t.Any:
    return plugin_common_pb.DeploymentSource(
        application_directory=source.application_directory,
        commit_hash=source.commit_hash,
        application_config=source.application_config,
        application_config_filename=source.application_config_filename,
        shared_config_directory=source.shared_config_directory,
    )


class TestClient:
    """Call every RPC of a plugin with plain Python values, over real gRPC.

    In-process (``app.test_client()``): the app is served by a PluginServer on
    127.0.0.1 in a background thread. Over loopback (``TestClient(address=...)``):
    against a plugin already started, e.g. by :class:`PluginProcess`. Either way
    the plugin talks to ``piped`` (a :class:`FakePiped`, created when not given),
    answers are checked against piped's rules (:class:`PipedWouldRefuse`), and
    gRPC errors raise :class:`PluginCallError`.

    Required ids and timestamps get realistic defaults, so tests name only
    what they care about. Use it as a context manager (or call :meth:`close`).

    :param name: the plugin's ``spec.plugins[].name`` (default: the app's name);
        over loopback, pass the name the started plugin was given.
    :param config: the plugin's ``config`` from piped's config (in-process only).
    :param deploy_targets: piped's ``deployTargets`` entries ``{"name", "labels"?, "config"}``;
        their names are what deployments list for this plugin by default.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App | None = None,
        *,
        address: str | None = None,
        piped: FakePiped | None = None,
        name: str | None = None,
        config: t.Any = None,
        deploy_targets: t.Sequence[t.Mapping[str, t.Any]] = (),
    ) -> None:
        if (app is None) == (address is None):
            raise TypeError("TestClient needs either an app (served in-process) or the address of a started plugin, not both")
        self.app = app
        self._own_piped = piped is None
        self.piped = piped or FakePiped()
        self._raw_settings: dict[str, t.Any] = {"name": name or (app.name if app else ""), "port": 0}
        if config is not None:
            self._raw_settings["config"] = config
        if deploy_targets:
            self._raw_settings["deployTargets"] = [{"config": None, **d} for d in deploy_targets]
        #: the plugin's name in piped's config: keys deploy targets and plugin metadata
        self.plugin_name = name or (app.name if app else "")
        self.deploy_target_names = [d["name"] for d in deploy_targets]
        self.address = address or ""
        self.server: PluginServer | None = None
        self._loop: LoopThread | None = None
        self._channel: grpc.Channel | None = None
        self._tmp = ""
        self._defined: list[str] | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> TestClient:
        """Start the FakePiped (if owned) and, in-process, the app's server."""
        if self._started:
            return self
        if self._own_piped:
            self.piped.start()
        try:
            if self.app is not None:
                settings = parse_settings(self.app, self._raw_settings, require_port=False)
                self.plugin_name = self.plugin_name or settings.name
                self._loop = LoopThread("pipeplug-test-client")
                self.server = PluginServer(
                    self.app, settings, hosts=("127.0.0.1",), grace_period=1.0, piped_address=self.piped.address, watch_parent=False
                )
                self._loop.run(self.server.start())
                self.address = f"127.0.0.1:{self.server.port}"
            self._channel = grpc.insecure_channel(self.address)
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    def close(self) -> None:
        """Stop everything this client started."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._loop is not None:
            try:
                if self.server is not None:
                    self._loop.run(self.server.stop(0.5))
            finally:
                self._loop.close()
                self._loop = None
        if self._own_piped:
            self.piped.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = ""
        self._started = False

    def __enter__(self) -> TestClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stub(self, module: t.Any, service: str) -> t.Any:
        if not self._started:
            self.start()
        return getattr(module, f"{service}Stub")(self._channel)

    def _call(self, rpc: str, method: t.Any, request: t.Any, timeout: float | None = 60.0) -> t.Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise PluginCallError(rpc, exc.code(), exc.details() or "") from None

    @staticmethod
    def _check(rpc: str, violations: t.Sequence[str]) -> None:
        if violations:
            raise PipedWouldRefuse(rpc, violations)

    # -- building what piped sends ------------------------------------------------------

    def _default_source(self) -> DeploymentSource:
        if not self._tmp:
            self._tmp = tempfile.mkdtemp(prefix="pipeplug-test-client-")
        app_dir = os.path.join(self._tmp, "app")
        os.makedirs(app_dir, exist_ok=True)
        return self.source(app_dir)

    def source(self, application_directory: str, *, commit_hash: str = DEFAULT_COMMIT, config_filename: str = "app.pipecd.yaml") -> DeploymentSource:
        """A DeploymentSource for a directory; its app config is read from ``config_filename`` there, if present."""
        path = os.path.join(application_directory, config_filename)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                raw = f.read()
        else:
            raw = f"apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  name: {DEFAULT_APP_NAME}\n".encode()
        return DeploymentSource(
            application_directory=application_directory,
            commit_hash=commit_hash,
            application_config=raw,
            application_config_filename=config_filename,
        )

    def _target_source(self, source: DeploymentSource | str | None) -> t.Any:
        """piped always sends the target source: default to an empty application directory."""
        if source is None:
            return _source_pb(self._default_source())
        return _source_pb(self.source(source) if isinstance(source, str) else source)

    def _set_running_source(self, field: t.Any, source: DeploymentSource | str | None) -> None:
        """piped leaves the running source unset on an application's first deployment."""
        if source is not None:
            field.CopyFrom(_source_pb(self.source(source) if isinstance(source, str) else source))

    def deployment(self, overrides: t.Mapping[str, t.Any] | t.Any = None, *, deploy_targets: t.Sequence[str] | None = None) -> t.Any:
        """A ``model.Deployment`` as piped sends it, with realistic defaults.

        ``overrides`` is a ``model.Deployment`` (used as is) or a mapping of
        :class:`pipeplug.Deployment` field names (``id``, ``application_id``,
        ``commit_hash``, ``commander``, ``labels``, ...).
        """
        if overrides is not None and not isinstance(overrides, t.Mapping):
            return overrides
        values = dict(overrides or {})
        now = int(time.time())
        targets = list(self.deploy_target_names if deploy_targets is None else deploy_targets)
        pb = model_pb.Deployment(
            id=values.pop("id", None) or str(uuid.uuid4()),
            application_id=values.pop("application_id", DEFAULT_APP_ID),
            application_name=values.pop("application_name", DEFAULT_APP_NAME),
            piped_id=values.pop("piped_id", self.piped.piped_id),
            project_id=values.pop("project_id", "test-project"),
            labels=values.pop("labels", {}),
            summary=values.pop("summary", ""),
            running_commit_hash=values.pop("running_commit_hash", ""),
            status=model_pb.DEPLOYMENT_RUNNING,
            created_at=values.pop("created_at", now),
            updated_at=now,
        )
        pb.git_path.repo.id = "test-repo"
        pb.git_path.repo.remote = values.pop("repository_url", "https://example.com/test/repo.git")
        pb.git_path.repo.branch = values.pop("commit_branch", "main")
        pb.git_path.path = "app"
        pb.git_path.config_filename = "app.pipecd.yaml"
        trigger = pb.trigger
        trigger.commit.hash = values.pop("commit_hash", DEFAULT_COMMIT)
        trigger.commit.message = values.pop("commit_message", "Update the app")
        trigger.commit.author = values.pop("commit_author", "tester")
        trigger.commit.branch = pb.git_path.repo.branch
        trigger.commit.created_at = now
        trigger.commander = values.pop("commander", "")
        trigger.timestamp = now
        trigger.sync_strategy = t.cast(t.Any, int(values.pop("sync_strategy", SyncStrategy.PIPELINE)))
        by_plugin = values.pop("deploy_targets_by_plugin", None)
        if by_plugin is None:
            by_plugin = {self.plugin_name: targets} if self.plugin_name else {}
        for plugin, names in by_plugin.items():
            pb.deploy_targets_by_plugin[plugin].deploy_targets.extend(names)
        if values:
            raise TypeError(f"unknown deployment field(s): {', '.join(sorted(values))}")
        return pb

    def _plan_input(self, deployment: t.Any, target_source: t.Any, running_source: t.Any, deploy_targets: t.Any) -> t.Any:
        inp = deploy_pb.PlanPluginInput(deployment=self.deployment(deployment, deploy_targets=deploy_targets))
        inp.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(inp.running_deployment_source, running_source)
        return inp

    # -- DeploymentService ---------------------------------------------------------------

    def _deploy(self) -> t.Any:
        return self._stub(deploy_grpc, "DeploymentService")

    def fetch_defined_stages(self) -> list[str]:
        """FetchDefinedStages: every stage name the plugin can emit."""
        response = self._call("FetchDefinedStages", self._deploy().FetchDefinedStages, deploy_pb.FetchDefinedStagesRequest())
        self._defined = list(response.stages)
        return list(response.stages)

    def _defined_stages(self) -> list[str]:
        return self._defined if self._defined is not None else self.fetch_defined_stages()

    def determine_versions(
        self, *, deployment: t.Any = None, target_source: t.Any = None, running_source: t.Any = None, deploy_targets: t.Sequence[str] | None = None
    ) -> list[ArtifactVersion]:
        """DetermineVersions: the artifact versions of the target source."""
        request = deploy_pb.DetermineVersionsRequest(input=self._plan_input(deployment, target_source, running_source, deploy_targets))
        response = self._call("DetermineVersions", self._deploy().DetermineVersions, request)
        self._check("DetermineVersions", validation.check_versions(response.versions))
        return [ArtifactVersion(version=v.version, name=v.name, url=v.url, kind=ArtifactKind(v.kind)) for v in response.versions]

    def determine_strategy(
        self, *, deployment: t.Any = None, target_source: t.Any = None, running_source: t.Any = None, deploy_targets: t.Sequence[str] | None = None
    ) -> StrategyDecision | None:
        """DetermineStrategy: the plugin's choice, or None when it answers ``unsupported``."""
        request = deploy_pb.DetermineStrategyRequest(input=self._plan_input(deployment, target_source, running_source, deploy_targets))
        response = self._call("DetermineStrategy", self._deploy().DetermineStrategy, request)
        self._check("DetermineStrategy", validation.check_strategy(response))
        if response.unsupported:
            return None
        return StrategyDecision(SyncStrategy(response.sync_strategy), response.summary)

    def build_pipeline_sync_stages(self, stages: t.Sequence[t.Mapping[str, t.Any] | RequestedStage], *, rollback: bool = True) -> list[PlannedStage]:
        """BuildPipelineSyncStages for ``spec.pipeline.stages`` entries ``{"name", "index"?, "desc"?, "with"?}``.

        ``index`` defaults to the entry's position, as piped numbers the pipeline.
        """
        request = deploy_pb.BuildPipelineSyncStagesRequest(rollback=rollback)
        for position, stage in enumerate(stages):
            if isinstance(stage, RequestedStage):
                name, index, desc, config = stage.name, stage.index, stage.desc, stage.config
            else:
                name, index, desc = stage["name"], stage.get("index", position), stage.get("desc", "")
                config = stage.get("with")
            request.stages.add(name=name, index=index, desc=desc, config=json.dumps(config).encode() if config is not None else b"")
        response = self._call("BuildPipelineSyncStages", self._deploy().BuildPipelineSyncStages, request)
        requested = [s.index for s in request.stages]
        self._check(
            "BuildPipelineSyncStages",
            validation.check_pipeline_sync_stages(response.stages, requested, defined_stages=self._defined_stages()),
        )
        return [wire.stage_from_pb(s) for s in response.stages]

    def build_quick_sync_stages(self, *, rollback: bool = True) -> list[PlannedStage]:
        """BuildQuickSyncStages (the request carries only ``rollback``, as with piped)."""
        response = self._call("BuildQuickSyncStages", self._deploy().BuildQuickSyncStages, deploy_pb.BuildQuickSyncStagesRequest(rollback=rollback))
        self._check("BuildQuickSyncStages", validation.check_quick_sync_stages(response.stages, defined_stages=self._defined_stages()))
        return [wire.stage_from_pb(s) for s in response.stages]

    def start_stage(
        self,
        name: str,
        with_: t.Any = None,
        *,
        deployment: t.Any = None,
        stage_id: str | None = None,
        index: int = 0,
        rollback: bool = False,
        status: StageStatus = StageStatus.NOT_STARTED_YET,
        metadata: t.Mapping[str, str] | None = None,
        deploy_targets: t.Sequence[str] | None = None,
        target_source: DeploymentSource | str | None = None,
        running_source: DeploymentSource | str | None = None,
    ) -> StageCall:
        """Send ExecuteStage and return at once, so the test can approve, skip or cancel meanwhile.

        ``with_`` is the stage's ``with:`` block (sent as JSON; None sends
        nothing, as for a quick sync). ``status=RUNNING`` is what piped sends
        when it re-executes a stage after a crash. ``metadata`` seeds the
        stage's metadata in the FakePiped, as piped does from the plan.
        """
        deployment_pb = self.deployment(deployment, deploy_targets=deploy_targets)
        now = int(time.time())
        stage = model_pb.PipelineStage(
            id=stage_id or str(uuid.uuid4()),
            name=name,
            index=index,
            rollback=rollback,
            status=t.cast(t.Any, int(status)),
            metadata=dict(metadata or {}),
            available_operation=model_pb.MANUAL_OPERATION_NONE,
            created_at=now,
            updated_at=now,
        )
        deployment_pb.stages.append(stage)
        if metadata:
            self.piped.set_stage_metadata(deployment_pb.id, stage.id, metadata)
        inp = deploy_pb.ExecutePluginInput(deployment=deployment_pb, stage=stage)
        inp.stage_config = json.dumps(with_).encode() if with_ is not None else b""
        inp.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(inp.running_deployment_source, running_source)
        future = self._deploy().ExecuteStage.future(deploy_pb.ExecuteStageRequest(input=inp))
        return StageCall(self, future, deployment_pb.id, stage.id)

    def execute_stage(self, name: str, with_: t.Any = None, *, timeout: float | None = 60.0, **options: t.Any) -> StageRun:
        """ExecuteStage and wait for the result; see :meth:`start_stage` for the options."""
        return self.start_stage(name, with_, **options).result(timeout)

    def _stage_run(self, response: t.Any, deployment_id: str, stage_id: str) -> StageRun:
        self._check("ExecuteStage", validation.check_execute_stage_status(response.status))
        return StageRun(
            status=StageStatus(response.status),
            message=response.message,
            deployment_id=deployment_id,
            stage_id=stage_id,
            logs=self.piped.log_lines(deployment_id, stage_id),
            log_completed=self.piped.log_completed(deployment_id, stage_id),
            metadata=self.piped.stage_metadata(deployment_id, stage_id),
        )

    # -- LivestateService and PlanPreviewService ------------------------------------------

    def get_livestate(
        self,
        *,
        deploy_targets: t.Sequence[str] | None = None,
        deploy_source: DeploymentSource | str | None = None,
        application_id: str = DEFAULT_APP_ID,
        application_name: str = DEFAULT_APP_NAME,
    ) -> Livestate:
        """GetLivestate for one application, as piped's minute-by-minute reporter asks."""
        request = live_api_pb.GetLivestateRequest(
            piped_id=self.piped.piped_id,
            application_id=application_id,
            application_name=application_name,
            deploy_targets=list(self.deploy_target_names if deploy_targets is None else deploy_targets),
        )
        request.deploy_source.CopyFrom(self._target_source(deploy_source))
        response = self._call("GetLivestate", self._stub(live_grpc, "LivestateService").GetLivestate, request)
        self._check("GetLivestate", validation.check_livestate(response))
        resources = [
            Resource(
                id=r.id,
                name=r.name,
                resource_type=r.resource_type,
                health=HealthStatus(r.health_status),
                health_description=r.health_description,
                parent_ids=tuple(r.parent_ids),
                metadata=dict(r.resource_metadata),
                deploy_target=r.deploy_target,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in response.application_live_state.resources
        ]
        sync = response.sync_state
        return Livestate(resources, SyncStatus(sync.status), sync.short_reason, sync.reason)

    def get_plan_preview(
        self,
        *,
        deploy_targets: t.Sequence[str] | None = None,
        target_source: DeploymentSource | str | None = None,
        running_source: DeploymentSource | str | None = None,
        application_id: str = DEFAULT_APP_ID,
        application_name: str = DEFAULT_APP_NAME,
    ) -> list[PlanPreview]:
        """GetPlanPreview, as piped asks for ``pipectl plan-preview``."""
        request = preview_api_pb.GetPlanPreviewRequest(
            application_id=application_id,
            application_name=application_name,
            piped_id=self.piped.piped_id,
            deploy_targets=list(self.deploy_target_names if deploy_targets is None else deploy_targets),
        )
        request.target_deployment_source.CopyFrom(self._target_source(target_source))
        self._set_running_source(request.running_deployment_source, running_source)
        response = self._call("GetPlanPreview", self._stub(preview_grpc, "PlanPreviewService").GetPlanPreview, request)
        return [
            PlanPreview(r.summary, deploy_target=r.deploy_target, no_change=r.no_change, details=bytes(r.details), diff_language=r.diff_language)
            for r in response.results
        ]
