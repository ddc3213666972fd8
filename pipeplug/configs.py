"""Typed configuration: JSON/YAML values in, user attrs classes out, precise errors.

One converter per App. Field names are written in snake_case in Python and
accepted in camelCase (``kubeConfigPath``) or snake_case from YAML, because
PipeCD configs are camelCase. Unknown keys are refused: they are nearly always
typos in user-written config. Errors name every bad field with its path.

cattrs is imported by the functions that use it, not by this module: a plugin
loads it when it first structures a config class, not when it starts.
"""

from __future__ import annotations

import datetime
import re
import typing as t

if t.TYPE_CHECKING:
    import cattrs

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
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
        raise ValueError(f'expected a duration such as "30s", got {value!r}')
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return datetime.timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f'expected a duration such as "30s", got {value!r}')
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f'expected a duration such as "30s", got {value!r}')
    return datetime.timedelta(seconds=sign * seconds)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def make_converter() -> cattrs.Converter:
    """Build the converter an App uses for every user config class."""
    import attrs
    import cattrs
    from cattrs.gen import make_dict_structure_fn
    from cattrs.gen import override

    converter = cattrs.Converter(forbid_extra_keys=True, prefer_attrib_converters=False)
    converter.register_structure_hook(datetime.timedelta, lambda value, _: parse_duration(value))

    def structure_attrs(cls: type) -> t.Callable[[t.Any, type], t.Any]:
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls) if _camel(a.name) != a.name}
        camel_fn = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)

        def structure(value: t.Any, _: type) -> t.Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected a mapping, got {_describe(value)}")
            # Accept snake_case spellings too, so Python-minded users are not surprised.
            value = {_camel(k) if k in renames else k: v for k, v in value.items()}
            return camel_fn(value, cls)

        return structure

    converter.register_structure_hook_factory(attrs.has, structure_attrs)
    return converter


def structure(converter: cattrs.Converter, value: t.Any, cls: t.Any, *, path: str) -> t.Any:
    """Structure ``value`` into ``cls`` or raise :class:`ConfigError` naming each bad field.

    ``path`` is the name users know the value by, such as ``with`` or
    ``spec.plugins.my-plugin``.
    """
    if cls is None or cls is t.Any:
        return value
    from cattrs import errors

    try:
        return converter.structure(value, cls)
    except (errors.ClassValidationError, errors.IterableValidationError) as exc:
        raise ConfigError(_flatten(exc, path)) from None
    except errors.ForbiddenExtraKeysError as exc:
        raise ConfigError([f"{path}: unknown field(s) {', '.join(sorted(exc.extra_fields))}"]) from None
    except Exception as exc:  # noqa: BLE001 - any failure of a single value is a config error
        raise ConfigError([f"{path}: {_message(exc)}"]) from None


def _flatten(group: BaseException, path: str) -> list[str]:
    from cattrs import errors

    lines: list[str] = []
    for exc in getattr(group, "exceptions", ()):
        notes = getattr(exc, "__notes__", [])
        note = notes[-1] if notes else None
        sub = path
        if note is not None and hasattr(note, "name"):
            sub = f"{path}.{_camel(note.name)}"
        elif note is not None and hasattr(note, "index"):
            sub = f"{path}[{note.index}]"
        if isinstance(exc, (errors.ClassValidationError, errors.IterableValidationError)):
            lines.extend(_flatten(exc, sub))
        elif isinstance(exc, KeyError):
            lines.append(f"{sub}: required field is missing")
        elif isinstance(exc, errors.ForbiddenExtraKeysError):
            lines.append(f"{sub}: unknown field(s) {', '.join(sorted(exc.extra_fields))}")
        else:
            lines.append(f"{sub}: {_message(exc, getattr(note, 'type', None))}")
    return lines or [f"{path}: {group}"]


def _message(exc: BaseException, expected: t.Any = None) -> str:
    text = str(exc) or type(exc).__name__
    if text.startswith(("expected", "unknown")) or expected is None:
        return text
    name = getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
    return f"expected {name} ({text})"


def _describe(value: t.Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
