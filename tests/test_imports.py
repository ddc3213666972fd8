"""What importing pipeplug loads: the public names on demand, heavy dependencies only when used.

Each check runs in a fresh interpreter, because this test process has long
since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pipeplug

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC = (
    "App", "ConfigError", "CommandType", "Context", "StageCommand", "RegistrationError", "secret", "PipedError",
    "StageLog", "ArtifactKind", "ArtifactVersion", "Deployment", "DeploymentSource", "DeployTarget", "HealthStatus",
    "LiveState", "ManualOperation", "PlannedStage", "PlanPreview", "Resource", "StageRequest", "StageResult",
    "StageStatus", "Strategy", "SyncStatus", "SyncStrategy",
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
        "from pipeplug.cli import plugin_command\n"
        "from pipeplug.settings import parse_settings\n"
        "plugin_command(app)\n"
        "parse_settings(app, {'name': 'p', 'port': 7001, 'config': {'any': 1}, 'deployTargets': [{'name': 't'}]})\n"
    )
    assert loaded_after(code, ("yaml", "cattrs", "pipeplug.loading")) == []


def test_config_classes_load_cattrs_when_first_structured_and_errors_still_name_the_field():
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
    )
    out = subprocess.run([sys.executable, "-c", f"import json\n{code}"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(json.loads(out.stdout)) == ["config.kubeConfigPath: required field is missing", "config: unknown field(s) kubeConfigPth"]


def test_public_names_load_on_first_use():
    assert loaded_after("import pipeplug", ("pipeplug.app", "pipeplug.types", "attrs")) == []
    assert loaded_after("import pipeplug\npipeplug.StageStatus", ("pipeplug.types", "pipeplug.app", "click")) == ["pipeplug.types"]
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
