"""pipeplug: write PipeCD v1 plugins in Python, Flask-style.

Only the names below are public; everything else may change.
"""

from .app import App as App
from .configs import ConfigError as ConfigError
from .context import CommandType as CommandType
from .context import Context as Context
from .context import StageCommand as StageCommand
from .handlers import RegistrationError as RegistrationError
from .logconfig import secret as secret
from .piped import PipedError as PipedError
from .stagelog import StageLog as StageLog
from .types import ArtifactKind as ArtifactKind
from .types import ArtifactVersion as ArtifactVersion
from .types import Deployment as Deployment
from .types import DeploymentSource as DeploymentSource
from .types import DeployTarget as DeployTarget
from .types import HealthStatus as HealthStatus
from .types import LiveState as LiveState
from .types import ManualOperation as ManualOperation
from .types import PlannedStage as PlannedStage
from .types import PlanPreview as PlanPreview
from .types import Resource as Resource
from .types import StageRequest as StageRequest
from .types import StageResult as StageResult
from .types import StageStatus as StageStatus
from .types import Strategy as Strategy
from .types import SyncStatus as SyncStatus
from .types import SyncStrategy as SyncStrategy

__version__ = "0.1.0"
