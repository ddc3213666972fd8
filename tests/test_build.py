"""`pipeplug build`: the built file runs where piped runs it, with nothing of this machine's Python.

Each format is built once per module (PyInstaller takes about a minute), copied
to a fresh ~/.piped/plugins/<name> as piped does, started with piped's argv in a
bare environment and driven over real gRPC with a FakePiped on the other side.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import venv
import zipfile

import pytest

from pipeplug import StageStatus
from pipeplug.build import _progress_line
from pipeplug.build import artifact_name
from pipeplug.build import build_plugin
from pipeplug.build import go_platform
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient

#: what may stay in the environment of a plugin started "on a fresh host"
KEPT_ENV = ("LANG", "LC_ALL", "TZ", "TMPDIR")

PLUGIN_FILES = {
    # the App, importing its siblings: a module and a package with a relative import
    "greeter.py": '''
        import os

        import attrs

        import pipeplug
        from greeting import render

        __version__ = "1.2.3"


        @attrs.frozen
        class Target:
            path: str


        @attrs.frozen
        class Options:
            who: str


        app = pipeplug.App("greeter", deploy_target_config=Target)


        @app.stage("GREET")
        def greet(options: Options, deploy_targets: list[pipeplug.DeployTarget]) -> None:
            for target in deploy_targets:
                with open(os.path.join(target.config.path, "greeting.txt"), "w") as f:
                    f.write(render(options.who))
    ''',
    "greeting.py": '''
        from wording import PUNCTUATION


        def render(who: str) -> str:
            return f"hello, {who}{PUNCTUATION}"
    ''',
    "wording/__init__.py": "from .marks import PUNCTUATION\n",
    "wording/marks.py": 'PUNCTUATION = "!"\n',
    "not_imported.py": "raise RuntimeError('bundling must not need this file')\n",
}


def run_cli(*args: str, cwd: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeplug.cli", *args], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


# -- naming and errors (fast) ------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("linux", "x86_64", ("linux", "amd64")),
        ("linux", "aarch64", ("linux", "arm64")),
        ("darwin", "arm64", ("darwin", "arm64")),
        ("win32", "AMD64", ("windows", "amd64")),
        ("freebsd14", "i386", ("freebsd", "386")),
    ],
)
def test_platform_is_spelled_like_go(system: str, machine: str, expected: tuple[str, str]) -> None:
    assert go_platform(system, machine) == expected


def test_artifact_name_follows_pipecd_releases() -> None:
    assert artifact_name("kubernetes", "v0.3.0", "linux", "x86_64") == "kubernetes_v0.3.0_linux_amd64"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("22231 INFO: Building PKG (CArchive) greeter.pkg\n", "packing the archive (the slowest step)"),
        ("52752 INFO: Building PKG (CArchive) greeter.pkg completed successfully.\n", None),
        ("18436 INFO: Analyzing run-time hooks ...\n", None),
        ("4100 WARNING: Library not found: could not resolve 'libfoo.so'\n", "WARNING: Library not found: could not resolve 'libfoo.so'"),
        ("9000 ERROR: Hidden import 'x' not found\n", "ERROR: Hidden import 'x' not found"),
        (" '/tmp/pib',\n", None),
    ],
)
def test_pyinstaller_progress_shows_steps_and_every_problem(line: str, shown: str | None) -> None:
    assert _progress_line(line) == shown


def test_missing_build_tools_name_the_extra() -> None:
    hide = "import sys; sys.modules['PyInstaller'] = None; from pipeplug.cli import main; main(['build', 'example_app.py'])"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 1
    assert "needs PyInstaller" in result.stderr
    assert "pip install 'pipeplug[build]'" in result.stderr


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["missing.py", "--format", "shiv"], {}, "missing.py not found"),
        (["my-plugin.py", "--format", "shiv"], {"my-plugin.py": "import pipeplug\napp = pipeplug.App('x')\n"}, "rename it, e.g. to my_plugin.py"),
        (["p.py", "--format", "shiv", "--version", "1/2"], {"p.py": "import pipeplug\napp = pipeplug.App('x')\n"}, "--version '1/2'"),
        (["p.py", "--format", "zip"], {}, "'zip' is not one of"),
    ],
)
def test_bad_input_fails_before_building(tmp_path, args: list[str], files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_cli("build", *args, cwd=str(tmp_path))
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "dist").exists()


# -- building and running for real (slow) ------------------------------------------------


@pytest.fixture(scope="module")
def plugin_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    source = tmp_path_factory.mktemp("plugin-src")
    for name, text in PLUGIN_FILES.items():
        (source / name).parent.mkdir(exist_ok=True)
        (source / name).write_text(textwrap.dedent(text).lstrip())
    return str(source / "greeter.py")


@pytest.fixture(scope="module")
def onefile(plugin_source: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("dist")
    messages: list[str] = []
    artifact = build_plugin(plugin_source, out, "onefile", progress=messages.append)
    assert artifact.path == out / artifact_name("greeter", "1.2.3")  # version from the module's __version__
    assert any("packing the archive" in m for m in messages), messages  # progress came through
    print(f"\nonefile build: {artifact.seconds:.0f}s, {artifact.size / 1e6:.1f} MB")
    return str(artifact.path)


@pytest.fixture(scope="module")
def shiv_file(plugin_source: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("dist")
    result = run_cli("build", plugin_source, "-o", f"{out}/", "--format", "shiv", "--version", "v0.1.0")
    assert result.returncode == 0, result.stderr
    path = out / artifact_name("greeter", "v0.1.0")
    assert f"url: {path.as_uri()}" in result.stdout  # the piped config snippet
    assert re.search(r"\(\d+\.\d MB, shiv\)", result.stdout)
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
    assert {"site-packages/greeting.py", "site-packages/wording/marks.py"} <= set(names)
    assert "site-packages/not_imported.py" not in names
    return str(path)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bin dir whose python3 is this Python version with nothing installed: a host's python3."""
    root = tmp_path_factory.mktemp("host-python")
    venv.create(root, with_pip=False, symlinks=True)
    python = str(root / "bin" / "python3")
    probe = subprocess.run([python, "-c", "import grpc"], capture_output=True, text=True, cwd=str(root), env={"PATH": str(root / "bin")}, timeout=60)
    assert probe.returncode != 0, "the host python3 must not see this machine's packages"
    return str(root / "bin")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, str]:
    """Only the variables a fresh host has: no virtualenv, no PYTHONPATH, HOME in a temp dir."""
    for key in list(os.environ):
        if key not in KEPT_ENV:
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    return {"HOME": str(home), "PATH": str(empty_bin)}


