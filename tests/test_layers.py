"""The import-linter contracts in .importlinter hold: the layers, and no grpc in the registration core."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: lint-imports, run with this interpreter (so with this checkout's pipeplug), whether or not the venv is activated
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--config", os.path.join(ROOT, ".importlinter"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def _module_level_imports(*, in_functions: bool = False) -> dict[str, set[str]]:
    """pipeplug's own imports made when a module loads (not inside functions nor ``if TYPE_CHECKING``).

    ``in_functions``: those made inside functions and methods instead.
    """
    package = os.path.join(ROOT, "pipeplug")
    names = {}
    for directory, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d not in ("_gen", "__pycache__")]
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(directory, file)
                dotted = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                names[dotted.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        package_name = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        if in_functions:
            functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
            statements = [node for function in functions for node in ast.walk(function)]
        else:
            statements = tree.body
        for node in statements:
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package_name.split(".")[: len(package_name.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                imported = f"{target}.{alias.name}" if f"{target}.{alias.name}" in names else target
                if imported in names and imported != name:
                    graph.setdefault(name, set()).add(imported)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, or [] (depth-first search, colouring modules on the current path)."""
    on_path: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str]:
        if module in on_path:
            return [*on_path[on_path.index(module) :], module]
        if module in done:
            return []
        on_path.append(module)
        for imported in sorted(graph.get(module, ())):
            found = visit(imported)
            if found:
                return found
        on_path.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return []


def test_module_level_imports_form_no_cycle() -> None:
    graph = _module_level_imports()
    assert "pipeplug.testing.client" in graph.get("pipeplug.testing", set())  # the scan sees package re-exports
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


#: imports inside functions that close a cycle on purpose: ``App.test_client()`` loads
#: pipeplug.testing, which imports the App, only when a test asks for it (as Flask's does)
LATE_BY_DESIGN = {("pipeplug.app", "pipeplug.testing")}


def test_imports_inside_functions_close_no_other_cycle() -> None:
    """A function-level import that closes a cycle is mostly a responsibility in the wrong module."""
    graph = _module_level_imports()
    late = _module_level_imports(in_functions=True)
    assert "pipeplug.optional_services" in late["pipeplug.server"]  # the scan sees imports inside functions
    for module, imported in late.items():
        graph.setdefault(module, set()).update(name for name in imported if (module, name) not in LATE_BY_DESIGN)
    assert _cycle(graph) == []
