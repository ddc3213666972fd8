"""Fuzzing every RPC of a started plugin (example_app.py) with hypothesis.

Three kinds of input per RPC: random bytes, well-formed messages with random
field values (built from the proto descriptors), and piped-shaped requests with
random stage names, ``with:`` configs and app configs. The server must never
die, and every answer must be a valid response or a gRPC status with a message
(never UNKNOWN, which would mean an exception escaped pipeplug).

``PIPEPLUG_FUZZ_EXAMPLES`` sets the examples per test (CI default 120, about
2,900 requests in all); ``bench/run.py`` runs it with far more and reads the
plugin's answer counts from ``PIPEPLUG_FUZZ_REPORT``.
"""

from __future__ import annotations

import json
import os
import typing as t
import urllib.request

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import common_pb2 as common_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug._gen.plugin import livestate_pb2 as live_pb
from pipeplug._gen.plugin import planpreview_pb2 as preview_pb
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginProcess
from pipeplug.testing import free_port
from tests.runtime_support import EXAMPLE_APP

EXAMPLES = int(os.environ.get("PIPEPLUG_FUZZ_EXAMPLES", "120"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PIPEPLUG_FUZZ_RANDOM") is None,  # CI: the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
#: a call that hangs is a failure too; the fuzz inputs never ask for a long wait
CALL_TIMEOUT = 10.0
TARGET = "fuzz-target"


def _rpcs() -> list[tuple[str, t.Any, t.Any]]:
    found = []
    for module in (deploy_pb, live_pb, preview_pb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                request = message_factory.GetMessageClass(method.input_type)
                response = message_factory.GetMessageClass(method.output_type)
                found.append((f"/{service.full_name}/{method.name}", request, response))
    return found


RPCS = _rpcs()
RPC_IDS = [path.rsplit("/", 1)[1] for path, _, _ in RPCS]


# -- strategies ---------------------------------------------------------------------------

# No "/" or ".": a random string can never name a real path or climb out of one.
SAFE_TEXT = st.text(alphabet=st.characters(blacklist_characters="/.\\", blacklist_categories=("Cs",)), max_size=16)
_FD = pb_descriptor.FieldDescriptor
_INTS = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: t.Any, depth: int) -> st.SearchStrategy[t.Any]:
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        return st.one_of(st.integers(max(low, -3), 30), st.integers(low, high))
    if kind == _FD.TYPE_BOOL:
        return st.booleans()
    if kind in (_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE):
        return st.floats(width=32 if kind == _FD.TYPE_FLOAT else 64)
    if kind == _FD.TYPE_STRING:
        return SAFE_TEXT
    if kind == _FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), st.sampled_from([b"{}", b"null", b"[]", b'{"duration": "1ms"}', b"{bad"]))
    if kind == _FD.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-5, 50))
    if kind == _FD.TYPE_MESSAGE:
        return messages(message_factory.GetMessageClass(field.message_type), depth + 1)
    raise AssertionError(f"unhandled field type {kind}")


def messages(cls: t.Any, depth: int = 0) -> st.SearchStrategy[t.Any]:
    """Well-formed instances of ``cls`` with random values in random subsets of fields (nesting bounded)."""
    if depth > 3:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[t.Any]] = {}
    for field in cls.DESCRIPTOR.fields:
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            optional[field.name] = st.dictionaries(_scalar(key_field, depth), _scalar(value_field, depth), max_size=3)
        elif field.is_repeated:
            optional[field.name] = st.lists(_scalar(field, depth), max_size=3)
        else:
            optional[field.name] = _scalar(field, depth)
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, values))


def _build(cls: t.Any, values: dict[str, t.Any]) -> t.Any:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if isinstance(value, dict):
            for key, item in value.items():
                if hasattr(item, "DESCRIPTOR"):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif isinstance(value, list):
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# piped-shaped requests: real stage names and targets, random `with:` and app configs.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False) | SAFE_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(SAFE_TEXT, children, max_size=3),
    max_leaves=8,
)
STAGE_CONFIGS = st.one_of(
    st.builds(lambda d: json.dumps({"duration": d}).encode(), st.sampled_from(["0s", "1ms", "20ms", "-1s", "1x", "", "0"])),
    st.builds(lambda files: json.dumps({"files": files}).encode(), st.lists(SAFE_TEXT, max_size=3)),
    st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES),
    st.binary(max_size=24),
)
APP_CONFIGS = st.sampled_from(
    [
        b"",
        b"apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  plugins:\n    example:\n      source: site\n",
        b"spec:\n  plugins:\n    example:\n      unknownField: 1\n",
        b"spec: [unclosed",
        b"\xff\xfe",
        b"spec:\n  plugins:\n    example: 7\n",
    ]
)
COMMITS = st.text(alphabet="0123456789abcdef", min_size=0, max_size=40)


