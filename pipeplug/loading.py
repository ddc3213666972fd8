"""Finding the App in ``MODULE:APP``, following Flask's rules."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
import types

import click

from .app import App


class NoAppError(click.UsageError):
    """The App could not be found or imported; shown to users without a traceback."""


def load_app(target: str) -> App:
    """Import ``MODULE[:NAME]`` and return its App.

    ``MODULE`` is a file path (``plugins/wait.py``) or a dotted module name.
    Without ``NAME``, the attribute ``app`` is used, else the module's only
    App instance; more than one is an error.
    """
    module_part, attr = split_target(target)
    module = _import(module_part)
    if attr:
        found = getattr(module, attr, None)
        if not isinstance(found, App):
            what = "no attribute" if found is None else f"{type(found).__name__}, not a pipeplug.App,"
            raise NoAppError(f"{module_part} has {what} named {attr!r}")
        return found
    named = getattr(module, "app", None)
    if isinstance(named, App):
        return named
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) == 1:
        return apps[0]
    if not apps:
        raise NoAppError(f"no pipeplug.App found in {module_part}; create one with app = pipeplug.App('name')")
    names = ", ".join(name for name, value in vars(module).items() if isinstance(value, App))
    raise NoAppError(f"{module_part} defines several Apps ({names}); name one, e.g. {module_part}:{names.split(', ')[0]}")


def split_target(target: str) -> tuple[str, str]:
    """``MODULE[:NAME]`` as ``(MODULE, NAME)``, NAME "" when absent: the one parser of targets.

    A colon followed by an identifier separates the App's name; a drive colon
    (``C:\\x\\app.py``) does not.
    """
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and len(head) > 1:
        return head, tail
    return target, ""


def _import(name: str) -> types.ModuleType:
    if name.endswith(".py") or os.sep in name or "/" in name:
        return _import_file(name)
    sys.path.insert(0, os.getcwd()) if os.getcwd() not in sys.path else None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise NoAppError(f"module {name!r} not found (looked in the current directory and sys.path)") from None
        raise NoAppError(_failed(name)) from None
    except Exception:  # noqa: BLE001 - any error while importing the user's module
        raise NoAppError(_failed(name)) from None


def _import_file(path: str) -> types.ModuleType:
    """Import a file; inside a package, as its dotted module, so relative imports work.

    As Flask's ``prepare_import``: climb past directories holding
    ``__init__.py`` to build the dotted name, and put the directory above
    them on sys.path. A file outside any package is imported by its path.
    """
    path = os.path.realpath(path)
    if not os.path.isfile(path):
        raise NoAppError(f"file {path} not found")
    directory, filename = os.path.split(path)
    name = os.path.splitext(filename)[0]
    if not os.path.isfile(os.path.join(directory, "__init__.py")):
        return _import_script(path, directory, name)
    if filename == "__init__.py":  # the package itself
        directory, name = os.path.split(directory)
    parts = [name]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        parts.append(package)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = ".".join(reversed(parts))
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any error while importing the user's module
        raise NoAppError(_failed(path)) from None


def _import_script(path: str, directory: str, module_name: str) -> types.ModuleType:
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - any error while importing the user's module
        sys.modules.pop(module_name, None)
        raise NoAppError(_failed(path)) from None
    return module


def _failed(name: str) -> str:
    return f"importing {name} failed:\n{traceback.format_exc(limit=-3)}".rstrip()
