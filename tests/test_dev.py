"""`pipeplug dev --json` end to end: the examples, cancel, timeouts, approval, resume, several plugins.

Every test runs the real command as a subprocess, which starts real plugin
subprocesses with piped's argv, and checks both the JSON record and the
SQLite state file.
"""

from __future__ import annotations

import os
import signal
import time


from pipeplug._gen.model import deployment_pb2 as model_pb

from .dev_support import EXAMPLE_APP
from .dev_support import EXAMPLES
from .dev_support import SECRET_APP
from .dev_support import STAGES_APP
from .dev_support import Dev
from .dev_support import alive




def example(dev: Dev, name: str, *extra: str):
    return dev.run(EXAMPLE_APP, "--app-config", os.path.join(EXAMPLES, name), "--plugin-config", dev.example_config(), "--json", *extra)


def test_example_pipeline_succeeds_and_next_run_has_a_running_commit(dev):
    first = example(dev, "pipeline-success.pipecd.yaml")
    assert first.code == 0, first
    record = first.record
    assert record["status"] == "SUCCESS" and record["strategy"] == "PIPELINE"
    assert record["versions"] == [{"kind": "GIT_SOURCE", "name": "site", "version": "1.0.0", "url": ""}]
    names = [(s["name"], s["status"]) for s in record["stages"]]
    assert names == [("WAIT", "SUCCESS"), ("DIR_SYNC", "SUCCESS"), ("DIR_VERIFY", "SUCCESS"), ("DIR_ROLLBACK", "NOT_STARTED_YET")]
    stages = record["stages"]
    assert stages[0]["requires"] == [] and stages[1]["requires"] == [stages[0]["id"]] and stages[2]["requires"] == [stages[1]["id"]]
    assert stages[0]["duration_seconds"] > 0
    assert record["rollback_stages_run"] == [] and record["violations"] == []
    assert record["running_commit_hash"] == ""
    assert os.path.islink(dev.tmp / "target" / "current")
    [stored] = dev.deployments()
    assert stored.status == model_pb.DEPLOYMENT_SUCCESS and stored.id == record["deployment_id"]
    assert dev.stage_metadata(stored.id, stages[0]["id"])["startTime"].isdigit()  # the WAIT stage's resume marker

    second = example(dev, "pipeline-success.pipecd.yaml")
    assert second.code == 0, second
    assert second.record["running_commit_hash"] == record["commit_hash"]  # the previous successful deployment
    assert second.record["commit_hash"] == record["commit_hash"]  # same content, same hash


def test_example_failure_rolls_back(dev):
    result = example(dev, "pipeline-rollback.pipecd.yaml")
    assert result.code == 1, result
    record = result.record
    assert record["status"] == "FAILURE"
    assert record["status_reason"] == f"Failed while executing stage {result.stage('DIR_VERIFY')['id']}"
    assert result.stage("DIR_VERIFY")["status"] == "FAILURE"
    assert record["rollback_stages_run"] == ["DIR_ROLLBACK"]
    assert result.stage("DIR_ROLLBACK")["status"] == "SUCCESS"
    assert result.stage("DIR_ROLLBACK")["requires"] == [result.stage("DIR_VERIFY")["id"]]  # the last attempted stage


def test_example_approval(dev):
    result = example(dev, "approval.pipecd.yaml", "--approve-as", "alice")
    assert result.code == 0, result
    gate = result.stage("WAIT_APPROVAL")
    assert gate["status"] == "SUCCESS"
    assert gate["metadata"]["pipecd/stage-approved-users"] == "alice"


def test_example_approval_by_someone_not_allowed_is_refused(dev):
    proc = dev.start(EXAMPLE_APP, "--app-config", os.path.join(EXAMPLES, "approval.pipecd.yaml"), "--plugin-config", dev.example_config(),
                     "--json", "--approve-as", "mallory")  # fmt: skip
    dev.wait_for_stage("WAIT_APPROVAL")
    deployment = dev.deployments()[-1]
    gate = next(s for s in deployment.stages if s.name == "WAIT_APPROVAL")
    deadline = time.monotonic() + 30
    while not any(line.startswith("Waiting for approval") for line in dev.logs(deployment.id, gate.id)):
        assert time.monotonic() < deadline and proc.poll() is None, "the plugin never started waiting for approval"
        time.sleep(0.05)
    with dev.db() as db:  # commands are the only way an approval reaches a plugin: none was queued
        assert db.execute("SELECT commander FROM commands").fetchall() == []
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "the control plane would refuse mallory's approval" in err
    assert '"status": "CANCELLED"' in out  # still waiting when cancelled
    assert not [line for line in dev.logs(deployment.id, gate.id) if "approval from" in line]  # the plugin never saw one


