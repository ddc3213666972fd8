#!/usr/bin/env python3
"""A hand-written plugin (raw gRPC, no pipeplug servicers) that answers what real piped would refuse.

Started with piped's argv; ``config.mode`` picks the mistake:
bad_index, dup_index, zero_created_at, bad_operation, bad_version_kind,
bad_log, undefined_status, no_port, no_fetch; anything else behaves.
"""

from __future__ import annotations

import json
import sys
import time

argv = sys.argv[1:]
assert argv[:2] == ["start", "--piped-plugin-service"] and argv[3] == "--config", argv
PIPED = argv[2]
CONFIG = json.loads(argv[4])
MODE = (CONFIG.get("config") or {}).get("mode", "")
if MODE == "no_port":  # before the slow imports, so the output is there when pipeplug dev gives up
    print("raw plugin: not listening on purpose", file=sys.stderr, flush=True)
    time.sleep(600)
    sys.exit(0)

from concurrent import futures  # noqa: E402

import grpc  # noqa: E402

from pipeplug._gen.model import common_pb2 as common_pb  # noqa: E402
from pipeplug._gen.model import deployment_pb2 as model_pb  # noqa: E402
from pipeplug._gen.model import logblock_pb2 as logblock_pb  # noqa: E402
from pipeplug._gen.piped import service_pb2 as svc_pb  # noqa: E402
from pipeplug._gen.piped import service_pb2_grpc as svc_grpc  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2 as pb  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2_grpc as pb_grpc  # noqa: E402


class Service(pb_grpc.DeploymentServiceServicer):
    def FetchDefinedStages(self, request, context):
        if MODE == "no_fetch":
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not here")
        return pb.FetchDefinedStagesResponse(stages=["RAW_STAGE"])

    def DetermineVersions(self, request, context):
        kind = 42 if MODE == "bad_version_kind" else common_pb.ArtifactVersion.UNKNOWN
        return pb.DetermineVersionsResponse(versions=[common_pb.ArtifactVersion(kind=kind, version="v1")])

    def DetermineStrategy(self, request, context):
        return pb.DetermineStrategyResponse(unsupported=True)

    def BuildQuickSyncStages(self, request, context):
        return pb.BuildQuickSyncStagesResponse()

    def BuildPipelineSyncStages(self, request, context):
        now = int(time.time())
        stages = []
        for s in request.stages:
            stage = model_pb.PipelineStage(
                name=s.name, index=s.index, status=model_pb.STAGE_NOT_STARTED_YET, created_at=now, updated_at=now,
                available_operation=model_pb.MANUAL_OPERATION_NONE,
            )
            if MODE == "bad_index":
                stage.index = 99
            if MODE == "zero_created_at":
                stage.created_at = 0
            if MODE == "bad_operation":
                stage.available_operation = 7
            stages.append(stage)
        if MODE == "dup_index":
            stages.append(stages[0])
        return pb.BuildPipelineSyncStagesResponse(stages=stages)

    def ExecuteStage(self, request, context):
        inp = request.input
        if MODE == "bad_log":
            with grpc.insecure_channel(PIPED) as channel:
                stub = svc_grpc.PluginServiceStub(channel)
                blocks = [logblock_pb.LogBlock(index=1, log="fine", created_at=int(time.time())), logblock_pb.LogBlock(index=2, log="", created_at=int(time.time()))]
                try:
                    stub.ReportStageLogs(svc_pb.ReportStageLogsRequest(deployment_id=inp.deployment.id, stage_id=inp.stage.id, blocks=blocks))
                except grpc.RpcError as exc:
                    print(f"ReportStageLogs refused: {exc.code().name}", file=sys.stderr, flush=True)
        if MODE == "undefined_status":
            return pb.ExecuteStageResponse(status=42)
        return pb.ExecuteStageResponse(status=model_pb.STAGE_SUCCESS)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
pb_grpc.add_DeploymentServiceServicer_to_server(Service(), server)
server.add_insecure_port(f"127.0.0.1:{CONFIG['port']}")
server.start()
try:
    server.wait_for_termination()
except KeyboardInterrupt:
    pass
