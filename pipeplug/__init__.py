"""pipeplug: write PipeCD v1 plugins in Python, Flask-style.

Only the names below are public; everything else may change.

The names load on first use (PEP 562), so ``import pipeplug`` costs nothing
and importing a submodule such as the generated ``pipeplug._gen`` code does not
pull in the framework.
"""

from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:
    from .app import App as App
    from .approval import CommandType as CommandType
    from .approval import StageCommand as StageCommand
    from .configs import ConfigError as ConfigError
    from .context import Context as Context
    from .enums import ArtifactKind as ArtifactKind
    from .enums import HealthStatus as HealthStatus
    from .enums import ManualOperation as ManualOperation
    from .enums import StageStatus as StageStatus
    from .enums import SyncStatus as SyncStatus
    from .enums import SyncStrategy as SyncStrategy
    from .errors import PipeplugError as PipeplugError
    from .errors import StageFailed as StageFailed
    from .handlers import RegistrationError as RegistrationError
    from .logconfig import secret as secret
    from .piped import PipedError as PipedError
    from .process import ProcessError as ProcessError
    from .process import ProcessResult as ProcessResult
    from .stagelog import StageLog as StageLog
    from .types import ArtifactVersion as ArtifactVersion
    from .types import Deployment as Deployment
    from .types import DeploymentSource as DeploymentSource
    from .types import DeployTarget as DeployTarget
    from .types import Livestate as Livestate
    from .types import PlannedStage as PlannedStage
    from .types import PlanPreview as PlanPreview
    from .types import Resource as Resource
    from .types import RequestedStage as RequestedStage
    from .types import StageResult as StageResult
    from .types import StrategyDecision as StrategyDecision
    from .units import Percentage as Percentage
    from .units import Replicas as Replicas

__version__ = "0.1.0"

__all__ = [
    "App", "ArtifactKind", "ArtifactVersion", "CommandType", "ConfigError", "Context", "Deployment",
    "DeploymentSource", "DeployTarget", "HealthStatus", "Livestate", "ManualOperation", "Percentage", "PipedError", "PipeplugError",
    "PlannedStage", "PlanPreview", "ProcessError", "ProcessResult", "RegistrationError", "Replicas", "RequestedStage", "Resource", "StageCommand", "StageFailed",
    "StageLog", "StageResult", "StageStatus", "StrategyDecision", "SyncStatus", "SyncStrategy", "secret",
]  # fmt: skip

#: the submodule that defines each public name
_SOURCES = {
    "App": "app",
    "ConfigError": "configs",
    "CommandType": "approval",
    "Context": "context",
    "StageCommand": "approval",
    "PipeplugError": "errors",
    "StageFailed": "errors",
    "RegistrationError": "handlers",
    "secret": "logconfig",
    "PipedError": "piped",
    "ProcessError": "process",
    "ProcessResult": "process",
    "StageLog": "stagelog",
    "Percentage": "units",
    "Replicas": "units",
    **dict.fromkeys(("ArtifactKind", "HealthStatus", "ManualOperation", "StageStatus", "SyncStatus", "SyncStrategy"), "enums"),
    **dict.fromkeys(
        (
            "ArtifactVersion", "Deployment", "DeploymentSource", "DeployTarget", "Livestate", "PlannedStage",
            "PlanPreview", "Resource", "RequestedStage", "StageResult", "StrategyDecision",
        ),
        "types",
    ),
}  # fmt: skip

if not t.TYPE_CHECKING:  # type checkers read the imports above, and so flag misspelt names

    def __getattr__(name: str) -> t.Any:
        source = _SOURCES.get(name)
        if source is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
        globals()[name] = value  # later lookups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