def install_like_piped(built: str, home: str, name: str) -> str:
    """piped copies the downloaded file to ~/.piped/plugins/<name>, chmods it 0755 and runs the copy."""
    plugins = os.path.join(home, ".piped", "plugins")
    os.makedirs(plugins)
    dest = os.path.join(plugins, name)
    shutil.copyfile(built, dest)
    os.chmod(dest, 0o755)
    return dest


@pytest.fixture(params=["onefile", "shiv"])
def built(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(the built file, the PATH a host it runs on has): no python at all for onefile, a bare python3 for shiv."""
    if request.param == "onefile":
        return request.getfixturevalue("onefile"), ""
    return request.getfixturevalue("shiv_file"), request.getfixturevalue("bare_python")


@pytest.mark.slow
def test_built_file_serves_piped_on_a_bare_host(built: tuple[str, str], bare_environment: dict[str, str], fake_piped, tmp_path) -> None:
    built_file, host_path = built
    env = {**bare_environment, "PATH": host_path or bare_environment["PATH"]}
    plugin = install_like_piped(built_file, env["HOME"], "greeter")
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    work_dir = tmp_path / "piped-cwd"  # piped's cwd, which the plugin inherits
    work_dir.mkdir()
    process = PluginProcess(
        plugin,
        executable=plugin,
        piped_address=f"localhost:{fake_piped.port}",
        name="greeter",
        deploy_targets=[{"name": "local", "config": {"path": str(target_dir)}}],
        env=env,
        cwd=str(work_dir),
        startup_timeout=60,
    )
    with process:
        with open(f"/proc/{process.pid}/environ", "rb") as f:
            seen = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
        assert seen[b"PATH"].decode() == env["PATH"] and b"VIRTUAL_ENV" not in seen and b"PYTHONPATH" not in seen
        with TestClient(address=process.address, piped=fake_piped, name="greeter", deploy_targets=[{"name": "local"}]) as client:
            assert client.fetch_defined_stages() == ["GREET"]
            run = client.execute_stage("GREET", {"who": "piped"})
        assert run.status == StageStatus.SUCCESS, (run.message, process.stderr_text(tail=30))
        assert (target_dir / "greeting.txt").read_text() == "hello, piped!"  # the siblings were bundled
        assert process.stop(grace=30) == 0, process.stderr_text(tail=30)  # SIGTERM reaches the server
    if host_path:
        assert glob.glob(os.path.join(env["HOME"], ".shiv", "greeter*", "site-packages", "grpc")), "shiv unpacks next to HOME"


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[1])  # a zombie has exited


def _children(pid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent_of(int(entry)) == pid]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_onefile_stops_when_piped_is_killed(onefile: str, bare_environment: dict[str, str], fake_piped, tmp_path) -> None:
    """The onefile's Python runs under PyInstaller's bootloader, yet must notice that piped itself died."""
    plugin = install_like_piped(onefile, bare_environment["HOME"], "greeter")
    stand_in_piped = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", plugin]
    process = PluginProcess(plugin, executable=stand_in_piped, piped_address=f"localhost:{fake_piped.port}", env=bare_environment, startup_timeout=60)
    with process:
        (bootloader,) = _children(process.pid)
        tree = [bootloader, *_children(bootloader)]
        assert len(tree) == 2, "onefile runs as bootloader + unpacked Python"
        try:
            process.kill()  # SIGKILL: piped cannot send SIGTERM to its plugins
            deadline = time.monotonic() + 15
            while any(_parent_of(pid) is not None for pid in tree) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert all(_parent_of(pid) is None for pid in tree), "the plugin outlived piped and still holds its port"
        finally:
            for pid in tree:
                if _parent_of(pid) is not None:
                    os.kill(pid, signal.SIGKILL)


def _other_python_minor() -> str | None:
    """Another CPython 3 on this machine (different minor version), if any."""
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob("/usr/bin/python3.*[0-9]") + glob.glob(os.path.join(pyenv_root, "versions", "3.*", "bin", "python3.*[0-9]")))
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[1])"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0 and probe.stdout.strip() != str(sys.version_info[1]):
            return candidate
    return None


@pytest.mark.slow
def test_shiv_on_another_python_says_why_it_cannot_run(shiv_file: str, tmp_path) -> None:
    other = _other_python_minor()
    if other is None:
        pytest.skip("no CPython 3 of another minor version on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(other)
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run([shiv_file, "version"], capture_output=True, text=True, timeout=120, env={"PATH": str(bin_dir), "HOME": str(home)})
    assert result.returncode == 1
    assert f"built with pipeplug for Python 3.{sys.version_info[1]}" in result.stderr
    assert "--format onefile" in result.stderr
