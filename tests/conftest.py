"""Shared fixtures for pipeplug's own tests (the public ones come from pipeplug.pytest_plugin)."""

from __future__ import annotations

import os
import sys

import pytest

from .dev_support import Dev
from .support import load_module

pytest_plugins = ["pytester"]  # runs inner pytest sessions to test pipeplug's own fixtures

EXAMPLE_APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "example_app.py")


@pytest.fixture
def example_module():
    """example_app.py imported fresh, so each test gets an App that has not started serving."""
    module = load_module(EXAMPLE_APP)
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture
def dev(tmp_path):
    """A `pipeplug dev` workspace in tmp_path; its processes are stopped afterwards."""
    workspace = Dev(tmp_path)
    try:
        yield workspace
    finally:
        workspace.cleanup()
