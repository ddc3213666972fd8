"""`bench/run.py --quick` runs end to end and prints the JSON object CI and RESULTS.md rely on.

No timing is asserted here: the numbers are for bench/RESULTS.md. What is
checked is what must hold on any machine: every figure is a finite number of
the right sign, each ratio is what its parts give, every held stage succeeds,
every log line arrives, and the import probe matches a real start.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import typing as t

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_HELD = 2000  # bench/run.py's --quick sizes
QUICK_LOG_LINES = 20_000
POSITIVE = ("overhead_cpu_ratio", "throughput_ratio_256", "probe_p99_ms", "cold_start_ms", "cold_start_ratio", "raw_cold_start_ms", "import_ms")
FINITE = ("rss_per_held_kb", "log_max_stall_ms")


@pytest.fixture(scope="module")
def bench() -> dict[str, t.Any]:
    """One quick run; in a session of its own, so that on a timeout its servers and load generator go too."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"bench/run.py --quick did not finish within 600s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    result: dict[str, t.Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def _number(result: dict[str, t.Any], key: str) -> float:
    value = result.get(key)
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), f"{key}: {value!r}, want a finite number"
    return float(value)


def test_every_figure_is_a_finite_number_of_the_right_sign(bench: dict[str, t.Any]) -> None:
    assert bench["mode"] == "quick"
    for key in POSITIVE:
        assert _number(bench, key) > 0, f"{key} = {bench[key]}"
    for key in FINITE:
        _number(bench, key)
    assert _number(bench, "log_max_stall_ms") >= 0


def test_each_ratio_is_what_its_parts_give(bench: dict[str, t.Any]) -> None:
    details = bench["details"]
    for headline, by_rpc, parts in (
        ("overhead_cpu_ratio", "cpu_ratio_by_rpc", "server_cpu_us_per_call"),
        ("throughput_ratio_256", "throughput_ratio_by_rpc", "calls_per_s_at_256"),
    ):
        ratios = details[by_rpc]
        assert set(ratios) == {"fetch", "execute"}, ratios
        for rpc, ratio in ratios.items():
            pipeplug, raw = _number(details[parts], f"pipeplug_{rpc}"), _number(details[parts], f"raw_{rpc}")
            assert pipeplug > 0 and raw > 0, details[parts]
            assert ratio == pytest.approx(pipeplug / raw), f"{by_rpc}[{rpc}]"
        assert _number(bench, headline) == pytest.approx(math.sqrt(ratios["fetch"] * ratios["execute"])), f"{headline}: the geometric mean of {ratios}"
    assert bench["cold_start_ratio"] == pytest.approx(bench["cold_start_ms"] / bench["raw_cold_start_ms"])


def test_all_held_stages_succeed_and_all_log_lines_arrive(bench: dict[str, t.Any]) -> None:
    assert bench["held_total"] == QUICK_HELD and bench["held_ok"] == QUICK_HELD
    assert bench["log_lines_sent"] == QUICK_LOG_LINES and bench["log_lines_delivered"] == QUICK_LOG_LINES
    assert bench["details"]["log_completed"] is True
    assert bench["details"]["fake_piped_violations"] == [], "the plugin broke one of piped's rules"
    assert bench["details"]["cancel_soak"]["cancelled"] > 0, bench["details"]["cancel_soak"]


def test_import_probe_loads_what_a_real_start_loads(bench: dict[str, t.Any]) -> None:
    assert bench["details"]["import_probe_missed"] == [], "import_ms leaves out modules a real start imports"
