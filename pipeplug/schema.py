"""JSON Schemas (2020-12) of what a plugin's decoder accepts: each stage's ``with:`` and its configs.

Editors and CI can then check ``app.pipecd.yaml`` before piped sees it. The
schemas are built from the user's classes themselves (attrs fields or
dataclass fields, type hints, defaults, metadata), never from the decoder's
internals, and tests check that both agree value by value.

How the schema says what the decoder does:

- a field is accepted under its camelCase and its snake_case name, so both are
  properties, and ``dependentSchemas`` forbids giving both; a required field
  needs one of them (``anyOf`` of two ``required``);
- ``null`` for a field with a default leaves the default, so such a field also
  accepts ``null``;
- a rollback stage ignores keys its class does not declare (it reads the
  forward stage's ``with:``), so its schema allows other properties.

Two differences JSON Schema cannot avoid: it counts ``3.0`` as the integer 3,
where the decoder (as Go) refuses it for an ``int``; and a class that contains
itself is described one level deep. Durations follow Go's grammar, which the
decoder's ``parse_duration`` is looser than (spaces, repeated signs).
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import datetime
import enum
import inspect
import json
import typing as t

if t.TYPE_CHECKING:
    from .app import App
    from .app import StageSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Go's time.ParseDuration grammar: "0", or numbers each with a unit, after an optional sign
DURATION_PATTERN = r"^[+-]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$"
_SCALARS: dict[t.Any, dict[str, t.Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},  # as Go's int, on the 64-bit hosts piped runs on
    float: {"type": "number"},
    str: {"type": "string"},
}
_SEQUENCES = (list, tuple, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)

Schema = dict[str, t.Any]
#: keywords that describe and never refuse a value
_ANNOTATIONS = {"title", "description", "default", "examples", "writeOnly", "$schema"}


class SchemaError(TypeError):
    """A class cannot be described (its annotations do not resolve, say); the message names it."""


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


#: a field without a default, or with one JSON cannot show
NO_DEFAULT: t.Any = _NoDefault()
#: a default computed from the instance (attrs' Factory(takes_self=True)): there is one, with no fixed value to show
_COMPUTED = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of an options or config class, as configs write it."""

    key: str  #: the camelCase name PipeCD configs use
    snake: str  #: the snake_case name, accepted too
    type: t.Any  #: the resolved annotation
    required: bool
    default: t.Any  #: the default as JSON, or NO_DEFAULT
    description: str
    secret: bool


def camel(name: str) -> str:
    """``kube_config_path`` -> ``kubeConfigPath``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def is_class(tp: t.Any) -> bool:
    """An attrs class or dataclass: decoded field by field."""
    return isinstance(tp, type) and (hasattr(tp, "__attrs_attrs__") or dataclasses.is_dataclass(tp))


def class_description(cls: type) -> str:
    """The class docstring, unless it is the one dataclasses writes (``Name(field: type)``)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return "" if doc.startswith(f"{cls.__name__}(") else doc


def class_fields(cls: type) -> list[Field]:
    """The fields ``cls.__init__`` takes, in order, with their config names, types and JSON defaults."""
    try:
        hints = t.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - forward references fail in many ways
        raise SchemaError(f"cannot resolve the annotations of {cls.__qualname__} ({exc}); define the class at the top level of its module") from None
    found = []
    for name, init, default, metadata in _declared(cls):
        if not init:
            continue
        secret = bool(metadata.get("secret"))
        shown = NO_DEFAULT if secret or default is NO_DEFAULT else to_json(default)
        description = str(metadata.get("description", ""))
        found.append(Field(camel(name), name, hints.get(name, t.Any), default is NO_DEFAULT, shown, description, secret))
    return found


