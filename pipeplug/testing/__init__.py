"""Test a plugin without a control plane: a fake piped, a plugin process, a test client.

- :class:`FakePiped` (``fake_piped``) is a real gRPC ``PluginService`` on
  127.0.0.1 that keeps stage logs, metadata, shared objects and commands the
  way piped does, and refuses what piped refuses, so a plugin real piped would
  reject fails its test. What it keeps lives behind :class:`PipedStore`.
- :class:`PluginProcess` (``plugin_process``) starts a plugin exactly as piped
  does (same argv) and stops it by PID.
- :class:`TestClient` (``client``; ``app.test_client()``) calls every RPC of an
  app with plain Python values in and out.
"""

from __future__ import annotations

from ..launcher import free_port
from .client import PipedWouldRefuse
from .client import PluginCallError
from .client import StageCall
from .client import StageRun
from .client import TestClient
from .fake_piped import FakePiped
from .fake_piped import render_install_script
from .plugin_process import PluginProcess
from .plugin_process import PluginStartError
from .store import LogStream
from .store import MemoryStore
from .store import PipedStore

__all__ = [
    "FakePiped",
    "LogStream",
    "MemoryStore",
    "PipedStore",
    "PipedWouldRefuse",
    "PluginCallError",
    "PluginProcess",
    "PluginStartError",
    "StageCall",
    "StageRun",
    "TestClient",
    "free_port",
    "render_install_script",
]
