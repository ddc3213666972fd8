"""The stage log: piped's rules on every request, failures in the log, logging, resume, and piped outages.

The plugin (tests/apps/talkback_app.py) runs as a subprocess started with
piped's argv; FakePiped keeps the log as the web UI would show it and records a
violation for anything real piped would refuse, lose or misplace.
"""

from __future__ import annotations

import os
import random
import typing as t

import pytest

import pipeplug
from pipeplug import StageStatus
from pipeplug._gen.model import logblock_pb2
from pipeplug.stagelog import MAX_LINE_CHARS
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient
from tests.talkback_support import FAST
from tests.talkback_support import SECRET_TOKEN
from tests.talkback_support import TALKBACK_APP
from tests.talkback_support import client  # noqa: F401 - fixtures
from tests.talkback_support import log_calls
from tests.talkback_support import no_violations  # noqa: F401
from tests.talkback_support import piped  # noqa: F401
from tests.talkback_support import talkback  # noqa: F401
from tests.talkback_support import texts
from tests.talkback_support import wait_until

FOUR_MIB = 4 * 1024 * 1024


def assert_piped_rules(piped: FakePiped, stage_id: str) -> list[t.Any]:
    """Check every log request of the stage against piped's rules; return its blocks in sending order."""
    calls = log_calls(piped, stage_id)
    assert calls, "the stage sent no log request"
    blocks = []
    for rpc, request in calls:
        assert request.ByteSize() < FOUR_MIB, f"{rpc} of {request.ByteSize()} bytes"
        assert request.retried_count == 0
        assert request.deployment_id
        for block in request.blocks:
            assert block.log, "an empty line was sent"
            assert block.created_at > 0
            assert block.severity in logblock_pb2.LogSeverity.values()
        blocks.extend(request.blocks)
    completions = [i for i, (rpc, request) in enumerate(calls) if rpc == "ReportStageLogsFromLastCheckpoint" and request.completed]
    assert completions == [len(calls) - 1], "completed=true must be sent exactly once, as the last request"
    return blocks


def test_lines_follow_pipeds_rules(client, piped) -> None:  # type: ignore[no-untyped-def]
    text = "first\n\nsecond\r\nthird\n\n\n   \nlast\n"
    run = client.execute_stage("LINES", {"lines": 500, "text": text})
    assert run.status == StageStatus.SUCCESS
    assert run.log_completed
    assert texts(run.logs) == [f"line {i}" for i in range(500)] + ["first", "second", "third", "   ", "last"]
    assert_piped_rules(piped, run.stage_id)
    indexes = [b.index for b in piped.log_blocks(run.deployment_id, run.stage_id)]
    assert indexes == sorted(set(indexes))  # strictly increasing
    assert indexes[0] > 1_000_000_000_000_000  # microseconds since the epoch, not seconds
    assert indexes[-1] < 2**53  # exact as a JavaScript number in the web UI


def test_big_output_goes_in_several_requests_each_under_4_mib(client, piped) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("LINES", {"lines": 5000, "pad": 1000})
    assert run.status == StageStatus.SUCCESS
    assert len(run.logs) == 5000
    assert texts(run.logs)[-1] == "line 4999 " + "x" * 1000
    calls = log_calls(piped, run.stage_id)
    assert len(calls) >= 5  # about 5 MB of text, at most 1 MiB per request
    assert_piped_rules(piped, run.stage_id)


def test_an_overlong_line_is_cut_with_a_note(client) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("LINES", {"text": "y" * (MAX_LINE_CHARS + 10)})
    (line,) = texts(run.logs)
    assert line == "y" * MAX_LINE_CHARS + " ... [pipeplug: line cut, 10 more characters]"


def test_a_stage_that_wrote_nothing_makes_no_log_call(client, piped) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("NEEDS_OPTIONS", {"count": 1})
    assert run.status == StageStatus.SUCCESS
    assert (run.logs, run.log_completed, log_calls(piped, run.stage_id)) == ([], False, [])


