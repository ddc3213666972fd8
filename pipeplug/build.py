"""``pipeplug build``: turn ``MODULE:APP`` into one executable file piped can download and start.

piped copies the file at ``spec.plugins[].url`` into ``~/.piped/plugins/<name>`` and
runs the copy, so the file must carry everything it imports. Two formats:

- ``onefile`` (default): PyInstaller ``--onefile``. Interpreter, pipeplug, grpc's
  native parts and the user's modules in one file; the host needs no Python.
- ``shiv``: a zipapp run by the host's ``python3``. Much smaller, but the bundled
  grpcio and protobuf are native builds for *this* Python, OS and architecture.

Build tools are the optional extra ``pipeplug[build]``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import modulefinder
import os
import pkgutil
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import attrs
import click

from .loading import _has_attr
from .loading import load_app

if t.TYPE_CHECKING:
    from .app import App

#: format -> the modules it needs (all from the extra pipeplug[build])
TOOLS = {"onefile": ("PyInstaller",), "shiv": ("shiv", "packaging")}
FORMATS = tuple(TOOLS)
INSTALL_HINT = "pip install 'pipeplug[build]'"
DEFAULT_VERSION = "dev"
DEFAULT_OUTPUT = "dist"
#: never bundled: grpc imports grpc_tools only when installed (8 MB of protoc), and
#: pipeplug's own build and code-generation tools; see also _dev_tool_modules()
EXCLUDED_MODULES = ("grpc_tools", "pipeplug._gen_tool", "pipeplug.build")
ENTRY_MODULE = "_pipeplug_entry"
FILE_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: lines of PyInstaller's log shown when it fails (the whole log is kept next to the output)
LOG_TAIL_LINES = 40

#: PyInstaller log messages worth a progress line, and what to call them
_MILESTONES = (
    ("Analyzing modules for base_library.zip", "analysing the standard library"),
    (f"Analyzing {os.sep}", "analysing the plugin's imports"),
    ("Looking for dynamic libraries", "collecting native libraries"),
    ("Building PYZ (ZlibArchive)", "compressing Python modules"),
    ("Building PKG (CArchive)", "packing the archive (the slowest step)"),
    ("Building EXE from", "writing the executable"),
)


class BuildError(click.ClickException):
    """The build cannot go on; the message says why and what to do."""


ProgressFn = t.Callable[[str], None]


@attrs.frozen
class Artifact:
    """A built plugin file and what piped needs to know to use it."""

    path: Path
    format: str
    plugin_name: str
    version: str
    size: int
    seconds: float

    def piped_config(self, port: int = 7001) -> str:
        """The ``spec.plugins`` entry of piped's config that downloads and starts this file."""
        return (
            "apiVersion: pipecd.dev/v1beta1\n"
            "kind: Piped\n"
            "spec:\n"
            "  plugins:\n"
            f"    - name: {self.plugin_name}\n"
            f"      port: {port}  # any free local port: piped dials localhost:{port}\n"
            f"      url: {self.path.resolve().as_uri()}\n"
        )


@attrs.frozen
class _Target:
    """The user's module, resolved once at build time."""

    module: str  # importable name, e.g. "example_app" or "pkg.plugin"
    attr: str  # the App's attribute in that module
    root: str  # directory the module is imported from: also where its siblings are found
    app: App
    module_version: str | None


