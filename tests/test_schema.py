"""`pipeplug schema`: the JSON Schema it prints says exactly what the plugin's decoder accepts.

The command runs as a subprocess, as users run it. A property-based test then
feeds the same generated values to the decoder and to the printed schema
(validated by the `jsonschema` library) and requires the same verdict.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import textwrap
import typing as t

import attrs
import jsonschema
import pytest
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pipeplug import ConfigError
from pipeplug import Percentage
from pipeplug import Replicas
from pipeplug.converter import StrictConverter

from .support import load_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLUGIN = '''
"""A plugin with options of every kind the decoder reads."""
import dataclasses
import datetime
import enum
import typing as t

import attrs

import pipeplug


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@attrs.frozen
class Target:
    """Where to deploy."""

    path: str
    depth: int = 1


@attrs.frozen
class DeployOptions:
    """How DEPLOY deploys."""

    kube_config_path: str = attrs.field(metadata={"description": "the kubeconfig to use"})
    name: str
    retries: int = 0
    ratio: float = 1.0
    dry_run: bool = False
    timeout: datetime.timedelta = datetime.timedelta(seconds=90)
    mode: t.Literal["fast", "safe"] = "safe"
    level: Level = Level.LOW
    tags: list[str] = attrs.field(factory=list)
    env: dict[str, int] = attrs.field(factory=dict)
    pair: t.Optional[tuple[str, int]] = None
    target: t.Optional[Target] = None
    targets: list[Target] = attrs.field(factory=list)
    weight: pipeplug.Percentage = pipeplug.Percentage(50, True)
    replicas: t.Optional[pipeplug.Replicas] = None
    either: t.Union[int, str] = 0
    token: str = pipeplug.secret(default="")


@attrs.frozen
class MoreOptions:
    kinds: frozenset[str] = frozenset()
    ports: t.Sequence[int] = ()
    sizes: tuple[int, ...] = ()
    by_mode: dict[t.Literal["a", "b"], int] = attrs.field(factory=dict)
    maybe: t.Optional[t.Literal["x", 1, True]] = None
    weights: list[dict[str, pipeplug.Percentage]] = attrs.field(factory=list)
    anything: t.Any = None
    flag_or_names: t.Union[bool, list[str]] = False


@dataclasses.dataclass(frozen=True)
class UndoOptions:
    on_rollback: t.Optional[str] = None
    timeout: datetime.timedelta = datetime.timedelta(seconds=30)


@attrs.frozen
class AppSpec:
    source: str = "."


app = pipeplug.App("kinds", app_spec=AppSpec)


@app.stage("DEPLOY")
def deploy(options: DeployOptions) -> None:
    """Deploy the application."""


@app.stage("MORE")
def more(options: MoreOptions) -> None:
    pass


@app.stage("PLAIN")
def plain(ctx: pipeplug.Context) -> None:
    """Takes no options."""


@app.stage("RAW")
def raw(options: dict) -> None:
    pass


@app.stage("UNDO", rollback=True)
def undo(options: UndoOptions) -> None:
    pass
'''


def run(*argv: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "pipeplug.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("kinds")
    (directory / "kinds_plugin.py").write_text(PLUGIN)
    return directory


@pytest.fixture(scope="module")
def document(plugin_dir):
    """What `pipeplug schema` prints for the plugin."""
    printed = run("schema", "kinds_plugin.py", cwd=str(plugin_dir))
    assert printed.returncode == 0, printed.stderr
    return json.loads(printed.stdout)


@pytest.fixture(scope="module")
def module(plugin_dir):
    """The same plugin imported here, for its classes and its decoder."""
    return load_module(str(plugin_dir / "kinds_plugin.py"))


def test_the_document_lists_every_stage_and_each_config(document):
    assert set(document) == {"stages", "config", "deployTargetConfig", "appSpec"}
    assert list(document["stages"]) == ["DEPLOY", "MORE", "PLAIN", "RAW", "UNDO"]  # rollback stages too
    for schema in [*document["stages"].values(), document["config"], document["deployTargetConfig"], document["appSpec"]]:
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
    assert document["stages"]["PLAIN"] == {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "description": "this stage takes no options"}
    assert document["appSpec"]["properties"] == {"source": {"type": ["string", "null"], "default": "."}}
    assert "type" not in document["config"]  # no config class: any value is passed on


def test_a_stage_schema_names_types_defaults_and_descriptions_as_configs_write_them(document):
    deploy = document["stages"]["DEPLOY"]
    props = deploy["properties"]
    assert (deploy["title"], deploy["description"], deploy["additionalProperties"]) == ("DeployOptions", "How DEPLOY deploys.", False)
    assert deploy["required"] == ["name"]
    assert {"anyOf": [{"required": ["kubeConfigPath"]}, {"required": ["kube_config_path"]}]} in deploy["allOf"]
    assert deploy["dependentSchemas"]["kube_config_path"] == {"not": {"required": ["kubeConfigPath"]}}
    assert props["kubeConfigPath"] == {"type": "string", "description": "the kubeconfig to use"}
    assert props["timeout"]["default"] == "1m30s" and "pattern" in props["timeout"]
    assert props["mode"]["enum"] == ["fast", "safe", None] and props["level"]["default"] == "low"
    assert props["retries"]["type"] == ["integer", "null"] and props["retries"]["maximum"] == 2**63 - 1
    assert props["env"]["additionalProperties"]["type"] == "integer"
    assert props["target"]["anyOf"][0]["properties"]["depth"]["default"] == 1
    assert props["weight"]["default"] == "50%" and props["weight"]["anyOf"][0]["type"] == "integer"
    assert props["token"]["writeOnly"] is True and "default" not in props["token"]  # a secret's default is not shown
    assert "additionalProperties" not in document["stages"]["UNDO"]  # a rollback stage ignores the forward stage's other keys


def test_each_default_in_the_schema_is_read_back_as_the_default(document, module):
    converter = StrictConverter()
    for key, prop in document["stages"]["DEPLOY"]["properties"].items():
        if "default" in prop and "_" not in key:
            required = {"kubeConfigPath": "k", "name": "n"}
            assert converter.structure({**required, key: prop["default"]}, module.DeployOptions, path="with") == converter.structure(required, module.DeployOptions, path="with"), key


# -- the decoder and the schema agree ---------------------------------------------------------

#: plain text without whitespace or non-ASCII digits (see the README: the decoder also tolerates spaces
#: around a duration, and python-jsonschema's "$" matches before a final newline, as ECMA's does not)
TEXT = st.text(alphabet="abcxyz019%.+-_smhµ", max_size=6)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**65), 2**65) | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
DURATION = st.from_regex(r"[+-]?(0|(([0-9]{1,3}(\.[0-9]{0,2})?|\.[0-9]{1,2})(ns|us|µs|ms|s|m|h)){1,3})", fullmatch=True)
WHOLE = st.from_regex(r"[+-]?[0-9]{1,20}%?", fullmatch=True)


def valid(tp: t.Any, module: t.Any) -> st.SearchStrategy[t.Any]:
    """Values the decoder should accept for ``tp``."""
    origin, args = t.get_origin(tp), t.get_args(tp)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        return st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    if tp is str:
        return TEXT
    if tp is datetime.timedelta:
        return DURATION
    if tp in (Percentage, Replicas):
        return st.integers(-(2**63), 2**63 - 1) | st.from_regex(r"[+-]?[0-9]{1,18}%?", fullmatch=True)
    if tp is type(None):
        return st.none()
    if origin is t.Literal:
        return st.sampled_from(args)
    if isinstance(tp, type) and issubclass(tp, module.Level):
        return st.sampled_from([m.value for m in tp])
    if origin is t.Union:
        return st.one_of([valid(a, module) for a in args])
    if tp is t.Any:
        return JSON
    if isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp)):
        return objects(tp, module)
    if origin in (list, frozenset, collections.abc.Sequence) or (origin is tuple and args[1:] == (Ellipsis,)):
        return st.lists(maybe_wrong(args[0], module), max_size=3)
    if origin is tuple:
        return st.tuples(*[maybe_wrong(a, module) for a in args]).map(list)
    if origin is dict:
        keys = TEXT if args[0] is str else valid(args[0], module).filter(lambda k: isinstance(k, str)) | TEXT
        return st.dictionaries(keys, maybe_wrong(args[1], module), max_size=3)
    raise AssertionError(f"no strategy for {tp}")


def wrong(tp: t.Any, module: t.Any) -> st.SearchStrategy[t.Any]:
    """Near misses for ``tp`` (out of range, badly written, the wrong length), or any JSON at all."""
    origin, args = t.get_origin(tp), t.get_args(tp)
    if tp is int:
        return st.integers(2**63 - 2, 2**63 + 2) | st.integers(-(2**63) - 2, -(2**63) + 2) | JSON
    if tp is datetime.timedelta:
        return st.text(alphabet="0123456789.nsuµmh+-", max_size=6) | JSON
    if tp in (Percentage, Replicas):
        return WHOLE | st.text(alphabet="0123456789%+-.a", max_size=5) | st.integers(2**63 - 2, 2**63 + 2) | JSON
    if isinstance(tp, type) and issubclass(tp, module.Level):
        return st.just("LOW") | JSON
    if origin is tuple and args[1:] != (Ellipsis,):
        return st.lists(valid(args[0], module), max_size=len(args) + 1) | JSON
    if isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp)):
        return objects(tp, module, breaking=True) | JSON
    return JSON


def maybe_wrong(tp: t.Any, module: t.Any) -> st.SearchStrategy[t.Any]:
    """Mostly a value the decoder accepts, one time in ten a near miss."""
    return st.integers(0, 9).flatmap(lambda n: wrong(tp, module) if n == 0 else valid(tp, module))


def objects(cls: type, module: t.Any, breaking: bool = False) -> st.SearchStrategy[dict[str, t.Any]]:
    """Mappings for ``cls``: fields under their camelCase or snake_case names, optional ones sometimes missing.

    ``breaking`` spoils one field (a near miss, both names, missing) or adds an
    unknown key, so that most values are one mistake away from being accepted.
    """
    hints = t.get_type_hints(cls)
    fields = [(a.name, a.default is attrs.NOTHING) for a in attrs.fields(cls)] if attrs.has(cls) else [(f.name, False) for f in dataclasses.fields(cls)]

    @st.composite
    def build(draw: t.Any) -> dict[str, t.Any]:
        # required fields are spoilt more often: leaving one out is a mistake only for them
        broken = draw(st.sampled_from([name for name, required in fields for _ in range(4 if required else 1)] + ["unknown key"])) if breaking else None
        how = draw(st.sampled_from(["wrong", "wrong", "both", "missing"]))
        result: dict[str, t.Any] = {}
        for name, required in fields:
            head, *rest = name.split("_")
            keys = [head + "".join(p.capitalize() for p in rest), name]
            if name == broken and how == "both":
                chosen = keys
            elif (name == broken and how == "missing") or (not required and draw(st.integers(0, 3)) == 0):
                chosen = []
            else:
                chosen = [draw(st.sampled_from([keys[0]] * 4 + [keys[1]]))]
            for key in chosen:
                result[key] = draw(wrong(hints[name], module) if name == broken and how == "wrong" else valid(hints[name], module))
        if broken == "unknown key":
            result[draw(st.sampled_from(["retires", "Name", "extra"]))] = draw(JSON)
        return result

    return build()


def verdicts(value: t.Any, cls: type, schema: dict[str, t.Any], lenient: bool) -> tuple[bool, bool]:
    try:
        StrictConverter().structure(value, cls, path="with", lenient=lenient)
        decoded = True
    except ConfigError:
        decoded = False
    return decoded, jsonschema.Draft202012Validator(schema).is_valid(value)


def assert_agree(value: t.Any, cls: type, schema: dict[str, t.Any], lenient: bool) -> None:
    decoded, valid = verdicts(value, cls, schema, lenient)
    event("accepted" if decoded else "refused")  # --hypothesis-show-statistics shows both verdicts are common
    assert decoded == valid, f"decoder {'accepts' if decoded else 'refuses'} {value!r}, the schema {'accepts' if valid else 'refuses'} it"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_decoder_accepts_exactly_what_the_schema_validates(document, module, data):
    value = data.draw(objects(module.DeployOptions, module, breaking=True) | objects(module.DeployOptions, module) | JSON)
    assert_agree(value, module.DeployOptions, document["stages"]["DEPLOY"], lenient=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_sets_sequences_keyed_maps_and_any_agree_too(document, module, data):
    value = data.draw(objects(module.MoreOptions, module, breaking=True) | objects(module.MoreOptions, module) | JSON)
    assert_agree(value, module.MoreOptions, document["stages"]["MORE"], lenient=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_rollback_stages_schema_agrees_with_the_lenient_decoder(document, module, data):
    value = data.draw(objects(module.UndoOptions, module, breaking=True) | objects(module.UndoOptions, module) | objects(module.DeployOptions, module) | JSON)
    assert_agree(value, module.UndoOptions, document["stages"]["UNDO"], lenient=True)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ({"kubeConfigPath": "k", "name": "n"}, True),
        ({"kube_config_path": "k", "name": "n"}, True),  # snake_case is accepted too
        ({"kubeConfigPath": "k", "kube_config_path": "k", "name": "n"}, False),  # but not both
        ({"kubeConfigPath": "k", "kube_config_path": None, "name": "n"}, False),  # not even as null
        ({"name": "n"}, False),  # required under either name
        ({"kubeConfigPath": "k", "name": "n", "retries": None, "target": None}, True),  # null leaves the default
        ({"kubeConfigPath": None, "name": "n"}, False),  # but a required field must have a value
        ({"kubeConfigPath": "k", "name": "n", "timeout": "1h30m", "weight": "+7%", "replicas": "50%"}, True),
        ({"kubeConfigPath": "k", "name": "n", "weight": "9223372036854775808"}, False),  # beyond 64 bits
        ({"kubeConfigPath": "k", "name": "n", "retries": 2**63}, False),
        ({"kubeConfigPath": "k", "name": "n", "env": {"a": 2**63}}, False),  # in a map too (this test found it was not)
        ({"kubeConfigPath": "k", "name": "n", "weight": "-9223372036854775808%", "retries": -(2**63)}, True),
        ({"kubeConfigPath": "k", "name": "n", "pair": ["a", 1, 2]}, False),
        ({"kubeConfigPath": "k", "name": "n", "target": {"path": "p", "Depth": 2}}, False),
        ({"kubeConfigPath": "k", "name": "n", "either": "x"}, True),
    ],
)
def test_the_explicit_cases_agree(document, module, value, accepted):
    assert verdicts(value, module.DeployOptions, document["stages"]["DEPLOY"], lenient=False) == (accepted, accepted)


def test_where_json_schema_cannot_follow_the_decoder(document, module):
    # JSON Schema compares numbers by value, so 3.0 is the integer 3; the decoder refuses it, as Go does
    value = {"kubeConfigPath": "k", "name": "n", "retries": 3.0}
    assert verdicts(value, module.DeployOptions, document["stages"]["DEPLOY"], lenient=False) == (False, True)


# -- checking an app config ---------------------------------------------------------------------


def test_app_config_problems_are_reported_at_their_yaml_paths(plugin_dir, tmp_path):
    config = tmp_path / "app.pipecd.yaml"
    config.write_text(textwrap.dedent("""\
        apiVersion: pipecd.dev/v1beta1
        kind: Application
        spec:
          name: demo
          pipeline:
            stages:
              - name: DEPLOY
                with: {kubeConfigPath: k, name: n}
              - name: WAIT
                with: {anything: 1}
              - name: DEPLOY
                with:
                  kubeConfigPath: k
                  name: n
                  retries: 2.9
                  target: {path: p, dept: 2}
              - name: RAW
                with: {free: form}
          plugins:
            kinds:
              source: 5
        """))
    checked = run("schema", str(plugin_dir / "kinds_plugin.py"), "--app-config", str(config), cwd=str(tmp_path))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "  spec.pipeline.stages[2].with.retries: expected an integer, got 2.9\n" in checked.stderr
    assert '  spec.pipeline.stages[2].with.target.dept: unknown field; did you mean "depth"?\n' in checked.stderr
    assert "  spec.plugins.kinds.source: expected a string, got 5\n" in checked.stderr
    assert "spec.pipeline.stages[1] (WAIT): not a stage of kinds, skipped" in checked.stderr
    assert f"{config}: 3 problem(s):" in checked.stderr and checked.stdout == ""


def test_a_good_app_config_passes(plugin_dir, tmp_path):
    config = tmp_path / "app.pipecd.yaml"
    config.write_text("apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  pipeline:\n    stages:\n      - name: DEPLOY\n        with: {kube_config_path: k, name: n, timeout: 5m}\n      - name: PLAIN\n")
    checked = run("schema", str(plugin_dir / "kinds_plugin.py"), "--app-config", str(config), cwd=str(tmp_path))
    assert (checked.returncode, checked.stdout) == (0, f"{config}: ok\n"), checked.stderr
    assert "checked 2 stage(s) of kinds and spec.plugins.kinds" in checked.stderr


def test_an_app_config_that_is_not_one_is_reported_too(plugin_dir, tmp_path):
    config = tmp_path / "app.pipecd.yaml"
    config.write_text("kind: Application\nspec: [1]\n")
    checked = run("schema", str(plugin_dir / "kinds_plugin.py"), "--app-config", str(config), cwd=str(tmp_path))
    assert checked.returncode == 1
    assert "  apiVersion: must be 'pipecd.dev/v1beta1'" in checked.stderr and "  spec: expected a mapping, got a list" in checked.stderr
    missing = run("schema", str(plugin_dir / "kinds_plugin.py"), "--app-config", str(tmp_path / "nope.yaml"), cwd=str(tmp_path))
    assert missing.returncode == 1 and "nope.yaml: cannot read it" in missing.stderr


def test_a_class_with_unresolvable_annotations_is_a_clear_error(tmp_path):
    (tmp_path / "broken.py").write_text(textwrap.dedent("""\
        from __future__ import annotations
        import attrs, pipeplug

        @attrs.frozen
        class Options:
            size: Missing

        app = pipeplug.App("broken")

        @app.stage("S")
        def s(options: Options) -> None:
            pass
        """))
    printed = run("schema", "broken.py", cwd=str(tmp_path))
    assert printed.returncode == 1
    assert "Error: cannot resolve the annotations of Options (name 'Missing' is not defined)" in printed.stderr and "Traceback" not in printed.stderr


@pytest.mark.parametrize("config", sorted(name for name in os.listdir(os.path.join(ROOT, "examples")) if name.endswith(".pipecd.yaml")))
def test_the_shipped_example_configs_pass(config, tmp_path):
    checked = run("schema", os.path.join(ROOT, "example_app.py"), "--app-config", os.path.join(ROOT, "examples", config), cwd=str(tmp_path))
    assert (checked.returncode, checked.stdout.endswith(": ok\n")) == (0, True), checked.stderr
