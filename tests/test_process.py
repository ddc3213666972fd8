"""ctx.run / ctx.run_sync over real gRPC, with real child processes: streaming, environment, timeout, cancel, capture."""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from pipeplug import StageStatus
from pipeplug.testing import PluginCallError

from .support import load_test_app
from .talkback_support import wait_until

STAGES = ("RUN", "RUN_SYNC")


@pytest.fixture(scope="module")
def client():
    # Flush the stage log every 50ms, so a test can see a line arrive while the command still runs.
    saved = os.environ.get("PIPEPLUG_LOG_FLUSH_INTERVAL")
    os.environ["PIPEPLUG_LOG_FLUSH_INTERVAL"] = "0.05"
    try:
        with load_test_app("process_app").app.test_client() as test_client:
            yield test_client
    finally:
        if saved is None:
            os.environ.pop("PIPEPLUG_LOG_FLUSH_INTERVAL", None)
        else:
            os.environ["PIPEPLUG_LOG_FLUSH_INTERVAL"] = saved


def run(client, stage, command, **kwargs):
    outcome = client.execute_stage(stage, {"command": command, "kwargs": kwargs}, timeout=60)
    return outcome, json.loads(outcome.message) if outcome.message.startswith("{") else None


def gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def alive(pid: int) -> bool:
    return not gone(pid)


@pytest.mark.parametrize("stage", STAGES)
def test_output_lines_reach_the_stage_log_in_order(client, stage):
    outcome, result = run(client, stage, "echo one; echo two >&2; printf 'three\\r\\n\\nfour'; exit 0")
    assert outcome.status == StageStatus.SUCCESS
    assert result["returncode"] == 0 and result["stdout"] is None  # nothing kept unless capture=True
    texts = [text for _, text in outcome.logs]
    # Each stream keeps its order; across the two pipes, the order is whatever the reads saw first.
    assert [x for x in texts if x in ("one", "three", "four")] == ["one", "three", "four"] and "two" in texts
    assert outcome.log_completed


def test_stderr_level_marks_stderr_lines(client):
    outcome, _ = run(client, "RUN", "echo fine; echo bad >&2", stderr_level="error")
    assert ("ERROR", "bad") in outcome.logs and ("INFO", "fine") in outcome.logs
    outcome, _ = run(client, "RUN", "echo careful >&2", stderr_level="warning")
    assert ("INFO", "WARNING: careful") in outcome.logs


def test_lines_are_streamed_while_the_command_runs(client, tmp_path):
    go = tmp_path / "go"
    call = client.start_stage("RUN", {"command": f"echo started; while [ ! -e {go} ]; do sleep 0.02; done; echo finished"})
    wait_until(lambda: "started" in [text for _, text in client.piped.log_lines(call.deployment_id, call.stage_id)], "the first line in the stage log")
    assert not call.done()  # the command is still waiting for the file: the line came before its exit
    go.touch()
    outcome = call.result(timeout=30)
    assert outcome.status == StageStatus.SUCCESS and "finished" in outcome.log_text


def test_environment_is_inherited_plus_overrides(client):
    os.environ["PIPEPLUG_TEST_INHERITED"] = "from-plugin"
    try:
        _, result = run(client, "RUN", 'echo "$PIPEPLUG_TEST_INHERITED/$EXTRA"', env={"EXTRA": "given"}, capture=True)
        assert result["stdout"] == "from-plugin/given\n"
        _, result = run(client, "RUN", ["/usr/bin/env"], env={"ONLY": "this"}, inherit_env=False, capture=True)
        assert result["stdout"] == "ONLY=this\n"
    finally:
        del os.environ["PIPEPLUG_TEST_INHERITED"]


def test_working_directory(client, tmp_path):
    _, result = run(client, "RUN_SYNC", "pwd", cwd=str(tmp_path), capture=True)
    assert os.path.samefile(result["stdout"].strip(), tmp_path)


def test_capture_keeps_a_bounded_tail(client):
    _, result = run(client, "RUN", "for i in $(seq 1 1000); do echo line-$i; done; echo err >&2", capture=True, capture_limit=100)
    assert result["truncated"] and len(result["stdout"]) <= 100
    assert result["stdout"].endswith("line-999\nline-1000\n") and result["stderr"] == "err\n"


