#!/usr/bin/env python3
"""Evidence for pipeplug's grpc server options: how many calls of a burst grpc.aio cancels.

    python bench/server_options.py burst --options default     # 10,000 calls held 3 s
    python bench/server_options.py stall --options pipeplug    # 3,000 calls while the loop is blocked 4 s
    python bench/server_options.py burst --options '[["grpc.server.max_pending_requests", 100000]]'

A bare grpc.aio server (one core) and a Python client (the other core) in
forked processes; every call on one channel, gathered at once. Prints the
count of each outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeplug._gen.plugin import deployment_pb2 as pb  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2_grpc as pb_grpc  # noqa: E402
from pipeplug.server import SERVER_OPTIONS  # noqa: E402


class Servicer(pb_grpc.DeploymentServiceServicer):
    def __init__(self, hold: float, stall: float) -> None:
        self.hold, self.stall = hold, stall

    async def FetchDefinedStages(self, request, context):  # noqa: N802
        await asyncio.sleep(self.hold)
        return pb.FetchDefinedStagesResponse(stages=["WAIT"])

    async def BuildQuickSyncStages(self, request, context):  # noqa: N802
        time.sleep(self.stall)  # blocks the event loop on purpose
        return pb.BuildQuickSyncStagesResponse()


async def serve(options: list[tuple[str, int]], servicer: Servicer, port_pipe: int) -> None:
    server = grpc.aio.server(options=options)
    pb_grpc.add_DeploymentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    os.write(port_pipe, f"{port}\n".encode())
    os.close(port_pipe)
    await server.wait_for_termination()


async def client(port: int, n: int, stall: bool) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.DeploymentServiceStub(channel)
        await stub.FetchDefinedStages(pb.FetchDefinedStagesRequest())
        blocker = asyncio.ensure_future(stub.BuildQuickSyncStages(pb.BuildQuickSyncStagesRequest())) if stall else None
        if blocker:
            await asyncio.sleep(0.2)

        async def one() -> str:
            try:
                await stub.FetchDefinedStages(pb.FetchDefinedStagesRequest())
                return "OK"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name

        started = time.monotonic()
        outcomes = await asyncio.gather(*(one() for _ in range(n)))
        if blocker:
            await blocker
        print(json.dumps({"outcomes": collections.Counter(outcomes), "wall_s": round(time.monotonic() - started, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["burst", "stall"])
    parser.add_argument("--options", default="default", help="default, pipeplug, or a JSON list of [name, value]")
    parser.add_argument("-n", type=int, default=None)
    args = parser.parse_args()
    named = {"default": [], "pipeplug": list(SERVER_OPTIONS)}
    options = named[args.options] if args.options in named else [tuple(o) for o in json.loads(args.options)]
    n = args.n or (10_000 if args.mode == "burst" else 3_000)
    servicer = Servicer(hold=3.0 if args.mode == "burst" else 0.0, stall=4.0)
    cores = sorted(os.sched_getaffinity(0))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.sched_setaffinity(0, {cores[0]})
        asyncio.run(serve(options, servicer, write_end))
        os._exit(0)
    os.close(write_end)
    port = int(os.fdopen(read_end).readline())
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[1]})
    try:
        asyncio.run(client(port, n, stall=args.mode == "stall"))
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
