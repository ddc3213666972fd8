"""Plain Python values that cross the boundary between user handlers and piped.

Handlers never see generated protobuf classes unless they ask for them: every
value here is a small frozen attrs class (or an enum from :mod:`pipeplug.enums`)
that the servicers convert to and from the wire messages.

The framework imports this module only when a call needs one of these classes,
not to start: creating them (and loading attrs) is a large share of an import
of pipeplug, and the first call piped makes, FetchDefinedStages, needs none.
"""

from __future__ import annotations

import typing as t

import attrs

from .enums import ArtifactKind as ArtifactKind
from .enums import HealthStatus as HealthStatus
from .enums import ManualOperation as ManualOperation
from .enums import StageStatus as StageStatus
from .enums import SyncStatus as SyncStatus
from .enums import SyncStrategy as SyncStrategy


class _Value:
    """repr, == and hash of the value classes below, written once instead of compiled per class.

    attrs generates and compiles these three methods for every class, which was
    ~40% of this module's import time, paid by every plugin start. They behave as
    attrs' would: repr shows the fields with ``repr=True``; == and hash use the
    fields with ``eq=True``; values of different classes are never equal. Each
    class below is ``@attrs.frozen(repr=False, eq=False)`` and subclasses this.
    """

    __slots__ = ()
    __attrs_attrs__: t.ClassVar[t.Any]  # set by attrs on each subclass

    def __repr__(self) -> str:
        fields = ", ".join(f"{a.name}={getattr(self, a.name)!r}" for a in attrs.fields(type(self)) if a.repr)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _compared(self) == _compared(other)

    def __hash__(self) -> int:
        return hash((type(self), *_compared(self)))


def _compared(value: _Value) -> tuple[t.Any, ...]:
    return tuple(getattr(value, a.name) for a in attrs.fields(type(value)) if a.eq)


@attrs.frozen(repr=False, eq=False)
class StageResult(_Value):
    """A stage outcome with a message.

    Piped never shows the message in the web UI, so pipeplug also writes a
    FAILURE message to the stage log.
    """

    status: StageStatus
    message: str = ""


@attrs.frozen(repr=False, eq=False)
class StrategyDecision(_Value):
    """The answer of an ``@app.strategy`` handler when a summary is wanted."""

    strategy: SyncStrategy
    summary: str = ""


@attrs.frozen(repr=False, eq=False)
class ArtifactVersion(_Value):
    """One artifact a deployment ships, returned by ``@app.versions``."""

    version: str
    name: str = ""
    url: str = ""
    kind: ArtifactKind = ArtifactKind.UNKNOWN


@attrs.frozen(repr=False, eq=False)
class RequestedStage(_Value):
    """One stage of ``spec.pipeline.stages`` that piped asks this plugin to plan."""

    name: str
    index: int
    desc: str = ""
    #: the stage's ``with:`` block, decoded from JSON (``{}`` when absent)
    config: t.Any = attrs.field(factory=dict)


@attrs.frozen(repr=False, eq=False)
class PlannedStage(_Value):
    """A stage returned by ``@app.pipeline_stages`` or ``@app.quick_sync_stages``.

    ``index`` must be one of the requested indexes for pipeline stages; quick
    sync stages always get index 0.
    """

    name: str
    index: int = 0
    desc: str = ""
    rollback: bool = False
    metadata: t.Mapping[str, str] = attrs.field(factory=dict)
    available_operation: ManualOperation = ManualOperation.NONE
    authorized_operators: t.Sequence[str] = ()


@attrs.frozen(repr=False, eq=False)
class DeployTarget(_Value):
    """A deploy target of this plugin, from piped's ``spec.plugins[].deployTargets``."""

    name: str
    labels: t.Mapping[str, str] = attrs.field(factory=dict)
    #: the target's ``config``, structured into the App's ``deploy_target_config`` class
    config: t.Any = None


@attrs.frozen(repr=False, eq=False)
class DeploymentSource(_Value):
    """A checkout of the application at one commit, prepared by piped on its host."""

    application_directory: str
    commit_hash: str = ""
    #: raw bytes of the app config file as committed (YAML)
    application_config: bytes = b""
    application_config_filename: str = ""
    shared_config_directory: str = ""

    def load_app_config(self) -> dict[str, t.Any]:
        """Parse the app config YAML (``{}`` when empty)."""
        import yaml  # only handlers that read the app config pay for the YAML parser

        data = yaml.safe_load(self.application_config or b"") or {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.application_config_filename or 'app config'}: expected a mapping at the top level")
        return data


@attrs.frozen(repr=False, eq=False)
class Resource(_Value):
    """One live resource reported by ``@app.livestate``."""

    id: str
    name: str
    resource_type: str = ""
    health: HealthStatus = HealthStatus.HEALTHY
    health_description: str = ""
    parent_ids: t.Sequence[str] = ()
    metadata: t.Mapping[str, str] = attrs.field(factory=dict)
    deploy_target: str = ""
    #: unix seconds; 0 means "now" (piped's control plane rejects 0)
    created_at: int = 0
    updated_at: int = 0


@attrs.frozen(repr=False, eq=False)
class Livestate(_Value):
    """The answer of ``@app.livestate``: resources plus the sync verdict."""

    resources: t.Sequence[Resource] = ()
    sync_status: SyncStatus = SyncStatus.UNKNOWN
    short_reason: str = ""
    reason: str = ""


@attrs.frozen(repr=False, eq=False)
class PlanPreview(_Value):
    """One result of ``@app.plan_preview``: what a deployment would change."""

    summary: str
    deploy_target: str = ""
    no_change: bool = False
    details: str | bytes = b""
    #: language of ``details`` for rendering; empty means "diff"
    diff_language: str = ""


@attrs.frozen(repr=False, eq=False)
class Deployment(_Value):
    """A read-only view of the deployment piped is planning or executing.

    ``proto`` keeps the whole ``model.Deployment`` message for anything not
    surfaced here.
    """

    id: str
    application_id: str
    application_name: str
    piped_id: str = ""
    project_id: str = ""
    labels: t.Mapping[str, str] = attrs.field(factory=dict)
    commit_hash: str = ""
    commit_message: str = ""
    commit_author: str = ""
    commit_branch: str = ""
    #: the user who triggered the deployment from the UI or pipectl, if any
    commander: str = ""
    summary: str = ""
    running_commit_hash: str = ""
    sync_strategy: SyncStrategy = SyncStrategy.AUTO
    #: deploy target names per plugin name
    deploy_targets_by_plugin: t.Mapping[str, t.Sequence[str]] = attrs.field(factory=dict)
    created_at: int = 0
    #: the git remote of the application's repository (``git_path.repo.remote``)
    repository_url: str = ""
    proto: t.Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def triggered_by(self) -> str:
        """The commander, or the commit author when nobody pressed a button."""
        return self.commander or self.commit_author