def test_a_re_executed_stage_completes_its_log_even_when_it_wrote_nothing(client, piped) -> None:  # type: ignore[no-untyped-def]
    # piped re-executes a stage it lost with status RUNNING: the lost process's lines may await completion
    run = client.start_stage("NEEDS_OPTIONS", {"count": 1}, status=StageStatus.RUNNING).result(30)
    assert run.status == StageStatus.SUCCESS
    assert run.logs == []
    assert run.log_completed
    ((rpc, request),) = log_calls(piped, run.stage_id)
    assert (rpc, list(request.blocks), request.completed) == ("ReportStageLogsFromLastCheckpoint", [], True)


def test_failures_reach_the_stage_log_as_errors(client, piped) -> None:  # type: ignore[no-untyped-def]
    failed = client.execute_stage("FAIL")
    assert failed.status == StageStatus.FAILURE
    assert failed.logs == [("ERROR", "the target refused the change"), ("ERROR", "second line of the reason")]

    raised = client.execute_stage("RAISE")
    assert raised.status == StageStatus.FAILURE
    assert raised.message == "RuntimeError: boom from deep inside"
    assert {severity for severity, _ in raised.logs} == {"ERROR"}
    lines = texts(raised.logs)
    assert lines[0] == "Handler raise_() raised"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom from deep inside"
    assert any(line.strip().startswith('File "') and line.endswith(", in deep") for line in lines)
    assert not any(f'File "{os.path.join(pipeplug.__path__[0], "")}' in line for line in lines[1:]), "the short traceback starts at the user's code"

    invalid = client.execute_stage("NEEDS_OPTIONS", {"cuont": 1})
    assert invalid.status == StageStatus.FAILURE
    assert invalid.logs[0][0] == "ERROR"
    assert "with.count" in invalid.log_text and "cuont" in invalid.log_text
    for run in (failed, raised, invalid):
        assert run.log_completed
        assert_piped_rules(piped, run.stage_id)


def test_a_cancelled_stage_still_completes_its_log(client, piped) -> None:  # type: ignore[no-untyped-def]
    call = client.start_stage("HANG", deployment={"id": "dep-cancel"})
    wait_until(lambda: piped.log_lines("dep-cancel", call.stage_id), "the stage's first line")
    call.cancel()
    wait_until(lambda: piped.log_completed("dep-cancel", call.stage_id), "the cancelled stage's log to be completed")
    lines = texts(piped.log_lines("dep-cancel", call.stage_id))
    assert lines[0] == "hanging"
    assert lines[1].startswith("WARNING: Cancelled by piped after ")
    assert_piped_rules(piped, call.stage_id)


def test_logging_calls_inside_a_stage_reach_its_log_and_the_process_log_once(client, talkback) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("LOGGING")
    assert run.logs == [
        ("INFO", "from logging in the stage task"),
        ("ERROR", "an error from logging"),
        ("INFO", "WARNING: from logging in a copied-context thread"),
        ("INFO", "from a thread the stage started"),
        ("SUCCESS", "done"),
    ]
    output = wait_until(lambda: (lambda o: o if "from a thread the stage started" in o else "")(talkback.stderr_text()), "the process log")
    assert output.count("from logging in the stage task") == 1
    assert output.count("from a thread the stage started") == 1


def test_secrets_are_masked_in_the_stage_log(client, talkback) -> None:  # type: ignore[no-untyped-def]
    run = client.execute_stage("SECRET")
    assert texts(run.logs) == ["token is ***", "via logging: ***"]
    assert SECRET_TOKEN not in talkback.stderr_text()


def test_only_warning_and_error_stage_lines_are_copied_to_the_process_log(client, talkback) -> None:  # type: ignore[no-untyped-def]
    # INFO lines on their way to piped go to the process log at DEBUG only (talkback runs at INFO)
    lines = client.execute_stage("LINES", {"lines": 2})
    failed = client.execute_stage("FAIL")
    assert texts(lines.logs) == ["line 0", "line 1"]
    where = f"stage FAIL (stage id {failed.stage_id}, deployment {failed.deployment_id})"
    output = wait_until(lambda: (lambda o: o if f"{where}: the target refused the change" in o else "")(talkback.stderr_text()), "the failure in the process log")
    assert f"ERROR pipeplug.stage: {where}: the target refused the change" in output
    assert f"stage id {lines.stage_id}" not in output


