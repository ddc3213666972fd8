"""The command lines, run as real processes: piped's argv, `pipeplug run`, and app loading."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import grpc
import pytest

from pipeplug import launcher
from pipeplug._gen.plugin import deployment_pb2 as pb
from pipeplug._gen.plugin import deployment_pb2_grpc
from pipeplug.loading import NoAppError
from pipeplug.loading import load_app
from pipeplug.testing import PluginProcess
from pipeplug.testing import free_port

from .support import APPS
from .support import ROOT

EXAMPLE = os.path.join(ROOT, "example_app.py")
EVERY = os.path.join(APPS, "every_decorator.py")


def fetch(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = deployment_pb2_grpc.DeploymentServiceStub(channel)
        return list(stub.FetchDefinedStages(pb.FetchDefinedStagesRequest(), timeout=5).stages)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_piped_argv_serves_on_both_loopback_families(tmp_path):
    targets = [{"name": "local", "config": {"path": str(tmp_path)}}]
    plugin = PluginProcess(EXAMPLE, piped_address="localhost:9087", name="example", deploy_targets=targets, cwd=ROOT, startup_timeout=30).start()
    try:
        assert fetch(f"127.0.0.1:{plugin.port}") == ["WAIT", "WAIT_APPROVAL", "DIR_SYNC", "DIR_VERIFY", "DIR_ROLLBACK"]
        assert fetch(f"localhost:{plugin.port}")
        if has_ipv6_loopback():
            assert fetch(f"[::1]:{plugin.port}")
        assert (tmp_path / "releases").is_dir()  # on_startup ran before the port opened
    finally:
        plugin.close()
    assert plugin.returncode == 0, plugin.stderr_text()


def test_unknown_flags_are_tolerated_with_a_warning():
    plugin = PluginProcess(
        EVERY, piped_address="localhost:9087", name="every", extra_args=["--metrics=false", "--profile"], cwd=ROOT, startup_timeout=30
    ).start()
    try:
        assert "EVERY_SYNC" in fetch(f"127.0.0.1:{plugin.port}")
    finally:
        plugin.close()
    assert plugin.returncode == 0
    assert "ignoring flags pipeplug does not know: --metrics=false --profile" in plugin.stderr_text()


def run_start(config: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, EVERY, "start", "--piped-plugin-service", "localhost:9087", "--config", config, *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_config_that_is_not_json_exits_before_binding():
    result = run_start("{nope")
    assert result.returncode != 0
    assert "--config is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_pipeds_argv_and_the_click_command_report_a_bad_config_alike():
    fast = run_start("{nope")  # piped's exact argv: parsed without click
    full = run_start("{nope", "--log-level", "info")  # any other command line: the click command
    assert fast.returncode == full.returncode == 1
    assert fast.stderr.splitlines()[-1] == full.stderr.splitlines()[-1] == "Error: --config is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"


@pytest.mark.parametrize(
    ("argv", "fast"),
    [
        (["start", "--piped-plugin-service", "localhost:9087", "--config", "{}"], True),
        (["start", "--config", "{}", "--piped-plugin-service", "localhost:9087"], True),
        (["start", "--piped-plugin-service", "localhost:9087", "--config", "{}", "--tls"], False),
        (["start", "--piped-plugin-service", "localhost:9087", "--piped-plugin-service", "x"], False),
        (["start", "--piped-plugin-service", "--config", "--config", "{}"], False),
        (["start", "--piped-plugin-service=localhost:9087", "--config={}"], False),
        (["start", "--help"], False),
        (["version"], False),
    ],
)
def test_only_pipeds_exact_argv_skips_click(argv, fast):
    from pipeplug.start import _piped_argv

    assert (_piped_argv(argv) is not None) is fast


def test_config_that_does_not_fit_prints_every_bad_field():
    port = free_port()
    config = {"name": "every", "port": port, "config": {"greeting": 5, "stateDirr": "/x"}, "deployTargets": [{"name": "a", "config": {}}]}
    result = run_start(json.dumps(config))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "the plugin config from --config does not fit plugin 'every':" in result.stderr
    assert 'config.stateDirr: unknown field; did you mean "stateDir"?' in result.stderr
    assert "deployTargets[0] (a).config.region: required field is missing" in result.stderr
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # never bound


def test_missing_required_flags_are_usage_errors():
    result = subprocess.run([sys.executable, EVERY, "start", "--config", "{}"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "Missing option '--piped-plugin-service'" in result.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_start(json.dumps({"name": "every", "port": port}))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_command():
    result = subprocess.run([sys.executable, EVERY, "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("every (pipeplug ")


def test_pipeplug_run_with_config_file(tmp_path):
    port = free_port()
    config = tmp_path / "plugin.yaml"
    config.write_text(f"name: every\nport: {port}\nconfig:\n  greeting: yo\n")
    argv = [sys.executable, "-m", "pipeplug.cli", "run", f"{EVERY}:app", "--config", str(config), "--host", "127.0.0.1"]
    proc = launcher.spawn(argv, output=subprocess.DEVNULL, cwd=ROOT)
    try:
        launcher.wait_answered(proc, f"127.0.0.1:{port}", 20)
        assert fetch(f"127.0.0.1:{port}")[0] == "EVERY_SYNC"
    finally:
        code = launcher.stop(proc)
    assert code == 0


# -- finding the app ----------------------------------------------------------


def test_load_by_path_and_attribute():
    assert load_app(os.path.join(APPS, "loading", "one_app.py")).name == "only"
    assert load_app(os.path.join(APPS, "loading", "two_apps.py") + ":second").name == "second"


def test_load_by_dotted_module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(APPS, "loading"))
    assert load_app("one_app").name == "only"


def test_a_file_inside_a_package_is_imported_as_its_dotted_module(monkeypatch):
    """Like Flask's prepare_import: climb past __init__.py files, so relative imports work."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [n for n in sys.modules if n == "relpkg" or n.startswith("relpkg.")]:
        monkeypatch.delitem(sys.modules, name)
    app = load_app(os.path.join(APPS, "loading", "relpkg", "plugin.py"))
    assert (app.name, list(app.stages)) == ("relative", ["RELATIVE_STAGE"])
    assert sys.path[0] == os.path.join(APPS, "loading") and "relpkg.plugin" in sys.modules
    for name in ("relpkg", "relpkg.plugin", "relpkg.stages"):
        monkeypatch.delitem(sys.modules, name)