def test_example_quick_sync(dev):
    result = example(dev, "quick-sync.pipecd.yaml")
    assert result.code == 0, result
    assert result.record["strategy"] == "QUICK_SYNC"
    assert result.record["strategy_summary"] == "Quick sync due to the pipeline was not configured"
    assert [(s["name"], s["status"], s["index"]) for s in result.record["stages"]] == [
        ("DIR_SYNC", "SUCCESS", 0),
        ("DIR_ROLLBACK", "NOT_STARTED_YET", 0),
    ]


def stages_app(dev: Dev, stages: list[dict], **spec):
    spec.setdefault("planner", {"alwaysUsePipeline": True})
    return dev.app_config({"pipeline": {"stages": stages}, **spec})


def test_ctrl_c_cancels_the_call_runs_rollback_and_ends_cancelled(dev):
    config = stages_app(dev, [{"name": "SLEEP", "with": {"seconds": 60, "marker": "a"}}, {"name": "FAIL"}])
    proc = dev.start(STAGES_APP, "--app-config", config, "--json")
    dev.wait_for_stage("SLEEP")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    import json

    record = json.loads(out)
    assert record["status"] == "CANCELLED"
    assert record["status_reason"].startswith("Cancelled by ") and "while executing stage" in record["status_reason"]
    sleep = next(s for s in record["stages"] if s["name"] == "SLEEP")
    assert sleep["status"] == "CANCELLED" and sleep["duration_seconds"] < 30
    assert record["rollback_stages_run"] == ["UNDO"]
    undo = next(s for s in record["stages"] if s["name"] == "UNDO")
    assert undo["status"] == "SUCCESS"
    # the rollback stage got the `with` of the pipeline stage sharing its index (0: SLEEP)
    assert undo["metadata"]["with"] == '{"marker": "a", "seconds": 60}'
    assert next(s for s in record["stages"] if s["name"] == "FAIL")["status"] == "NOT_STARTED_YET"


