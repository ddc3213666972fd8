"""Process logging: ``--log-level``, ``--log-encoding json|console``, and keeping secrets out of logs.

JSON lines carry ``plugin``, and for calls about a deployment also
``deployment_id``, ``stage_id`` and ``stage_name`` (taken from ``ctx.logger``).

Secrets: mark a config field with :func:`secret` (or any attrs field with
``metadata={"secret": True}``). Its repr is masked, and once the plugin config
is parsed its values are registered here and replaced by ``***`` in every
formatted log line, whoever logs them.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import typing as t

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR}
#: "humanize" is the Go SDK's default name for the human-readable encoding
ENCODINGS = ("console", "json", "humanize")
MASK = "***"
#: Shorter secret values are not searched for in log text: they would match everywhere.
MIN_REDACTED_LENGTH = 4

_secrets: set[str] = set()
_handler: logging.Handler | None = None
_CONTEXT_FIELDS = ("deployment_id", "stage_id", "stage_name")


# -- secrets --------------------------------------------------------------------------


def _mask(value: t.Any) -> str:
    return repr(MASK) if value else repr(value)


def secret(**kwargs: t.Any) -> t.Any:
    """An attrs field holding a secret (a token, a password): masked in reprs and never logged.

    ``token: str = pipeplug.secret()``, or ``pipeplug.secret(default="")``.
    Takes the keyword arguments of :func:`attrs.field`.
    """
    import attrs  # loaded already: secret() is called inside an attrs class

    metadata = {**kwargs.pop("metadata", {}), "secret": True}
    kwargs.setdefault("repr", _mask)
    return attrs.field(metadata=metadata, **kwargs)


def secret_values(value: t.Any, _depth: int = 0) -> list[str]:
    """Every string held by a secret field anywhere inside ``value`` (attrs instances, lists, dicts)."""
    if _depth > 20:
        return []
    found: list[str] = []
    fields = getattr(type(value), "__attrs_attrs__", None)  # an attrs instance; attrs itself need not be loaded
    if fields is not None:
        for field in fields:
            item = getattr(value, field.name, None)
            if field.metadata.get("secret"):
                found.extend(_strings(item))
            else:
                found.extend(secret_values(item, _depth + 1))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(secret_values(item, _depth + 1))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(secret_values(item, _depth + 1))
    return found


def _strings(value: t.Any) -> list[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, (list, tuple, set)):
        return [s for item in value for s in _strings(item)]
    return []


def register_secrets(values: t.Iterable[str]) -> None:
    """Redact these values from every log line from now on."""
    _secrets.update(v for v in values if len(v) >= MIN_REDACTED_LENGTH)


def has_secrets() -> bool:
    """Whether any secret is registered, i.e. whether outgoing text needs masking at all."""
    return bool(_secrets)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for value in _secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


# -- formatting -----------------------------------------------------------------------


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message [deployment_id=... stage_id=...]``, secrets redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{name}={value}" for name in _CONTEXT_FIELDS if (value := getattr(record, name, "")))
        if ids:
            first, newline, rest = text.partition("\n")
            text = f"{first} [{ids}]{newline}{rest}"
        return redact(text) if _secrets else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plugin, the call's ids, exc; secrets redacted."""

    def __init__(self, plugin: str = "") -> None:
        super().__init__()
        self.plugin = plugin

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, t.Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "plugin": getattr(record, "plugin", "") or self.plugin,
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, "")
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        text = json.dumps(entry, ensure_ascii=False, default=str)
        return redact(text) if _secrets else text


def configure_logging(level: str = "info", encoding: str = "console", *, plugin: str = "", stream: t.TextIO | None = None) -> None:
    """Send all logging to stderr (piped mixes plugin output into its own) in the chosen encoding."""
    if level.lower() not in LEVELS:
        raise ValueError(f"--log-level {level!r}: expected one of {', '.join(LEVELS)}")
    if encoding.lower() not in ENCODINGS:
        raise ValueError(f"--log-encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
    global _handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(plugin) if encoding.lower() == "json" else ConsoleFormatter())
    root = logging.getLogger()
    if _handler is not None:  # reconfiguring: replace ours, keep handlers others installed
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    _handler = handler


def set_plugin_name(name: str) -> None:
    """Name the plugin in JSON lines once piped's config is known."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.plugin = name
