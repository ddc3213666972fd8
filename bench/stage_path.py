#!/usr/bin/env python3
"""pipeplug's own per-call Python cost, without the network: its guarded handlers beside the raw servicer's.

    python bench/stage_path.py [--calls 20000] [--rounds 5]

bench/run.py measures whole calls over loopback, where grpc's own cost is most
of each call and the machine's noise hides a few microseconds. Here each
handler is awaited directly in one event loop, request bytes parsed by the
handler's own deserializer, so the figures are what pipeplug's Python adds per
call: the guard (limits, metrics, cancel check) and the servicer (decode,
``stagerun.run_stage``, encode, ``pipeplug.validation``). Rounds alternate
between the two; each figure is the median µs per call. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import typing as t

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.loadgen import execute_request  # noqa: E402
from bench.raw_servicer import RawDeploymentService  # noqa: E402
from bench.wait_app import app  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc  # noqa: E402
from pipeplug.grpc_private import generic_handler_methods  # noqa: E402
from pipeplug.guard import GuardedRegistrar  # noqa: E402
from pipeplug.servicers import Dispatcher  # noqa: E402
from pipeplug.servicers import DeploymentServicer  # noqa: E402
from pipeplug.settings import parse_settings  # noqa: E402


class _Table:
    """Stands in for a grpc.aio server: keeps the method handlers registered with it."""

    def __init__(self) -> None:
        self.handlers: dict[str, t.Any] = {}

    def add_generic_rpc_handlers(self, handlers: t.Any) -> None:
        for handler in handlers:  # pipeplug registers its handlers only here (pipeplug.guard.GenericOnly)
            methods = generic_handler_methods(handler)
            if methods is not None:
                self.handlers = methods[1]

    def add_registered_method_handlers(self, service: str, handlers: dict[str, t.Any]) -> None:
        self.handlers = handlers


class _Context:
    """What the handlers touch of a ServicerContext on their success path (nothing)."""


def _pipeplug_handlers() -> dict[str, t.Any]:
    settings = parse_settings(app, {"name": "wait", "port": 0}, require_port=False)
    table = _Table()
    deploy_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(Dispatcher(app, settings)), GuardedRegistrar(t.cast(t.Any, table)))
    return table.handlers


def _raw_handlers() -> dict[str, t.Any]:
    table = _Table()
    deploy_grpc.add_DeploymentServiceServicer_to_server(RawDeploymentService(), t.cast(t.Any, table))
    return table.handlers


async def _per_call_us(handler: t.Any, data: bytes, calls: int) -> float:
    call, parse, context = handler.unary_unary, handler.request_deserializer, _Context()
    started = time.perf_counter()
    for _ in range(calls):
        await call(parse(data), context)
    return (time.perf_counter() - started) / calls * 1e6


async def measure(calls: int, rounds: int) -> dict[str, t.Any]:
    requests = {
        "FetchDefinedStages": deploy_pb.FetchDefinedStagesRequest().SerializeToString(),
        "ExecuteStage": execute_request("bench-stage", {}, name="WAIT").SerializeToString(),
    }
    servers = {"pipeplug": _pipeplug_handlers(), "raw": _raw_handlers()}
    figures: dict[tuple[str, str], list[float]] = {}
    for rpc, data in requests.items():
        for server in servers.values():  # warm up: imports, caches, the options cache
            await _per_call_us(server[rpc], data, 200)
        for _ in range(rounds):
            for name, server in servers.items():
                figures.setdefault((name, rpc), []).append(await _per_call_us(server[rpc], data, calls))
    us = {f"{name}_{rpc}": statistics.median(values) for (name, rpc), values in figures.items()}
    return {
        "us_per_call": {k: round(v, 2) for k, v in us.items()},
        "added_us": {rpc: round(us[f"pipeplug_{rpc}"] - us[f"raw_{rpc}"], 2) for rpc in requests},
        "ratio": {rpc: round(us[f"pipeplug_{rpc}"] / us[f"raw_{rpc}"], 2) for rpc in requests},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.calls, args.rounds))))


if __name__ == "__main__":
    main()
