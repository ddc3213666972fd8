"""The cattrs converter behind ``app.converter``: JSON structured as strictly as Go's ``encoding/json``.

cattrs' stock hooks coerce (``bool("false")`` is true, ``list("abc")`` is three
letters, ``int(2.9)`` is 2), so every type a config may use gets a hook here
that checks the JSON type first and then lets cattrs do the rest: cattrs'
generated functions structure attrs classes and dataclasses, its list and
mapping functions structure the items. A thin hook in front of each class
accepts camelCase or snake_case keys and refuses unknown ones. cattrs reports
every bad field at once as nested exception groups with notes naming the
attribute, index or key; :func:`problems` turns them into ``path: message``
lines. A type outside this list is refused by name rather than guessed at.

Imported on the first structure of a config class (``app.converter``), so a
plugin whose configs are plain dicts never loads cattrs.
"""

from __future__ import annotations

import collections.abc
import contextvars
import dataclasses
import datetime
import enum
import pathlib
import types
import typing as t

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import AttributeValidationNote
from cattrs.errors import BaseValidationError
from cattrs.errors import ClassValidationError
from cattrs.errors import IterableValidationError
from cattrs.errors import IterableValidationNote
from cattrs.gen import make_dict_structure_fn
from cattrs.gen import make_mapping_structure_fn

from .configs import DURATION_EXAMPLE
from .configs import ConfigError
from .configs import camel_case
from .configs import describe
from .configs import parse_duration

Hook = t.Callable[[t.Any, t.Any], t.Any]

_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Set, collections.abc.MutableSet)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SUPPORTED = "use str, int, float, bool, datetime.timedelta, an Enum, a Literal, lists, dicts or attrs classes"
#: set while a rollback stage's ``with:`` is structured: keys a class does not declare are ignored, at any depth
_LENIENT = contextvars.ContextVar("pipeplug_lenient_structure", default=False)


class _Refused(ValueError):
    """A value of the wrong JSON type. The line is written where its path, and whether it is secret, are known."""

    def __init__(self, expected: str, value: t.Any) -> None:
        super().__init__(f"expected {expected}")  # never the value: it may be a secret
        self.expected, self.value = expected, value


class _Problem(ValueError):
    """Bad input other than a wrong type: a key given twice, a missing field, a type pipeplug cannot decode."""


class _Unknown(_Problem):
    """A key its class does not declare; the message holds only the hint, as the noun depends on the path."""


class _Custom(ValueError):
    """A class's own ``__pipeplug_decode__`` refused a value; its message says what was expected."""


class _At(str):
    """A note naming where below its class a value sat (``.dryRun``), and whether that field is secret."""

    secret: bool

    def __new__(cls, where: str, secret: bool) -> _At:
        note = str.__new__(cls, where)
        note.secret = secret
        return note


