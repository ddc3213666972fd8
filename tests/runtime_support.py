"""Helpers for the runtime tests: build requests shaped like piped's, and watch ports and PIDs.

Plugin processes are started with :class:`pipeplug.testing.PluginProcess` (``extra_args``
passes ``--admin-port``, ``--tls`` ...; ``wait_ready(credentials=...)`` waits over TLS).
"""

from __future__ import annotations

import json
import os
import socket
import typing as t

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
RUNTIME_APP = os.path.join(TESTS, "apps", "runtime_app.py")
EXAMPLE_APP = os.path.join(ROOT, "example_app.py")


def port_is_free(port: int) -> bool:
    """True if a new server could bind ``port`` (servers set SO_REUSEADDR, so TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def execute_request(stage: str, *, stage_id: str = "stage-1", deployment_id: str = "deploy-1", options: dict[str, t.Any] | None = None) -> t.Any:
    """An ExecuteStageRequest shaped like piped's, for a stage of the runtime app."""
    stage_pb = model_pb.PipelineStage(id=stage_id, name=stage, index=0, status=model_pb.STAGE_RUNNING)
    deployment = model_pb.Deployment(
        id=deployment_id, application_id="app-1", application_name="app", piped_id="piped-1", project_id="p", stages=[stage_pb]
    )
    return deploy_pb.ExecuteStageRequest(
        input=deploy_pb.ExecutePluginInput(deployment=deployment, stage=stage_pb, stage_config=json.dumps(options or {}).encode())
    )


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (gone, or a zombie nobody reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
