"""Turning whatever a stage handler returned into one (status, message) piped can act on."""

from __future__ import annotations

import typing as t

from .enums import StageStatus

#: the statuses that end a stage; piped parks the deployment on any other (contract §4.3, §13)
FINAL = frozenset((StageStatus.SUCCESS, StageStatus.FAILURE, StageStatus.CANCELLED, StageStatus.SKIPPED, StageStatus.EXITED))


def normalise_stage_result(result: t.Any, label: str) -> tuple[StageStatus, str]:
    """``None`` is SUCCESS; a final StageStatus or a StageResult with one is taken as is.

    Anything else is a bug in the handler and becomes FAILURE with a message
    naming the handler. A non-final status (RUNNING, NOT_STARTED_YET) would
    leave the deployment RUNNING in real piped, so it fails the stage as the
    Go SDK does.
    """
    if result is None:
        return StageStatus.SUCCESS, ""
    from .types import StageResult  # not at the top: a plugin starts without the value classes

    if isinstance(result, StageResult):
        status, message = result.status, result.message
    elif isinstance(result, StageStatus):
        status, message = result, ""
    else:
        return StageStatus.FAILURE, (
            f"{label} returned {result!r}; expected None (success), a pipeplug.StageStatus, "
            "or pipeplug.StageResult(status, message)"
        )
    if status in FINAL:
        return StageStatus(status), message
    shown = f"StageStatus.{status.name}" if isinstance(status, StageStatus) else repr(status)
    if isinstance(result, StageResult):
        shown = f"StageResult with status {shown}"
    problem = (
        f"{label} returned {shown}, which does not end a stage (piped would leave the deployment RUNNING); "
        "return SUCCESS, FAILURE, SKIPPED, EXITED or CANCELLED"
    )
    return StageStatus.FAILURE, f"{problem}. Its message: {message}" if message else problem
