"""The public value classes behave as plain frozen values: ==, hash, repr, immutability."""

from __future__ import annotations

import pickle

import attrs
import pytest

import pipeplug
from pipeplug import ArtifactVersion
from pipeplug import Deployment
from pipeplug import PlannedStage
from pipeplug import StageResult
from pipeplug import StageStatus


def test_equal_values_are_equal_and_hash_alike_and_other_classes_never_equal() -> None:
    a, b = ArtifactVersion("v1", name="api"), ArtifactVersion("v1", name="api")
    assert a == b and hash(a) == hash(b) and not (a != b)
    assert a != ArtifactVersion("v2", name="api")
    assert {a, b} == {a}
    assert StageResult(StageStatus.SUCCESS, "x") != ArtifactVersion("x")
    assert PlannedStage(name="WAIT", index=1) == PlannedStage(name="WAIT", index=1) != PlannedStage(name="WAIT", index=2)


def test_repr_shows_the_fields_and_evolve_and_pickle_keep_values() -> None:
    value = ArtifactVersion("v1.2.3", name="api", url="https://example.com/api")
    assert repr(value).startswith("ArtifactVersion(version='v1.2.3', ")
    assert attrs.evolve(value, version="v2") == ArtifactVersion("v2", name="api", url="https://example.com/api")
    assert pickle.loads(pickle.dumps(value)) == value


def test_values_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        StageResult(StageStatus.SUCCESS).message = "changed"  # type: ignore[misc]


def test_the_deployment_proto_is_neither_compared_nor_shown() -> None:
    one = Deployment(id="d1", application_id="a", application_name="n", proto=object())
    other = Deployment(id="d1", application_id="a", application_name="n", proto=object())
    assert one == other and "proto" not in repr(one)
    with pytest.raises(TypeError):
        hash(one)  # labels is a dict: unhashable, as attrs makes it
    assert pipeplug.Deployment is Deployment
