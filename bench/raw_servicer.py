#!/usr/bin/env python3
"""The benchmark's baseline: a hand-written grpc.aio DeploymentService for the same protos, no pipeplug.

It does what a minimal plugin must: FetchDefinedStages answers ["WAIT"], and
ExecuteStage parses ``with.duration`` from the stage config and waits that
long (``0s``: returns at once). Started with piped's argv, like a plugin:
``raw_servicer.py start --piped-plugin-service ADDR --config JSON``.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys

import grpc

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


class RawDeploymentService(deploy_grpc.DeploymentServiceServicer):
    async def FetchDefinedStages(self, request, context):  # noqa: N802
        return deploy_pb.FetchDefinedStagesResponse(stages=["WAIT"])

    async def ExecuteStage(self, request, context):  # noqa: N802
        options = json.loads(request.input.stage_config or b"{}")
        wait = seconds(options.get("duration", "0s"))
        if wait:
            await asyncio.sleep(wait)
        return deploy_pb.ExecuteStageResponse(status=model_pb.STAGE_SUCCESS)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    deploy_grpc.add_DeploymentServiceServicer_to_server(RawDeploymentService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await server.stop(1)


if __name__ == "__main__":
    argv = sys.argv[1:]
    config = json.loads(argv[argv.index("--config") + 1])
    asyncio.run(serve(config["port"]))