# -- resume and outages: a plugin of their own ---------------------------------------------------------


@pytest.fixture
def start_plugin(piped):  # type: ignore[no-untyped-def]
    """Start talkback with extra environment; every process is stopped by PID at teardown."""
    started: list[PluginProcess] = []

    def start(port: int = 0, **env: str) -> PluginProcess:
        plugin = PluginProcess(TALKBACK_APP, piped_address=piped.address, port=port, env={**FAST, **env})
        started.append(plugin)
        return plugin.start()

    yield start
    for plugin in started:
        plugin.close()


def checkpointed(piped: FakePiped, stage_id: str, count: int) -> bool:
    """``count`` blocks of the stage reached piped's durable store through checkpoints."""
    return sum(len(r.blocks) for rpc, r in log_calls(piped, stage_id) if rpc == "ReportStageLogsFromLastCheckpoint") >= count


def test_a_resumed_stage_appends_with_higher_indexes(piped, start_plugin) -> None:  # type: ignore[no-untyped-def]
    first = start_plugin()
    with TestClient(address=first.address, piped=piped, name="talkback") as client:
        call = client.start_stage("LINES", {"lines": 50, "gate": True}, deployment={"id": "dep-resume"}, stage_id="resumed")
        wait_until(lambda: checkpointed(piped, "resumed", 50), "the first run's lines to be checkpointed")
        first.kill()  # SIGKILL: no chance to flush or complete
        with pytest.raises(PluginCallError):
            call.result(10)
        assert not piped.log_completed("dep-resume", "resumed")
        second = start_plugin(port=first.port)
        call = client.start_stage("LINES", {"lines": 50, "gate": True}, deployment={"id": "dep-resume"}, stage_id="resumed", status=StageStatus.RUNNING)
        piped.approve("dep-resume", "resumed")
        run = call.result(30)
    assert second.returncode is None
    assert run.status == StageStatus.SUCCESS
    assert texts(run.logs) == [f"line {i}" for i in range(50)] * 2
    indexes = [b.index for b in piped.log_blocks("dep-resume", "resumed")]
    assert indexes == sorted(set(indexes))


