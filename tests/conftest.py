"""Shared fixtures for pipeplug's own tests (the public ones come from pipeplug.pytest_plugin)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest

pytest_plugins = ["pytester"]  # runs inner pytest sessions to test pipeplug's own fixtures

EXAMPLE_APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_app.py")


@pytest.fixture
def example_module():
    """example_app.py imported fresh, so each test gets an App that has not started serving."""
    spec = importlib.util.spec_from_file_location(f"_example_app_{time.monotonic_ns()}", EXAMPLE_APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs resolves string annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
