"""`pipeplug dev`: bad input gets one clear message, and what real piped would reject is said loudly.

The deliberately broken plugin (tests/apps/dev_raw.py) is a hand-written gRPC
server, since pipeplug's own servicers never send these mistakes.
"""

from __future__ import annotations

import os

import pytest

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug.dev.appconfig import AppConfigError
from pipeplug.dev.appconfig import parse_app_config

from .dev_support import EXAMPLE_APP
from .dev_support import RAW_APP
from .dev_support import STAGES_APP
from .dev_support import Dev




def raw(dev: Dev, mode: str, stages: list[str] | None = None):
    config = dev.app_config({"planner": {"alwaysUsePipeline": True}, "pipeline": {"stages": [{"name": n} for n in stages or ["RAW_STAGE"]]}})
    plugin = dev.plugin_config("raw", config={"mode": mode})
    return dev.run(RAW_APP, "--plugin-config", plugin, "--app-config", config, "--json", "--port-timeout", "5")


def test_well_behaved_raw_plugin_passes(dev):
    result = raw(dev, "fine")
    assert result.code == 0, result
    assert result.record["violations"] == [] and result.record["versions"][0]["version"] == "v1"


@pytest.mark.parametrize(
    "mode, status, expected",
    [
        ("bad_index", "FAILURE", "real piped would fail the plan: BuildPipelineSyncStages stage 0 (RAW_STAGE) has index 99"),
        ("dup_index", "FAILURE", "real piped would fail the plan: BuildPipelineSyncStages stage 1 (RAW_STAGE) repeats index 0"),
        ("zero_created_at", "PENDING", "the control plane would reject this and leave the deployment PENDING: BuildPipelineSyncStages stage 0 (RAW_STAGE) has created_at=0"),
        ("bad_operation", "PENDING", "has undefined available_operation 7"),
        ("bad_version_kind", "PENDING", "DetermineVersions version 0 (v1) has undefined kind 42"),
        ("undefined_status", "RUNNING", "real piped would leave the deployment RUNNING: ExecuteStage answered status 42"),
    ],
)
def test_what_real_piped_would_reject_is_reported_and_followed_through(dev, mode, status, expected):
    result = raw(dev, mode)
    assert result.code == 1, result
    record = result.record
    assert record["status"] == status
    assert any(expected in v for v in record["violations"]), record["violations"]
    assert any(expected in line for line in result.err.splitlines() if line.startswith("VIOLATION: "))
    [stored] = dev.deployments()
    assert model_pb.DeploymentStatus.Name(stored.status) == f"DEPLOYMENT_{status}"
    with dev.db() as db:
        stored_violations = [r[0] for r in db.execute("SELECT message FROM violations WHERE deployment_id=?", (stored.id,))]
    assert stored_violations == record["violations"]
    if status == "FAILURE":
        assert record["status_reason"].startswith("Unable to plan the deployment (invalid stage index")


def test_a_log_batch_with_an_empty_line_is_refused_whole(dev):
    result = raw(dev, "bad_log")
    assert result.code == 0, result  # the stage itself succeeded
    assert any("real piped would reject this and the whole batch with it" in v and "empty `log`" in v for v in result.record["violations"])
    with dev.db() as db:
        assert db.execute("SELECT COUNT(*) FROM stage_logs").fetchone()[0] == 0  # nothing of the batch was kept


def test_plugin_without_fetch_defined_stages_stops_the_run(dev):
    result = raw(dev, "no_fetch")
    assert result.code == 2, result
    assert "FetchDefinedStages failed with UNIMPLEMENTED" in result.err and "Traceback" not in result.err


def test_plugin_that_never_opens_its_port(dev):
    config = dev.app_config({"pipeline": {"stages": [{"name": "RAW_STAGE"}]}})
    plugin = dev.plugin_config("raw", config={"mode": "no_port"})
    result = dev.run(RAW_APP, "--plugin-config", plugin, "--app-config", config, "--json", "--port-timeout", "3")
    assert result.code == 2, result
    assert "did not listen on localhost:" in result.err and "within 3s" in result.err
    assert "raw plugin: not listening on purpose" in result.err  # its output tail
    assert "Traceback" not in result.err