def test_an_outage_within_the_bound_loses_no_line(piped, start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin(PIPEPLUG_LOG_BUFFER_LINES="200")
    with TestClient(address=plugin.address, piped=piped, name="talkback") as client:
        with piped.outage():
            call = client.start_stage("LINES", {"lines": 150, "gate": True, "after": 40}, deployment={"id": "dep-out1"})
            wait_until(lambda: len(log_calls(piped, call.stage_id)) >= 3, "the plugin to try (and retry) sending its lines")
        piped.approve("dep-out1", call.stage_id)
        run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert texts(run.logs) == [f"line {i}" for i in range(150)] + [f"after {i}" for i in range(40)]
    assert "dropped" not in plugin.stderr_text()
    assert_piped_rules(piped, call.stage_id)


def test_an_outage_beyond_the_bound_drops_the_oldest_unsent_lines_and_counts_them(piped, start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin(PIPEPLUG_LOG_BUFFER_LINES="200")
    with TestClient(address=plugin.address, piped=piped, name="talkback") as client:
        with piped.outage():
            call = client.start_stage("LINES", {"lines": 300, "gate": True}, deployment={"id": "dep-out2"})
            wait_until(lambda: len(log_calls(piped, call.stage_id)) >= 2, "the plugin to try sending its lines")
        piped.approve("dep-out2", call.stage_id)
        run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    notice = (
        "pipeplug: 100 line(s) of this stage log were dropped: piped was unreachable or slower than the stage wrote, "
        "and at most 200 lines wait for it (PIPEPLUG_LOG_BUFFER_LINES); they are in the plugin's process log"
    )
    assert run.logs == [("INFO", f"line {i}") for i in range(100, 300)] + [("ERROR", notice)]
    output = plugin.stderr_text()
    assert "is full (200 lines piped has not taken yet): the oldest unsent lines go to the process log instead" in output
    # the dropped lines are not lost: each is in the process log at its level, and no delivered line is
    ids = f" [deployment_id=dep-out2 stage_id={call.stage_id}]"
    spilled = [line.split("dropped from the stage log: ", 1)[1] for line in output.splitlines() if "dropped from the stage log: " in line]
    assert spilled == [f"line {i}{ids}" for i in range(100)]
    assert notice in output
    assert f"stage {call.stage_id} (deployment dep-out2): 100 stage log line(s) dropped in total" in output


def test_a_stage_that_ends_during_an_outage_answers_once_its_log_is_completed(piped, start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin()
    with TestClient(address=plugin.address, piped=piped, name="talkback") as client:
        with piped.outage():
            call = client.start_stage("LINES", {"lines": 10}, deployment={"id": "dep-out3"})
            wait_until(lambda: len(log_calls(piped, call.stage_id)) >= 3, "the final flush to be retried")
            assert not call.done()
        run = call.result(30)
    assert run.status == StageStatus.SUCCESS
    assert run.log_completed
    assert texts(run.logs) == [f"line {i}" for i in range(10)]


def test_sent_and_dropped_lines_are_counted_in_metrics(tmp_path):
    """The /metrics counters follow what the stage log really delivered."""
    from pipeplug.metrics import METRICS

    from .support import load_test_app

    app = load_test_app("every_decorator").app
    before = METRICS.log_lines_sent_total
    with app.test_client(deploy_targets=[{"name": "dev", "config": {"region": "eu"}}]) as client:
        run = client.execute_stage("OUTCOME", {"status": "SUCCESS", "message": "counted"})
    assert ("SUCCESS", "counted") in run.logs
    assert METRICS.log_lines_sent_total - before == len(run.logs)


def test_the_flat_line_buffer_behaves_like_a_list_of_lines() -> None:
    # Model check of the storage behind every stage log: the same random operations
    # on a plain list and on LogLines must always leave the same lines, in order.
    from pipeplug.loglines import LogLines

    rng = random.Random(4)
    model: list[tuple[int, str, int, int]] = []
    lines = LogLines()
    for step in range(3000):
        roll = rng.random()
        if roll < 0.7:
            line = (rng.randrange(1 << 50), rng.choice(["a", "héllo", "x" * rng.randrange(1, 80), "日本語"]), rng.randrange(3), rng.randrange(1 << 40))
            lines.append(*line)
            model.append(line)
        elif roll < 0.8:
            count = rng.randrange(len(model) + 2)
            assert list(lines.take(count).lines()) == model[:count]
            del model[:count]
        elif roll < 0.85:
            front = LogLines()
            returned = [(step, f"again {i}", 1, 2) for i in range(rng.randrange(5))]
            for line in returned:
                front.append(*line)
            lines.put_back(front)
            model[:0] = returned
        elif roll < 0.93:
            start = rng.randrange(len(model) + 1)
            end = rng.randrange(start, len(model) + 1)
            part = LogLines()
            part.extend(lines, start, end)
            assert list(part.lines()) == list(lines.lines(start, end)) == model[start:end]
            assert part.size() == lines.size(start, end) == sum(len(text.encode()) + 32 for _, text, _, _ in model[start:end])
        else:
            limit = rng.choice([40, 200, 1000])
            position = 0
            for start, end, size in lines.chunks(limit):
                assert start == position < end and size == lines.size(start, end)
                assert size <= limit or end == start + 1  # a line longer than the limit travels alone
                position = end
            assert position == len(model)
        assert len(lines) == len(model)
    assert list(lines.lines()) == model
