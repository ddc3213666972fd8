#!/usr/bin/env python3
"""The benchmark's load generator, run as its own process (bench/run.py pins it to its own core).

Modes (each prints one JSON object on stdout):

- ``calls``: N calls of ``--rpc fetch|execute`` (an immediate ExecuteStage) with
  ``--concurrency`` callers on one connection: ok, errors, calls_per_s, p50/p99.
- ``held``: a burst of N gated WAIT stages on one connection; once all are in
  flight (read from the plugin's /metrics), ``--probes`` sequential
  FetchDefinedStages on a second connection, the server's RSS, then RELEASE.
- ``cancel-soak``: rounds of ``--concurrency`` long stages cancelled by the client,
  with the server's RSS before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request

import grpc

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc


def execute_request(stage_id: str, options: dict, name: str = "WAIT") -> deploy_pb.ExecuteStageRequest:
    # What piped sends for a stage it runs the first time: its snapshot still says NOT_STARTED_YET
    # (RUNNING only when piped re-executes a stage after a crash; contract §4.6).
    stage = model_pb.PipelineStage(id=stage_id, name=name, index=0, status=model_pb.STAGE_NOT_STARTED_YET)
    deployment = model_pb.Deployment(id="bench-deployment", application_id="bench-app", application_name="bench", piped_id="bench-piped", stages=[stage])
    return deploy_pb.ExecuteStageRequest(
        input=deploy_pb.ExecutePluginInput(deployment=deployment, stage=stage, stage_config=json.dumps(options).encode())
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def metric(admin: str, name: str) -> float:
    with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def calls(args: argparse.Namespace) -> dict:
    async with grpc.aio.insecure_channel(args.addr) as channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        fetch = deploy_pb.FetchDefinedStagesRequest()
        counter = iter(range(10**9))

        async def one() -> None:
            if args.rpc == "fetch":
                await stub.FetchDefinedStages(fetch)
            else:
                response = await stub.ExecuteStage(execute_request(f"s{next(counter)}", {"duration": "0s"}))
                if response.status != model_pb.STAGE_SUCCESS:
                    raise RuntimeError(f"status {response.status}")

        for _ in range(args.warmup):
            await one()
        latencies: list[float] = []
        errors: list[str] = []
        remaining = args.n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    await one()
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(repr(exc)[:200])
                else:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "rpc": args.rpc,
        "n": args.n,
        "concurrency": args.concurrency,
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall_s": wall,
        "calls_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def held(args: argparse.Namespace) -> dict:
    async with grpc.aio.insecure_channel(args.addr) as channel, grpc.aio.insecure_channel(args.addr) as probe_channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        probe = deploy_grpc.DeploymentServiceStub(probe_channel)
        await probe.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest())
        rss_before = rss_kb(args.server_pid)
        gate = {"duration": "10m", "gate": "burst"}
        burst = [asyncio.ensure_future(stub.ExecuteStage(execute_request(f"held-{i}", gate))) for i in range(args.n)]
        started = time.perf_counter()
        in_flight = 0.0
        while time.perf_counter() - started < args.timeout and not any(c.done() for c in burst):
            in_flight = await asyncio.to_thread(metric, args.admin, "pipeplug_stages_in_flight")
            if in_flight >= args.n:
                break
            await asyncio.sleep(0.25)
        all_in_flight_s = time.perf_counter() - started
        rss_held = rss_kb(args.server_pid)
        latencies = []
        for _ in range(args.probes):
            t0 = time.perf_counter()
            await probe.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest())
            latencies.append(time.perf_counter() - t0)
        await probe.ExecuteStage(execute_request("release", {"gate": "burst"}, name="RELEASE"))
        results = await asyncio.wait_for(asyncio.gather(*burst, return_exceptions=True), args.timeout)
    latencies.sort()
    ok = sum(1 for r in results if isinstance(r, deploy_pb.ExecuteStageResponse) and r.status == model_pb.STAGE_SUCCESS)
    failures = [repr(r)[:200] for r in results if not (isinstance(r, deploy_pb.ExecuteStageResponse) and r.status == model_pb.STAGE_SUCCESS)]
    return {
        "held_total": args.n,
        "held_ok": ok,
        "peak_in_flight": in_flight,
        "seconds_to_all_in_flight": all_in_flight_s,
        "first_failure": failures[0] if failures else "",
        "probe_p50_ms": percentile(latencies, 50) * 1000,
        "probe_p99_ms": percentile(latencies, 99) * 1000,
        "rss_before_kb": rss_before,
        "rss_held_kb": rss_held,
        "rss_per_held_kb": (rss_held - rss_before) / args.n,
    }


async def cancel_soak(args: argparse.Namespace) -> dict:
    async with grpc.aio.insecure_channel(args.addr) as channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        samples = []
        cancelled = 0
        for round_ in range(args.rounds):
            wave = [asyncio.ensure_future(stub.ExecuteStage(execute_request(f"c{round_}-{i}", {"duration": "10m"}))) for i in range(args.concurrency)]
            await asyncio.sleep(0.15)
            for call in wave:
                call.cancel()
            results = await asyncio.gather(*wave, return_exceptions=True)
            cancelled += sum(isinstance(r, asyncio.CancelledError) for r in results)
            await asyncio.sleep(0.05)
            samples.append(rss_kb(args.server_pid))
        await stub.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest())
    warm = max(1, args.rounds // 5)  # the first rounds grow pools and caches; measure after them
    return {
        "cancelled": cancelled,
        "rounds": args.rounds,
        "rss_after_warmup_kb": samples[warm - 1],
        "rss_end_kb": samples[-1],
        "rss_growth_kb_per_1k_cancels": (samples[-1] - samples[warm - 1]) / max(1, (args.rounds - warm) * args.concurrency) * 1000,
        "rss_kb_by_round": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["calls", "held", "cancel-soak"])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--rpc", choices=["fetch", "execute"], default="fetch")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--admin", default="")
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    run = {"calls": calls, "held": held, "cancel-soak": cancel_soak}[args.mode]
    print(json.dumps(asyncio.run(run(args))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