@st.composite
def deployment_sources(draw: t.Any, app_dir: str) -> t.Any:
    return common_pb.DeploymentSource(
        application_directory=app_dir,
        commit_hash=draw(COMMITS),
        application_config=draw(APP_CONFIGS),
        application_config_filename="app.pipecd.yaml",
    )


@st.composite
def deployments(draw: t.Any, app_dir: str) -> t.Any:
    targets = draw(st.lists(st.sampled_from([TARGET, "unknown-target", ""]), max_size=2))
    by_plugin = {draw(st.sampled_from(["example", "other"])): model_pb.DeployTargets(deploy_targets=targets)} if draw(st.booleans()) else {}
    return model_pb.Deployment(
        id=draw(st.sampled_from(["deploy-1", "deploy-2", ""])),
        application_id="app-1",
        application_name="fuzz",
        piped_id="piped-1",
        project_id="project",
        deploy_targets_by_plugin=by_plugin,
        trigger=model_pb.DeploymentTrigger(sync_strategy=draw(st.sampled_from([0, 1, 2, 9]))),
    )


@st.composite
def piped_shaped(draw: t.Any, rpc: str, app_dir: str) -> t.Any:
    """A request as piped would build it for ``rpc``, with random content where users write it."""
    stage_names = st.sampled_from(["WAIT", "DIR_SYNC", "DIR_VERIFY", "DIR_ROLLBACK", "NOPE", ""])
    source = deployment_sources(app_dir)
    if rpc == "ExecuteStage":
        stage = model_pb.PipelineStage(
            id=draw(st.sampled_from(["stage-1", "stage-2"])), name=draw(stage_names), index=draw(st.integers(-1, 3)), status=model_pb.STAGE_RUNNING
        )
        return deploy_pb.ExecuteStageRequest(
            input=deploy_pb.ExecutePluginInput(
                deployment=draw(deployments(app_dir)),
                stage=stage,
                stage_config=draw(STAGE_CONFIGS),
                target_deployment_source=draw(source),
                running_deployment_source=draw(st.none() | source),
            )
        )
    if rpc == "BuildPipelineSyncStages":
        stages = draw(
            st.lists(
                st.builds(
                    lambda name, index, config: deploy_pb.BuildPipelineSyncStagesRequest.StageConfig(name=name, index=index, config=config),
                    stage_names,
                    st.integers(-2, 5),
                    STAGE_CONFIGS,
                ),
                max_size=4,
            )
        )
        return deploy_pb.BuildPipelineSyncStagesRequest(stages=stages, rollback=draw(st.booleans()))
    if rpc == "BuildQuickSyncStages":
        return deploy_pb.BuildQuickSyncStagesRequest(rollback=draw(st.booleans()))
    if rpc in ("DetermineVersions", "DetermineStrategy"):
        cls = deploy_pb.DetermineVersionsRequest if rpc == "DetermineVersions" else deploy_pb.DetermineStrategyRequest
        plan_input = deploy_pb.PlanPluginInput(
            deployment=draw(deployments(app_dir)), target_deployment_source=draw(source), running_deployment_source=draw(st.none() | source)
        )
        return cls(input=plan_input)
    if rpc == "GetLivestate":
        return live_pb.GetLivestateRequest(
            application_id="app-1", application_name="fuzz", deploy_source=draw(source), deploy_targets=draw(st.lists(st.sampled_from([TARGET, "x"]), max_size=2))
        )
    if rpc == "GetPlanPreview":
        return preview_pb.GetPlanPreviewRequest(
            application_id="app-1",
            application_name="fuzz",
            target_deployment_source=draw(source),
            running_deployment_source=draw(st.none() | source),
            deploy_targets=draw(st.lists(st.sampled_from([TARGET, "x"]), max_size=2)),
        )
    return deploy_pb.FetchDefinedStagesRequest()


# -- the plugin under fuzz ----------------------------------------------------------------


