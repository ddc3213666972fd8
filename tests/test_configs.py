"""Typed configs: durations, camelCase keys, and error paths for every bad field."""

from __future__ import annotations

import datetime

import attrs
import pytest

import pipeplug
from pipeplug.configs import ConfigError
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
