"""Turning whatever a stage handler returned into one (status, message)."""

from __future__ import annotations

import typing as t

from .enums import StageStatus


def normalise_stage_result(result: t.Any, label: str) -> tuple[StageStatus, str]:
    """``None`` is SUCCESS; a StageStatus or a StageResult is taken as is.

    Any other value is a bug in the handler and becomes FAILURE with a message
    listing the shapes a handler may return.
    """
    if result is None:
        return StageStatus.SUCCESS, ""
    from .types import StageResult  # not at the top: a plugin starts without the value classes

    if isinstance(result, StageResult):
        return _status(result.status, label), result.message
    if isinstance(result, StageStatus):
        return result, ""
    return StageStatus.FAILURE, (
        f"{label} returned {result!r}; expected None (success), a pipeplug.StageStatus, "
        "or pipeplug.StageResult(status, message)"
    )


def _status(value: t.Any, label: str) -> StageStatus:
    try:
        return StageStatus(value)
    except ValueError:
        raise TypeError(f"{label} returned StageResult with status {value!r}, which is not a StageStatus") from None
