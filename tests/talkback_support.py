"""Fixtures and helpers for the tests of talking back to piped: a FakePiped, plugins started as piped does.

Intervals are shortened through the environment (``PIPEPLUG_*``), the only
channel piped leaves open besides its fixed argv.
"""

from __future__ import annotations

import os
import time
import typing as t

import pytest

from pipeplug.testing import FakePiped
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient

TESTS = os.path.dirname(os.path.abspath(__file__))
TALKBACK_APP = os.path.join(TESTS, "apps", "talkback_app.py")
EXAMPLE_APP = os.path.join(os.path.dirname(TESTS), "example_app.py")

#: flush every 50ms, checkpoint every 300ms, poll commands every 50ms, retry within 200ms
FAST = {
    "PIPEPLUG_LOG_FLUSH_INTERVAL": "0.05",
    "PIPEPLUG_LOG_CHECKPOINT_INTERVAL": "0.3",
    "PIPEPLUG_COMMAND_POLL_INTERVAL": "0.05",
    "PIPEPLUG_RETRY_MAX_DELAY": "0.2",
    "PIPEPLUG_LOG_COMPLETE_TIMEOUT": "20",
}

#: the talkback plugin's secret config value, which no log may show
SECRET_TOKEN = "s3cr3t-t0ken-value"

LOG_RPCS = ("ReportStageLogs", "ReportStageLogsFromLastCheckpoint")


@pytest.fixture(scope="module")
def piped() -> t.Iterator[FakePiped]:
    """One FakePiped per test module (see ``no_violations``)."""
    with FakePiped() as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_violations(piped: FakePiped) -> t.Iterator[None]:
    """Each test fails if the plugin broke one of piped's rules while it ran."""
    piped.violations.clear()
    yield
    try:
        piped.assert_no_violations()
    finally:
        piped.violations.clear()


@pytest.fixture(scope="module")
def talkback(piped: FakePiped) -> t.Iterator[PluginProcess]:
    with PluginProcess(TALKBACK_APP, piped_address=piped.address, config={"token": SECRET_TOKEN}, env=FAST) as plugin:
        yield plugin


@pytest.fixture
def client(talkback: PluginProcess, piped: FakePiped) -> t.Iterator[TestClient]:
    with TestClient(address=talkback.address, piped=piped, name="talkback") as test_client:
        yield test_client


def wait_until(condition: t.Callable[[], t.Any], what: str, timeout: float = 15.0) -> t.Any:
    """Poll ``condition`` every 20ms until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def log_calls(piped: FakePiped, stage_id: str) -> list[tuple[str, t.Any]]:
    """Every stage-log request the plugin sent for ``stage_id``, in order (refused ones too)."""
    return [(rpc, request) for rpc, request in list(piped.calls) if rpc in LOG_RPCS and request.stage_id == stage_id]


def texts(lines: t.Iterable[tuple[str, str]]) -> list[str]:
    return [text for _, text in lines]
