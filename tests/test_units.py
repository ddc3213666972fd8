"""pipeplug.Percentage and pipeplug.Replicas: what they accept, how Replicas rounds, and both over real gRPC.

The accepted forms and the rounding are the Go SDK's (``sdk/unit``), so a
plugin ported from Go reads the same app configs and scales to the same counts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import grpc
import pytest

from pipeplug import ConfigError
from pipeplug import Percentage
from pipeplug import Replicas
from pipeplug import StageStatus
from pipeplug.converter import StrictConverter
from pipeplug.testing import PluginCallError

from .support import load_module

GO_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "units_go")

PLUGIN = '''
import typing as t

import attrs

import pipeplug


@attrs.frozen
class CanaryOptions:
    replicas: pipeplug.Replicas
    weight: pipeplug.Percentage = pipeplug.Percentage(10, True)
    baseline: t.Optional[pipeplug.Replicas] = None


app = pipeplug.App("units")


@app.stage("CANARY")
def canary(ctx: pipeplug.Context, options: CanaryOptions) -> pipeplug.StageResult:
    count = options.replicas.calculate(total=10, default=1)
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, f"{count} replicas of 10 ({options.replicas}), weight {int(options.weight)} ({options.weight})")
'''


@pytest.fixture(params=[True, False], ids=["future-annotations", "evaluated-annotations"])
def client(request, tmp_path):
    path = tmp_path / "units_plugin.py"
    path.write_text(("from __future__ import annotations\n" if request.param else "") + PLUGIN)
    with load_module(str(path)).app.test_client() as client:
        yield client


@pytest.mark.parametrize(
    ("value", "number", "suffix"),
    [(50, 50, False), ("50", 50, False), ("50%", 50, True), ("0%", 0, True), ("-5", -5, False), ("+5%", 5, True), ("007%", 7, True),
     (2**63 - 1, 2**63 - 1, False), ("-9223372036854775808", -(2**63), False)],
)  # fmt: skip
def test_percentage_reads_a_whole_number_with_or_without_the_sign(value, number, suffix):
    read = StrictConverter().structure(value, Percentage, path="with.weight")
    assert (read.number, read.has_suffix, int(read)) == (number, suffix, number)
    assert str(read) == f"{number}{'%' if suffix else ''}"  # what Go writes back


@pytest.mark.parametrize(
    ("value", "shown"),
    [(50.5, "50.5"), (50.0, "50.0"), ("50.5%", '"50.5%"'), ("%", '"%"'), ("50%%", '"50%%"'), (" 50", '" 50"'), ("1a%", '"1a%"'),
     (True, "true"), (None, "null"), ([50], "a list"), ("", '""')],
)  # fmt: skip
def test_percentage_refuses_anything_else_naming_the_field(value, shown):
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure(value, Percentage, path="with.weight")
    assert err.value.problems == [f'with.weight: expected a percentage such as "50%" or 50, got {shown}']


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "9223372036854775808", "-9223372036854775809%"])
def test_units_refuse_what_does_not_fit_in_64_bits_as_go_does(value):
    for cls in (Percentage, Replicas):
        with pytest.raises(ConfigError, match="that fits in 64 bits"):
            StrictConverter().structure(value, cls, path="with.x")


@pytest.mark.parametrize(("value", "number", "percent"), [(3, 3, False), ("3", 3, False), ("50%", 50, True), ("0", 0, False)])
def test_replicas_reads_a_count_or_a_percentage(value, number, percent):
    read = StrictConverter().structure(value, Replicas, path="with.replicas")
    assert (read.number, read.is_percentage) == (number, percent) and read == Replicas(number, percent)


def test_replicas_refuses_a_fraction_where_go_would_truncate_it():
    with pytest.raises(ConfigError) as err:
        StrictConverter().structure(2.9, Replicas, path="with.replicas")
    assert err.value.problems == ['with.replicas: expected a number of replicas such as 3, "3" or "50%", got 2.9']


@pytest.mark.parametrize(
    ("replicas", "total", "default", "expected"),
    [
        (Replicas(0), 10, 3, 3),  # zero means "use the default"
        (Replicas(0, True), 10, 5, 5),  # "0%" too
        (Replicas(7), 10, 3, 7),  # a count is itself, whatever the total
        (Replicas(50, True), 10, 3, 5),
        (Replicas(50, True), 3, 1, 2),  # 1.5 rounds up
        (Replicas(33, True), 10, 1, 4),  # 3.3 rounds up
        (Replicas(25, True), 10, 1, 3),  # 2.5 rounds up
        (Replicas(10, True), 3, 0, 1),  # any share of a non-empty total is at least one replica
        (Replicas(100, True), 7, 1, 7),
        (Replicas(1, True), 0, 4, 0),  # a share of nothing is nothing, not the default
    ],
)
def test_replicas_calculate_rounds_a_percentage_up_as_the_go_sdk_does(replicas, total, default, expected):
    assert replicas.calculate(total, default) == expected


def test_a_secret_unit_never_shows_its_value():
    import attrs

    import pipeplug

    @attrs.frozen
    class Options:
        weight: Percentage = pipeplug.secret()

    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"weight": "hunter2"}, Options, path="with")
    assert err.value.problems == ["with.weight: not a valid value (a secret: not shown)"]


def test_units_in_options_over_grpc(client):
    run = client.execute_stage("CANARY", {"replicas": "50%", "weight": 20})
    assert (run.status, run.message) == (StageStatus.SUCCESS, "5 replicas of 10 (50%), weight 20 (20)")
    run = client.execute_stage("CANARY", {"replicas": 3, "weight": None})  # null leaves the default
    assert (run.status, run.message) == (StageStatus.SUCCESS, "3 replicas of 10 (3), weight 10 (10%)")
    run = client.execute_stage("CANARY", {"replicas": "half", "weight": 1.5, "baseline": "1x"})
    assert run.status == StageStatus.FAILURE
    assert run.message == (
        'stage CANARY: with.replicas: expected a number of replicas such as 3, "3" or "50%", got "half"; '
        'with.weight: expected a percentage such as "50%" or 50, got 1.5; '
        'with.baseline: expected a number of replicas such as 3, "3" or "50%", got "1x"'
    )


def test_planning_refuses_a_bad_unit_before_any_stage_runs(client):
    with pytest.raises(PluginCallError) as err:
        client.build_pipeline_sync_stages([{"name": "CANARY", "with": {"replicas": "50%"}}, {"name": "CANARY", "with": {"replicas": "5O%"}}])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details == 'stage 1 (CANARY): with.replicas: expected a number of replicas such as 3, "3" or "50%", got "5O%"'


# -- the same answers as the Go SDK ----------------------------------------------------------------


@pytest.fixture(scope="module")
def go_units(tmp_path_factory):
    """tests/units_go built: it prints what the Go SDK's unit types make of JSON values."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain (`go`) is not on PATH; this test compares with the Go SDK's unit package")
    binary = str(tmp_path_factory.mktemp("units_go") / "units_go")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    built = subprocess.run([go, "build", "-trimpath", "-buildvcs=false", "-o", binary, "."], cwd=GO_PROGRAM, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr

    def ask(values: list[object], totals: list[int]) -> list[dict[str, object]]:
        done = subprocess.run([binary], input=json.dumps({"values": values, "totals": totals}), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return ask


def corpus() -> list[object]:
    """Whole numbers near every boundary, written every way, and near misses."""
    rng = random.Random(14)
    numbers = [0, 1, -1, 3, 7, 33, 50, 99, 100, 101, 2**31, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**19, 10**25]
    numbers += [rng.randint(-(10**6), 10**6) for _ in range(40)]
    texts = [f"{sign}{zeros}{abs(n)}{pct}" for n in numbers for sign in ("", "+", "-") for zeros in ("", "00") for pct in ("", "%")]
    noise = ["", "%", "%50", "50%%", "5 0", " 50", "50 ", "50.0", "50.5%", "1e2", "0x10", "1_000", "½", "٣", "50%\n", "abc", "--5", "+-5"]
    return [*numbers, *texts, *noise, True, False, None, [], {}, [50], {"n": 50}]


def ours(cls: type, value: object) -> str | None:
    try:
        return str(StrictConverter().structure(value, cls, path="with.x"))
    except ConfigError:
        return None


def test_units_read_json_values_as_the_go_sdk_does(go_units):
    values = corpus()
    for value, go in zip(values, go_units(values, [])):
        assert ours(Percentage, value) == (go["percentage"] if go["percentageOk"] else None), value
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            continue  # Go's Replicas reads a JSON number through a float64, which cannot hold it: 2**63 - 1 comes out negative
        assert ours(Replicas, value) == (go["replicas"] if go["replicasOk"] else None), value


def test_replicas_refuses_the_numbers_go_truncates(go_units):
    # Go's Replicas reads any JSON number and drops its fraction; an int-like field here takes integers only
    values = [2.9, 3.0, 1e3, -0.5]
    assert [(go["replicasOk"], go["replicas"]) for go in go_units(values, [])] == [(True, "2"), (True, "3"), (True, "1000"), (True, "0")]
    assert [ours(Replicas, v) for v in values] == [None, None, None, None]


def test_replicas_calculate_matches_the_go_sdk(go_units):
    rng = random.Random(5)
    values = [f"{n}%" for n in [0, 1, 10, 25, 33, 50, 66, 99, 100, 150, -10, -50]] + [0, 1, 5, -3] + [f"{rng.randint(1, 10**4)}%" for _ in range(30)]
    totals = [0, 1, 2, 3, 7, 10, 33, 100, 12345, rng.randint(1, 10**6)]
    for value, go in zip(values, go_units(values, totals)):
        replicas = StrictConverter().structure(value, Replicas, path="with.x")
        assert [replicas.calculate(total, 7) for total in totals] == go["calculated"], value


def test_a_class_reading_its_own_values_cannot_break_decoding():
    class Broken:
        @classmethod
        def __pipeplug_decode__(cls, value: object) -> Broken:
            raise KeyError(value)

    with pytest.raises(ConfigError) as err:
        StrictConverter().structure({"a": 1}, dict[str, Broken], path="with")
    assert err.value.problems == ["with.a: KeyError: 1"]