def test_an_endless_line_is_logged_in_pieces(client):
    outcome, _ = run(client, "RUN", [sys.executable, "-c", "import sys; sys.stdout.write('x' * 200000)"])
    assert outcome.status == StageStatus.SUCCESS
    assert sum(len(text) for _, text in outcome.logs if set(text) == {"x"}) == 200000


@pytest.mark.parametrize("stage", STAGES)
def test_timeout_kills_the_whole_process_group(client, stage, tmp_path):
    pidfile = tmp_path / "grandchild"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    outcome, result = run(client, stage, script, timeout=0.5, kill_grace=0.5)
    assert outcome.status == StageStatus.FAILURE
    assert result["timed_out"] and result["returncode"] == -signal.SIGTERM
    assert "Command timed out after 0.5s" in outcome.log_text
    grandchild = int(pidfile.read_text())
    wait_until(lambda: gone(grandchild), f"the grandchild {grandchild} to be gone", timeout=10)


def test_sigterm_is_followed_by_sigkill_after_the_grace_period(client, tmp_path):
    ready = tmp_path / "ready"
    script = f"trap '' TERM; touch {ready}; while true; do sleep 0.05; done"
    outcome, result = run(client, "RUN", script, timeout=1, kill_grace=0.3)
    assert ready.exists() and result["timed_out"] and result["returncode"] == -signal.SIGKILL


@pytest.mark.parametrize("stage", STAGES)
def test_cancelling_the_stage_kills_the_whole_process_group(client, stage, tmp_path):
    pidfile = tmp_path / "grandchild"
    call = client.start_stage(stage, {"command": f"sleep 300 & echo $! > {pidfile}; wait", "kwargs": {"kill_grace": 1}})
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the grandchild's pid"))
    assert alive(grandchild)
    call.cancel()
    with pytest.raises(PluginCallError):
        call.result(timeout=30)
    wait_until(lambda: gone(grandchild), f"the grandchild {grandchild} to be gone", timeout=10)
    if stage == "RUN":  # a def handler's late lines reach the stage log only once the logs work lands (wip-logs)
        line = ("INFO", "Stage cancelled; stopping the command's process group")
        wait_until(lambda: line in client.piped.log_lines(call.deployment_id, call.stage_id), "the cancel line in the stage log")


def test_what_a_command_leaves_running_is_stopped_when_it_exits(client, tmp_path):
    pidfile = tmp_path / "orphan"
    # The orphan keeps stdout open: without stopping it, reading the output would wait 300s.
    outcome, result = run(client, "RUN", f"sleep 300 & echo $! > {pidfile}; echo done", kill_grace=1)
    assert outcome.status == StageStatus.SUCCESS and result["returncode"] == 0
    assert gone(int(pidfile.read_text()))


def test_check_raises_a_failure_naming_the_status(client):
    outcome = client.execute_stage("RUN", {"command": "exit 3", "kwargs": {"check": True}})
    assert outcome.status == StageStatus.FAILURE
    assert "command exited with status 3: /bin/sh -c exit 3" in outcome.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env": {"N": 1}}, "env['N'] must be a str, got int 1"),
        ({"env": {"A=B": "x"}}, "'A=B' is not a valid environment variable name"),
        ({"stderr_level": "loud"}, "stderr_level='loud'): expected one of info, warning, error"),
        ({"timeout": 0}, "timeout=0): expected a positive number of seconds"),
    ],
)
def test_bad_arguments_fail_the_stage_with_a_clear_message(client, kwargs, message):
    outcome = client.execute_stage("RUN", {"command": "true", "kwargs": kwargs})
    assert outcome.status == StageStatus.FAILURE and message in outcome.message
    assert client.execute_stage("RUN", {"command": "true"}).status == StageStatus.SUCCESS  # the server is still up


def test_a_missing_program_is_a_failure_not_a_crash(client):
    outcome = client.execute_stage("RUN", {"command": ["/nonexistent/program"]})
    assert outcome.status == StageStatus.FAILURE and "/nonexistent/program" in outcome.message
