#!/usr/bin/env python3
"""A throwaway PipeCD stage plugin written on grpcio directly, without pipeplug's App.

It exists to prove the Go interop harness: it talks to piped's PluginService
(stage logs, stage/plugin metadata, shared objects, stage commands) the way a
correct plugin should, and it can misbehave on request (``with.mode``) so the
harness's own detectors can be checked. It borrows only pipeplug's generated
protobuf modules (wire-identical to upstream's).

Stages: RAW_LOG, RAW_APPROVAL, RAW_SLEEP, RAW_ROLLBACK (rollback).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from pipeplug._gen.model import common_pb2 as model_common
from pipeplug._gen.model import deployment_pb2 as model_deployment
from pipeplug._gen.model import logblock_pb2
from pipeplug._gen.model import command_pb2
from pipeplug._gen.piped import service_pb2
from pipeplug._gen.piped import service_pb2_grpc
from pipeplug._gen.plugin import deployment_pb2
from pipeplug._gen.plugin import deployment_pb2_grpc

STAGES = ["RAW_LOG", "RAW_APPROVAL", "RAW_SLEEP", "RAW_ROLLBACK"]


class StageLog:
    """Per-stage log buffer: plain flushes plus a final checkpoint with everything."""

    def __init__(self, piped, deployment_id: str, stage_id: str) -> None:
        self.piped = piped
        self.deployment_id = deployment_id
        self.stage_id = stage_id
        self.blocks = []
        self.sent = 0
        self.next_index = int(time.time() * 1000)
        self.errors = []

    def add(self, line: str, severity: int = logblock_pb2.LogSeverity.INFO) -> None:
        self.blocks.append(logblock_pb2.LogBlock(index=self.next_index, log=line, severity=severity, created_at=int(time.time())))
        self.next_index += 1

    def flush(self) -> None:
        if self.sent < len(self.blocks):
            try:
                self.piped.ReportStageLogs(service_pb2.ReportStageLogsRequest(
                    deployment_id=self.deployment_id, stage_id=self.stage_id, retried_count=0, blocks=self.blocks[self.sent:]))
            except grpc.RpcError as e:
                self.errors.append(f"ReportStageLogs: {e.code().name}: {e.details()}")
            self.sent = len(self.blocks)

    def complete(self, blocks=None) -> None:
        try:
            self.piped.ReportStageLogsFromLastCheckpoint(service_pb2.ReportStageLogsFromLastCheckpointRequest(
                deployment_id=self.deployment_id, stage_id=self.stage_id, retried_count=0,
                blocks=self.blocks if blocks is None else blocks, completed=True))
        except grpc.RpcError as e:
            self.errors.append(f"ReportStageLogsFromLastCheckpoint: {e.code().name}: {e.details()}")


class Deployment(deployment_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, name: str, piped) -> None:
        self.name = name
        self.piped = piped

    def FetchDefinedStages(self, request, context):
        return deployment_pb2.FetchDefinedStagesResponse(stages=STAGES)

    def DetermineVersions(self, request, context):
        return deployment_pb2.DetermineVersionsResponse()

    def DetermineStrategy(self, request, context):
        return deployment_pb2.DetermineStrategyResponse(unsupported=True)

    def BuildQuickSyncStages(self, request, context):
        return deployment_pb2.BuildQuickSyncStagesResponse()

    def BuildPipelineSyncStages(self, request, context):
        now = int(time.time())
        out = []
        log_indexes = []
        for s in request.stages:
            cfg = json.loads(s.config or b"{}") or {}
            st = model_deployment.PipelineStage(
                name=s.name, desc=s.desc, index=s.index + (100 if cfg.get("planBadIndex") else 0),
                status=model_deployment.StageStatus.STAGE_NOT_STARTED_YET,
                available_operation=model_deployment.ManualOperation.MANUAL_OPERATION_NONE,
                created_at=now, updated_at=now)
            if s.name == "RAW_APPROVAL":
                st.available_operation = model_deployment.ManualOperation.MANUAL_OPERATION_APPROVE
                st.authorized_operators.extend(cfg.get("approvers", []))
            if s.name == "RAW_LOG":
                log_indexes.append(s.index)
            out.append(st)
        if request.rollback and log_indexes:
            out.append(model_deployment.PipelineStage(
                name="RAW_ROLLBACK", index=min(log_indexes), rollback=True,
                available_operation=model_deployment.ManualOperation.MANUAL_OPERATION_NONE,
                created_at=now, updated_at=now))
        return deployment_pb2.BuildPipelineSyncStagesResponse(stages=out)

    def ExecuteStage(self, request, context):
        inp = request.input
        d, stage = inp.deployment, inp.stage
        cfg = json.loads(inp.stage_config or b"{}") or {}
        log = StageLog(self.piped, d.id, stage.id)
        log.add(f"{stage.name} started (index {stage.index}, deploy targets {list(d.deploy_targets_by_plugin[self.name].deploy_targets) if self.name in d.deploy_targets_by_plugin else []})")
        status = model_deployment.StageStatus.STAGE_SUCCESS
        mode = cfg.get("mode", "good")
        try:
            if stage.name == "RAW_LOG":
                status = self.raw_log(d, stage, cfg, log, mode)
            elif stage.name == "RAW_APPROVAL":
                status = self.raw_approval(d, stage, log, context)
            elif stage.name == "RAW_SLEEP":
                status = self.raw_sleep(cfg, log, context)
            elif stage.name == "RAW_ROLLBACK":
                log.add("rolled back (nothing to do)")
        except grpc.RpcError as e:
            log.add(f"PluginService call failed: {e.code().name}: {e.details()}", logblock_pb2.LogSeverity.ERROR)
            status = model_deployment.StageStatus.STAGE_FAILURE
        if mode == "plain-only":
            # Bad: flush everything plainly, then complete with only a final line.
            log.flush()
            log.add("done")
            log.complete(blocks=log.blocks[-1:])
        else:
            log.add(f"{stage.name} finished: {model_deployment.StageStatus.Name(status)}",
                    logblock_pb2.LogSeverity.SUCCESS if status == model_deployment.StageStatus.STAGE_SUCCESS else logblock_pb2.LogSeverity.ERROR)
            log.complete()
        if mode == "late":
            log.add("a line after completion")
            log.flush()
        for e in log.errors:
            print(f"raw plugin: {e}", file=sys.stderr)
        return deployment_pb2.ExecuteStageResponse(status=status)

    def raw_log(self, d, stage, cfg, log, mode):
        for i in range(int(cfg.get("lines", 3))):
            log.add(f"line {i + 1}")
        if mode == "empty-line":
            log.add("")
        log.flush()
        p = self.piped
        p.PutStageMetadata(service_pb2.PutStageMetadataRequest(deployment_id=d.id, stage_id=stage.id, key="raw/seen", value=stage.id))
        got = p.GetStageMetadata(service_pb2.GetStageMetadataRequest(deployment_id=d.id, stage_id=stage.id, key="raw/seen"))
        log.add(f"stage metadata read back: found={got.found} same={got.value == stage.id}")
        p.PutStageMetadataMulti(service_pb2.PutStageMetadataMultiRequest(
            deployment_id=d.id, stage_id=stage.id, metadata={"pipecd/stage-display-metadata": "raw was here"}))
        p.PutDeploymentPluginMetadata(service_pb2.PutDeploymentPluginMetadataRequest(
            deployment_id=d.id, plugin_name=self.name, key="raw/last-stage", value=stage.name))
        p.PutDeploymentPluginMetadataMulti(service_pb2.PutDeploymentPluginMetadataMultiRequest(
            deployment_id=d.id, plugin_name=self.name, metadata={"raw/commit": d.trigger.commit.hash}))
        got = p.GetDeploymentPluginMetadata(service_pb2.GetDeploymentPluginMetadataRequest(
            deployment_id=d.id, plugin_name=self.name, key="raw/last-stage"))
        log.add(f"plugin metadata read back: {got.value}")
        shared = p.GetDeploymentSharedMetadata(service_pb2.GetDeploymentSharedMetadataRequest(deployment_id=d.id, key="DeploymentNotification"))
        log.add(f"shared metadata DeploymentNotification found={shared.found}")
        count = 0
        try:
            obj = p.GetApplicationSharedObject(service_pb2.GetApplicationSharedObjectRequest(
                application_id=d.application_id, plugin_name=self.name, key="raw-count"))
            count = int(obj.object or b"0")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            log.add("shared object raw-count not found yet")
        p.PutApplicationSharedObject(service_pb2.PutApplicationSharedObjectRequest(
            application_id=d.application_id, plugin_name=self.name, key="raw-count", object=str(count + 1).encode()))
        log.add(f"shared object raw-count is now {count + 1}")
        return model_deployment.StageStatus.STAGE_SUCCESS

    def raw_approval(self, d, stage, log, context):
        log.add("waiting for approval")
        log.flush()
        seen = set()
        while context.is_active():
            res = self.piped.ListStageCommands(service_pb2.ListStageCommandsRequest(deployment_id=d.id, stage_id=stage.id))
            for cmd in res.commands:
                if cmd.id in seen or cmd.type != command_pb2.Command.Type.APPROVE_STAGE:
                    continue
                seen.add(cmd.id)
                self.piped.PutStageMetadataMulti(service_pb2.PutStageMetadataMultiRequest(
                    deployment_id=d.id, stage_id=stage.id,
                    metadata={"pipecd/stage-approved-users": cmd.commander, "pipecd/stage-display-metadata": f"Approved by: {cmd.commander}"}))
                log.add(f"approved by {cmd.commander}")
                return model_deployment.StageStatus.STAGE_SUCCESS
            time.sleep(0.5)
        log.add("approval wait cancelled")
        return model_deployment.StageStatus.STAGE_CANCELLED

    def raw_sleep(self, cfg, log, context):
        done = threading.Event()
        context.add_callback(done.set)
        seconds = float(cfg.get("seconds", 1))
        log.add(f"sleeping {seconds}s")
        log.flush()
        if done.wait(seconds) and not context.is_active():
            log.add("sleep cancelled")
            return model_deployment.StageStatus.STAGE_CANCELLED
        return model_deployment.StageStatus.STAGE_SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(prog="raw_plugin")
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start")
    start.add_argument("--piped-plugin-service", required=True)
    start.add_argument("--config", required=True)
    args, _ = parser.parse_known_args()
    cfg = json.loads(args.config)
    piped = service_pb2_grpc.PluginServiceStub(grpc.insecure_channel(args.piped_plugin_service))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    deployment_pb2_grpc.add_DeploymentServiceServicer_to_server(Deployment(cfg["name"], piped), server)
    for host in ("127.0.0.1", "[::1]"):
        try:
            server.add_insecure_port(f"{host}:{cfg['port']}")
        except RuntimeError:
            pass
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        pass
    server.stop(5).wait()


if __name__ == "__main__":
    main()