def test_unknown_stage_lists_what_each_plugin_offers(dev):
    config = dev.app_config({"pipeline": {"stages": [{"name": "SLEEP"}, {"name": "DEPLOY_EVERYTHING"}]}})
    result = dev.run(STAGES_APP, "--app-config", config, "--plugin", EXAMPLE_APP, "--json")
    assert result.code == 2, result
    assert "spec.pipeline.stages[1].name: no plugin offers stage 'DEPLOY_EVERYTHING'. Stages offered:" in result.err
    assert "dev_stages: SLEEP, FAIL, EXIT" in result.err and "example_app: WAIT, WAIT_APPROVAL, DIR_SYNC" in result.err
    assert "Traceback" not in result.err
    config = dev.app_config({"pipeline": {"stages": [{"name": "SLEPE"}]}})
    typo = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert "no plugin offers stage 'SLEPE' (did you mean 'SLEEP'?). Stages offered:" in typo.err, typo


def test_missing_and_invalid_app_config(dev):
    missing = dev.run(STAGES_APP, "--app-config", str(dev.tmp / "nope.yaml"), "--json")
    assert missing.code == 2 and "nope.yaml" in missing.err and "file not found" in missing.err
    bad = dev.tmp / "bad.yaml"
    bad.write_text("apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  timeout: soon\n  pipeline:\n    stages:\n      - with: {}\n")
    result = dev.run(STAGES_APP, "--app-config", str(bad), "--json")
    assert result.code == 2
    assert "spec.timeout: expected a Go duration" in result.err and "spec.pipeline.stages[0].name: required" in result.err
    assert "Traceback" not in missing.err + result.err


def test_app_config_rules():
    def parse(text: str):
        return parse_app_config(text.encode(), "app.pipecd.yaml")

    config = parse(
        "apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  pipline: {}\n  pipeline:\n    stages:\n"
        "      - name: A\n      - name: B\n        with:\n      - name: C\n        timeout: 90s\n        with: {b: 1, a: [x]}\n"
    )
    assert [s.with_json for s in config.stages] == [b"{}", b"null", b'{"a":["x"],"b":1}']  # piped's defaults and JSON
    assert config.stages[2].timeout == 90 and config.stages[0].timeout == 6 * 3600 and config.auto_rollback
    assert any("spec.pipline: unknown field" in w for w in config.warnings)
    with pytest.raises(AppConfigError) as exc:
        parse("apiVersion: v1\nspec:\n  plugins:\n    example: [1]\n")
    problems = exc.value.problems
    assert any(p.startswith("apiVersion: must be 'pipecd.dev/v1beta1'") for p in problems)
    assert any(p.startswith("kind: required") for p in problems)
    assert any(p.startswith("spec.plugins.example: expected a mapping") for p in problems)


def test_two_plugins_with_one_name_are_refused(dev):
    config = dev.app_config({"pipeline": {"stages": [{"name": "SLEEP"}]}})
    same = dev.plugin_config("same")
    result = dev.run(STAGES_APP, "--plugin-config", same, "--plugin", f"{EXAMPLE_APP}={same}", "--app-config", config, "--json")
    assert result.code == 2 and "share the name same" in result.err


def test_examples_are_valid_app_configs():
    examples = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples")
    for name in sorted(os.listdir(examples)):
        if name.endswith(".pipecd.yaml"):
            with open(os.path.join(examples, name), "rb") as f:
                config = parse_app_config(f.read(), name)
            assert config.warnings == (), (name, config.warnings)


def _script(dev, name: str, body: str) -> str:
    path = dev.tmp / f"{name}.py"
    path.write_text("import pipeplug\n\napp = pipeplug.App('scripted')\n" + body)
    return str(path)


def test_the_app_main_hint_shows_only_when_the_script_never_started_the_plugin(dev):
    config = dev.app_config({"pipeline": {"stages": [{"name": "S"}]}})
    no_main = dev.run(_script(dev, "no_main", "app.stage('S')(lambda: None)\n"), "--app-config", config, "--json")
    assert no_main.code == 2, no_main
    assert "exited with code 0 before listening" in no_main.err
    assert "runs as a script; it must call app.main()" in no_main.err

    bare = "@app.stage\ndef s():\n    pass\n\nif __name__ == '__main__':\n    app.main()\n"
    broken = dev.run(_script(dev, "bare_stage", bare), "--app-config", config, "--json")
    assert broken.code == 2, broken
    assert "exited with code 1 before listening" in broken.err
    assert "RegistrationError: @app.stage needs the stage's name" in broken.err
    assert "hint:" not in broken.err and "runs as a script" not in broken.err
