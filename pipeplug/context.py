"""The context object a handler receives as ``ctx``."""

from __future__ import annotations

import logging
import threading
import typing as t

import attrs

if t.TYPE_CHECKING:
    from .types import Deployment


@attrs.define(eq=False)
class Context:
    """What a handler knows about the call it serves, and how it talks back.

    Every RPC gets a fresh context. ``stage_*`` fields are set only for
    ExecuteStage, ``deployment`` only where piped sends one.
    """

    #: the plugin's name in piped's config (``spec.plugins[].name``)
    plugin_name: str
    #: the RPC being served, e.g. ``ExecuteStage``
    rpc: str
    deployment: Deployment | None = None
    application_id: str = ""
    application_name: str = ""
    stage_id: str = ""
    stage_name: str = ""
    stage_index: int = 0
    #: the stage status piped sent: RUNNING means piped re-executes a stage it lost
    stage_status: int = 0
    #: process logger carrying this call's ids
    logger: logging.LoggerAdapter[logging.Logger] = attrs.field(default=None)
    _cancelled: threading.Event = attrs.field(factory=threading.Event)

    def __attrs_post_init__(self) -> None:
        if self.logger is None:
            extra = {
                "plugin": self.plugin_name,
                "deployment_id": self.deployment.id if self.deployment else "",
                "stage_id": self.stage_id,
                "stage_name": self.stage_name,
            }
            self.logger = logging.LoggerAdapter(logging.getLogger("pipeplug.handler"), extra)

    @property
    def deployment_id(self) -> str:
        return self.deployment.id if self.deployment else ""

    @property
    def cancelled(self) -> bool:
        """True once piped has cancelled this call. Sync handlers should poll it."""
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block a sync handler up to ``timeout`` seconds; True if the call was cancelled.

        ``if ctx.wait_cancelled(10): return`` is a cancellable ``time.sleep(10)``.
        """
        return self._cancelled.wait(timeout)

    def _cancel(self) -> None:
        self._cancelled.set()