def test_stage_timeout_cancels_the_call_and_piped_records_cancelled(dev):
    config = stages_app(dev, [{"name": "SLEEP", "timeout": "1s", "with": {"seconds": 60}}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert result.code == 1, result
    assert result.record["status"] == "CANCELLED"  # piped's stop signal is a plain cancel: a timeout ends CANCELLED
    assert result.stage("SLEEP")["status"] == "CANCELLED"
    assert 0.9 < result.stage("SLEEP")["duration_seconds"] < 20
    assert result.record["rollback_stages_run"] == ["UNDO"]


def test_deployment_timeout_covers_stages_but_not_rollback(dev):
    config = stages_app(dev, [{"name": "SLEEP", "with": {"seconds": 0.2}}, {"name": "SLEEP", "with": {"seconds": 60}}], timeout="1500ms")
    result = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert result.code == 1, result
    statuses = [(s["name"], s["status"]) for s in result.record["stages"]]
    assert statuses == [("SLEEP", "SUCCESS"), ("SLEEP", "CANCELLED"), ("UNDO", "SUCCESS")]


def test_approval_with_approve_flag(dev):
    config = stages_app(dev, [{"name": "GATE"}, {"name": "SLEEP"}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json", "--approve")
    assert result.code == 0, result
    gate = result.stage("GATE")
    assert gate["status"] == "SUCCESS" and gate["metadata"]["pipecd/stage-approved-users"]
    with dev.db() as db:
        [(handled,)] = db.execute("SELECT handled_at FROM commands").fetchall()
    assert handled is not None  # piped marks a stage's commands handled once it ends


def test_approval_from_another_terminal(dev):
    config = stages_app(dev, [{"name": "GATE", "with": {"approvers": ["bob"]}}])
    proc = dev.start(STAGES_APP, "--app-config", config, "--json")
    dev.wait_for_stage("GATE")
    refused = dev.run_cli("approve", "--as", "carol")
    assert refused.code != 0 and "only bob may approve" in refused.err
    approved = dev.run_cli("approve", "--as", "bob")
    assert approved.code == 0, approved
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"pipecd/stage-approved-users": "bob"' in out


def test_resume_after_kill_executes_the_running_stage_again_with_its_metadata(dev):
    config = dev.app_config(
        {"planner": {"alwaysUsePipeline": True}, "pipeline": {"stages": [{"name": "WAIT", "with": {"duration": "4s"}}, {"name": "DIR_SYNC"}]}}
    )
    plugin_config = dev.example_config()
    proc = dev.start(EXAMPLE_APP, "--app-config", config, "--plugin-config", plugin_config, "--json")
    dev.wait_for_stage("WAIT")
    [deployment] = dev.deployments()
    wait = deployment.stages[0]
    deadline = time.monotonic() + 10
    while "startTime" not in dev.stage_metadata(deployment.id, wait.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = dev.stage_metadata(deployment.id, wait.id)["startTime"]
    pids = dev.plugin_pids()
    os.kill(proc.pid, signal.SIGKILL)  # a hard kill: no cancel, no rollback
    proc.wait(10)
    [deployment] = dev.deployments()
    assert deployment.status == model_pb.DEPLOYMENT_RUNNING and deployment.stages[0].status == model_pb.STAGE_RUNNING
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "plugins outlived the killed pipeplug dev"

    before = time.monotonic()
    resumed = dev.run(EXAMPLE_APP, "--app-config", config, "--plugin-config", plugin_config, "--json", "--resume")
    assert resumed.code == 0, resumed
    record = resumed.record
    assert record["resumed"] and record["deployment_id"] == deployment.id and record["status"] == "SUCCESS"
    assert resumed.stage("WAIT")["attempts"] == 2
    assert resumed.stage("WAIT")["metadata"]["startTime"] == started  # the same start: only the remainder was waited
    assert time.monotonic() - before < 20
    assert "Resuming" in "".join(dev.logs(deployment.id, wait.id))


def test_resume_without_unfinished_deployment_is_a_clear_error(dev):
    config = stages_app(dev, [{"name": "SLEEP"}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json", "--resume")
    assert result.code == 2 and "nothing to resume" in result.err and "Traceback" not in result.err


def test_exited_stage_ends_with_success_and_skips_the_rest(dev):
    config = stages_app(dev, [{"name": "EXIT"}, {"name": "FAIL"}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert result.code == 0, result
    assert [(s["name"], s["status"]) for s in result.record["stages"]] == [("EXIT", "EXITED"), ("FAIL", "NOT_STARTED_YET"), ("UNDO", "NOT_STARTED_YET")]
    assert result.record["status"] == "SUCCESS"


def test_a_running_reply_fails_the_stage_instead_of_parking_the_deployment(dev):
    config = stages_app(dev, [{"name": "PARK"}, {"name": "SLEEP"}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert result.code == 1, result
    assert result.record["status"] == "FAILURE"
    assert result.stage("PARK")["status"] == "FAILURE" and result.stage("SLEEP")["status"] == "NOT_STARTED_YET"
    assert "stage PARK handler park() returned StageStatus.RUNNING, which does not end a stage" in result.out + result.err
    assert "real piped would leave the deployment RUNNING" not in result.err


def test_a_secret_never_reaches_the_dev_output(dev):
    config = stages_app(dev, [{"name": "LEAK_RAISE"}])
    plugin = dev.plugin_config("secretive", config={"token": "hunter2-SECRET"})
    result = dev.run(SECRET_APP, "--app-config", config, "--plugin-config", plugin, "--json")
    assert result.code == 1, result
    assert result.stage("LEAK_RAISE")["status"] == "FAILURE"
    assert "failed with ***" in result.out + result.err
    assert "hunter2-SECRET" not in result.out + result.err
    [deployment] = dev.deployments()
    assert all("hunter2-SECRET" not in line for line in dev.logs(deployment.id, deployment.stages[0].id))


def test_plugin_crash_mid_stage_is_a_stage_failure_with_its_output(dev):
    config = stages_app(dev, [{"name": "CRASH"}])
    result = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert result.code == 1, result
    crash = result.stage("CRASH")
    assert crash["status"] == "FAILURE"
    assert "crashed (exit code 3)" in crash["note"] and "boom: the plugin dies mid-stage" in crash["note"]
    assert result.record["status"] == "FAILURE"


def test_several_plugins_in_one_pipeline(dev):
    config = dev.app_config(
        {
            "planner": {"alwaysUsePipeline": True},
            "pipeline": {"stages": [{"name": "SLEEP", "with": {"seconds": 0.1}}, {"name": "DIR_SYNC"}, {"name": "GATE"}, {"name": "DIR_VERIFY"}]},
            "plugins": {"example": {"source": "."}},
        }
    )
    result = dev.run(EXAMPLE_APP, "--app-config", config, "--plugin-config", dev.example_config(), "--plugin", STAGES_APP, "--json", "--approve")
    assert result.code == 0, result
    assert [(s["name"], s["status"]) for s in result.record["stages"]] == [
        ("SLEEP", "SUCCESS"),
        ("DIR_SYNC", "SUCCESS"),
        ("GATE", "SUCCESS"),
        ("DIR_VERIFY", "SUCCESS"),
        ("UNDO", "NOT_STARTED_YET"),
        ("DIR_ROLLBACK", "NOT_STARTED_YET"),
    ]
    # each plugin planned only its own stages; rollbacks come after, sorted by index
    assert [s["index"] for s in result.record["stages"]] == [0, 1, 2, 3, 0, 1]


def test_commit_matcher_and_trigger_override(dev):
    spec = {"pipeline": {"stages": [{"name": "SLEEP"}]}, "commitMatcher": {"pipeline": "^deploy:"}, "plugins": {}}
    config = dev.app_config(spec)
    first = dev.run(STAGES_APP, "--app-config", config, "--json")
    assert first.record["strategy"] == "QUICK_SYNC" and "first deployment" in first.record["strategy_summary"]
    assert first.code == 1  # a stage-only plugin has no quick-sync stage: piped fails the plan
    assert first.record["status_reason"].startswith("Unable to plan the deployment")
    matched = dev.run(STAGES_APP, "--app-config", config, "--json", "--commit-message", "deploy: now")
    assert matched.code == 0, matched
    assert matched.record["strategy"] == "PIPELINE" and "matching" in matched.record["strategy_summary"]
    forced = dev.run(STAGES_APP, "--app-config", config, "--json", "--sync", "pipeline")
    assert forced.code == 0 and forced.record["strategy"] == "PIPELINE" and "sync button" in forced.record["strategy_summary"]


def test_livestate_and_plan_preview_of_the_example(dev):
    config = os.path.join(EXAMPLES, "quick-sync.pipecd.yaml")
    plugin_config = dev.example_config()
    preview = dev.run("plan-preview", EXAMPLE_APP, "--app-config", config, "--plugin-config", plugin_config, "--json")
    assert preview.code == 0, preview
    [result] = preview.record["results"]
    assert result["deploy_target"] == "local" and "+ index.html" in result["details"] and preview.record["strategy"] == "QUICK_SYNC"
    live = dev.run("livestate", EXAMPLE_APP, "--app-config", config, "--plugin-config", plugin_config, "--json")
    assert live.code == 0, live
    assert live.record["sync_state"]["status"] == "OUT_OF_SYNC" and live.record["resources"] == []
    assert example(dev, "quick-sync.pipecd.yaml").code == 0
    live = dev.run("livestate", EXAMPLE_APP, "--app-config", config, "--plugin-config", plugin_config, "--json")
    assert live.record["sync_state"]["status"] == "SYNCED"
    assert sorted(r["name"] for r in live.record["resources"]) == ["VERSION", "index.html"]
    assert live.record["health"] == "HEALTHY"