class StrictConverter(cattrs.Converter):
    """A cattrs converter that structures as strictly as Go's ``encoding/json``; one per App.

    ``structure(value, cls, path=..., lenient=...)`` raises :class:`ConfigError`
    with one line per bad field. ``lenient=True`` ignores keys a class does not
    declare, which is what a rollback stage needs: piped hands it the ``with:``
    of the forward stage at its index.
    """

    def __init__(self) -> None:
        super().__init__(detailed_validation=True, structure_fallback_factory=_unsupported)
        self._classes: dict[type, _ClassHook] = {}
        self._subclasses: dict[type, Hook] = {}
        # Registered first, so consulted last: any type not claimed below is refused by name.
        self.register_structure_hook_factory(lambda _: True, _unsupported)
        self.register_structure_hook_func(lambda cl: cl is t.Any or cl is object, lambda value, _: value)
        self.register_structure_hook_func(lambda cl: cl is None or cl is type(None), _choice([None]))
        self.register_structure_hook_factory(lambda cl: _origin(cl) is t.Annotated, self._annotated)
        self.register_structure_hook_factory(lambda cl: _origin(cl) is t.Literal, lambda cl: _choice(list(t.get_args(cl))))
        self.register_structure_hook_factory(lambda cl: _origin(cl) in (t.Union, types.UnionType), self._union)
        self.register_structure_hook_factory(lambda cl: cl in _SEQUENCES or _origin(cl) in _SEQUENCES, self._sequence)
        self.register_structure_hook_factory(lambda cl: cl in _MAPPINGS or _origin(cl) in _MAPPINGS, self._mapping)
        self.register_structure_hook_factory(_is_class, self._class)
        self.register_structure_hook_factory(lambda cl: hasattr(cl, "__pipeplug_decode__"), _custom)
        # cattrs dispatches these by class (subclasses too) before any predicate above.
        for cls, hook in [(bool, _bool), (int, self._int), (float, self._float), (str, self._str), (datetime.timedelta, _duration), (enum.Enum, self._enum)]:
            self.register_structure_hook(cls, hook)
        for cls in (bytes, pathlib.Path):
            self.register_structure_hook(cls, _unsupported(cls))

    def structure(self, obj: t.Any, cl: t.Any, *, path: str = "with", lenient: bool = False) -> t.Any:
        """``obj`` as an instance of ``cl``; raise :class:`ConfigError` listing every bad field.

        ``path`` is the name users know the value by, such as ``with`` or
        ``spec.plugins.my-plugin``.
        """
        if cl is None or cl is t.Any:
            return obj
        lenient_before = _LENIENT.set(True) if lenient else None
        try:
            return self.get_structure_hook(cl)(obj, cl)
        except Exception as exc:  # noqa: BLE001 - whatever a value does wrong, it is reported, never raised raw
            raise ConfigError(problems(exc, path)) from None
        finally:
            if lenient_before is not None:
                _LENIENT.reset(lenient_before)

    # -- scalars: cattrs dispatches a class's subclasses to these too (an IntEnum to int, a str Enum to str) --

    def _int(self, value: t.Any, cl: t.Any) -> t.Any:
        if cl is not int:
            return self._subclass(cl)(value, cl)
        if isinstance(value, int) and value is not True and value is not False:
            if -(2**63) <= value < 2**63:
                return value
            raise _Refused("an integer that fits in 64 bits", value)  # as Go's int
        raise _Refused("an integer", value)

    def _float(self, value: t.Any, cl: t.Any) -> t.Any:
        if cl is not float:
            return self._subclass(cl)(value, cl)
        if isinstance(value, (int, float)) and value is not True and value is not False:
            return float(value)
        raise _Refused("a number", value)

    def _str(self, value: t.Any, cl: t.Any) -> t.Any:
        if cl is not str:
            return self._subclass(cl)(value, cl)
        if isinstance(value, str):
            return value
        raise _Refused("a string", value)

    def _enum(self, value: t.Any, cl: t.Any) -> t.Any:
        return self._subclass(cl)(value, cl)

    def _subclass(self, cl: t.Any) -> Hook:
        hook = self._subclasses.get(cl)
        if hook is None:
            hook = self._subclasses[cl] = _enum(cl) if _is_enum(cl) else _unsupported(cl)
        return hook

    # -- hook factories ------------------------------------------------------

    def _annotated(self, cl: t.Any) -> Hook:
        base = t.get_args(cl)[0]
        inner = self.get_structure_hook(base, cache_result=False)
        return lambda value, _: inner(value, base)

    def _union(self, cl: t.Any) -> Hook:
        args = t.get_args(cl)
        optional = type(None) in args
        members = [(self.get_structure_hook(arg, cache_result=False), arg) for arg in args if arg is not type(None)]
        if optional and len(members) == 1:
            (inner, member), = members
            return lambda value, _: None if value is None else inner(value, member)
        expected = " or ".join(_expected(member) for _, member in members) + (" or null" if optional else "")

        def structure_union(value: t.Any, _: t.Any) -> t.Any:
            if value is None and optional:
                return None
            for inner, member in members:  # the first member the value fits, in the order written
                try:
                    return inner(value, member)
                except Exception:  # noqa: BLE001, S112 - it does not fit this member; try the next
                    continue
            raise _Refused(expected, value)

        return structure_union

    def _sequence(self, cl: t.Any) -> Hook:
        kind, args = t.get_origin(cl) or cl, t.get_args(cl)
        build: t.Callable[[list[t.Any]], t.Any] = (
            tuple if kind is tuple else frozenset if kind is frozenset else set if kind in (set, collections.abc.Set, collections.abc.MutableSet) else list
        )
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return self._fixed_tuple(cl, args)
        item = args[0] if args else t.Any
        as_list = list[item]  # type: ignore[valid-type]
        items = list_structure_factory(as_list, self)  # cattrs' loop: each bad item noted with its index
        expected = _list_of(item)

        def structure_sequence(value: t.Any, _: t.Any) -> t.Any:
            if not isinstance(value, list):
                raise _Refused(expected, value)
            result = items(value, as_list)
            return result if build is list else build(result)

        return structure_sequence

    def _fixed_tuple(self, cl: t.Any, args: tuple[t.Any, ...]) -> Hook:
        hooks = [(self.get_structure_hook(arg, cache_result=False), arg) for arg in args]
        expected = f"a list of {len(hooks)} items"

        def structure_tuple(value: t.Any, _: t.Any) -> t.Any:
            if not isinstance(value, list) or len(value) != len(hooks):
                raise _Refused(expected, value)
            result, errors = [], []
            for index, ((hook, arg), item) in enumerate(zip(hooks, value)):
                try:
                    result.append(hook(item, arg))
                except Exception as exc:  # noqa: BLE001 - collected, each with its index, as cattrs does
                    errors.append(_noted(exc, IterableValidationNote(f"Structuring {cl} @ index {index}", index, arg)))
            if errors:
                raise IterableValidationError(f"While structuring {cl!r}", errors, cl)
            return tuple(result)

        return structure_tuple

    def _mapping(self, cl: t.Any) -> Hook:
        args = t.get_args(cl)
        key_type, value_type = (args[0], args[1]) if len(args) == 2 else (str, t.Any)
        as_dict = dict[key_type, value_type]  # type: ignore[valid-type]
        entries = make_mapping_structure_fn(as_dict, self)  # cattrs' loop: each bad entry noted with its key
        expected = "a mapping" if value_type is t.Any else f"a mapping of {_expected(key_type, plain=True)} to {_expected(value_type, plain=True)}"

        def structure_mapping(value: t.Any, _: t.Any) -> t.Any:
            if not isinstance(value, dict):
                raise _Refused(expected, value)
            return entries(value, as_dict)

        return structure_mapping

    def _class(self, cl: type) -> Hook:
        hook = self._classes.get(cl)
        if hook is None:
            hook = self._classes[cl] = _ClassHook(self, cl)
        return hook


