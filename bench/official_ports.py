#!/usr/bin/env python3
"""The official stage plugins ported to pipeplug (examples/official/), next to the Go SDK anchor.

    python bench/official_ports.py            # 7 cold starts and 200 stages per plugin
    python bench/official_ports.py --quick    # 3 and 50

For each port and for bench/go_sdk_wait (the WAIT plugin on the official Go
SDK), all measured by the same Go client (bench/go_sdk_wait/client):

- cold start: spawn with piped's argv to the first successful FetchDefinedStages (median);
- idle RSS: 2 s after that first answer (median);
- an immediate stage: ExecuteStage of a stage that has nothing to wait for, one
  caller after another (p50, p99), against the client's in-memory fake piped.

The immediate stages: the Go anchor's WAIT with `duration: 0s` (it makes no
piped calls); the WAIT port with `1ms` (it reads and writes `startTime`: two
metadata calls); WAIT_APPROVAL already approved (stage metadata seeded with the
approver, so it reads it and returns); SCRIPT_RUN with `run: "true"` (it writes
`started-0` and runs `/bin/sh -l -c true`). The Go SDK holds each ExecuteStage
until its stage-log persister's 5 s tick, so its single-caller latency is that
tick, not its speed: its 50-caller figures come from the same run as run.py's
anchor. Progress goes to stderr; the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import typing as t

import grpc

from run import CLIENT_CORE
from run import GO_DIR
from run import PY
from run import ROOT
from run import SERVER_CORE
from run import free_port
from run import note
from run import run_pinned
from run import spawn
from run import stop
from run import wait_answers

from pipeplug._gen.piped import service_pb2 as svc_pb  # noqa: E402  (run puts the repo on sys.path)
from pipeplug._gen.piped import service_pb2_grpc as svc_grpc  # noqa: E402

OFFICIAL = os.path.join(ROOT, "examples", "official")
GO_PLUGIN = os.path.join(GO_DIR, "bin", "go_sdk_wait")
CLIENT = os.path.join(GO_DIR, "bin", "go_sdk_wait_client")
APPROVED_STAGE = "bench-approved-stage"
#: the application directory in the Go client's ExecuteStage requests
APP_DIR = "/tmp/bench/apps/bench"

#: name -> (plugin file, plugin name, stage, with:, fixed stage id or "")
PLUGINS: dict[str, tuple[str, str, str, dict[str, t.Any], str]] = {
    "go_sdk_wait": (GO_PLUGIN, "wait", "WAIT", {"duration": "0s"}, ""),
    "wait": (os.path.join(OFFICIAL, "wait.py"), "wait", "WAIT", {"duration": "1ms"}, ""),
    "wait_approval": (os.path.join(OFFICIAL, "wait_approval.py"), "waitapproval", "WAIT_APPROVAL", {"approvers": ["bench"]}, APPROVED_STAGE),
    "script_run": (os.path.join(OFFICIAL, "script_run.py"), "scriptrun", "SCRIPT_RUN", {"run": "true"}, ""),
}


def client(*args: str) -> dict[str, t.Any]:
    # The ports start with `#!/usr/bin/env python3`: this interpreter's directory goes first on PATH.
    env = {**os.environ, "PATH": os.pathsep.join([os.path.dirname(PY), os.environ.get("PATH", "")])}
    out = run_pinned([CLIENT, *args], CLIENT_CORE, timeout=900, env=env)
    lines = out.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"go client {args}: {out.stderr[-800:]}")
    return t.cast(dict[str, t.Any], json.loads(lines[-1]))


def seed_approval(piped: str) -> None:
    """Record the approver in the fake piped, so WAIT_APPROVAL finds itself approved at once."""
    with grpc.insecure_channel(piped) as channel:
        request = svc_pb.PutStageMetadataRequest(deployment_id="bench-deployment", stage_id=APPROVED_STAGE, key="pipecd/stage-approved-users", value="bench")
        svc_grpc.PluginServiceStub(channel).PutStageMetadata(request, timeout=10)


def measure(quick: bool) -> dict[str, t.Any]:
    runs, stages = ("3", "50") if quick else ("7", "200")
    results: dict[str, t.Any] = {}
    for name, (path, plugin, _, _, _) in PLUGINS.items():
        cold = client("-rpc", "coldstart", "-bin", path, "-name", plugin, "-runs", runs, "-idle", "2s")
        results[name] = {"cold_start_ms": cold["cold_start_p50_ms"], "idle_rss_kb": cold["idle_rss_kb_p50"]}
        note(f"{name}: cold start {cold['cold_start_p50_ms']:.0f} ms, idle RSS {cold['idle_rss_kb_p50']} kB")
    fake = spawn([CLIENT, "-rpc", "fake-piped", "-listen", "127.0.0.1:0"], CLIENT_CORE, stdout=subprocess.PIPE, text=True)
    try:
        piped = json.loads(fake.stdout.readline())["fake_piped"]  # type: ignore[union-attr]
        seed_approval(piped)
        os.makedirs(APP_DIR, exist_ok=True)  # SCRIPT_RUN runs its script in the application directory
        for name, (path, plugin, stage, with_, stage_id) in PLUGINS.items():
            port = free_port()
            config = json.dumps({"name": plugin, "url": "file:///bench", "port": port})
            argv = [path] if name == "go_sdk_wait" else [PY, path]
            server = spawn([*argv, "start", "--piped-plugin-service", piped, "--config", config], SERVER_CORE)
            try:
                wait_answers(f"127.0.0.1:{port}", server)
                common = ["-addr", f"127.0.0.1:{port}", "-rpc", "execute", "-stage", stage, "-with", json.dumps(with_), "-stage-id", stage_id]
                if name == "go_sdk_wait":  # one call per 5 s tick: 50 callers, bounded in time
                    execute = client(*common, "-n", stages, "-concurrency", "50", "-max-time", "30s")
                else:
                    execute = client(*common, "-n", stages, "-concurrency", "1", "-max-time", "60s")
            finally:
                stop(server)
            results[name].update(
                {"stage": stage, "with": with_, "execute_p50_ms": execute["p50_ms"], "execute_p99_ms": execute["p99_ms"], "execute_ok": execute["ok"], "execute_errors": execute["errors"]}
            )
            note(f"{name}: immediate {stage} p50 {execute['p50_ms']:.2f} ms, p99 {execute['p99_ms']:.2f} ms ({execute['ok']} ok, {execute['errors']} errors)")
    finally:
        stop(fake)
    anchor = results["go_sdk_wait"]
    for name in ("wait", "wait_approval", "script_run"):
        results[name]["cold_start_ratio_to_go"] = results[name]["cold_start_ms"] / anchor["cold_start_ms"]
        results[name]["idle_rss_ratio_to_go"] = results[name]["idle_rss_kb"] / anchor["idle_rss_kb"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 cold starts and 50 stages per plugin")
    args = parser.parse_args()
    build = subprocess.run(["bash", os.path.join(GO_DIR, "build.sh")], capture_output=True, text=True)
    if build.returncode != 0:
        note(f"the Go SDK anchor and client could not be built, so nothing is measured: {build.stderr.strip()[-500:]}")
        print(json.dumps({"skipped": build.stderr.strip()[-300:]}))
        sys.exit(0 if build.returncode == 3 else 1)
    print(json.dumps(measure(args.quick)))


if __name__ == "__main__":
    main()
