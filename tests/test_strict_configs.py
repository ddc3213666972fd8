"""Configs decoded as strictly as Go's encoding/json, over real gRPC: at ExecuteStage, at planning, at startup.

Every plugin here is a file written to the test's directory, once with
``from __future__ import annotations`` and once without, because how
annotations are written must not change what is accepted.
"""

from __future__ import annotations

import datetime
import json
import textwrap

import grpc
import pytest

from pipeplug import StageStatus
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import PluginStartError

from .dev_support import EXAMPLE_APP
from .support import load_module

PLUGIN = '''
import datetime
import typing as t

import attrs

import pipeplug


@attrs.frozen
class DeployOptions:
    dry_run: bool = False
    skip_backup: bool = False
    retries: int = 0
    names: list[str] = attrs.field(factory=list)
    url: str = ""
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: datetime.timedelta = datetime.timedelta(seconds=30)
    ratio: float = 1.0
    mode: t.Literal["fast", "safe"] = "safe"
    on_rollback: t.Optional[str] = None


@attrs.frozen
class RollbackOptions:
    """Only what the rollback needs of the forward stage's `with:`."""

    on_rollback: t.Optional[str] = None


@attrs.frozen
class Config:
    token: str = pipeplug.secret(default="")


app = pipeplug.App("strict", config=Config)


@app.stage("DEPLOY")
def deploy(ctx: pipeplug.Context, options: DeployOptions) -> pipeplug.StageResult:
    if not options.skip_backup:
        ctx.log.info("backup taken")
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, repr(options))


@app.stage("RUN")
def run(options: dict) -> None:
    """Its options are read as they are: only the rollback stage at its index types them."""


@app.stage("UNDO", rollback=True)
def undo(ctx: pipeplug.Context, options: RollbackOptions) -> pipeplug.StageResult:
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, f"ran {options.on_rollback}")


@app.stage("UNDO_ALL", rollback=True)
def undo_all(options: DeployOptions) -> pipeplug.StageResult:
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, f"retries were {options.retries}")


if __name__ == "__main__":
    app.main()
'''


def write_plugin(tmp_path, future: bool) -> str:
    path = tmp_path / ("strict_future.py" if future else "strict_plain.py")
    path.write_text(("from __future__ import annotations\n" if future else "") + PLUGIN)
    return str(path)


@pytest.fixture(params=[True, False], ids=["future-annotations", "evaluated-annotations"])
def client(request, tmp_path):
    app = load_module(write_plugin(tmp_path, request.param)).app
    with app.test_client(config={"token": "s3cr3t-t0ken"}) as client:
        yield client


BAD_OPTIONS = [
    ({"dryRun": "false"}, 'with.dryRun: expected true or false, got "false"'),
    ({"dryRun": "no"}, 'with.dryRun: expected true or false, got "no"'),
    ({"dryRun": 1}, "with.dryRun: expected true or false, got 1"),
    ({"retries": 2.9}, "with.retries: expected an integer, got 2.9"),
    ({"retries": 3.0}, "with.retries: expected an integer, got 3.0"),
    ({"retries": True}, "with.retries: expected an integer, got true"),
    ({"retries": "2"}, 'with.retries: expected an integer, got "2"'),
    ({"retries": 2**64}, "with.retries: expected an integer that fits in 64 bits, got 18446744073709551616"),
    ({"names": "abc"}, 'with.names: expected a list of strings, got "abc"'),
    ({"names": ["a", 1]}, "with.names[1]: expected a string, got 1"),
    ({"url": 123}, "with.url: expected a string, got 123"),
    ({"env": ["x"]}, "with.env: expected a mapping of string to string, got a list"),
    ({"env": {"A": 1}}, "with.env.A: expected a string, got 1"),
    ({"timeout": 5}, 'with.timeout: expected a duration such as "30s", got 5'),
    ({"ratio": "1.5"}, 'with.ratio: expected a number, got "1.5"'),
    ({"mode": "FAST"}, 'with.mode: expected one of "fast", "safe", got "FAST"'),
    ({"dryRun": True, "dry_run": False}, 'with.dryRun: given twice, as "dryRun" and "dry_run"; keep one'),
    ({"retires": 2}, 'with.retires: unknown option; did you mean "retries"?'),
    ({"DryRun": True}, 'with.DryRun: unknown option; did you mean "dryRun"?'),
    (["retries"], "with: expected a mapping, got a list"),
]


