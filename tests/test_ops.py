"""Operations: TLS, the gRPC health and reflection services, the admin HTTP server, logs and secrets."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import time
import urllib.error
import urllib.request

import attrs
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

import pipeplug
from pipeplug import logconfig
from pipeplug._gen.model import deployment_pb2 as model_pb
from pipeplug._gen.plugin import deployment_pb2 as deploy_pb
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc
from pipeplug.testing import FakePiped
from pipeplug.testing import PluginProcess
from pipeplug.testing import free_port
from tests.runtime_support import RUNTIME_APP
from tests.runtime_support import execute_request

DEPLOYMENT_SERVICE = "grpc.plugin.deploymentapi.v1alpha1.DeploymentService"
SECRET = "s3cr3t-token-0123456789"


@pytest.fixture(scope="module")
def piped():  # type: ignore[no-untyped-def]
    with FakePiped() as fake:
        yield fake


@pytest.fixture
def start_plugin(piped):  # type: ignore[no-untyped-def]
    started: list[PluginProcess] = []

    def start(*extra: str, config: dict | None = None, ready: bool = True, credentials=None) -> PluginProcess:  # type: ignore[no-untyped-def]
        plugin = PluginProcess(RUNTIME_APP, piped_address=piped.address, name="runtime", config=config, extra_args=extra, startup_timeout=30)
        started.append(plugin)
        plugin.start(wait=False)
        return plugin.wait_ready(credentials=credentials) if ready else plugin

    yield start
    for plugin in started:
        plugin.close()


def http_get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(port: int) -> dict[str, float]:
    """/metrics as {"name{labels}": value}."""
    body = http_get(port, "/metrics")[2]
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line and not line.startswith("#")}


# -- TLS --------------------------------------------------------------------------------------


def self_signed(tmp_path) -> tuple[str, str, bytes]:  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_file), str(key_file), cert_pem


def test_tls_serves_only_tls_clients(start_plugin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert_file, key_file, cert_pem = self_signed(tmp_path)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    plugin = start_plugin("--tls", "--cert-file", cert_file, "--key-file", key_file, credentials=credentials)
    with grpc.secure_channel(plugin.address, credentials) as channel:
        stages = deploy_grpc.DeploymentServiceStub(channel).FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=5).stages
        assert "HOLD" in stages
    with grpc.insecure_channel(plugin.address) as channel:
        with pytest.raises(grpc.RpcError) as plaintext:
            deploy_grpc.DeploymentServiceStub(channel).FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=3)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "(TLS)" in plugin.stderr_text()


def test_tls_without_a_readable_key_file_fails_at_start_naming_the_flag(start_plugin, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert_file, _, _ = self_signed(tmp_path)
    plugin = start_plugin("--tls", "--cert-file", cert_file, "--key-file", str(tmp_path / "missing.pem"), ready=False)
    assert plugin.wait(20) != 0
    assert "--key-file" in plugin.stderr_text() and "missing.pem" in plugin.stderr_text()


# -- gRPC health and reflection -------------------------------------------------------------


def test_grpc_health_serving_then_not_serving_during_shutdown(start_plugin) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = start_plugin("--grace-period", "10s", "--admin-port", str(admin))
    with grpc.insecure_channel(plugin.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", DEPLOYMENT_SERVICE):
            assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        # Keep one stage in flight: shutdown stops it (STAGE_RUNNING, so that piped runs it again).
        stage = deploy_grpc.DeploymentServiceStub(channel).ExecuteStage.future(execute_request("HOLD", options={"seconds": 3}))
        deadline = time.monotonic() + 10
        while samples(admin).get("pipeplug_stages_in_flight") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        plugin.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert stage.result(timeout=10).status == model_pb.STAGE_RUNNING
    assert plugin.wait(10) == 0


def test_reflection_only_with_the_flag(start_plugin) -> None:  # type: ignore[no-untyped-def]
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    plain = start_plugin()
    with grpc.insecure_channel(plain.address) as channel:
        with pytest.raises(grpc.RpcError) as off:
            ProtoReflectionDescriptorDatabase(channel).get_services()
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    reflective = start_plugin("--enable-grpc-reflection")
    with grpc.insecure_channel(reflective.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert DEPLOYMENT_SERVICE in database.get_services()
        method = database.FindFileContainingSymbol(DEPLOYMENT_SERVICE)
        assert "ExecuteStage" in [m.name for s in method.service for m in s.method]


# -- admin HTTP server ------------------------------------------------------------------------


def test_admin_healthz_version_and_metrics(start_plugin) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = start_plugin("--admin-port", str(admin))
    assert http_get(admin, "/healthz")[0::2] == (200, "ok\n")
    status, content_type, body = http_get(admin, "/version")
    assert status == 200 and content_type == "application/json"
    assert json.loads(body)["plugin"] == "runtime" and json.loads(body)["pipeplug"] == pipeplug.__version__
    assert http_get(admin, "/nope")[0] == 404

    fetch = f'method="/{DEPLOYMENT_SERVICE}/FetchDefinedStages"'
    execute = f'method="/{DEPLOYMENT_SERVICE}/ExecuteStage"'
    before = samples(admin)  # wait_ready() made calls already
    with grpc.insecure_channel(plugin.address) as channel:
        stub = deploy_grpc.DeploymentServiceStub(channel)
        for _ in range(3):
            stub.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=5)
        assert stub.ExecuteStage(execute_request("HOLD", options={"seconds": 0}), timeout=10).status == model_pb.STAGE_SUCCESS
        with pytest.raises(grpc.RpcError):
            stub.ExecuteStage(deploy_pb.ExecuteStageRequest(), timeout=5)
    status, content_type, body = http_get(admin, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    after = samples(admin)
    lines = body.splitlines()

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew(f'pipeplug_rpc_requests_total{{code="OK",{fetch}}}') == 3
    assert grew(f'pipeplug_rpc_requests_total{{code="INVALID_ARGUMENT",{execute}}}') == 1
    assert grew(f"pipeplug_rpc_duration_seconds_count{{{fetch}}}") == 3
    assert grew(f'pipeplug_rpc_duration_seconds_bucket{{le="+Inf",{fetch}}}') == 3
    assert grew('pipeplug_stage_results_total{status="STAGE_SUCCESS"}') == 1
    assert after["pipeplug_stages_in_flight"] == 0
    assert any(line.startswith("pipeplug_stage_log_lines_sent_total ") for line in lines)
    assert any(line.startswith("pipeplug_stage_log_lines_dropped_total ") for line in lines)
    assert any(line.startswith("process_resident_memory_bytes ") for line in lines)


def test_healthz_is_unhealthy_when_piped_is_unreachable(start_plugin, piped) -> None:  # type: ignore[no-untyped-def]
    admin = free_port()
    plugin = PluginProcess(RUNTIME_APP, piped_address=f"127.0.0.1:{free_port()}", name="runtime", extra_args=("--admin-port", str(admin)), startup_timeout=30)
    plugin.start(wait=False)
    try:
        plugin.wait_ready()
        deadline = time.monotonic() + 10
        status, _, body = http_get(admin, "/healthz")
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            status, _, body = http_get(admin, "/healthz")
        assert status == 503
        assert "connection to piped" in body
    finally:
        plugin.close()


# -- logs and secrets -------------------------------------------------------------------------


def test_json_logs_carry_ids_and_never_the_secret(start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--log-encoding", "json", config={"token": SECRET, "region": "eu"})
    with grpc.insecure_channel(plugin.address) as channel:
        request = execute_request("TALK", stage_id="stage-talk", deployment_id="deploy-42")
        assert deploy_grpc.DeploymentServiceStub(channel).ExecuteStage(request, timeout=10).status == model_pb.STAGE_SUCCESS
    plugin.send_signal(signal.SIGTERM)
    assert plugin.wait(10) == 0
    output = plugin.stderr_text()
    assert SECRET not in output
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    talk = [e for e in entries if e["msg"].startswith("talking to eu")]
    assert len(talk) == 1, output
    assert talk[0]["plugin"] == "runtime"
    assert talk[0]["deployment_id"] == "deploy-42"
    assert talk[0]["stage_id"] == "stage-talk"
    assert talk[0]["stage_name"] == "TALK"
    assert talk[0]["level"] == "info"
    assert "token ***" in talk[0]["msg"] and "token='***'" in talk[0]["msg"]


def test_console_logs_never_carry_the_secret_either(start_plugin, piped) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--log-level", "debug", config={"token": SECRET})
    with grpc.insecure_channel(plugin.address) as channel:
        request = execute_request("TALK", stage_id="stage-talk-2", deployment_id="deploy-43")
        assert deploy_grpc.DeploymentServiceStub(channel).ExecuteStage(request, timeout=10).status == model_pb.STAGE_SUCCESS
    assert "[deployment_id=deploy-43 stage_id=stage-talk-2 stage_name=TALK]" in plugin.stderr_text()
    assert SECRET not in plugin.stderr_text()


def test_secret_fields_are_masked_in_repr_and_found_for_redaction() -> None:
    @attrs.frozen
    class Target:
        password: str = attrs.field(metadata={"secret": True})
        host: str = "db"

    @attrs.frozen
    class Config:
        token: str = pipeplug.secret()
        targets: list[Target] = attrs.field(factory=list)
        empty: str = pipeplug.secret(default="")

    config = Config(token="tok-abcdef", targets=[Target(password="pw-123456")])
    assert "tok-abcdef" not in repr(config) and "token='***'" in repr(config) and "empty=''" in repr(config)
    assert sorted(logconfig.secret_values(config)) == ["", "pw-123456", "tok-abcdef"]


def test_bad_log_flags_are_refused_with_the_choices(start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--log-encoding", "xml", ready=False)
    assert plugin.wait(20) == 2
    assert "--log-encoding" in plugin.stderr_text() and "json" in plugin.stderr_text()
