"""Typed configuration: JSON values in, user attrs classes out, every bad field named.

A Go SDK plugin decodes its configs with Go's ``encoding/json``, which never
coerces: a bool comes only from ``true``/``false``, an integer field refuses
``2.9`` and ``true``, a string field refuses ``123``, a list field refuses a
string. ``app.converter`` (a cattrs converter with strict hooks, in
:mod:`pipeplug.converter`) follows the same rules, whatever way the plugin
file writes its annotations (``from __future__ import annotations`` or not): a
config that is coerced in silence (``skipBackup: "false"`` read as true) does
the opposite of what its author meant.

Field names are written in snake_case in Python and accepted in camelCase
(``kubeConfigPath``, as PipeCD configs are) or snake_case, but not both at
once. Unknown keys are refused, with the closest valid name suggested: they
are nearly always typos. Durations are Go-style strings such as ``"30s"``.

This module does not import cattrs: a plugin loads it when it first
structures a config class, not when it starts.
"""

from __future__ import annotations

import datetime
import re
import typing as t

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
#: how an error names a duration, here and in the converter's messages
DURATION_EXAMPLE = 'a duration such as "30s"'

from .errors import PipeplugError


class ConfigError(PipeplugError, ValueError):
    """A config value does not fit its declared class.

    ``problems`` holds one ``"path: what was wrong"`` line per bad field.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_duration(value: t.Any) -> datetime.timedelta:
    """Parse a Go-style duration such as ``"30s"``, ``"1h30m"`` or ``"250ms"``."""
    if isinstance(value, datetime.timedelta):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected {DURATION_EXAMPLE}, got {describe(value)}")
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return datetime.timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"expected {DURATION_EXAMPLE}, got {describe(value)}")
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"expected {DURATION_EXAMPLE}, got {describe(value)}")
    return datetime.timedelta(seconds=sign * seconds)


def describe(value: t.Any, secret: bool = False) -> str:
    """A decoded JSON value as users wrote it: ``2.9``, ``"false"``, ``a list``; a secret's value is never shown."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if secret:
        return "a string" if isinstance(value, str) else "a number" if isinstance(value, (int, float)) else f"a {type(value).__name__}"
    if isinstance(value, (str, int, float)):
        import json

        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + '..."'
    return f"a {type(value).__name__}"


def camel_case(name: str) -> str:
    """A field name as PipeCD configs write it: ``kube_config_path`` -> ``kubeConfigPath``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
