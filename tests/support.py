"""Helpers for the core tests: import a plugin file fresh, serve an App in-process.

Plugin processes are started with :class:`pipeplug.testing.PluginProcess`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
import typing as t

import grpc

from pipeplug._gen.plugin import deployment_pb2_grpc
from pipeplug._gen.plugin import livestate_pb2_grpc
from pipeplug._gen.plugin import planpreview_pb2_grpc
from pipeplug.testing import TestClient

APPS = os.path.join(os.path.dirname(__file__), "apps")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_module(path: str) -> t.Any:
    """Import a plugin file fresh, so each test gets an App that has not started serving."""
    spec = importlib.util.spec_from_file_location(f"_plugin_{time.monotonic_ns()}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs resolves string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def load_test_app(name: str) -> t.Any:
    """Import tests/apps/<name>.py fresh."""
    return load_module(os.path.join(APPS, f"{name}.py"))


class Stubs:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.deployment = deployment_pb2_grpc.DeploymentServiceStub(self.channel)
        self.livestate = livestate_pb2_grpc.LivestateServiceStub(self.channel)
        self.planpreview = planpreview_pb2_grpc.PlanPreviewServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def served(app: t.Any, config: dict[str, t.Any] | None = None) -> t.Iterator[Stubs]:
    """Serve ``app`` in-process on 127.0.0.1 (wired to a FakePiped) and yield raw stubs for it."""
    config = config or {}
    with TestClient(app, config=config.get("config"), deploy_targets=config.get("deployTargets", ())) as client:
        stubs = Stubs(client.address)
        try:
            yield stubs
        finally:
            stubs.close()