def _declared(cls: type) -> list[tuple[str, bool, t.Any, t.Mapping[str, t.Any]]]:
    """(init name, taken by __init__, default value or NO_DEFAULT, metadata) per field."""
    if hasattr(cls, "__attrs_attrs__"):
        import attrs

        fields = []
        for a in attrs.fields(cls):
            default = a.default
            if default is attrs.NOTHING:
                default = NO_DEFAULT
            elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = _COMPUTED if default.takes_self else default.factory()
            fields.append((getattr(a, "alias", None) or a.name.lstrip("_"), a.init, default, a.metadata))
        return fields
    result: list[tuple[str, bool, t.Any, t.Mapping[str, t.Any]]] = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory() if f.default_factory is not dataclasses.MISSING else NO_DEFAULT
        result.append((f.name, f.init, default, f.metadata))
    return result


def to_json(value: t.Any) -> t.Any:
    """A default as a config would write it (``"30s"`` for 30 seconds), or NO_DEFAULT when JSON cannot show it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.timedelta):
        return go_duration(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if hasattr(type(value), "__pipeplug_decode__"):
        return str(value)  # pipeplug.units write themselves back as Go does
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_json(v) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return NO_DEFAULT if NO_DEFAULT in items else items
    if isinstance(value, dict):
        mapping = {str(k): to_json(v) for k, v in value.items()}
        return NO_DEFAULT if NO_DEFAULT in mapping.values() else mapping
    if is_class(type(value)):
        fields = {f.key: to_json(getattr(value, f.snake, NO_DEFAULT)) for f in class_fields(type(value)) if not f.secret}
        return NO_DEFAULT if NO_DEFAULT in fields.values() else fields
    return NO_DEFAULT


def go_duration(value: datetime.timedelta) -> str:
    """A duration as Go prints one: ``1h30m0s``, ``1.5s``, ``250ms``, ``0s``."""
    micros = value // datetime.timedelta(microseconds=1)
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    if micros < 1_000_000:
        return sign + ("0s" if micros == 0 else f"{micros}us" if micros < 1000 else f"{micros / 1000:.3f}".rstrip("0").rstrip(".") + "ms")
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else ""
    return f"{sign}{text}{seconds}" + (f".{fraction:06d}".rstrip("0") if fraction else "") + "s"


# -- schemas --------------------------------------------------------------------------


def type_schema(tp: t.Any, *, lenient: bool = False, _seen: tuple[type, ...] = ()) -> Schema:
    """The JSON Schema of the values the decoder turns into ``tp``.

    ``lenient`` describes classes decoded for a rollback stage, which ignore
    keys they do not declare.
    """
    origin, args = t.get_origin(tp), t.get_args(tp)

    def inner(arg: t.Any) -> Schema:
        return type_schema(arg, lenient=lenient, _seen=_seen)

    schema: Schema
    if origin is t.Annotated:
        return inner(args[0])
    if tp is t.Any or tp is object:
        return {}
    custom = getattr(tp, "__pipeplug_schema__", None)
    if custom is not None:
        return dict(custom())
    if getattr(tp, "__pipeplug_decode__", None) is not None:
        return {}  # it reads its own values and says nothing of them
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return dict(scalar)
    if tp is datetime.timedelta:
        return {"type": "string", "pattern": DURATION_PATTERN, "description": 'a duration such as "30s", "1h30m" or "250ms"', "examples": ["30s"]}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if origin is t.Literal:
        return {"enum": list(args)}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if origin is t.Union or type(tp).__name__ == "UnionType":
        members = [inner(arg) for arg in args if arg is not type(None)]
        union: Schema = members[0] if len(members) == 1 else {"anyOf": members}
        return nullable(union) if type(None) in args else union
    kind = origin or tp
    if kind in _SEQUENCES:
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "prefixItems": [inner(arg) for arg in args], "minItems": len(args), "maxItems": len(args)}
        item = args[0] if args else t.Any
        return {"type": "array"} if item is t.Any or item is object else {"type": "array", "items": inner(item)}
    if kind in _MAPPINGS:
        key, value = (args[0], args[1]) if len(args) == 2 else (str, t.Any)
        schema = {"type": "object"}
        if value is not t.Any and value is not object:
            schema["additionalProperties"] = inner(value)
        if key is not str and key is not t.Any:
            schema["propertyNames"] = inner(key)
        return schema
    if is_class(tp):
        if tp in _seen:
            return {"type": "object", "description": f"a {tp.__name__} (it contains itself: described one level deep)"}
        return class_schema(tp, lenient=lenient, _seen=(*_seen, tp))
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return {"not": {}, "description": f"pipeplug cannot decode type {name}: no value is accepted"}


def class_schema(cls: type, *, lenient: bool = False, _seen: tuple[type, ...] = ()) -> Schema:
    """The object schema of an attrs class or dataclass: both names of each field, required ones, defaults."""
    properties: Schema = {}
    required: list[str] = []
    either: list[Schema] = []
    never_both: Schema = {}
    for field in class_fields(cls):
        schema = type_schema(field.type, lenient=lenient, _seen=(*_seen, cls))
        if field.description:
            schema["description"] = field.description
        if field.secret:
            schema["writeOnly"] = True
        if not field.required:
            schema = nullable(schema)  # null leaves the default
            if field.default is not NO_DEFAULT:
                schema["default"] = field.default
        properties[field.key] = schema
        if field.snake != field.key:
            properties[field.snake] = {**schema, "description": f"the same as {field.key}; give only one of them"}
            never_both[field.snake] = {"not": {"required": [field.key]}}
        if field.required:
            if field.snake == field.key:
                required.append(field.key)
            else:
                either.append({"anyOf": [{"required": [field.key]}, {"required": [field.snake]}]})
    result: Schema = {"type": "object", "title": cls.__name__}
    description = class_description(cls)
    if description:
        result["description"] = description
    result["properties"] = properties
    if required:
        result["required"] = required
    if either:
        result["allOf"] = either
    if never_both:
        result["dependentSchemas"] = never_both
    if not lenient:
        result["additionalProperties"] = False
    return result


def nullable(schema: Schema) -> Schema:
    """``schema`` that also accepts null."""
    if not schema or schema.get("type") == "null":
        return schema
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], *([] if None in schema["enum"] else [None])]}
    kind = schema.get("type")
    if isinstance(kind, str) and "not" not in schema:
        return {**schema, "type": [kind, "null"]}
    if "anyOf" in schema and set(schema) - _ANNOTATIONS == {"anyOf"}:
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}


def stage_schema(spec: StageSpec) -> Schema:
    """The schema of a stage's ``with:`` block; a stage that does not read options accepts any mapping."""
    options_type = spec.handler.options_type
    if "options" not in spec.handler.params:
        return {"type": "object", "description": "this stage takes no options"}
    if options_type is None or options_type is dict or options_type is t.Any:
        return {"type": "object", "description": "the options are passed to the stage as written"}
    return type_schema(options_type, lenient=spec.rollback)


