"""Our generated descriptors must match PipeCD's v1alpha1 plugin API on the wire.

The expected values live in tests/upstream_wire_facts.py, written by hand from upstream.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

import pipeplug._gen as gen_pkg


def _load_facts():
    # Loaded by path so this works whether or not tests/ is a package.
    path = Path(__file__).resolve().with_name("upstream_wire_facts.py")
    spec = importlib.util.spec_from_file_location("_pipeplug_upstream_wire_facts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_facts = _load_facts()
DEPRECATED, ENUMS, MESSAGES = _facts.DEPRECATED, _facts.ENUMS, _facts.MESSAGES
RESERVED, SERVICES, SYNTAX = _facts.RESERVED, _facts.SERVICES, _facts.SYNTAX

FDP = descriptor_pb2.FieldDescriptorProto


def _load_files() -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for info in sorted(pkgutil.walk_packages(gen_pkg.__path__, gen_pkg.__name__ + "."), key=lambda i: i.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(info.name)
            fdp = descriptor_pb2.FileDescriptorProto()
            module.DESCRIPTOR.CopyToProto(fdp)
            files.append(fdp)
    return files


FILES = _load_files()
OUR_MESSAGES: dict[str, descriptor_pb2.DescriptorProto] = {}
MAP_ENTRIES: dict[str, descriptor_pb2.DescriptorProto] = {}
OUR_ENUMS: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
OUR_SERVICES: dict[str, descriptor_pb2.ServiceDescriptorProto] = {}


def _collect(prefix: str, messages, enums) -> None:
    for enum in enums:
        OUR_ENUMS[f"{prefix}.{enum.name}"] = enum
    for msg in messages:
        full = f"{prefix}.{msg.name}"
        (MAP_ENTRIES if msg.options.map_entry else OUR_MESSAGES)[full] = msg
        _collect(full, msg.nested_type, msg.enum_type)


for _f in FILES:
    _collect(_f.package, _f.message_type, _f.enum_type)
    for _svc in _f.service:
        OUR_SERVICES[f"{_f.package}.{_svc.name}"] = _svc


def _scalar_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        return field.type_name.lstrip(".")
    return FDP.Type.Name(field.type)[len("TYPE_"):].lower()


def _describe(field: descriptor_pb2.FieldDescriptorProto) -> tuple:
    """Render one of our fields in the (name, number, type, label, type_name) form of the facts."""
    if field.type == FDP.TYPE_MESSAGE and field.type_name.lstrip(".") in MAP_ENTRIES:
        entry = MAP_ENTRIES[field.type_name.lstrip(".")]
        key, value = sorted(entry.field, key=lambda f: f.number)
        return (field.name, field.number, "map", "map", f"{_scalar_name(key)} -> {_scalar_name(value)}")
    if field.label == FDP.LABEL_REPEATED:
        label = "repeated"
    elif field.proto3_optional:
        label = "optional"
    else:
        label = "singular"
    if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
        kind = "message" if field.type == FDP.TYPE_MESSAGE else "enum"
        return (field.name, field.number, kind, label, field.type_name.lstrip("."))
    return (field.name, field.number, _scalar_name(field), label, None)


def _diff(kind: str, owner: str, expected: dict, actual: dict) -> list[str]:
    errors = []
    for key in expected.keys() - actual.keys():
        errors.append(f"{owner}: missing {kind} {key!r} (upstream: {expected[key]})")
    for key in actual.keys() - expected.keys():
        errors.append(f"{owner}: extra {kind} {key!r} not in upstream ({actual[key]})")
    for key in sorted(expected.keys() & actual.keys()):
        if expected[key] != actual[key]:
            errors.append(f"{owner}.{key}: ours {actual[key]} != upstream {expected[key]}")
    return errors


def test_descriptors_loaded():
    assert FILES, "no *_pb2 modules found under pipeplug._gen"


def test_no_missing_or_extra_messages():
    assert sorted(OUR_MESSAGES.keys() - MESSAGES.keys()) == [], "messages not in upstream closure"
    assert sorted(MESSAGES.keys() - OUR_MESSAGES.keys()) == [], "upstream messages missing from our protos"


def test_no_missing_or_extra_enums():
    assert sorted(OUR_ENUMS.keys() - ENUMS.keys()) == [], "enums not in upstream closure"
    assert sorted(ENUMS.keys() - OUR_ENUMS.keys()) == [], "upstream enums missing from our protos"


def test_no_missing_or_extra_services():
    assert sorted(OUR_SERVICES.keys() - SERVICES.keys()) == [], "services not in upstream"
    assert sorted(SERVICES.keys() - OUR_SERVICES.keys()) == [], "upstream services missing"


@pytest.mark.parametrize("fdp", FILES, ids=lambda f: f.name)
def test_file_syntax(fdp):
    assert (fdp.syntax or "proto2") == SYNTAX, f"{fdp.name}: syntax {fdp.syntax!r}, upstream uses {SYNTAX}"
    assert not any("validate" in dep for dep in fdp.dependency), f"{fdp.name} imports validate"


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_fields(name):
    if name not in OUR_MESSAGES:
        pytest.fail(f"message {name} is missing from our protos")
    msg = OUR_MESSAGES[name]
    expected = {}
    for fact in MESSAGES[name]:
        assert fact[0] not in expected, f"duplicate field {fact[0]} in facts table for {name}"
        expected[fact[0]] = fact
    actual = {f.name: _describe(f) for f in msg.field}
    errors = _diff("field", name, expected, actual)

    numbers = [f.number for f in msg.field]
    if len(numbers) != len(set(numbers)):
        errors.append(f"{name}: duplicate field numbers {sorted(numbers)}")
    for field in msg.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            errors.append(f"{name}.{field.name}: in a oneof, upstream has none")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_reserved(name):
    if name not in OUR_MESSAGES:
        pytest.fail(f"message {name} is missing from our protos")
    msg = OUR_MESSAGES[name]
    ours = sorted(n for r in msg.reserved_range for n in range(r.start, r.end))  # end is exclusive
    assert ours == sorted(RESERVED.get(name, [])), f"{name}: reserved numbers {ours} != upstream {RESERVED.get(name, [])}"
    assert list(msg.reserved_name) == [], f"{name}: reserved names {list(msg.reserved_name)}, upstream has none"


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_field_options(name):
    if name not in OUR_MESSAGES:
        pytest.fail(f"message {name} is missing from our protos")
    errors = []
    want_deprecated = set(DEPRECATED.get(name, []))
    for field in OUR_MESSAGES[name].field:
        if field.options.deprecated != (field.name in want_deprecated):
            errors.append(f"{name}.{field.name}: deprecated={field.options.deprecated}, upstream differs")
        extra = [d.name for d, _ in field.options.ListFields() if d.name != "deprecated"]
        if extra:
            errors.append(f"{name}.{field.name}: unexpected field options {extra}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_values(name):
    if name not in OUR_ENUMS:
        pytest.fail(f"enum {name} is missing from our protos")
    expected = dict(ENUMS[name])
    actual = {v.name: v.number for v in OUR_ENUMS[name].value}
    errors = _diff("value", name, expected, actual)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_methods(name):
    if name not in OUR_SERVICES:
        pytest.fail(f"service {name} is missing from our protos")
    expected = {m: (i, o, False, False) for m, i, o in SERVICES[name]}
    actual = {
        m.name: (m.input_type.lstrip("."), m.output_type.lstrip("."), m.client_streaming, m.server_streaming)
        for m in OUR_SERVICES[name].method
    }
    errors = _diff("method", name, expected, actual)
    assert not errors, "\n".join(errors)


def test_grpc_paths_from_generated_stubs():
    """The stubs must call the exact /package.Service/Method paths piped serves."""
    from pipeplug._gen.piped import service_pb2_grpc
    from pipeplug._gen.plugin import deployment_pb2_grpc, livestate_pb2_grpc, planpreview_pb2_grpc

    class RecordingChannel:
        def __init__(self):
            self.paths = []

        def unary_unary(self, path, *args, **kwargs):
            self.paths.append(path)
            return object()

    stubs = {
        "grpc.plugin.deploymentapi.v1alpha1.DeploymentService": deployment_pb2_grpc.DeploymentServiceStub,
        "grpc.plugin.livestateapi.v1alpha1.LivestateService": livestate_pb2_grpc.LivestateServiceStub,
        "grpc.plugin.planpreviewapi.v1alpha1.PlanPreviewService": planpreview_pb2_grpc.PlanPreviewServiceStub,
        "grpc.piped.service.PluginService": service_pb2_grpc.PluginServiceStub,
    }
    assert sorted(stubs) == sorted(SERVICES)
    for service, stub_cls in stubs.items():
        channel = RecordingChannel()
        stub_cls(channel)
        assert sorted(channel.paths) == sorted(f"/{service}/{m}" for m, _, _ in SERVICES[service])
