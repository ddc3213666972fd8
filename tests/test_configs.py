"""Typed configs: durations, camelCase keys, and error paths for every bad field."""

from __future__ import annotations

import datetime
import json

import attrs
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import pipeplug
from pipeplug.configs import ConfigError
from pipeplug.configs import _camel
from pipeplug.configs import make_converter
from pipeplug.configs import parse_duration
from pipeplug.configs import structure
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
    c = make_converter()
    assert structure(c, {"inner": {"kubeConfigPath": "/k"}}, Outer, path="with").inner.kube_config_path == "/k"
    assert structure(c, {"inner": {"kube_config_path": "/k", "replicas": 2}}, Outer, path="with").inner.replicas == 2


def test_every_bad_field_is_reported_with_its_path():
    with pytest.raises(ConfigError) as err:
        structure(make_converter(), {"inner": {"replicas": "many", "extra": 1}, "timeout": 3}, Outer, path="config")
    problems = err.value.problems
    assert "config.inner.extra: unknown field (valid: kubeConfigPath, replicas)" in problems
    assert 'config.inner.replicas: expected an integer, got "many"' in problems
    assert 'config.timeout: expected a duration such as "30s", got 3' in problems


def test_missing_and_wrong_types():
    with pytest.raises(ConfigError) as err:
        structure(make_converter(), {"inner": {"replicas": "x"}}, Outer, path="config")
    assert "config.inner.kubeConfigPath: required field is missing" in err.value.problems
    assert 'config.inner.replicas: expected an integer, got "x"' in err.value.problems
    with pytest.raises(ConfigError) as err:
        structure(make_converter(), "text", Outer, path="config")
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
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "ratio": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "text": lambda v: isinstance(v, str),
    "names": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "env": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(FITS)), value=json_values)
def test_a_value_is_accepted_exactly_when_go_would_accept_it(field, value):
    converter = make_converter()
    if value is None:  # null leaves the default, as Go leaves the zero value
        assert structure(converter, {field: value}, Scalars, path="with") == Scalars()
    elif FITS[field](value):
        decoded = getattr(structure(converter, {field: value}, Scalars, path="with"), field)
        assert decoded == value and type(decoded) is (float if field == "ratio" else type(value))
    else:
        with pytest.raises(ConfigError) as err:
            structure(converter, {field: value}, Scalars, path="with")
        assert err.value.problems and all(p.startswith(f"with.{_camel(field)}") for p in err.value.problems)


@settings(max_examples=100, deadline=None)
@given(st.builds(Scalars, names=st.lists(st.text(max_size=5)), env=st.dictionaries(st.text(max_size=5), st.text(max_size=5)), ratio=st.floats(allow_nan=False)))
def test_what_json_holds_comes_back_unchanged(options):
    as_json = json.loads(json.dumps({_camel(k): v for k, v in attrs.asdict(options).items()}))
    assert structure(make_converter(), as_json, Scalars, path="with") == options


def test_a_secret_field_never_shows_its_value_in_an_error():
    @attrs.frozen
    class WithSecret:
        token: str = pipeplug.secret()

    for value, shown in [(12345678, "a number"), (["hunter2hunter2"], "a list"), (True, "true")]:
        with pytest.raises(ConfigError) as err:
            structure(make_converter(), {"token": value}, WithSecret, path="config")
        assert err.value.problems == [f"config.token: expected a string, got {shown}"]
