"""`bench/run.py --quick` runs end to end and prints the JSON object CI and RESULTS.md rely on.

No timing is asserted here: the numbers are for bench/RESULTS.md. Only that
every key is there and that what must be exact (all held stages succeed,
every log line arrives) is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = (
    "overhead_cpu_ratio",
    "throughput_ratio_256",
    "held_ok",
    "held_total",
    "probe_p99_ms",
    "rss_per_held_kb",
    "cold_start_ms",
    "cold_start_ratio",
    "import_ms",
    "log_lines_delivered",
    "log_lines_sent",
    "log_max_stall_ms",
)


def test_quick_benchmark_prints_one_json_object_with_every_key() -> None:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    missing = [key for key in KEYS if key not in result]
    assert not missing, f"missing keys {missing} in {result}"
    for key in KEYS:
        assert isinstance(result[key], (int, float)) and result[key] == result[key], f"{key}: {result[key]!r}"  # a number, not NaN
    assert result["held_total"] == 2000 and result["held_ok"] == 2000
    assert result["log_lines_delivered"] == result["log_lines_sent"] > 0