@pytest.mark.parametrize(("with_", "problem"), BAD_OPTIONS, ids=[p for _, p in BAD_OPTIONS])
def test_execute_stage_refuses_what_go_would_refuse(client, with_, problem):
    run = client.execute_stage("DEPLOY", with_)
    assert (run.status, run.message) == (StageStatus.FAILURE, f"stage DEPLOY: {problem}")


def test_every_problem_is_reported_at_once(client):
    run = client.execute_stage("DEPLOY", {"retries": 2.9, "url": 123, "names": "abc", "tpyo": 1})
    assert run.message == (
        "stage DEPLOY: with.retries: expected an integer, got 2.9; "
        "with.url: expected a string, got 123; "
        'with.names: expected a list of strings, got "abc"; '
        "with.tpyo: unknown option (valid: dryRun, skipBackup, retries, names, url, env, timeout, ratio, mode, onRollback)"
    )


def test_skip_backup_as_a_string_never_skips_the_backup(client):
    run = client.execute_stage("DEPLOY", {"skipBackup": "false"})
    assert run.status == StageStatus.FAILURE
    assert not any("backup taken" in line for _, line in run.logs)  # the handler never ran with a wrong value
    run = client.execute_stage("DEPLOY", {"skipBackup": False})
    assert run.status == StageStatus.SUCCESS and any("backup taken" in line for _, line in run.logs)


def test_well_typed_options_and_pipecd_strings_are_accepted(client):
    with_ = {"dryRun": True, "skip_backup": True, "retries": 2, "names": ["a"], "url": "u", "env": {"A": "1"}, "timeout": "1m30s", "ratio": 2,
             "mode": "fast", "onRollback": None}  # fmt: skip
    run = client.execute_stage("DEPLOY", with_)
    assert run.status == StageStatus.SUCCESS, run.message
    assert run.message == (
        "DeployOptions(dry_run=True, skip_backup=True, retries=2, names=['a'], url='u', env={'A': '1'}, "
        "timeout=datetime.timedelta(seconds=90), ratio=2.0, mode='fast', on_rollback=None)"
    )
    assert client.execute_stage("DEPLOY", None).status == StageStatus.SUCCESS  # no `with:` at all: the defaults


def test_planning_refuses_a_bad_stage_before_any_stage_runs(client):
    stages = [{"name": "DEPLOY", "with": {"retries": 1}}, {"name": "RUN"}, {"name": "DEPLOY", "with": {"retries": 2.9, "retires": 1}}]
    with pytest.raises(PluginCallError) as err:
        client.build_pipeline_sync_stages(stages)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details == (
        "stage 2 (DEPLOY): with.retries: expected an integer, got 2.9; "
        'stage 2 (DEPLOY): with.retires: unknown option; did you mean "retries"?'
    )
    planned = client.build_pipeline_sync_stages(stages[:2], rollback=False)
    assert [(s.name, s.index) for s in planned] == [("DEPLOY", 0), ("RUN", 1)]


def test_rollback_stage_reads_its_own_keys_of_the_forward_stages_with(client):
    forward = {"retries": 2, "url": "u", "onRollback": "undo.sh"}
    run = client.execute_stage("UNDO", forward, rollback=True)
    assert (run.status, run.message) == (StageStatus.SUCCESS, "ran undo.sh")
    run = client.execute_stage("UNDO_ALL", forward, rollback=True)  # or it declares the forward stage's class
    assert (run.status, run.message) == (StageStatus.SUCCESS, "retries were 2")
    run = client.execute_stage("UNDO", {"onRollback": 5}, rollback=True)  # its own keys are still checked
    assert (run.status, run.message) == (StageStatus.FAILURE, "stage UNDO: with.onRollback: expected a string, got 5")


