"""Keeping secret values out of what the plugin sends back over gRPC.

Secrets (:func:`pipeplug.secret` fields of the plugin and deploy-target
configs) are registered in :mod:`pipeplug.logconfig` when the config is parsed;
log lines and stage-log lines are masked there. This module masks the other
way out of the process: every reply message and every gRPC error text. The
guard (:mod:`pipeplug.guard`) applies it to every served call, so no servicer
has to remember to.
"""

from __future__ import annotations

import typing as t

from .logconfig import redact

_MESSAGE = 11  # FieldDescriptor.TYPE_MESSAGE
_STRING = 9  # FieldDescriptor.TYPE_STRING
_BYTES = 12  # FieldDescriptor.TYPE_BYTES


def mask_message(message: t.Any, _depth: int = 0) -> None:
    """Replace every registered secret in ``message``'s text (and UTF-8 bytes) fields by ``***``, in place."""
    if _depth > 32:
        return
    for field, value in message.ListFields():
        repeated = field.is_repeated
        if field.type == _MESSAGE:
            if field.message_type.GetOptions().map_entry:
                _mask_map(field, value, _depth)
            elif repeated:
                for item in value:
                    mask_message(item, _depth + 1)
            else:
                mask_message(value, _depth + 1)
        elif field.type in (_STRING, _BYTES):
            if repeated:
                masked = [_mask_scalar(item) for item in value]
                if masked != list(value):
                    value[:] = masked
            else:
                masked_value = _mask_scalar(value)
                if masked_value != value:
                    setattr(message, field.name, masked_value)


def _mask_map(field: t.Any, value: t.Any, depth: int) -> None:
    kind = field.message_type.fields_by_name["value"].type
    for key in list(value):
        if kind == _MESSAGE:
            mask_message(value[key], depth + 1)
        elif kind in (_STRING, _BYTES):
            value[key] = _mask_scalar(value[key])


def _mask_scalar(value: str | bytes) -> str | bytes:
    if isinstance(value, str):
        return redact(value)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return value  # not text: a secret cannot be found in it as typed
    masked = redact(text)
    return value if masked == text else masked.encode("utf-8")


class MaskingContext:
    """A servicer context whose error texts are masked before they are sent.

    Used only while secrets are registered; it forwards everything else.
    """

    __slots__ = ("_context",)

    def __init__(self, context: t.Any) -> None:  # a grpc.aio.ServicerContext
        self._context = context

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._context, name)

    async def abort(self, code: t.Any, details: str = "", trailing_metadata: t.Any = ()) -> t.NoReturn:
        await self._context.abort(code, redact(details), trailing_metadata)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def set_details(self, details: str) -> None:
        self._context.set_details(redact(details))