def test_pipeplug_run_serves_a_plugin_module_of_a_package(tmp_path):
    port = free_port()
    target = os.path.relpath(os.path.join(APPS, "loading", "relpkg", "plugin.py"), ROOT)
    argv = [sys.executable, "-m", "pipeplug.cli", "run", target, "--port", str(port), "--host", "127.0.0.1"]
    with open(tmp_path / "output", "w+b") as output:
        proc = launcher.spawn(argv, output=output, cwd=ROOT)
        try:
            launcher.wait_answered(proc, f"127.0.0.1:{port}", 20)
            stages = fetch(f"127.0.0.1:{port}")
        except launcher.NotAnswering:
            stages = []
        finally:
            launcher.stop(proc)
        output.seek(0)
        assert stages == ["RELATIVE_STAGE"], output.read().decode(errors="replace")


def test_ambiguous_module_is_an_error():
    with pytest.raises(NoAppError, match=r"several Apps \(first, second\); name one, e.g. .*two_apps.py:first"):
        load_app(os.path.join(APPS, "loading", "two_apps.py"))


def test_not_found_and_failed_import_are_told_apart():
    with pytest.raises(NoAppError, match="module 'no_such_plugin_module' not found"):
        load_app("no_such_plugin_module")
    with pytest.raises(NoAppError) as err:
        load_app(os.path.join(APPS, "loading", "broken_import.py"))
    assert "importing" in str(err.value) and "No module named 'a_module_that_does_not_exist'" in str(err.value)
    with pytest.raises(NoAppError, match="file .* not found"):
        load_app("missing_dir/missing.py")
    with pytest.raises(NoAppError, match="no attribute named 'nope'"):
        load_app(os.path.join(APPS, "loading", "one_app.py") + ":nope")


def test_run_reports_loading_errors_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "pipeplug.cli", "run", os.path.join(APPS, "loading", "two_apps.py")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "several Apps" in result.stderr and "Traceback" not in result.stderr
