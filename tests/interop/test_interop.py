"""Run pipeplug plugins against piped's own Go code (the harness in tests/interop/harness).

The harness is built once per session from the pinned github.com/pipe-cd/pipecd
module, then run once per (plugin, scenario) case. Each case launches the plugin
with piped's launcher and argv, serves piped's PluginService to it, and drives
planning, execution, cancellation, livestate and plan preview as piped does.
See tests/interop/README.md.

The example plugin also runs in its built form: the single file
``pipeplug build --format onefile`` makes, launched from its own file:// URL
(skipped without PyInstaller).

Skipped when ``go`` is not on PATH. Extra cases: set PIPEPLUG_INTEROP_EXTRA to
``plugin.py[=scenario.json][;...]`` (paths relative to the repository root).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeplug.build import INSTALL_HINT
from pipeplug.build import build_plugin

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

BUILD_TIMEOUT = 600  # a cold module cache downloads and compiles pipecd's packages
RUN_TIMEOUT = 240

# (id, plugin file relative to the repo root, scenario relative to tests/interop or None for generic checks)
CASES = [
    ("example", "example_app.py", "scenarios/example.json"),
    ("every-decorator", "tests/apps/every_decorator.py", "scenarios/every.json"),
    ("stage-only", "tests/apps/stage_only.py", "scenarios/stageonly.json"),
    ("raw-grpcio", "tests/interop/testdata/raw_plugin.py", "scenarios/raw.json"),
    # SIGKILL and SIGTERM in the middle of a stage, then piped's re-execution (real stagelogstore)
    ("lifecycle", "tests/apps/lifecycle_app.py", "scenarios/lifecycle.json"),
    ("example-generic", "example_app.py", None),
]


def _extra_cases() -> list[tuple[str, str, str | None]]:
    out = []
    for item in filter(None, os.environ.get("PIPEPLUG_INTEROP_EXTRA", "").split(";")):
        plugin, _, scenario = item.partition("=")
        out.append((f"extra-{os.path.basename(plugin)}", plugin, os.path.abspath(scenario) if scenario else None))
    return out


def _env(source_tree: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    # Never let go fetch another toolchain; report the local one's error instead.
    env.setdefault("GOTOOLCHAIN", "local")
    if source_tree:
        # Plugins run from their own file (piped copies a wrapper that execs it);
        # make the working tree's pipeplug importable even when not installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    else:
        env.pop("PYTHONPATH", None)  # a built plugin carries its own pipeplug
    return env


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> str:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain (`go`) is not on PATH; the interop suite builds against piped's Go code")
    out = str(tmp_path_factory.mktemp("interop") / "harness")
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [go, "build", "-o", out, "./harness"],
            cwd=HERE,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"building the interop harness took over {BUILD_TIMEOUT}s:\n{e.output or ''}")
    if proc.returncode != 0:
        pytest.fail(f"building the interop harness failed (go build ./harness in {HERE}):\n{proc.stdout}")
    sys.stderr.write(f"interop harness built in {time.monotonic() - start:.1f}s\n")
    return out


@pytest.fixture(scope="module")
def built_example(harness: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """example_app.py built once into one PyInstaller file, as ``pipeplug build`` does (after the harness: no go, no build)."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip(f"PyInstaller is not installed, so the example plugin cannot be built into one file ({INSTALL_HINT})")
    artifact = build_plugin(os.path.join(ROOT, "example_app.py"), f"{tmp_path_factory.mktemp('built')}/", "onefile")
    sys.stderr.write(f"example plugin built (onefile, {artifact.size / 1e6:.0f} MB) in {artifact.seconds:.1f}s\n")
    return str(artifact.path)


def _run(harness: str, plugin: str, scenario: str | None, source_tree: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [harness, "-plugin-cmd", os.path.join(ROOT, plugin), "-python", sys.executable, "-timeout", f"{RUN_TIMEOUT - 30}s"]
    if scenario:
        cmd += ["-scenario", os.path.join(HERE, scenario)]
    # Own process group: the plugin is the harness's child, so on a timeout both
    # go, by the group id of the process we started.
    proc = subprocess.Popen(cmd, cwd=HERE, env=_env(source_tree), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"interop run did not finish within {RUN_TIMEOUT}s:\n{out}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


@pytest.mark.parametrize(("plugin", "scenario"), [pytest.param(p, s, id=i) for i, p, s in CASES + _extra_cases()])
def test_plugin_against_piped(harness: str, plugin: str, scenario: str | None) -> None:
    if not os.path.exists(os.path.join(ROOT, plugin)):
        pytest.skip(f"{plugin} does not exist (yet)")
    proc = _run(harness, plugin, scenario)
    if proc.returncode != 0:
        pytest.fail(f"{plugin} failed against piped's code (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)


def test_built_example_against_piped(harness: str, built_example: str) -> None:
    """The example's scenario against its built form: piped downloads and starts the file itself, no interpreter, no source tree."""
    proc = _run(harness, built_example, "scenarios/example.json", source_tree=False)
    assert f"plugin url: file://{built_example}\n" in proc.stdout, f"the harness did not launch the built file itself:\n{proc.stdout}"
    if proc.returncode != 0:
        pytest.fail(f"the built example plugin ({built_example}) failed against piped's code (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)


def test_harness_catches_violations(harness: str) -> None:
    """The harness itself: a misbehaving plugin must be caught, each way it misbehaves."""
    proc = _run(harness, "tests/interop/testdata/raw_plugin.py", "scenarios/raw_bad.json")
    assert proc.returncode == 1, proc.stdout
    for needle in [
        "piped's PluginService rejected ReportStageLogs",  # an empty log line fails piped's validation
        "never repeated in a checkpoint call",  # plain-only blocks are lost
        "log calls after completed=true",
        "is not defined in the request",  # piped's stage index check
        "GetLivestate is UNIMPLEMENTED, want OK",
    ]:
        assert needle in proc.stdout, f"harness did not report {needle!r}:\n{proc.stdout}"