@pytest.fixture(scope="module")
def target(tmp_path_factory):  # type: ignore[no-untyped-def]
    """example_app.py started as piped starts it, with one deploy target; cwd is an empty dir."""
    root = tmp_path_factory.mktemp("fuzz")
    app_dir = root / "app"
    (app_dir / "site").mkdir(parents=True)
    (app_dir / "site" / "index.html").write_text("hello\n")
    (app_dir / "site" / "VERSION").write_text("1.0.0\n")
    cwd = root / "cwd"
    cwd.mkdir()
    with FakePiped() as piped:
        admin = free_port()
        plugin = PluginProcess(
            EXAMPLE_APP,
            piped_address=piped.address,
            name="example",
            deploy_targets=[{"name": TARGET, "config": {"path": str(root / "target")}}],
            cwd=str(cwd),
            extra_args=("--log-level", "error", "--admin-port", str(admin)),
            startup_timeout=30,
        )
        plugin.start(wait=False)
        plugin.admin_port = admin  # type: ignore[attr-defined]
        try:
            plugin.wait_ready()
            channel = grpc.insecure_channel(plugin.address)
            try:
                yield plugin, channel, str(app_dir)
            finally:
                channel.close()
            assert plugin.returncode is None, f"the plugin died:\n{plugin.stderr_text()[-4000:]}"
        finally:
            plugin.close()


def check_answer(channel: grpc.Channel, path: str, response_cls: t.Any, payload: bytes) -> None:
    call = channel.unary_unary(path)  # bytes in, bytes out: malformed input reaches the server as is
    try:
        raw = call(payload, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED), f"{path}: {code.name}: {details}"
        assert code not in (grpc.StatusCode.UNAVAILABLE,), f"{path}: the server is down? {details}"
        assert details.strip(), f"{path}: {code.name} without a message"
        return
    response_cls.FromString(raw)  # a valid response


@pytest.mark.parametrize(("path", "request_cls", "response_cls"), RPCS, ids=RPC_IDS)
def test_random_bytes(target, path, request_cls, response_cls) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = target

    @FUZZ_SETTINGS
    @given(payload=st.binary(max_size=200))
    def run(payload: bytes) -> None:
        check_answer(channel, path, response_cls, payload)

    run()


@pytest.mark.parametrize(("path", "request_cls", "response_cls"), RPCS, ids=RPC_IDS)
def test_well_formed_random_messages(target, path, request_cls, response_cls) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = target

    @FUZZ_SETTINGS
    @given(message=messages(request_cls))
    def run(message: t.Any) -> None:
        check_answer(channel, path, response_cls, message.SerializeToString())

    run()


@pytest.mark.parametrize(("path", "request_cls", "response_cls"), RPCS, ids=RPC_IDS)
def test_piped_shaped_requests(target, path, request_cls, response_cls) -> None:  # type: ignore[no-untyped-def]
    plugin, channel, app_dir = target
    rpc = path.rsplit("/", 1)[1]
    before = stage_results(plugin)

    @FUZZ_SETTINGS
    @given(message=piped_shaped(rpc, app_dir))
    def run(message: t.Any) -> None:
        check_answer(channel, path, response_cls, message.SerializeToString())

    run()
    if rpc == "ExecuteStage":  # the piped-shaped inputs reached the stage handlers: both outcomes were seen
        after = stage_results(plugin)
        assert all(after.get(status, 0) > before.get(status, 0) for status in ("STAGE_SUCCESS", "STAGE_FAILURE")), (before, after)


def metrics(plugin: t.Any) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{plugin.admin_port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def stage_results(plugin: t.Any) -> dict[str, float]:
    """pipeplug_stage_results_total by status, summed over stages."""
    found: dict[str, float] = {}
    for line in metrics(plugin).splitlines():
        if line.startswith("pipeplug_stage_results_total{"):
            status = line.split('status="')[1].split('"')[0] if 'status="' in line else line.split('"')[1]
            found[status] = found.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def test_unknown_methods_get_unimplemented(target) -> None:  # type: ignore[no-untyped-def]
    _, channel, _ = target
    with pytest.raises(grpc.RpcError) as unknown:
        channel.unary_unary("/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/NoSuchMethod")(b"", timeout=CALL_TIMEOUT)
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_still_serving_after_the_fuzz(target) -> None:  # type: ignore[no-untyped-def]
    plugin, channel, _ = target
    stub = deploy_grpc.DeploymentServiceStub(channel)
    stages = stub.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=CALL_TIMEOUT)
    assert "WAIT" in stages.stages
    with pytest.raises(grpc.RpcError) as refused:  # no input: refused, not crashed
        stub.ExecuteStage(deploy_pb.ExecuteStageRequest(), timeout=CALL_TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert plugin.returncode is None
    body = metrics(plugin)
    codes = {line.split('code="')[1].split('"')[0] for line in body.splitlines() if line.startswith("pipeplug_rpc_requests_total{")}
    assert {"OK", "INVALID_ARGUMENT"} <= codes, body
    report = os.environ.get("PIPEPLUG_FUZZ_REPORT")
    if report:  # bench/run.py reads the answer counts from here
        with open(report, "w") as f:
            f.write("\n".join(line for line in body.splitlines() if line.startswith(("pipeplug_rpc_requests_total{", "pipeplug_stage_results_total{"))))
