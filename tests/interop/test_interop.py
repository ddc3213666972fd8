"""Run pipeplug plugins against piped's own Go code (the harness in tests/interop/harness).

The harness is built once per session from the pinned github.com/pipe-cd/pipecd
module, then run once per (plugin, scenario) case. Each case launches the plugin
with piped's launcher and argv, serves piped's PluginService to it, and drives
planning, execution, cancellation, livestate and plan preview as piped does.
See tests/interop/README.md.

The example plugin also runs in its built form: the single file ``pipeplug build``
makes (its default format), launched from its own file:// URL, and the same file
published with ``pipeplug push`` to a real registry (Debian's docker-registry, over
TLS with a test-made CA) and pulled by piped's own ``oci://`` download (skipped
without PyInstaller, or without docker-registry).

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
from tests.registry_support import Registry

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

BUILD_TIMEOUT = 600  # a cold module cache downloads and compiles pipecd's packages
RUN_TIMEOUT = 240

# (id, plugin file relative to the repo root, scenario relative to tests/interop or None for generic checks)
CASES = [
    ("example", "example_app.py", "scenarios/example.json"),
    ("every-decorator", "tests/apps/every_decorator.py", "scenarios/every.json"),
    ("stage-only", "tests/apps/stage_only.py", "scenarios/stageonly.json"),
    ("non-final-status", "tests/apps/nonfinal.py", "scenarios/nonfinal.json"),
    ("raw-grpcio", "tests/interop/testdata/raw_plugin.py", "scenarios/raw.json"),
    # SIGKILL and SIGTERM in the middle of a stage, then piped's re-execution (real stagelogstore)
    ("lifecycle", "tests/apps/lifecycle_app.py", "scenarios/lifecycle.json"),
    ("example-generic", "example_app.py", None),
    ("official-wait", "examples/official/wait.py", "scenarios/official_wait.json"),
    ("official-waitapproval", "examples/official/wait_approval.py", "scenarios/official_waitapproval.json"),
    ("official-scriptrun", "examples/official/script_run.py", "scenarios/official_scriptrun.json"),
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
    """example_app.py built once, in ``pipeplug build``'s default format (after the harness: no go, no build)."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip(f"PyInstaller is not installed, so the example plugin cannot be built into one file ({INSTALL_HINT})")
    artifact = build_plugin(os.path.join(ROOT, "example_app.py"), f"{tmp_path_factory.mktemp('built')}/")
    sys.stderr.write(f"example plugin built ({artifact.format}, {artifact.size / 1e6:.0f} MB) in {artifact.seconds:.1f}s\n")
    return str(artifact.path)


def _run(
    harness: str, plugin: str, scenario: str | None, source_tree: bool = True, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the harness on ``plugin``: a path (relative to the repo root), or a url piped downloads (``oci://…``)."""
    where = ["-plugin-url", plugin] if "://" in plugin else ["-plugin-cmd", os.path.join(ROOT, plugin)]
    cmd = [harness, *where, "-python", sys.executable, "-timeout", f"{RUN_TIMEOUT - 30}s"]
    if scenario:
        cmd += ["-scenario", os.path.join(HERE, scenario)]
    # Own process group: the plugin is the harness's child, so on a timeout both
    # go, by the group id of the process we started.
    proc = subprocess.Popen(cmd, cwd=HERE, env={**_env(source_tree), **(extra_env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"interop run did not finish within {RUN_TIMEOUT}s:\n{out}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


@pytest.mark.parametrize(("plugin", "scenario"), [pytest.param(p, s, id=i) for i, p, s in CASES + _extra_cases()])
def test_plugin_against_piped(harness: str, plugin: str, scenario: str | None) -> None:
    missing = [path for path in (plugin, scenario and os.path.join("tests/interop", scenario)) if path and not os.path.exists(os.path.join(ROOT, path))]
    assert not missing, f"interop case files missing: {', '.join(missing)} (a case that cannot run is a failure, not a skip)"
    proc = _run(harness, plugin, scenario)
    if proc.returncode != 0:
        pytest.fail(f"{plugin} failed against piped's code (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)


def test_built_example_against_piped(harness: str, built_example: str) -> None:
    """The example's scenario against its built form: piped downloads and starts the file itself, no interpreter, no source tree."""
    proc = _run(harness, built_example, "scenarios/example.json", source_tree=False)
    assert f"plugin url: file://{built_example}\n" in proc.stdout, f"the harness did not launch the built file itself:\n{proc.stdout}"
    if proc.returncode != 0:
        pytest.fail(f"the built example plugin ({built_example}) failed against piped's code (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)


def test_pushed_example_against_piped(harness: str, built_example: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The built example, published with ``pipeplug push`` and pulled by piped's own ``DownloadBinary("oci://…")``.

    piped's puller speaks HTTPS only, so the registry serves TLS with a test-made CA,
    which both pipeplug push and the Go harness trust through SSL_CERT_FILE.
    """
    with Registry(tmp_path / "registry", tls=True) as registry:
        tls_env = {"SSL_CERT_FILE": str(registry.ca_file)}
        url = registry.url("plugins/example", "v0.1.0")
        pushed = subprocess.run(
            [sys.executable, "-m", "pipeplug.cli", "push", url, built_example],
            env={**os.environ, **tls_env, "DOCKER_CONFIG": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert pushed.returncode == 0, f"pipeplug push failed:\n{pushed.stdout}{pushed.stderr}"
        assert f"url: {url}\n" in pushed.stdout, pushed.stdout
        proc = _run(harness, url, "scenarios/example.json", source_tree=False, extra_env=tls_env)
    assert f"plugin url: {url}\n" in proc.stdout, f"the harness did not download the plugin from the registry:\n{proc.stdout}"
    if proc.returncode != 0:
        pytest.fail(f"the pushed example plugin ({url}) failed against piped's code (exit {proc.returncode}):\n{proc.stdout}", pytrace=False)


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