def go_platform(system: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """(os, arch) spelled as Go does (GOOS/GOARCH), as PipeCD names its release files."""
    system = system or sys.platform
    machine = (machine or platform.machine()).lower()
    goos = {"win32": "windows", "cygwin": "windows"}.get(system, re.sub(r"\d+$", "", system))
    arches = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i686": "386", "armv7l": "arm"}
    return goos, arches.get(machine, machine)


def artifact_name(plugin_name: str, version: str, system: str | None = None, machine: str | None = None) -> str:
    """``<name>_<version>_<os>_<arch>``, like PipeCD's plugin releases (kubernetes_v0.3.0_linux_amd64)."""
    goos, goarch = go_platform(system, machine)
    return f"{plugin_name}_{version}_{goos}_{goarch}"


def build_plugin(
    target: str,
    out: str | os.PathLike[str] | None = None,
    fmt: str = "onefile",
    *,
    version: str | None = None,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Build ``target`` (``MODULE:APP``) into one executable file and return it.

    ``out`` is the file to write, or a directory (existing, or ending in ``/``)
    to write ``<name>_<version>_<os>_<arch>`` into; default ``dist/``.
    ``version`` defaults to the module's ``__version__``, else ``dev``.
    """
    say = progress or (lambda message: None)
    if fmt not in FORMATS:
        raise BuildError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    _require_tools(fmt)
    resolved = _resolve(target)
    version = version or resolved.module_version or DEFAULT_VERSION
    if not FILE_NAME_PART.fullmatch(version):
        raise BuildError(f"--version {version!r}: use letters, digits and . _ + - only (it becomes part of the file name)")
    if not FILE_NAME_PART.fullmatch(resolved.app.name):
        raise BuildError(f"App name {resolved.app.name!r}: piped stores the plugin as ~/.piped/plugins/<name>, so use letters, digits and . _ + - only")
    dest = _destination(out, artifact_name(resolved.app.name, version))
    started = time.monotonic()
    say(f"building plugin {resolved.app.name!r} from {target} ({fmt}) into {dest}")
    with tempfile.TemporaryDirectory(prefix="pipeplug-build-") as work_dir:
        work = Path(work_dir)
        if fmt == "onefile":
            built = _build_onefile(resolved, work, dest, say)
        else:
            built = _build_shiv(resolved, work, say)
        _install(built, dest)
    return Artifact(
        path=dest,
        format=fmt,
        plugin_name=resolved.app.name,
        version=version,
        size=dest.stat().st_size,
        seconds=time.monotonic() - started,
    )


# -- inputs -------------------------------------------------------------------


def _require_tools(fmt: str) -> None:
    for module in TOOLS[fmt]:
        if importlib.util.find_spec(module) is None:
            raise BuildError(f"--format {fmt} needs {module}, which is not installed for {sys.executable}.\nInstall the build tools: {INSTALL_HINT}")


def _resolve(target: str) -> _Target:
    app = load_app(target)
    module_part, _, attr = target.rpartition(":") if _has_attr(target) else (target, "", "")
    if module_part.endswith(".py") or "/" in module_part or os.sep in module_part:
        root, filename = os.path.split(os.path.abspath(module_part))
        module = os.path.splitext(filename)[0]
        if not module.isidentifier():
            suggestion = re.sub(r"\W", "_", module)
            raise BuildError(f"{module_part}: the file name must be a Python module name to be bundled; rename it, e.g. to {suggestion}.py")
    else:
        root, module = os.getcwd(), module_part
    loaded = sys.modules[module]
    attr = attr or next(name for name, value in vars(loaded).items() if value is app)
    module_version = getattr(loaded, "__version__", None)
    return _Target(module, attr, root, app, module_version if isinstance(module_version, str) else None)


def _destination(out: str | os.PathLike[str] | None, name: str) -> Path:
    raw = os.fspath(out) if out is not None else DEFAULT_OUTPUT
    path = Path(raw)
    if out is None or path.is_dir() or raw.endswith(("/", os.sep)):
        path = path / name
    if path.is_dir():
        raise BuildError(f"-o {raw}: {path} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.absolute()


def _write_entry(target: _Target, directory: Path, *, pin_python: bool) -> Path:
    """The script the built file runs: import the user's module, start its App as piped does."""
    guard = ""
    if pin_python:
        built_for = (sys.version_info[:2], sys.platform, platform.machine())
        guard = (
            "import platform\n"
            f"if (sys.version_info[:2], sys.platform, platform.machine()) != {built_for!r}:\n"
            f"    sys.exit('this plugin was built with pipeplug for Python {built_for[0][0]}.{built_for[0][1]} on {built_for[1]} {built_for[2]}; '\n"
            "             f'this python3 is {sys.version.split()[0]} on {sys.platform} {platform.machine()}. '\n"
            "             'Rebuild it on a matching host, or use pipeplug build --format onefile.')\n"
        )
    entry = directory / f"{ENTRY_MODULE}.py"
    entry.write_text(
        f'"""Start plugin {target.app.name!r} ({target.module}:{target.attr}) as piped does. Generated by pipeplug build."""\n'
        "import multiprocessing\n"
        "import sys\n"
        f"{guard}"
        f"import {target.module} as user_module\n\n\n"
        "def main() -> None:\n"
        "    multiprocessing.freeze_support()  # a frozen plugin that starts processes needs this\n"
        f"    user_module.{target.attr}.main()\n\n\n"
        'if __name__ == "__main__":\n'
        "    main()\n"
    )
    return entry


def _install(built: Path, dest: Path) -> None:
    """Put the file in place atomically and executable, as piped itself does with downloads."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(built, partial)
    os.chmod(partial, 0o755)
    os.replace(partial, dest)


# -- onefile (PyInstaller) ----------------------------------------------------


def _build_onefile(target: _Target, work: Path, dest: Path, say: ProgressFn) -> Path:
    entry = _write_entry(target, work, pin_python=False)
    pipeplug_home = str(Path(__file__).resolve().parent.parent)  # editable installs hide it from PyInstaller
    argv = [
        sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "INFO",
        "--name", dest.name, "--distpath", str(work / "dist"), "--workpath", str(work / "build"), "--specpath", str(work),
        "--paths", target.root, "--paths", pipeplug_home,
        *(["--strip"] if shutil.which("strip") and sys.platform != "win32" else []),  # debug info: a third of the file
        *(arg for module in (*EXCLUDED_MODULES, *_dev_tool_modules()) for arg in ("--exclude-module", module)),
        str(entry),
    ]  # fmt: skip
    log_lines: list[str] = []
    started = time.monotonic()
    say("running PyInstaller (about a minute; progress below)")
    with subprocess.Popen(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log_lines.append(line)
            message = _progress_line(line)
            if message:
                say(f"  [{time.monotonic() - started:4.0f}s] {message}")
    built = work / "dist" / dest.name
    if proc.returncode != 0 or not built.is_file():
        log_file = dest.with_name(dest.name + ".build.log")
        log_file.write_text("".join(log_lines))
        tail = "".join(log_lines[-LOG_TAIL_LINES:]).rstrip()
        raise BuildError(f"PyInstaller failed (exit status {proc.returncode}); the last lines of its log:\n{tail}\n\nThe whole log: {log_file}")
    return built


def _dev_tool_modules() -> list[str]:
    """The ``pipeplug dev`` emulator: the CLI imports only its click front end (dev.cli);
    the rest loads when ``pipeplug dev`` runs, never in a plugin, and would bring rich
    and, through rich's optional imports, IPython (20 MB, a minute more to build)."""
    from . import dev

    return [f"pipeplug.dev.{m.name}" for m in pkgutil.iter_modules(dev.__path__) if m.name != "cli"]


def _progress_line(line: str) -> str | None:
    """A progress message for one line of PyInstaller's log ("123 INFO: Building PKG ..."), or None."""
    match = re.match(r"\d+ (\w+): (.*)", line)
    if match is None:
        return None
    level, message = match.groups()
    if level in ("WARNING", "ERROR", "CRITICAL"):
        return f"{level}: {message}"
    for prefix, label in _MILESTONES:
        if message.startswith(prefix) and not message.endswith("completed successfully."):
            return label
    return None


# -- shiv ---------------------------------------------------------------------


def _build_shiv(target: _Target, work: Path, say: ProgressFn) -> Path:
    site = work / "site-packages"
    site.mkdir()
    _write_entry(target, site, pin_python=True)
    local, imported = _local_modules(target)
    dists = _closure(["pipeplug", *_distributions_of(imported)])
    dist_tops = {top for dist in dists for top in _top_level_names(dist)}
    local = [path for path in local if path.relative_to(target.root).parts[0].removesuffix(".py") not in dist_tops]
    for path in local:
        _copy(path, site / path.relative_to(target.root))
    for dist in dists:
        _copy_distribution(dist, site)
    say(f"bundling {len(local)} module(s) of yours and {', '.join(sorted(d.metadata['Name'] for d in dists))}")
    built = work / "plugin.pyz"
    argv = [
        sys.executable, "-m", "shiv", "--site-packages", str(site), "--entry-point", f"{ENTRY_MODULE}:main",
        "--output-file", str(built), "--python", "/usr/bin/env python3", "--reproducible",
    ]  # fmt: skip
    result = subprocess.run(argv, cwd=work, capture_output=True, text=True, errors="replace")
    if result.returncode != 0 or not built.is_file():
        raise BuildError(f"shiv failed (exit status {result.returncode}):\n{(result.stdout + result.stderr).strip()}")
    return built


def _local_modules(target: _Target) -> tuple[list[Path], set[str]]:
    """Files of the user's modules found below ``target.root``, and the top-level names they import from elsewhere."""
    finder = modulefinder.ModuleFinder(path=[target.root])
    try:
        finder.import_hook(target.module)
    except AttributeError:  # modulefinder cannot walk namespace packages
        raise BuildError(
            f"a package below {target.root} that {target.module} imports has no __init__.py, which --format shiv cannot follow; "
            "add an empty __init__.py to it, or use --format onefile"
        ) from None
    local = sorted(Path(m.__file__) for m in finder.modules.values() if m.__file__ and m.__file__.startswith(target.root + os.sep))
    imported = {name.partition(".")[0] for name in finder.badmodules}
    return local, imported


def _distributions_of(top_level_names: t.Iterable[str]) -> list[str]:
    """Installed distributions that provide these import names (stdlib names map to none)."""
    providers = importlib.metadata.packages_distributions()
    return sorted({dist for name in top_level_names for dist in providers.get(name, ())})


def _closure(names: t.Iterable[str]) -> list[importlib.metadata.Distribution]:
    """These distributions and everything they require in this environment (no extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(f"{name} is required by the plugin but not installed for {sys.executable}; pip install {name}") from None
        found[key] = dist
        for spec in dist.requires or ():
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(found.values())


def _top_level_names(dist: importlib.metadata.Distribution) -> set[str]:
    listed = (dist.read_text("top_level.txt") or "").split()
    names = listed or {f.parts[0].removesuffix(".py") for f in dist.files or () if len(f.parts) > 1 or f.suffix == ".py"}
    return {name for name in names if name.isidentifier() and not name.startswith("__editable__")}


def _copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    """Copy an installed distribution's files; editable installs and source trees list none, so copy their packages."""
    covered = set()
    recorded = dist.files if dist.read_text("RECORD") is not None else None  # egg-info file lists can be stale
    for file in recorded or ():
        if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix == ".pth" or file.name.startswith("__editable__"):
            continue
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            _copy(source, site / file)
            covered.add(file.parts[0].removesuffix(".py"))
    for name in _top_level_names(dist) - covered:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                shutil.copytree(location, site / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        elif spec is not None and spec.origin and os.path.isfile(spec.origin):
            _copy(Path(spec.origin), site / Path(spec.origin).name)


def _copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest)
