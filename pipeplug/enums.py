"""The wire enums handlers see; their values equal the wire numbers.

Kept apart from the value classes in :mod:`pipeplug.types`: the server needs
these to answer its first call, and this module loads nothing but :mod:`enum`.
"""

from __future__ import annotations

import enum


class StageStatus(enum.IntEnum):
    """How a stage ended, as piped records it (``model.StageStatus``)."""

    NOT_STARTED_YET = 0
    RUNNING = 1
    SUCCESS = 2
    FAILURE = 3
    CANCELLED = 4
    SKIPPED = 5
    EXITED = 6


class SyncStrategy(enum.IntEnum):
    """How a deployment is carried out (``model.SyncStrategy``)."""

    AUTO = 0
    QUICK_SYNC = 1
    PIPELINE = 2


class ManualOperation(enum.IntEnum):
    """The button the web UI offers on a stage (``model.ManualOperation``)."""

    UNKNOWN = 0
    SKIP = 1
    APPROVE = 2
    NONE = 3


class ArtifactKind(enum.IntEnum):
    """Kind of a deployed artifact (``model.ArtifactVersion.Kind``)."""

    UNKNOWN = 0
    CONTAINER_IMAGE = 1
    S3_OBJECT = 2
    GIT_SOURCE = 3
    TERRAFORM_MODULE = 4


class HealthStatus(enum.IntEnum):
    """Health of one live resource (``model.ResourceState.HealthStatus``)."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


class SyncStatus(enum.IntEnum):
    """Whether the live state matches git (``model.ApplicationSyncStatus``)."""

    UNKNOWN = 0
    SYNCED = 1
    DEPLOYING = 2
    OUT_OF_SYNC = 3
    INVALID_CONFIG = 4
