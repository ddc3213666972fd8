"""A pipeplug.secret() value never leaves the plugin process: not in replies, error texts, stage logs or the process log."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from pipeplug.testing import FakePiped
from pipeplug.testing import PluginCallError
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient
from pipeplug.testing import free_port

from .support import load_test_app

SECRET_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "secret_app.py")
TOKEN = "hunter2-SECRET"


def _check_every_way_out(client: TestClient) -> None:
    raised = client.execute_stage("LEAK_RAISE")
    assert raised.message == "RuntimeError: failed with ***"
    assert "failed with ***" in raised.log_text and TOKEN not in raised.log_text
    result = client.execute_stage("LEAK_RESULT")
    assert (result.message, result.logs) == ("the token *** was refused", [("ERROR", "the token *** was refused")])
    with pytest.raises(PluginCallError) as err:
        client.determine_versions()
    assert err.value.code == grpc.StatusCode.INTERNAL
    assert err.value.details.endswith("failed: RuntimeError: registry refused ***")
    live = client.get_livestate()
    assert (live.reason, live.resources[0].health_description) == ("token ***", "logged in as ***")


def test_a_plugin_started_as_piped_starts_it_masks_its_secret_everywhere() -> None:
    with FakePiped() as piped, PluginProcess(SECRET_APP, piped_address=piped.address, config={"token": TOKEN}) as plugin:
        with TestClient(address=plugin.address, piped=piped, name="secretive") as client:
            _check_every_way_out(client)
        output = plugin.stderr_text()
    assert "registry refused ***" in output  # the process log has the error, masked
    assert TOKEN not in output


def test_the_in_process_test_client_masks_it_too() -> None:
    app = load_test_app("secret_app").app
    with app.test_client(config={"token": TOKEN}) as client:
        _check_every_way_out(client)


def test_a_failed_start_does_not_print_it() -> None:
    config = {"name": "secretive", "port": free_port(), "config": {"token": TOKEN, "failAtStartup": True}}
    argv = [sys.executable, SECRET_APP, "start", "--piped-plugin-service", "localhost:9", "--config", json.dumps(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Error: @app.on_startup handler check_token() failed: PermissionError: token *** expired" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
