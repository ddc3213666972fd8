"""`pipeplug docs`: a plugin's reference, written from its code, with examples the plugin accepts.

The commands run as subprocesses, as users run them; every example the
reference shows is then checked with `pipeplug schema --app-config`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_APP = os.path.join(ROOT, "example_app.py")

PLUGIN = '''
import datetime
import typing as t

import attrs

import pipeplug


@attrs.frozen
class Probe:
    path: str
    port: int = 8080


@attrs.frozen
class CanaryOptions:
    """Options of CANARY_ROLLOUT."""

    replicas: pipeplug.Replicas = attrs.field(metadata={"description": "how many canary pods | or a share of the primary"})
    probe: Probe
    wait: datetime.timedelta = datetime.timedelta(minutes=1)
    mode: t.Literal["fast", "safe"] = "safe"


@attrs.frozen
class Config:
    api_token: str = pipeplug.secret()
    region: str = "eu"


@attrs.frozen
class Spec:
    manifests: list[str]


app = pipeplug.App("canary", config=Config, app_spec=Spec)


@app.stage("CANARY_ROLLOUT")
def rollout(options: CanaryOptions) -> None:
    """Roll out a canary next to the primary."""


@app.stage("CANARY_CLEAN", quick_sync=True)
def clean(ctx: pipeplug.Context) -> None:
    """Remove the canary."""


@app.stage("CANARY_UNDO", rollback=True)
def undo(options: dict) -> None:
    pass


@app.livestate
def livestate(ctx: pipeplug.Context) -> None:
    """Report the canary's pods.

    More detail that the table leaves out.
    """
'''


def run(*argv: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "pipeplug.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def reference(tmp_path):
    (tmp_path / "canary_plugin.py").write_text(PLUGIN)
    written = run("docs", "canary_plugin.py", "--format", "markdown", cwd=str(tmp_path))
    assert written.returncode == 0, written.stderr
    return written.stdout


def test_the_reference_lists_each_stage_with_its_options(reference):
    assert reference.startswith("# Plugin `canary`\n")
    assert [line for line in reference.splitlines() if line.startswith("### `")] == ["### `CANARY_ROLLOUT`", "### `CANARY_CLEAN`", "### `CANARY_UNDO`"]
    assert "Roll out a canary next to the primary." in reference and "Options of CANARY_ROLLOUT." in reference
    assert "| `replicas` | Replicas | yes |  | how many canary pods \\| or a share of the primary |" in reference
    assert "| `probe` | Probe | yes |  |  |" in reference
    assert "| `probe.port` | integer |  | `8080` |  |" in reference  # nested classes, field by field
    assert "| `wait` | duration |  | `\"1m0s\"` |  |" in reference
    assert '| `mode` | "fast" \\| "safe" |  | `"safe"` |  |' in reference
    assert "A quick-sync stage" in reference and "A rollback stage" in reference
    assert "Options: none; a `with:` block is ignored." in reference  # CANARY_CLEAN


def test_the_reference_lists_hooks_and_configs(reference):
    assert "| `@app.livestate` | `LivestateService.GetLivestate`: what is deployed now, and whether it drifted | `livestate()`: Report the canary's pods. |" in reference
    assert "More detail" not in reference
    assert "| `apiToken` | string | yes |  | (a secret: never logged) |" in reference
    assert "| `region` | string |  | `\"eu\"` |  |" in reference
    assert "`spec.plugins[].deployTargets[].config` in piped's config: not declared" in reference
    assert "| `manifests` | list of string | yes |  |  |" in reference


def test_every_example_in_the_reference_is_accepted_by_the_plugin(reference, tmp_path):
    examples = re.findall(r"```yaml\n(apiVersion:.*?)```", reference, re.S)
    assert len(examples) == 2  # one per stage written in a pipeline: the rollback stage has none
    assert "alwaysUsePipeline: true" in examples[0]  # a stage-only plugin needs it (no @app.strategy)
    assert "with:\n        replicas: 3\n        probe:\n          path: text\n" in examples[0]
    assert "  plugins:\n    canary:\n      manifests:\n      - text\n" in examples[0]
    for i, text in enumerate(examples):
        path = tmp_path / f"example{i}.pipecd.yaml"
        path.write_text(text)
        checked = run("schema", "canary_plugin.py", "--app-config", str(path), cwd=str(tmp_path))
        assert (checked.returncode, checked.stdout) == (0, f"{path}: ok\n"), text + checked.stderr


def test_the_reference_can_be_written_to_a_file(tmp_path):
    out = tmp_path / "REFERENCE.md"
    written = run("docs", EXAMPLE_APP, "-o", str(out), cwd=str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert written.stdout == "" and f"wrote {out}" in written.stderr
    text = out.read_text()
    for hook in ("versions", "strategy", "pipeline_stages", "quick_sync_stages", "livestate", "plan_preview"):
        assert f"| `@app.{hook}` |" in text
    assert "alwaysUsePipeline" not in text  # example_app decides its strategy


def test_a_plugin_that_cannot_be_loaded_is_one_line_of_error(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent("""\
        import pipeplug
        app = pipeplug.App("bad")
        """))
    written = run("docs", "bad.py:other", cwd=str(tmp_path))
    assert written.returncode == 2 and "has no attribute named 'other'" in written.stderr and "Traceback" not in written.stderr
