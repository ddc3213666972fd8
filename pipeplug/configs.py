"""Typed configuration: JSON values in, user attrs classes out, every bad field named.

A Go SDK plugin decodes its configs with Go's ``encoding/json``, which never
coerces: a bool comes only from ``true``/``false``, an integer field refuses
``2.9`` and ``true``, a string field refuses ``123``, a list field refuses a
string. The :class:`Decoder` here follows the same rules, whatever way the
plugin file writes its annotations (``from __future__ import annotations`` or
not): a config that is coerced in silence (``skipBackup: "false"`` read as
true) does the opposite of what its author meant.

Field names are written in snake_case in Python and accepted in camelCase
(``kubeConfigPath``, as PipeCD configs are) or snake_case, but not both at
once. Unknown keys are refused, with the closest valid name suggested: they
are nearly always typos. Durations are Go-style strings such as ``"30s"``.

The decoder reads each class once and keeps what it learnt, so structuring the
same class again costs only the checks themselves.
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import re
import types
import typing as t

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_EXAMPLE = 'a duration such as "30s"'

#: decodes one value: (value, path, key, problems, secret) -> result. The value's path is ``path + key``
#: (``key`` such as ``.retries`` or ``[2]``), joined only when there is a problem to report, which
#: is appended to ``problems`` instead of raised; a secret's value is never shown.
Decode = t.Callable[[t.Any, str, str, list[str], bool], t.Any]


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
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got {describe(value)}")
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return datetime.timedelta(0)
    pos, seconds = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"expected {_DURATION_EXAMPLE}, got {describe(value)}")
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"expected {_DURATION_EXAMPLE}, got {describe(value)}")
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


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Decoder:
    """Structures decoded JSON into typed classes as strictly as Go's ``encoding/json``.

    One per App (``app.converter``). ``lenient=True`` ignores keys a class does
    not declare, which is what a rollback stage needs: piped hands it the
    ``with:`` of the forward stage at its index.
    """

    def __init__(self) -> None:
        self._decoders: dict[tuple[t.Any, bool], Decode] = {}

    def structure(self, value: t.Any, cls: t.Any, *, path: str = "with", lenient: bool = False) -> t.Any:
        """``value`` as an instance of ``cls``; raise :class:`ConfigError` listing every bad field."""
        if cls is None or cls is t.Any:
            return value
        problems: list[str] = []
        result = self.decoder(cls, lenient)(value, path, "", problems, False)
        if problems:
            raise ConfigError(problems)
        return result

    def decoder(self, cls: t.Any, lenient: bool = False) -> Decode:
        """The function that decodes values of ``cls``, built once per type."""
        key = (cls, lenient)
        try:
            found = self._decoders.get(key)
        except TypeError:  # an unhashable annotation (Annotated with a list, say): build it every time
            return self._build(cls, lenient)
        if found is None:
            found = self._decoders[key] = self._build(cls, lenient)
        return found

    def _build(self, cls: t.Any, lenient: bool) -> Decode:
        origin, args = t.get_origin(cls), t.get_args(cls)
        if origin is t.Annotated:
            return self.decoder(args[0], lenient)
        if cls is t.Any or cls is object:
            return _anything
        custom = getattr(cls, "__pipeplug_decode__", None)  # a class that reads its own values (pipeplug.units)
        if custom is not None:
            return _custom(custom)
        scalar = _SCALARS.get(cls)
        if scalar is not None:
            return scalar
        if cls is None or cls is type(None):
            return _choice([None])
        if origin is t.Literal:
            return _choice(list(args))
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            return _choice([member.value for member in cls], cls)
        if origin in (t.Union, types.UnionType):
            return self._union(args, lenient)
        if cls in _SEQUENCES or origin in _SEQUENCES:
            return self._sequence(origin or cls, args, lenient)
        if cls in _MAPPINGS or origin in _MAPPINGS:
            return self._mapping(args, lenient)
        if isinstance(cls, type) and (hasattr(cls, "__attrs_attrs__") or hasattr(cls, "__dataclass_fields__")):
            return _ClassDecoder(self, cls, lenient)
        name = getattr(cls, "__name__", None) or str(cls).replace("typing.", "")
        message = f"pipeplug cannot decode type {name}; use str, int, float, bool, datetime.timedelta, an Enum, a Literal, lists, dicts or attrs classes"
        return lambda value, path, key, problems, secret: problems.append(f"{path}{key}: {message}")

    def _union(self, args: tuple[t.Any, ...], lenient: bool) -> Decode:
        optional = type(None) in args
        members = [arg for arg in args if arg is not type(None)]
        if optional and len(members) == 1:
            inner = self.decoder(members[0], lenient)
            return lambda value, path, key, problems, secret: None if value is None else inner(value, path, key, problems, secret)
        decoders = [self.decoder(arg, lenient) for arg in members]
        expected = " or ".join(_expected(arg) for arg in members) + (" or null" if optional else "")

        def decode(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
            if value is None and optional:
                return None
            for each in decoders:  # the first member the value fits, as written
                attempt: list[str] = []
                result = each(value, path, key, attempt, secret)
                if not attempt:
                    return result
            problems.append(f"{path}{key}: expected {expected}, got {describe(value, secret)}")
            return None

        return decode

    def _sequence(self, kind: t.Any, args: tuple[t.Any, ...], lenient: bool) -> Decode:
        build: t.Callable[[t.Iterable[t.Any]], t.Any] = (
            tuple if kind is tuple else frozenset if kind is frozenset else set if kind in (set, collections.abc.Set, collections.abc.MutableSet) else list
        )
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            fixed = [self.decoder(arg, lenient) for arg in args]
            expected = f"a list of {len(fixed)} items"

            def decode_fixed(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
                if not isinstance(value, list) or len(value) != len(fixed):
                    problems.append(f"{path}{key}: expected {expected}, got {describe(value, secret)}")
                    return None
                here = path + key
                return build([each(v, here, f"[{i}]", problems, secret) for i, (each, v) in enumerate(zip(fixed, value))])

            return decode_fixed
        item_type = args[0] if args else t.Any
        item = self.decoder(item_type, lenient)
        exact = _EXACT.get(item_type)  # items that need no decoding when of this exact type (a list of strings)
        expected = _list_of(item_type)

        def decode(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
            if not isinstance(value, list):
                problems.append(f"{path}{key}: expected {expected}, got {describe(value, secret)}")
                return None
            if exact is not None and all(v.__class__ is exact for v in value):
                return build(value)
            here = path + key
            return build([item(v, here, f"[{i}]", problems, secret) for i, v in enumerate(value)])

        return decode

    def _mapping(self, args: tuple[t.Any, ...], lenient: bool) -> Decode:
        key_type, value_type = (args[0], args[1]) if len(args) == 2 else (str, t.Any)
        keys, values = self.decoder(key_type, lenient), self.decoder(value_type, lenient)
        exact = _EXACT.get(value_type) if key_type is str else None
        expected = "a mapping" if value_type is t.Any else f"a mapping of {_expected(key_type, plain=True)} to {_expected(value_type, plain=True)}"

        def decode(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
            if not isinstance(value, dict):
                problems.append(f"{path}{key}: expected {expected}, got {describe(value, secret)}")
                return None
            if exact is not None and all(v.__class__ is exact for v in value.values()):
                return dict(value)
            here = path + key
            return {keys(k, here, f".{k}", problems, secret): values(v, here, f".{k}", problems, secret) for k, v in value.items()}

        return decode


_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Set, collections.abc.MutableSet)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
#: JSON values that are already what these types want (json.loads makes exact types); not int,
#: whose values must still fit in 64 bits
_EXACT: dict[t.Any, type] = {str: str, bool: bool, t.Any: object}


def _anything(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    return value


def _bool(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    if value is True or value is False:
        return value
    problems.append(f"{path}{key}: expected true or false, got {describe(value, secret)}")
    return None


def _int(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    if isinstance(value, int) and value is not True and value is not False:
        if -(2**63) <= value < 2**63:
            return value
        problems.append(f"{path}{key}: expected an integer that fits in 64 bits, got {describe(value, secret)}")  # as Go's int
        return None
    problems.append(f"{path}{key}: expected an integer, got {describe(value, secret)}")
    return None


def _float(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    if isinstance(value, (int, float)) and value is not True and value is not False:
        return float(value)
    problems.append(f"{path}{key}: expected a number, got {describe(value, secret)}")
    return None


def _str(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    if isinstance(value, str):
        return value
    problems.append(f"{path}{key}: expected a string, got {describe(value, secret)}")
    return None


def _duration(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
    try:
        return parse_duration(value)
    except ValueError:
        problems.append(f"{path}{key}: expected {_DURATION_EXAMPLE}, got {describe(value, secret)}")
        return None


def _custom(read: t.Callable[[t.Any], t.Any]) -> Decode:
    """A class's own ``__pipeplug_decode__(value)``, whose ValueError says what was expected."""

    def decode(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
        try:
            return read(value)
        except Exception as exc:  # noqa: BLE001 - ValueError by contract; anything else is a bug in the class, still a bad value here
            said = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            problems.append(f"{path}{key}: {'not a valid value (a secret: not shown)' if secret else said}")
            return None

    return decode


_SCALARS: dict[t.Any, Decode] = {bool: _bool, int: _int, float: _float, str: _str, datetime.timedelta: _duration}


def _choice(values: list[t.Any], enum_class: type[enum.Enum] | None = None) -> Decode:
    """A Literal or an Enum: the value must be one of ``values`` exactly, type included (``1`` is not ``true``)."""
    allowed = {(type(v), v) for v in values}
    expected = "null" if values == [None] else "one of " + ", ".join(describe(v) for v in values)

    def decode(value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
        try:
            found = (type(value), value) in allowed
        except TypeError:  # a list or a mapping: unhashable, and never one of the choices
            found = False
        if not found:
            problems.append(f"{path}{key}: expected {expected}, got {describe(value, secret)}")
            return None
        return value if enum_class is None else enum_class(value)

    return decode


def _expected(cls: t.Any, plain: bool = False) -> str:
    """How an error names a type: ``an integer``, or ``integer`` inside ``a mapping of string to integer``."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", datetime.timedelta: _DURATION_EXAMPLE}
    name = "a value" if cls is t.Any or cls is object else names.get(cls)
    origin = t.get_origin(cls)
    if name is None and (origin is t.Literal or (isinstance(cls, type) and issubclass(cls, enum.Enum))):
        name = "one of " + ", ".join(describe(v) for v in (t.get_args(cls) if origin is t.Literal else [m.value for m in cls]))
    if name is None and (origin in _SEQUENCES or cls in _SEQUENCES):
        name = _list_of(t.get_args(cls)[0] if t.get_args(cls) else None)
    if name is None:
        name = "a mapping"
    if plain:
        return {"an integer": "integer", "a number": "number", "a string": "string", "true or false": "bool"}.get(name, name.removeprefix("a "))
    return name


def _list_of(item: t.Any) -> str:
    """``a list of strings``, or ``a list`` when the items may be anything."""
    if item is None or item is t.Any or item is object:
        return "a list"
    name = _expected(item, plain=True)
    return f"a list of {_PLURALS.get(name, name + 's')}"


_PLURALS = {"bool": "true/false values", "mapping": "mappings", 'duration such as "30s"': "durations"}


class _Field:
    __slots__ = ("name", "key", "snake", "dotted", "decode", "required", "secret")

    def __init__(self, name: str, decode: Decode, required: bool, secret: bool) -> None:
        self.name, self.key, self.snake = name, _camel(name), name
        self.dotted = "." + self.key
        self.decode, self.required, self.secret = decode, required, secret


class _ClassDecoder:
    """Decodes a mapping into an attrs class or dataclass, field by field; reads the class on first use."""

    def __init__(self, decoder: Decoder, cls: type, lenient: bool) -> None:
        self.decoder, self.cls, self.lenient = decoder, cls, lenient
        self.fields: list[_Field] | None = None
        self.required: list[_Field] = []
        self.by_key: dict[str, _Field] = {}
        self.broken = ""

    def _read_class(self) -> list[_Field]:
        cls = self.cls
        try:
            hints = t.get_type_hints(cls, include_extras=True)
        except Exception as exc:  # noqa: BLE001 - forward references fail in many ways
            self.broken = f"cannot resolve the annotations of {cls.__qualname__} ({exc}); define the class at the top level of its module"
            hints = {}
        fields = []
        for name, init, default, metadata in _declared_fields(cls):
            if init:
                fields.append(_Field(name, self.decoder.decoder(hints.get(name, t.Any), self.lenient), not default, bool(metadata.get("secret"))))
        for field in fields:
            self.by_key[field.key] = self.by_key[field.snake] = field
        self.required = [f for f in fields if f.required]
        self.fields = fields
        return fields

    def __call__(self, value: t.Any, path: str, key: str, problems: list[str], secret: bool) -> t.Any:
        if self.fields is None:
            self._read_class()
        if self.broken:
            problems.append(f"{path}{key}: {self.broken}")
            return None
        if not isinstance(value, dict):
            problems.append(f"{path}{key}: expected a mapping, got {describe(value, secret)}")
            return None
        here = path + key
        before = len(problems)
        kwargs: dict[str, t.Any] = {}
        unset: set[str] | None = None  # fields given as null: their default stays, as Go leaves the zero value
        by_key = self.by_key
        for name, item in value.items():
            field = by_key.get(name)
            if field is None:
                if not self.lenient:
                    problems.append(self._unknown(name, here))
                continue
            if field.name in kwargs or (unset is not None and field.name in unset):
                problems.append(f'{here}{field.dotted}: given twice, as "{field.key}" and "{field.snake}"; keep one')
            elif item is None and not field.required:
                unset = unset or set()
                unset.add(field.name)
            else:
                kwargs[field.name] = field.decode(item, here, field.dotted, problems, secret or field.secret)
        for field in self.required:
            if field.name not in kwargs:
                problems.append(f"{here}{field.dotted}: required field is missing")
        if len(problems) > before:
            return None
        try:
            return self.cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the class's own validators, or its __attrs_post_init__
            problems.append(f"{here}: {exc}" if isinstance(exc, (ValueError, TypeError)) else f"{here}: {type(exc).__name__}: {exc}")
            return None

    def _unknown(self, key: t.Any, path: str) -> str:
        import difflib  # only a config with a typo pays for it

        noun = "option" if path.split(".", 1)[0].split("[", 1)[0] == "with" else "field"
        fields = self.fields or []
        names = {f.key.lower(): f.key for f in fields} | {f.snake.lower(): f.key for f in fields}
        close = difflib.get_close_matches(str(key).lower(), names, n=1, cutoff=0.6)
        hint = f'; did you mean "{names[close[0]]}"?' if close else f" (valid: {', '.join(f.key for f in fields)})" if fields else ""
        return f"{path}.{key}: unknown {noun}{hint}"


def _declared_fields(cls: type) -> list[tuple[str, bool, bool, t.Mapping[str, t.Any]]]:
    """(init name, taken by __init__, has a default, metadata) of each field of an attrs class or dataclass."""
    if hasattr(cls, "__attrs_attrs__"):
        import attrs

        return [(getattr(a, "alias", None) or a.name.lstrip("_"), a.init, a.default is not attrs.NOTHING, a.metadata) for a in attrs.fields(cls)]
    import dataclasses  # not at the top: it imports inspect, which a plugin's start does not need

    missing = dataclasses.MISSING
    return [(f.name, f.init, f.default is not missing or f.default_factory is not missing, f.metadata) for f in dataclasses.fields(cls)]


def make_converter() -> Decoder:
    """Build the decoder an App uses for every user config class."""
    return Decoder()


def structure(converter: Decoder, value: t.Any, cls: t.Any, *, path: str, lenient: bool = False) -> t.Any:
    """Structure ``value`` into ``cls`` or raise :class:`ConfigError` naming each bad field.

    ``path`` is the name users know the value by, such as ``with`` or
    ``spec.plugins.my-plugin``. ``lenient`` ignores keys ``cls`` does not declare.
    """
    return converter.structure(value, cls, path=path, lenient=lenient)
