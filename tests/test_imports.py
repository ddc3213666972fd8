"""What importing pipeplug loads: the public names on demand, heavy dependencies only when used.

Each check runs in a fresh interpreter, because this test process has long
since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

import pipeplug
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.testing import PluginProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC = (
    "App", "ConfigError", "CommandType", "Context", "StageCommand", "RegistrationError", "secret", "PipedError", "ProcessError", "ProcessResult",
    "StageLog", "ArtifactKind", "ArtifactVersion", "Deployment", "DeploymentSource", "DeployTarget", "HealthStatus",
    "Livestate", "ManualOperation", "PlannedStage", "PlanPreview", "Resource", "RequestedStage", "StageResult",
    "StageStatus", "StrategyDecision", "SyncStatus", "SyncStrategy", "Percentage", "Replicas", "PipeplugError", "StageFailed",
)  # fmt: skip


def loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which of ``watched`` it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {list(watched)!r} if m in sys.modules]))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_generated_code_loads_without_the_framework():
    # bench/raw_servicer.py, the baseline pipeplug is measured against, imports only this
    loaded = loaded_after("import pipeplug._gen.plugin.deployment_pb2", ("pipeplug.app", "pipeplug.types", "attrs", "cattrs", "yaml", "click"))
    assert loaded == []


def test_a_plugin_starting_without_config_classes_loads_neither_yaml_nor_cattrs():
    code = (
        "import pipeplug\n"
        "app = pipeplug.App('p')\n"
        "app.stage('A')(lambda ctx: None)\n"
        "import pipeplug.start\n"
        "from pipeplug.settings import parse_settings\n"
        "parse_settings(app, {'name': 'p', 'port': 7001, 'config': {'any': 1}, 'deployTargets': [{'name': 't'}]})\n"
    )
    assert loaded_after(code, ("yaml", "cattrs", "pipeplug.loading")) == []


def test_config_classes_load_cattrs_when_first_structured_and_errors_name_the_field_and_the_closest_name():
    code = (
        "import attrs, pipeplug, sys\n"
        "from pipeplug.settings import parse_settings\n"
        "@attrs.frozen\n"
        "class Config:\n"
        "    kube_config_path: str\n"
        "app = pipeplug.App('p', config=Config)\n"
        "assert 'cattrs' not in sys.modules\n"
        "try:\n"
        "    parse_settings(app, {'name': 'p', 'port': 7001, 'config': {'kubeConfigPth': '/k'}})\n"
        "except pipeplug.ConfigError as exc:\n"
        "    print(json.dumps(exc.problems))\n"
        "assert 'cattrs' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", f"import json\n{code}"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(json.loads(out.stdout)) == ["config.kubeConfigPath: required field is missing", 'config.kubeConfigPth: unknown field; did you mean "kubeConfigPath"?']


LEAN_PLUGIN = """
from __future__ import annotations  # else Python itself evaluates the annotations, loading what they name

import atexit, json, os, sys

import pipeplug

app = pipeplug.App("lean")


@app.stage("A")
async def a(ctx: pipeplug.Context, options: dict) -> pipeplug.StageResult:
    return pipeplug.StageResult(pipeplug.StageStatus.SKIPPED)


if __name__ == "__main__":
    atexit.register(lambda: json.dump(sorted(sys.modules), open(os.environ["MODULES_OUT"], "w")))
    app.main()
"""
#: what starting a plugin must not load: click (piped's argv is parsed without it), attrs and the
#: value classes (FetchDefinedStages needs neither; the annotations above are not evaluated), YAML, cattrs,
#: and what only `pipeplug schema` and `pipeplug docs` use
NOT_AT_START = {"click", "attrs", "pipeplug.types", "pipeplug.cli", "yaml", "cattrs", "pipeplug.schema", "pipeplug.docs"}


def _modules_at_exit(tmp_path, execute: bool) -> set[str]:
    """Start the plugin with piped's argv, run its stage if asked, stop it; what it had loaded by then."""
    plugin, out = tmp_path / "lean.py", tmp_path / "modules.json"
    plugin.write_text(LEAN_PLUGIN)
    # piped's address is never dialled: the stage writes no log line (a result message would be one)
    with PluginProcess(str(plugin), piped_address="127.0.0.1:1", env={"MODULES_OUT": str(out)}) as proc:
        if execute:
            stage = model_pb.PipelineStage(id="s1", name="A", status=model_pb.STAGE_NOT_STARTED_YET)
            request = deploy_pb.ExecuteStageRequest(input=deploy_pb.ExecutePluginInput(deployment=model_pb.Deployment(id="d1", stages=[stage]), stage=stage))
            with grpc.insecure_channel(proc.address) as channel:
                assert deploy_grpc.DeploymentServiceStub(channel).ExecuteStage(request, timeout=30).status == model_pb.STAGE_SKIPPED
        assert proc.stop() == 0, proc.stderr_text(tail=20)
    return set(json.loads(out.read_text()))


def test_a_plugin_started_by_piped_answers_without_click_attrs_or_the_value_classes(tmp_path):
    assert _modules_at_exit(tmp_path, execute=False) & NOT_AT_START == set()
    # the first call that needs the value classes loads them: the handler's StageResult here;
    # ``options: dict`` is passed as decoded, without cattrs
    executed = _modules_at_exit(tmp_path, execute=True)
    assert {"attrs", "pipeplug.types"} <= executed and "cattrs" not in executed


def test_public_names_load_on_first_use():
    assert loaded_after("import pipeplug", ("pipeplug.app", "pipeplug.types", "attrs")) == []
    assert loaded_after("import pipeplug\npipeplug.StageStatus", ("pipeplug.enums", "pipeplug.types", "pipeplug.app", "attrs")) == ["pipeplug.enums"]
    assert loaded_after("from pipeplug import App", ("pipeplug.app",)) == ["pipeplug.app"]


def test_every_public_name_resolves_and_is_listed():
    assert sorted(pipeplug.__all__) == sorted(PUBLIC)
    assert "__version__" in dir(pipeplug)
    listed = dir(pipeplug)
    for name in PUBLIC:
        assert name in listed
        value = getattr(pipeplug, name)
        assert getattr(value, "__name__", name) == name
        assert value.__module__.startswith("pipeplug.")
    app = pipeplug.App("p")
    assert isinstance(app, pipeplug.App) and pipeplug.StageResult(pipeplug.StageStatus.SUCCESS).message == ""


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'Ap'"):
        pipeplug.Ap  # noqa: B018
    with pytest.raises(ImportError):
        from pipeplug import Ap  # noqa: F401
