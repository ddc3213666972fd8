"""``--format shiv``: a zipapp of the plugin and what it imports, run by the host's ``python3``.

Only the user's own modules below the plugin's directory and the distributions
they import (with their requirements) are bundled, found without importing them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import modulefinder
import os
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path


class ShivError(Exception):
    """The zipapp cannot be built; the message says why and what to do."""


def build_shiv(site: Path, entry_point: str, module: str, root: str, work: Path, say: t.Callable[[str], None]) -> Path:
    """A zipapp of ``site`` (which holds the entry script), the user's ``module`` and its siblings below ``root``, and every distribution they need.

    pipeplug and the distributions come from this environment; ``entry_point`` is ``MODULE:FUNCTION`` in ``site``.
    """
    local, imported = _local_modules(module, root)
    dists = _closure(["pipeplug", *_distributions_of(imported)])
    dist_tops = {top for dist in dists for top in _top_level_names(dist)}
    local = [path for path in local if path.relative_to(root).parts[0].removesuffix(".py") not in dist_tops]
    for path in local:
        _copy(path, site / path.relative_to(root))
    for dist in dists:
        _copy_distribution(dist, site)
    say(f"bundling {len(local)} module(s) of yours and {', '.join(sorted(d.metadata['Name'] for d in dists))}")
    built = work / "plugin.pyz"
    argv = [
        sys.executable, "-m", "shiv", "--site-packages", str(site), "--entry-point", entry_point,
        "--output-file", str(built), "--python", "/usr/bin/env python3", "--reproducible",
    ]  # fmt: skip
    result = subprocess.run(argv, cwd=work, capture_output=True, text=True, errors="replace")
    if result.returncode != 0 or not built.is_file():
        raise ShivError(f"shiv failed (exit status {result.returncode}):\n{(result.stdout + result.stderr).strip()}")
    return built


def _local_modules(module: str, root: str) -> tuple[list[Path], set[str]]:
    """Files of the user's modules found below ``root``, and the top-level names they import from elsewhere."""
    finder = modulefinder.ModuleFinder(path=[root])
    try:
        finder.import_hook(module)
    except AttributeError:  # modulefinder cannot walk namespace packages
        raise ShivError(
            f"a package below {root} that {module} imports has no __init__.py, which --format shiv cannot follow; "
            "add an empty __init__.py to it, or use --format onefile"
        ) from None
    files = (getattr(m, "__file__", None) for m in finder.modules.values())  # undocumented, so untyped in typeshed
    local = sorted(Path(f) for f in files if isinstance(f, str) and f.startswith(root + os.sep))
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
            raise ShivError(f"{name} is required by the plugin but not installed for {sys.executable}; pip install {name}") from None
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
