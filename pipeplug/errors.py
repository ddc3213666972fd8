"""The root of every exception pipeplug raises, and the one a stage handler raises to fail on purpose.

``except pipeplug.PipeplugError`` catches whatever pipeplug itself refuses
(registration, config, piped, startup, commands), while each subclass keeps
its builtin base (TypeError, ValueError, RuntimeError) so older ``except``
clauses still match. This module imports nothing, so every module may use it.
"""

from __future__ import annotations


class PipeplugError(Exception):
    """Base class of the exceptions pipeplug raises."""


class StageFailed(PipeplugError):
    """Raise from a stage handler to end the stage as FAILURE with ``message``.

    Unlike any other exception, it is an expected outcome: the message goes to
    the stage log as one ERROR line, without a traceback.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