def _bool(value: t.Any, _: t.Any) -> t.Any:
    if value is True or value is False:
        return value
    raise _Refused("true or false", value)


def _duration(value: t.Any, _: t.Any) -> t.Any:
    try:
        return parse_duration(value)
    except ValueError:
        raise _Refused(DURATION_EXAMPLE, value) from None


def _choice(values: list[t.Any], enum_class: type[enum.Enum] | None = None) -> Hook:
    """A Literal or an Enum: the value must be one of ``values`` exactly, type included (``1`` is not ``true``)."""
    allowed = {(type(v), v) for v in values}
    expected = "null" if values == [None] else "one of " + ", ".join(describe(v) for v in values)

    def structure_choice(value: t.Any, _: t.Any) -> t.Any:
        try:
            found = (type(value), value) in allowed
        except TypeError:  # a list or a mapping: unhashable, and never one of the choices
            found = False
        if not found:
            raise _Refused(expected, value)
        return value if enum_class is None else enum_class(value)

    return structure_choice


def _enum(cl: type[enum.Enum]) -> Hook:
    return _choice([member.value for member in cl], cl)


def _unsupported(cl: t.Any) -> Hook:
    name = getattr(cl, "__name__", None) or str(cl).replace("typing.", "")
    message = f"pipeplug cannot decode type {name}; {_SUPPORTED}"

    def refuse(value: t.Any, _: t.Any) -> t.Any:
        raise _Problem(message)

    return refuse