def test_planning_checks_a_rollback_stage_against_the_with_at_its_index(client):
    stages = [{"name": "RUN", "with": {"onRollback": 5}}, {"name": "RUN", "with": {"retries": "x"}}]
    with pytest.raises(PluginCallError) as err:
        client.build_pipeline_sync_stages(stages, rollback=True)  # the default planner puts UNDO at 0 and UNDO_ALL at 1
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details == (
        "stage 0 (UNDO, rollback of RUN): with.onRollback: expected a string, got 5; "
        'stage 1 (UNDO_ALL, rollback of RUN): with.retries: expected an integer, got "x"'
    )
    planned = client.build_pipeline_sync_stages(stages, rollback=False)  # no rollback stage, nothing to check
    assert [(s.name, s.index) for s in planned] == [("RUN", 0), ("RUN", 1)]
    planned = client.build_pipeline_sync_stages([{"name": "RUN", "with": {"onRollback": "x", "any": 1}}, {"name": "RUN"}], rollback=True)
    assert [(s.name, s.index, s.rollback) for s in planned] == [("RUN", 0, False), ("RUN", 1, False), ("UNDO", 0, True), ("UNDO_ALL", 1, True)]


@pytest.mark.parametrize("future", [True, False], ids=["future-annotations", "evaluated-annotations"])
def test_a_secret_that_is_not_a_string_stops_the_plugin_without_showing_it(tmp_path, future):
    plugin = write_plugin(tmp_path, future)
    with FakePiped() as piped:
        with pytest.raises(PluginStartError) as err:
            with PluginProcess(plugin, piped_address=piped.address, name="strict", config={"token": 12345678}):
                pass
    output = str(err.value)
    assert "config.token: expected a string, got a number" in output
    assert "12345678" not in output
    with FakePiped() as piped, PluginProcess(plugin, piped_address=piped.address, name="strict", config={"token": "12345678"}) as process:
        assert process.returncode is None  # the same value as a string is fine


def test_null_leaves_the_default_and_optional_fields_accept_null(tmp_path):
    app = load_module(write_plugin(tmp_path, True)).app
    decoder = app.converter
    options = decoder.structure({"retries": None, "onRollback": None}, app.stages["DEPLOY"].handler.options_type)
    assert (options.retries, options.on_rollback) == (0, None)
    assert options.timeout == datetime.timedelta(seconds=30)


def test_unknown_keys_of_a_plugin_config_suggest_the_closest_name(tmp_path):
    app = load_module(write_plugin(tmp_path, False)).app
    from pipeplug.settings import parse_settings
    from pipeplug import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_settings(app, json.dumps({"name": "strict", "port": 7001, "config": {"tokn": "x", "token": 1}}))
    assert err.value.problems == ['config.tokn: unknown field; did you mean "token"?', "config.token: expected a string, got a number"]


def test_plugin_file_written_either_way_gives_the_same_answers(tmp_path):
    answers = []
    for future in (True, False):
        app = load_module(write_plugin(tmp_path, future)).app
        with app.test_client() as client:
            answers.append([client.execute_stage("DEPLOY", with_).message for with_, _ in BAD_OPTIONS])
    assert answers[0] == answers[1]
    assert textwrap.shorten(answers[0][0], 200) == 'stage DEPLOY: with.dryRun: expected true or false, got "false"'


def test_pipeplug_dev_shows_a_bad_option_as_a_planning_failure_and_runs_nothing(dev):
    app_config = dev.app_config(
        {"name": "typo", "planner": {"alwaysUsePipeline": True}, "pipeline": {"stages": [{"name": "DIR_SYNC"}, {"name": "WAIT", "with": {"duration": 5}}]}}
    )
    result = dev.run(EXAMPLE_APP, "--app-config", app_config, "--plugin-config", dev.example_config(), "--json")
    assert result.code == 1, result
    assert result.record["status"] == "FAILURE"
    assert result.record["status_reason"] == (
        "Unable to plan the deployment (BuildPipelineSyncStages on example failed: INVALID_ARGUMENT: "
        'stage 1 (WAIT): with.duration: expected a duration such as "30s", got 5)'
    )
    assert result.record["stages"] == []
    assert not (dev.tmp / "target" / "current").exists()  # stage 0 (DIR_SYNC) never published anything
