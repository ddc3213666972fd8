"""Typed configs: durations, camelCase keys, and error paths for every bad field."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import typing as t

import attrs
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import pipeplug
from pipeplug.configs import ConfigError
from pipeplug.configs import camel_case
from pipeplug.configs import parse_duration
from pipeplug.converter import StrictConverter
from pipeplug.settings import parse_settings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400), ("0", 0), ("2m3s", 123), ("-1s", -1), ("10us", 1e-5)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("value", [5, "", "5", "1d", "s", "1h 2m", None])
def test_bad_durations(value):
    with pytest.raises(ValueError, match='expected a duration such as "30s"'):
        parse_duration(value)


@attrs.frozen
class Inner:
    kube_config_path: str
    replicas: int = 1


@attrs.frozen
class Outer:
    inner: Inner
    names: list[str] = attrs.field(factory=list)
    timeout: datetime.timedelta = datetime.timedelta(seconds=5)


def test_camel_and_snake_case_keys():
    c = StrictConverter()
    assert c.structure({"inner": {"kubeConfigPath": "/k"}}, Outer, path="with").inner.kube_config_path == "/k"
    assert c.structure({"inner": {"kube_config_path": "/k", "replicas": 2}}, Outer, path="with").inner.replicas == 2


def test_every_bad_field_is_reported_with_its_path():
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"inner": {"replicas": "many", "extra": 1}, "timeout": 3}, Outer, path="config")
    problems = err.value.problems
    assert "config.inner.extra: unknown field (valid: kubeConfigPath, replicas)" in problems
    assert 'config.inner.replicas: expected an integer, got "many"' in problems
    assert 'config.timeout: expected a duration such as "30s", got 3' in problems


def test_missing_and_wrong_types():
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"inner": {"replicas": "x"}}, Outer, path="config")
    assert "config.inner.kubeConfigPath: required field is missing" in err.value.problems
    assert 'config.inner.replicas: expected an integer, got "x"' in err.value.problems
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure("text", Outer, path="config")
    assert err.value.problems == ['config: expected a mapping, got "text"']


def test_piped_config_json_with_absent_and_null_parts():
    app = pipeplug.App("p", config=Outer, deploy_target_config=Inner)
    with pytest.raises(ConfigError) as err:
        parse_settings(app, '{"name":"p","port":7001}')
    assert err.value.problems == ["config.inner: required field is missing"]
    app = pipeplug.App("p", deploy_target_config=Inner)
    settings = parse_settings(app, '{"name":"p","url":"file:///x","port":7001}')
    assert (settings.name, settings.port, settings.config, dict(settings.deploy_targets)) == ("p", 7001, {}, {})
    raw = '{"name":"renamed","url":"u","port":7001,"deployTargets":[{"name":"a","labels":{"x":"y"},"config":{"kubeConfigPath":"/k"}}]}'
    settings = parse_settings(app, raw)
    assert settings.name == "renamed"
    assert settings.deploy_targets["a"] == pipeplug.DeployTarget(name="a", labels={"x": "y"}, config=Inner("/k"))


def test_piped_config_errors_are_collected():
    app = pipeplug.App("p", deploy_target_config=Inner)
    raw = '{"port":0,"deployTargets":[{"name":"a","config":null},{"config":{}},{"name":"b","config":{"kubeConfigPath":"/k","x":1}}]}'
    with pytest.raises(ConfigError) as err:
        parse_settings(app, raw)
    assert err.value.problems == [
        "port: required; piped dials localhost:<port> (set spec.plugins[].port)",
        "deployTargets[0] (a).config.kubeConfigPath: required field is missing",
        "deployTargets[1].name: required, a non-empty string",
        "deployTargets[2] (b).config.x: unknown field (valid: kubeConfigPath, replicas)",
    ]
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_settings(app, "{")


# -- strictness, property-based: no JSON value is ever coerced ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@attrs.frozen
class Scalars:
    flag: bool = False
    count: int = 0
    ratio: float = 0.0
    text: str = ""
    names: list[str] = attrs.field(factory=list)
    env: dict[str, str] = attrs.field(factory=dict)


#: for each field, whether a decoded JSON value fits it exactly as Go's encoding/json decides
FITS = {
    "flag": lambda v: isinstance(v, bool),
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63,
    "ratio": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "text": lambda v: isinstance(v, str),
    "names": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "env": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(FITS)), value=json_values)
def test_a_value_is_accepted_exactly_when_go_would_accept_it(field, value):
    converter = StrictConverter()
    if value is None:  # null leaves the default, as Go leaves the zero value
        assert converter.structure({field: value}, Scalars, path="with") == Scalars()
    elif FITS[field](value):
        decoded = getattr(converter.structure({field: value}, Scalars, path="with"), field)
        assert decoded == value and type(decoded) is (float if field == "ratio" else type(value))
    else:
        with pytest.raises(ConfigError) as err:
            converter.structure({field: value}, Scalars, path="with")
        assert err.value.problems and all(p.startswith(f"with.{camel_case(field)}") for p in err.value.problems)


@settings(max_examples=100, deadline=None)
@given(st.builds(Scalars, names=st.lists(st.text(max_size=5)), env=st.dictionaries(st.text(max_size=5), st.text(max_size=5)), ratio=st.floats(allow_nan=False)))
def test_what_json_holds_comes_back_unchanged(options):
    as_json = json.loads(json.dumps({camel_case(k): v for k, v in attrs.asdict(options).items()}))
    assert StrictConverter().structure(as_json, Scalars, path="with") == options


def test_a_secret_field_never_shows_its_value_in_an_error():
    @attrs.frozen
    class WithSecret:
        token: str = pipeplug.secret()

    for value, shown in [(12345678, "a number"), (["hunter2hunter2"], "a list"), (True, "true")]:
        with pytest.raises(ConfigError) as err:
            StrictConverter().structure({"token": value}, WithSecret, path="config")
        assert err.value.problems == [f"config.token: expected a string, got {shown}"]


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    weight: int = 1


@attrs.frozen
class Rich:
    mode: Mode = Mode.SAFE
    steps: tuple[Step, ...] = ()
    pair: tuple[int, str] = (0, "")
    tags: frozenset[str] = frozenset()
    limit: t.Optional[int] = None
    either: t.Union[int, str] = 0
    waits: dict[str, datetime.timedelta] = attrs.field(factory=dict)


def test_enums_dataclasses_tuples_sets_and_unions():
    value = {"mode": "fast", "steps": [{"name": "a"}, {"name": "b", "weight": 2}], "pair": [1, "x"], "tags": ["a", "a"], "limit": None,
             "either": "x", "waits": {"short": "1s"}}  # fmt: skip
    rich = StrictConverter().structure(value, Rich, path="with")
    assert rich == Rich(Mode.FAST, (Step("a"), Step("b", 2)), (1, "x"), frozenset({"a"}), None, "x", {"short": datetime.timedelta(seconds=1)})
    bad = {"mode": "FAST", "steps": [{"name": 1, "wieght": 2}], "pair": [1], "tags": "a", "limit": 1.5, "either": 1.5, "waits": {"short": 1}}
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure(bad, Rich, path="with")
    assert err.value.problems == [
        'with.mode: expected one of "fast", "safe", got "FAST"',
        "with.steps[0].name: expected a string, got 1",
        'with.steps[0].wieght: unknown option; did you mean "weight"?',
        "with.pair: expected a list of 2 items, got a list",
        'with.tags: expected a list of strings, got "a"',
        "with.limit: expected an integer, got 1.5",
        "with.either: expected an integer or a string, got 1.5",
        'with.waits.short: expected a duration such as "30s", got 1',
    ]


def test_lenient_decoding_ignores_unknown_keys_but_not_wrong_types():
    converter = StrictConverter()
    assert converter.structure({"replicas": 2, "run": "x", "kubeConfigPath": "/k"}, Inner, path="with", lenient=True) == Inner("/k", 2)
    with pytest.raises(ConfigError, match=r"^with.replicas: expected an integer, got \"2\"$"):
        converter.structure({"replicas": "2", "run": "x", "kubeConfigPath": "/k"}, Inner, path="with", lenient=True)


# -- what cattrs would do differently by default: each case checked against our rules -------


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Color(str, enum.Enum):
    RED = "red"


@attrs.frozen
class Mixed:
    level: Level = Level.LOW
    color: Color = Color.RED
    blob: bytes = b""
    replicas: int = attrs.field(default=1, validator=attrs.validators.ge(1))


def test_enums_that_are_also_ints_or_strings_take_only_their_values():
    converter = StrictConverter()
    assert converter.structure({"level": 2, "color": "red"}, Mixed, path="with") == Mixed(Level.HIGH, Color.RED)
    with pytest.raises(ConfigError) as err:
        converter.structure({"level": True, "color": "RED", "blob": "x"}, Mixed, path="with")
    assert err.value.problems == [
        "with.level: expected one of 1, 2, got true",
        'with.color: expected one of "red", got "RED"',
        "with.blob: pipeplug cannot decode type bytes; use str, int, float, bool, datetime.timedelta, an Enum, a Literal, lists, dicts or attrs classes",
    ]


def test_the_class_own_validators_are_reported_at_the_class_path():
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"replicas": 0}, Mixed, path="config")
    assert err.value.problems == ["config: 'replicas' must be >= 1: 0"]


@attrs.frozen
class Node:
    name: str
    children: list[Node] = attrs.field(factory=list)


def test_a_class_may_contain_itself_and_lenient_decoding_reaches_nested_classes():
    converter = StrictConverter()
    tree = {"name": "a", "children": [{"name": "b", "children": [{"name": 1, "extra": 1}]}]}
    deep = "with.children[0].children[0]"
    with pytest.raises(ConfigError) as err:
        converter.structure(tree, Node, path="with")
    assert err.value.problems == [f"{deep}.name: expected a string, got 1", f"{deep}.extra: unknown option (valid: name, children)"]
    with pytest.raises(ConfigError) as err:
        converter.structure(tree, Node, path="with", lenient=True)
    assert err.value.problems == [f"{deep}.name: expected a string, got 1"]
    tree["children"][0]["children"][0]["name"] = "c"
    assert converter.structure(tree, Node, path="with", lenient=True) == Node("a", [Node("b", [Node("c")])])
    with pytest.raises(ConfigError, match="extra: unknown option"):  # lenient was for that call only
        converter.structure(tree, Node, path="with")


def test_a_secret_inside_a_list_or_mapping_never_shows_either():
    @attrs.frozen
    class Secrets:
        tokens: list[str] = pipeplug.secret(factory=list)
        ports: dict[str, int] = pipeplug.secret(factory=dict)

    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"tokens": ["a", 12345678], "ports": {"db": "hunter2"}}, Secrets, path="config")
    assert err.value.problems == ["config.tokens[1]: expected a string, got a number", "config.ports.db: expected an integer, got a string"]


def test_each_app_has_its_own_cattrs_converter_built_once():
    import cattrs

    first, second = pipeplug.App("a"), pipeplug.App("b")
    assert isinstance(first.converter, cattrs.Converter) and first.converter is first.converter
    assert first.converter is not second.converter