def config_schema(cls: type | None, nothing: str) -> Schema:
    """A config class's schema; without a class, any value is passed on as written."""
    return type_schema(cls) if cls is not None else {"description": nothing}


def plugin_schema(app: App) -> Schema:
    """The document ``pipeplug schema`` prints: every stage's ``with:`` and the three configs."""

    def rooted(schema: Schema) -> Schema:
        return {"$schema": DIALECT, **schema}

    return {
        "stages": {name: rooted(stage_schema(spec)) for name, spec in app.stages.items()},
        "config": rooted(config_schema(app.config_class, "no config class: the plugin gets the config as written")),
        "deployTargetConfig": rooted(config_schema(app.deploy_target_config_class, "no config class: each target's config is passed as written")),
        "appSpec": rooted(config_schema(app.app_spec_class, f"no app_spec class: spec.plugins.{app.name} is passed as written")),
    }


# -- examples and names, for docs -------------------------------------------------------


def example(schema: Schema) -> t.Any:
    """A small value the schema accepts: only required properties, the first choice of each."""
    if "examples" in schema:
        return schema["examples"][0]
    if "enum" in schema:
        return next((v for v in schema["enum"] if v is not None), None)
    if "anyOf" in schema:
        return example(next((s for s in schema["anyOf"] if s.get("type") != "null"), schema["anyOf"][0]))
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: example(properties[key]) for key in required_keys(schema)}
    if kind == "array":
        return [example(s) for s in schema["prefixItems"]] if "prefixItems" in schema else [example(schema.get("items", {"type": "string"}))]
    return {"string": "text", "integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind or "", "text")


def required_keys(schema: Schema) -> list[str]:
    """The properties an object schema requires, each under its camelCase name."""
    keys = list(schema.get("required", []))
    for rule in schema.get("allOf", []):
        keys.append(rule["anyOf"][0]["required"][0])
    order = list(schema.get("properties", {}))
    return sorted(keys, key=order.index)


def type_name(tp: t.Any) -> str:
    """How docs name a field's type: ``integer``, ``duration``, ``list of string``, ``"fast" | "safe"``."""
    origin, args = t.get_origin(tp), t.get_args(tp)
    if origin is t.Annotated:
        return type_name(args[0])
    names = {bool: "boolean", int: "integer", float: "number", str: "string", datetime.timedelta: "duration", t.Any: "any", object: "any", type(None): "null"}
    if tp in names:
        return names[tp]
    if origin is t.Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        values = args if origin is t.Literal else [m.value for m in tp]
        return " | ".join(json.dumps(v) for v in values)
    if origin is t.Union or type(tp).__name__ == "UnionType":
        members = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(members) + (" or null" if type(None) in args else "")
    kind = origin or tp
    if kind in _SEQUENCES:
        if kind is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return "list of (" + ", ".join(type_name(a) for a in args) + ")"
        return f"list of {type_name(args[0])}" if args else "list"
    if kind in _MAPPINGS:
        return f"map of {type_name(args[0])} to {type_name(args[1])}" if len(args) == 2 else "map"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# -- checking an app config --------------------------------------------------------------


def check_app_config(app: App, path: str) -> tuple[list[str], list[str]]:
    """(problems, notes) of the app config at ``path`` for ``app``: its ``with:`` blocks and ``spec.plugins.<name>``.

    Values are checked by the plugin's own decoder, exactly as the plugin will
    at planning time, with each problem at its YAML path
    (``spec.pipeline.stages[2].with.retries: ...``). Stages the plugin does
    not serve belong to other plugins and are skipped.
    """
    from .configs import ConfigError
    from .dev.appconfig import AppConfigError
    from .dev.appconfig import parse_app_config

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return [f"{path}: cannot read it: {exc.strerror}"], []
    try:
        config = parse_app_config(raw, path)
    except AppConfigError as exc:
        return exc.problems, []
    problems: list[str] = []
    notes = [f"warning: {w}" for w in config.warnings]
    checked = 0
    for stage in config.stages:
        spec = app.stages.get(stage.name)
        if spec is None:
            notes.append(f"spec.pipeline.stages[{stage.index}] ({stage.name}): not a stage of {app.name}, skipped")
            continue
        checked += 1
        options_type = spec.handler.options_type
        value = json.loads(stage.with_json)
        value = {} if value is None else value  # a bare `with:`, as piped sends it
        if options_type is None or (options_type is dict and isinstance(value, dict)):
            continue
        try:
            app.converter.structure(value, options_type, path=f"spec.pipeline.stages[{stage.index}].with", lenient=spec.rollback)
        except ConfigError as exc:
            problems += exc.problems
    if app.app_spec_class is not None:
        section = config.plugins.get(app.name) or {}
        try:
            app.converter.structure(section, app.app_spec_class, path=f"spec.plugins.{app.name}")
        except ConfigError as exc:
            problems += exc.problems
    notes.append(f"checked {checked} stage(s) of {app.name}" + (f" and spec.plugins.{app.name}" if app.app_spec_class is not None else ""))
    return problems, notes