def _custom(cl: t.Any) -> Hook:
    """A class that reads its own values (``pipeplug.units``): ``__pipeplug_decode__(value)`` raises ValueError saying what it expected."""
    read = cl.__pipeplug_decode__

    def hook(value: t.Any, _: t.Any) -> t.Any:
        try:
            return read(value)
        except Exception as exc:  # noqa: BLE001 - ValueError by contract; anything else is a bug in the class, still a bad value here
            raise _Custom(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}") from None

    return hook


def _origin(cl: t.Any) -> t.Any:
    """``list`` for ``list[str]``: typed loosely, as typeshed's return type does not cover every special form."""
    return t.get_origin(cl)


def _is_enum(cl: t.Any) -> bool:
    return isinstance(cl, type) and issubclass(cl, enum.Enum)


def _is_class(cl: t.Any) -> bool:
    return isinstance(cl, type) and (attrs.has(cl) or dataclasses.is_dataclass(cl))


class _Field:
    """What the thin class hook knows of one field: its names, and whether it is required or secret."""

    __slots__ = ("name", "alias", "key", "dotted", "required", "secret")

    def __init__(self, name: str, alias: str, required: bool, secret: bool) -> None:
        self.name, self.alias, self.key = name, alias, camel_case(alias)
        self.dotted = "." + self.key
        self.required, self.secret = required, secret


class _ClassHook:
    """Structures a mapping into an attrs class or dataclass.

    Keys are normalised here (camelCase or snake_case, not both; unknown keys
    refused unless lenient; ``null`` leaves a default), then cattrs' generated
    function structures the fields. Both are read from the class on first use,
    so a class may refer to itself.
    """

    def __init__(self, converter: StrictConverter, cls: type) -> None:
        self.converter, self.cls = converter, cls
        self.generated: Hook | None = None
        self.fields: list[_Field] = []
        self.by_key: dict[str, _Field] = {}
        self.by_name: dict[str, _Field] = {}
        self.broken = ""

    def _read_class(self) -> Hook:
        cls = self.cls
        try:
            t.get_type_hints(cls)
        except Exception as exc:  # noqa: BLE001 - forward references fail in many ways
            self.broken = f"cannot resolve the annotations of {cls.__qualname__} ({exc}); define the class at the top level of its module"
            raise _Problem(self.broken) from None
        self.fields = [_Field(*each) for each in _declared_fields(cls)]
        for field in self.fields:
            self.by_key[field.key] = self.by_key[field.alias] = self.by_name[field.name] = field
        generated: Hook = make_dict_structure_fn(cls, self.converter, _cattrs_forbid_extra_keys=False, _cattrs_use_alias=True, _cattrs_detailed_validation=True)
        self.generated = generated
        return generated

    def __call__(self, value: t.Any, _: t.Any = None) -> t.Any:
        if self.broken:
            raise _Problem(self.broken)
        generated = self.generated or self._read_class()
        if not isinstance(value, dict):
            raise _Refused("a mapping", value)
        given: dict[str, t.Any] = {}
        nulls: set[str] | None = None  # fields given as null: their default stays, as Go leaves the zero value
        errors: list[tuple[int, Exception]] = []  # each with the position of its key, to report in the order written
        by_key = self.by_key
        for position, (key, item) in enumerate(value.items()):
            field = by_key.get(key)
            if field is None:
                if not _LENIENT.get():
                    errors.append((position, _noted(self._unknown(key), _At(f".{key}", False))))
            elif field.alias in given or (nulls is not None and field.alias in nulls):
                twice = _Problem(f'given twice, as "{field.key}" and "{field.alias}"; keep one')
                errors.append((position, _noted(twice, _At(field.dotted, False))))
            elif item is None and not field.required:
                nulls = nulls or set()
                nulls.add(field.alias)
            else:
                given[field.alias] = item
        try:
            result = generated(given, self.cls)
        except ClassValidationError as group:
            errors += self._located(group, value)
        if not errors:
            return result
        errors.sort(key=lambda pair: pair[0])
        raise ClassValidationError(f"While structuring {self.cls.__name__}", [exc for _, exc in errors], self.cls)

    def _located(self, group: ClassValidationError, value: dict[t.Any, t.Any]) -> list[tuple[int, Exception]]:
        """cattrs' errors with each field's key and secrecy attached, at the position of the key as written."""
        positions: dict[str, int] = {}
        for position, key in enumerate(value):
            field = self.by_key.get(key)
            if field is not None:
                positions.setdefault(field.name, position)
        located = []
        for exc in group.exceptions:
            note = next((n for n in getattr(exc, "__notes__", ()) if isinstance(n, AttributeValidationNote)), None)
            field = self.by_name.get(note.name) if note is not None else None
            if field is None:  # the class's own validators or __attrs_post_init__: about the class as a whole
                located.append((len(value) + len(self.fields), exc))
            elif field.name not in positions:  # cattrs found the key absent: a required field
                located.append((len(value) + self.fields.index(field), _noted(_Problem("required field is missing"), _At(field.dotted, False))))
            else:
                located.append((positions[field.name], _noted(exc, _At(field.dotted, field.secret))))
        return located

    def _unknown(self, key: t.Any) -> _Unknown:
        import difflib  # only a config with a typo pays for it

        names = {f.key.lower(): f.key for f in self.fields} | {f.alias.lower(): f.key for f in self.fields}
        close = difflib.get_close_matches(str(key).lower(), names, n=1, cutoff=0.6)
        hint = f'; did you mean "{names[close[0]]}"?' if close else f" (valid: {', '.join(f.key for f in self.fields)})" if self.fields else ""
        return _Unknown(hint)


def _noted(exc: Exception, note: str) -> Exception:
    """Attach ``note`` where cattrs reads it: ``__notes__`` is Python 3.11's, so 3.10 gets it by hand."""
    setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010 - not declared on 3.10
    return exc


def _declared_fields(cls: type) -> list[tuple[str, str, bool, bool]]:
    """(name, init name, required, secret) of each field of an attrs class or dataclass that ``__init__`` takes."""
    if attrs.has(cls):
        return [
            (a.name, getattr(a, "alias", None) or a.name.lstrip("_"), a.default is attrs.NOTHING, bool(a.metadata.get("secret")))
            for a in attrs.fields(cls)
            if a.init
        ]
    missing = dataclasses.MISSING
    return [
        (f.name, f.name, f.default is missing and f.default_factory is missing, bool(f.metadata.get("secret")))
        for f in dataclasses.fields(cls)
        if f.init
    ]


def problems(exc: BaseException, path: str) -> list[str]:
    """One ``path: message`` line per bad value in what structuring raised, walking cattrs' exception groups."""
    noun = "option" if path.split(".", 1)[0].split("[", 1)[0] == "with" else "field"
    lines: list[str] = []
    _walk(exc, path, False, noun, lines)
    return lines or [f"{path}: {exc}"]


def _walk(exc: BaseException, path: str, secret: bool, noun: str, lines: list[str]) -> None:
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            where, sub_secret = path, secret
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, _At):
                    where, sub_secret = path + note, secret or note.secret
                elif isinstance(note, IterableValidationNote):
                    where = f"{path}[{note.index}]" if isinstance(note.index, int) else f"{path}.{note.index}"
            _walk(sub, where, sub_secret, noun, lines)
    elif isinstance(exc, _Refused):
        lines.append(f"{path}: expected {exc.expected}, got {describe(exc.value, secret)}")
    elif isinstance(exc, _Unknown):
        lines.append(f"{path}: unknown {noun}{exc}")
    elif isinstance(exc, _Custom):
        lines.append(f"{path}: {'not a valid value (a secret: not shown)' if secret else exc}")
    elif isinstance(exc, (ValueError, TypeError)):  # ours, or the class's own validators
        lines.append(f"{path}: {exc}")
    else:
        lines.append(f"{path}: {type(exc).__name__}: {exc}")


def _expected(cls: t.Any, plain: bool = False) -> str:
    """How an error names a type: ``an integer``, or ``integer`` inside ``a mapping of string to integer``."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", datetime.timedelta: DURATION_EXAMPLE}
    name = "a value" if cls is t.Any or cls is object else names.get(cls)
    origin = t.get_origin(cls)
    if name is None and (origin is t.Literal or _is_enum(cls)):
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
