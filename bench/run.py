#!/usr/bin/env python3
"""pipeplug's benchmark suite: side-by-side ratios against a raw grpc.aio servicer and the Go SDK.

    python bench/run.py            # the full run recorded in bench/RESULTS.md
    python bench/run.py --quick    # CI-sized; ends by printing one JSON object

Servers run pinned to one core and the load generator (bench/loadgen.py) to
another, where the machine has two. A (pipeplug) and B (raw) runs alternate,
and each figure is the median of its rounds. Progress goes to stderr; the
last line on stdout is the JSON object. See bench/README.md for what each key means.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

import grpc

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)

from pipeplug._gen.plugin import deployment_pb2 as deploy_pb  # noqa: E402
from pipeplug._gen.plugin import deployment_pb2_grpc as deploy_grpc  # noqa: E402
from pipeplug.launcher import free_port  # noqa: E402

PY = sys.executable
WAIT_APP = os.path.join(BENCH, "wait_app.py")
RAW = os.path.join(BENCH, "raw_servicer.py")
LOADGEN = os.path.join(BENCH, "loadgen.py")
GO_DIR = os.path.join(BENCH, "go_sdk_wait")
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
SERVER_CORE, CLIENT_CORE = (CORES[0], CORES[1]) if len(CORES) >= 2 else (None, None)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def note(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def spawn(argv: list[str], core: int | None, **kwargs: t.Any) -> subprocess.Popen[t.Any]:
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    kwargs.setdefault("cwd", ROOT)
    proc = subprocess.Popen(argv, **kwargs)
    pin(proc.pid, core)
    return proc


def pin(pid: int, core: int | None) -> None:
    """Pin a started process (every thread it has so far; later ones inherit) to ``core``.

    From outside, after the start: a ``preexec_fn`` runs between fork and exec, where a
    lock that another thread of this multithreaded process held (grpc's, malloc's) can
    deadlock the child; runs of the benchmark hung there now and then.
    """
    if core is None:
        return
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        threads = [str(pid)]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread (or the process) that is already gone
            os.sched_setaffinity(int(tid), {core})


def run_pinned(argv: list[str], core: int | None, timeout: float, **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)`` with the child pinned to ``core``; killed by PID on timeout."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as proc:
        pin(proc.pid, core)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def stop(proc: subprocess.Popen[t.Any]) -> None:
    """SIGTERM by PID, then SIGKILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def answers(address: str, timeout: float = 0.5) -> bool:
    # A private subchannel pool: grpc shares subchannels (and their reconnect backoff, 1 s
    # after a refused connection) between channels to the same address otherwise.
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            deploy_grpc.DeploymentServiceStub(channel).FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=timeout)
            return True
        except grpc.RpcError:
            return False


def wait_answers(address: str, proc: subprocess.Popen[t.Any], limit: float = 30.0) -> float:
    """Seconds until the first successful FetchDefinedStages (a fresh connection per try)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if answers(address, timeout=0.2):
            return time.perf_counter() - started
        time.sleep(0.001)
    raise RuntimeError(f"{proc.args!r} did not answer within {limit}s")


class Plugin:
    """A plugin process started with piped's argv, pinned to the server core."""

    def __init__(self, kind: str, piped: str, extra: t.Sequence[str] = ()) -> None:
        self.kind = kind
        self.port, self.admin_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        config = json.dumps({"name": "wait", "url": "file:///bench", "port": self.port})
        script = WAIT_APP if kind == "pipeplug" else RAW
        argv = [PY, script, "start", "--piped-plugin-service", piped, "--config", config, *extra]
        if kind == "pipeplug":
            argv += ["--admin-port", str(self.admin_port)]
        self.started = time.perf_counter()
        self.proc = spawn(argv, SERVER_CORE)
        self.ready_s = wait_answers(self.address, self.proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop(self.proc)


def loadgen(mode: str, *args: str) -> dict[str, t.Any]:
    out = run_pinned([PY, LOADGEN, mode, *args], CLIENT_CORE, timeout=900, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {mode} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def fake_piped() -> t.Iterator[str]:
    """FakePiped in its own process on the client core; yields its address."""
    proc = spawn([PY, os.path.join(BENCH, "fake_piped.py")], CLIENT_CORE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        stop(proc)


def median(values: t.Iterable[float]) -> float:
    return statistics.median(list(values))


def geomean(values: t.Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


# -- sections ---------------------------------------------------------------------------------


def overhead_and_throughput(size: dict[str, int]) -> dict[str, t.Any]:
    """Server CPU per trivial call and calls/s at 256 in flight: pipeplug (A) against raw (B), alternating.

    Each kind runs as ``size["replicas"]`` processes, every one measured in every
    round: identical servers differ by up to 8% in CPU per call from one process
    to the next, more than the difference being measured, so with one process per
    kind the ratio was a draw (bench/RESULTS.md, "Issue 13 part B").
    """
    cpu: dict[tuple[str, str], list[float]] = {}
    rate: dict[tuple[str, str], list[float]] = {}
    with fake_piped() as piped:
        servers = {kind: [Plugin(kind, piped) for _ in range(size["replicas"])] for kind in ("pipeplug", "raw")}
        try:
            for round_ in range(size["rounds"]):
                order = ["pipeplug", "raw"] if round_ % 2 == 0 else ["raw", "pipeplug"]
                for kind in order:
                    for server in servers[kind]:
                        for rpc in ("fetch", "execute"):
                            n = size["cpu_calls"] if rpc == "fetch" else size["cpu_calls"] // 2
                            before = cpu_seconds(server.pid)
                            result = loadgen("calls", "--addr", server.address, "--rpc", rpc, "-n", str(n), "--concurrency", "16", "--warmup", "200")
                            used = cpu_seconds(server.pid) - before
                            if result["errors"]:
                                raise RuntimeError(f"{kind} {rpc}: {result['errors']} errors, first: {result['first_error']}")
                            # the warm-up calls ran on the server too
                            cpu.setdefault((kind, rpc), []).append(used / (result["ok"] + 200) * 1e6)
                            result = loadgen("calls", "--addr", server.address, "--rpc", rpc, "-n", str(size["tp_calls"]), "--concurrency", "256", "--warmup", "50")
                            if result["errors"]:
                                raise RuntimeError(f"{kind} {rpc} at 256: {result['errors']} errors, first: {result['first_error']}")
                            rate.setdefault((kind, rpc), []).append(result["calls_per_s"])
                note(f"round {round_ + 1}/{size['rounds']}: " + ", ".join(f"{k[0]} {k[1]} {median(v[-size['replicas']:]):.0f}us" for k, v in cpu.items()))
        finally:
            for replicas in servers.values():
                for server in replicas:
                    server.stop()
    cpu_us = {f"{kind}_{rpc}": median(v) for (kind, rpc), v in cpu.items()}
    calls_per_s = {f"{kind}_{rpc}": median(v) for (kind, rpc), v in rate.items()}
    cpu_ratios = {rpc: cpu_us[f"pipeplug_{rpc}"] / cpu_us[f"raw_{rpc}"] for rpc in ("fetch", "execute")}
    tp_ratios = {rpc: calls_per_s[f"pipeplug_{rpc}"] / calls_per_s[f"raw_{rpc}"] for rpc in ("fetch", "execute")}
    return {
        "overhead_cpu_ratio": geomean(list(cpu_ratios.values())),
        "throughput_ratio_256": geomean(list(tp_ratios.values())),
        "details": {"server_cpu_us_per_call": cpu_us, "cpu_ratio_by_rpc": cpu_ratios, "calls_per_s_at_256": calls_per_s, "throughput_ratio_by_rpc": tp_ratios},
    }


def held_burst(n: int, probes: int) -> dict[str, t.Any]:
    with fake_piped() as piped:
        server = Plugin("pipeplug", piped)
        try:
            result = loadgen(
                "held", "--addr", server.address, "-n", str(n), "--admin", f"http://127.0.0.1:{server.admin_port}",
                "--server-pid", str(server.pid), "--probes", str(probes), "--timeout", "300",
            )  # fmt: skip
        finally:
            server.stop()
    note(f"held {result['held_ok']}/{n}, all in flight after {result['seconds_to_all_in_flight']:.1f}s, probe p99 {result['probe_p99_ms']:.2f}ms")
    return result


def cancel_soak(rounds: int, wave: int) -> dict[str, t.Any]:
    """Many calls cancelled by the client while held (grpc/grpc#43360): RSS must stay flat."""
    with fake_piped() as piped:
        server = Plugin("pipeplug", piped)
        try:
            result = loadgen("cancel-soak", "--addr", server.address, "--rounds", str(rounds), "--concurrency", str(wave), "--server-pid", str(server.pid))
        finally:
            server.stop()
    note(f"cancel soak: {result['cancelled']} cancels, RSS {result['rss_after_warmup_kb']} -> {result['rss_end_kb']} kB")
    return result


def compile_bytecode() -> None:
    """Write pipeplug's .pyc files first, as installing it (or ``pipeplug build``) does.

    Otherwise, with PYTHONDONTWRITEBYTECODE set, every start would compile pipeplug from source.
    """
    compileall.compile_dir(os.path.join(ROOT, "pipeplug"), quiet=2)


def cold_start(runs: int) -> dict[str, t.Any]:
    """Spawn to first successful FetchDefinedStages: pipeplug against the raw servicer, both with piped's argv.

    piped passes no ``--admin-port``, so neither does ``cold_start_ms``; the other sections
    serve /metrics, and ``details.cold_start_admin_ms`` is that start (admin server and
    prometheus-client) measured in the same rounds. Kinds rotate from run to run.
    """
    compile_bytecode()
    kinds = ["pipeplug", "raw", "pipeplug_admin"]
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with fake_piped() as piped:
        for i in range(runs):
            for kind in kinds[i % 3 :] + kinds[: i % 3]:
                port = free_port()
                config = json.dumps({"name": "wait", "url": "file:///bench", "port": port})
                argv = [PY, RAW if kind == "raw" else WAIT_APP, "start", "--piped-plugin-service", piped, "--config", config]
                if kind == "pipeplug_admin":
                    argv += ["--admin-port", "0"]
                proc = spawn(argv, SERVER_CORE)
                try:
                    times[kind].append(wait_answers(f"127.0.0.1:{port}", proc) * 1000)
                finally:
                    stop(proc)
    pipeplug_ms, raw_ms, admin_ms = (median(times[kind]) for kind in kinds)
    note(f"cold start: pipeplug {pipeplug_ms:.0f}ms, raw {raw_ms:.0f}ms (pipeplug with --admin-port {admin_ms:.0f}ms)")
    return {
        "cold_start_ms": pipeplug_ms,
        "cold_start_ratio": pipeplug_ms / raw_ms,
        "raw_cold_start_ms": raw_ms,
        "details": {"cold_start_admin_ms": admin_ms, "cold_start_samples_ms": times},
    }


#: Loaded before the clock starts: what the raw servicer needs too (grpc, grpc.aio, protobuf) and the
#: generated code for every proto a pipeplug plugin server loads (the raw servicer needs generated code as well).
IMPORT_BASELINE = (
    "grpc", "grpc.aio", "google.protobuf.message",
    "pipeplug._gen.plugin.deployment_pb2_grpc", "pipeplug._gen.piped.service_pb2_grpc",
    "pipeplug._gen.model.command_pb2", "pipeplug._gen.model.logblock_pb2",
)  # fmt: skip

#: Timed: what a plugin (bench/wait_app.py) loads from pipeplug before it answers piped. ``App``, then
#: ``main()`` loads pipeplug.start (piped's argv needs no click), which loads the server; the
#: server's start() loads the health service.
#: import_time() checks this list against a real start and reports what it missed.
IMPORT_MARK = "-- timed imports --"
IMPORT_PROBE = f"""
import time
import {", ".join(IMPORT_BASELINE)}
import sys
print("{IMPORT_MARK}", file=sys.stderr, flush=True)  # for -X importtime: the timed imports follow
started = time.perf_counter()
import pipeplug
pipeplug.App
import pipeplug.start
import grpc_health.v1.health
print((time.perf_counter() - started) * 1000)
"""


def _imported(trace: str) -> list[str]:
    """Module names from a ``-X importtime`` trace, in import order."""
    return [line.split("|")[2].strip() for line in trace.splitlines() if line.startswith("import time:") and line.split("|")[1].strip().isdigit()]


def _start_trace(kind: str) -> list[str]:
    """Modules a plugin process loads from spawn to its first answered FetchDefinedStages."""
    port = free_port()
    config = json.dumps({"name": "wait", "url": "file:///bench", "port": port})
    script = WAIT_APP if kind == "pipeplug" else RAW
    with tempfile.TemporaryFile("w+") as err:
        # piped's address is never dialled before a stage runs
        proc = spawn([PY, "-X", "importtime", script, "start", "--piped-plugin-service", "127.0.0.1:1", "--config", config], SERVER_CORE, stderr=err)
        try:
            wait_answers(f"127.0.0.1:{port}", proc)
        finally:
            stop(proc)
        err.seek(0)
        return _imported(err.read())


def import_time(runs: int) -> dict[str, t.Any]:
    """What pipeplug adds to a plugin's imports beyond grpc, protobuf and the generated code.

    A fresh interpreter first loads IMPORT_BASELINE; then the clock runs while
    IMPORT_PROBE loads what a plugin loads from pipeplug to start (bytecode
    compiled, as installed). ``details.import_probe_missed`` lists modules a real
    start of bench/wait_app.py loads that neither the probe, the raw servicer nor
    wait_app's own ``import attrs`` (its options classes) load: it should be empty.
    """
    compile_bytecode()
    samples = [float(subprocess.run([PY, "-c", IMPORT_PROBE], capture_output=True, text=True, cwd=ROOT, check=True).stdout) for _ in range(runs)]
    trace = subprocess.run([PY, "-X", "importtime", "-c", IMPORT_PROBE], capture_output=True, text=True, cwd=ROOT, check=True).stderr
    lines = trace.splitlines()
    timed = [line for line in lines[lines.index(IMPORT_MARK) :] if line.startswith("import time:") and line.split("|")[0].split(":")[1].strip().isdigit()]
    heaviest = sorted(((int(line.split("|")[0].split(":")[1]), line.split("|")[2].strip()) for line in timed), reverse=True)[:8]
    attrs_trace = subprocess.run([PY, "-X", "importtime", "-c", "import attrs"], capture_output=True, text=True, check=True).stderr
    covered = set(_imported(trace)) | set(_start_trace("raw")) | set(_imported(attrs_trace))
    missed = [name for name in _start_trace("pipeplug") if name not in covered]
    note(f"import: {median(samples):.1f}ms" + (f"; the probe missed {missed}" if missed else ""))
    return {
        "import_ms": median(samples),
        "details": {
            "import_samples_ms": samples,
            "heaviest_imports_self_us": {name: us for us, name in heaviest},
            "import_probe_missed": missed,
        },
    }


@contextlib.contextmanager
def on_client_core() -> t.Iterator[None]:
    """Move this process's threads to the client core for a while (threads started meanwhile follow).

    For the sections that run FakePiped in this process: its threads must not take the
    plugin's core, or they would be measured as the plugin's stalls.
    """
    if CLIENT_CORE is None:
        yield
        return
    before = os.sched_getaffinity(0)
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread may have ended meanwhile
            os.sched_setaffinity(int(tid), {CLIENT_CORE})
    try:
        yield
    finally:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), before)


def log_throughput(lines: int) -> dict[str, t.Any]:
    """One stage writes ``lines`` stage log lines to a FakePiped; all must arrive, no write may stall."""
    from pipeplug.testing import FakePiped

    from bench.loadgen import execute_request

    with on_client_core(), FakePiped() as fake:
        server = Plugin("pipeplug", fake.address)
        try:
            with grpc.insecure_channel(server.address) as channel:
                request = execute_request("log-stage", {"lines": lines}, name="LOGS")
                started = time.perf_counter()
                response = deploy_grpc.DeploymentServiceStub(channel).ExecuteStage(request, timeout=600)
                seconds = time.perf_counter() - started
            stats = json.loads(response.message)
            # count the benchmark's own lines: pipeplug adds the stage's result message as a line too
            delivered = sum(1 for _, text in fake.log_lines("bench-deployment", "log-stage") if text.endswith(" of the log benchmark"))
            completed = fake.log_completed("bench-deployment", "log-stage")
            violations = list(fake.violations)
        finally:
            server.stop()
    note(f"logs: {delivered}/{lines} delivered in {seconds:.1f}s, slowest write {stats['max_stall_ms']:.3f}ms (most CPU in one write {stats['max_write_cpu_ms']:.3f}ms)")
    return {
        "log_lines_sent": stats["sent"],
        "log_lines_delivered": delivered,
        "log_max_stall_ms": stats["max_stall_ms"],
        "details": {
            "log_seconds": seconds,
            "log_completed": completed,
            "log_write_p999_ms": stats["p999_ms"],
            "log_writes_over_1ms": stats["writes_over_1ms"],
            "log_max_write_cpu_ms": stats["max_write_cpu_ms"],
            "fake_piped_violations": violations[:5],
        },
    }


def fuzz(examples: int) -> dict[str, t.Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        env = {**os.environ, "PIPEPLUG_FUZZ_EXAMPLES": str(examples), "PIPEPLUG_FUZZ_RANDOM": "1", "PIPEPLUG_FUZZ_REPORT": report.name}
        started = time.perf_counter()
        out = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"], capture_output=True, text=True, cwd=ROOT, env=env)
        counts: dict[str, int] = {}
        for line in report.read().splitlines():
            if line.startswith("pipeplug_rpc_requests_total{"):
                code = line.split('code="')[1].split('"')[0]
                counts[code] = counts.get(code, 0) + int(float(line.rsplit(" ", 1)[1]))
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]
    note(f"fuzz: {sum(counts.values())} requests answered, pytest: {summary}")
    return {"fuzz_requests": sum(counts.values()), "fuzz_answers_by_code": counts, "fuzz_passed": out.returncode == 0, "fuzz_pytest": summary, "fuzz_seconds": time.perf_counter() - started}


def go_anchor(quick: bool) -> dict[str, t.Any]:
    """The same WAIT plugin on the official Go SDK: cold start, idle RSS, latency of trivial calls, side by side."""
    build = subprocess.run(["bash", os.path.join(GO_DIR, "build.sh")], capture_output=True, text=True)
    if build.returncode == 3:
        note(f"Go SDK anchor skipped: {build.stderr.strip()}")
        return {"go_anchor": f"skipped: {build.stderr.strip()}"}
    if build.returncode != 0:
        note(f"Go SDK anchor skipped: build failed: {build.stderr[-500:]}")
        return {"go_anchor": f"skipped: build failed: {build.stderr[-300:]}"}
    go_plugin = os.path.join(GO_DIR, "bin", "go_sdk_wait")
    client = os.path.join(GO_DIR, "bin", "go_sdk_wait_client")

    def run_client(*args: str) -> dict[str, t.Any]:
        out = run_pinned([client, *args], CLIENT_CORE, timeout=600)
        lines = out.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"go client {args}: {out.stderr[-500:]}")
        return json.loads(lines[-1])

    result: dict[str, t.Any] = {}
    runs = "3" if quick else "7"
    for name, binary in (("go_sdk", go_plugin), ("pipeplug", WAIT_APP)):
        # this interpreter, not the script's shebang: it may be a venv that is not activated
        interpreter = [] if name == "go_sdk" else ["-interpreter", PY]
        cold = run_client("-rpc", "coldstart", "-bin", binary, *interpreter, "-runs", runs, "-idle", "2s")
        result[name] = {"cold_start_ms": cold["cold_start_p50_ms"], "idle_rss_kb": cold["idle_rss_kb_p50"]}
    piped_proc = spawn([client, "-rpc", "fake-piped", "-listen", "127.0.0.1:0"], CLIENT_CORE, stdout=subprocess.PIPE, text=True)
    try:
        piped = json.loads(piped_proc.stdout.readline())["fake_piped"]  # type: ignore[union-attr]
        for name in ("go_sdk", "pipeplug"):
            port = free_port()
            config = json.dumps({"name": "wait", "url": "file:///bench", "port": port})
            binary = [go_plugin] if name == "go_sdk" else [PY, WAIT_APP]
            server = spawn([*binary, "start", "--piped-plugin-service", piped, "--config", config], SERVER_CORE)
            try:
                wait_answers(f"127.0.0.1:{port}", server)
                fetch = run_client("-addr", f"127.0.0.1:{port}", "-rpc", "fetch", "-n", "1000" if quick else "5000", "-concurrency", "1")
                # The Go SDK holds every ExecuteStage until its log persister's 5s tick, so
                # measure immediate stages with 50 callers and a time bound.
                execute = run_client(
                    "-addr", f"127.0.0.1:{port}", "-rpc", "execute", "-wait", "0s", "-n", "200" if quick else "1000",
                    "-concurrency", "50", "-max-time", "30s" if quick else "60s",
                )  # fmt: skip
                # One caller: the latency of a lone immediate stage (few calls: the Go SDK takes ~5s each).
                single = run_client("-addr", f"127.0.0.1:{port}", "-rpc", "execute", "-wait", "0s", "-n", "4", "-concurrency", "1", "-max-time", "25s")
            finally:
                stop(server)
            result[name].update(
                {
                    "fetch_p50_ms": fetch["p50_ms"],
                    "fetch_p99_ms": fetch["p99_ms"],
                    "execute_p50_ms": execute["p50_ms"],
                    "execute_p99_ms": execute["p99_ms"],
                    "execute_ok": execute["ok"],
                    "execute_errors": execute["errors"],
                    "execute_single_caller_p50_ms": single["p50_ms"],
                }
            )
            note(f"go anchor {name}: {result[name]}")
    finally:
        stop(piped_proc)
    return {"go_anchor": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (about 1.5 minutes)")
    parser.add_argument("--no-go", action="store_true", help="skip the Go SDK anchor")
    parser.add_argument("--no-fuzz", action="store_true", help="skip the 100,000-request fuzz run (full run only)")
    parser.add_argument("--out", help="also write the JSON object to this file")
    args = parser.parse_args()
    quick = args.quick
    size = (
        {"replicas": 3, "rounds": 2, "cpu_calls": 1000, "tp_calls": 1000, "held": 2000, "probes": 300, "cold": 3, "imports": 3, "soak_rounds": 6, "soak_wave": 200, "log_lines": 20_000}
        if quick
        else {"replicas": 3, "rounds": 5, "cpu_calls": 8000, "tp_calls": 4000, "held": 10000, "probes": 2000, "cold": 11, "imports": 11, "soak_rounds": 50, "soak_wave": 500, "log_lines": 100_000}
    )
    note(f"{'quick' if quick else 'full'} run; server core {SERVER_CORE}, load generator core {CLIENT_CORE}")
    started = time.perf_counter()
    results: dict[str, t.Any] = {"mode": "quick" if quick else "full"}
    details: dict[str, t.Any] = {}

    def merge(section: dict[str, t.Any]) -> None:
        details.update(section.pop("details", {}))
        results.update(section)

    merge(overhead_and_throughput(size))
    held = held_burst(size["held"], size["probes"])
    results.update({k: held[k] for k in ("held_ok", "held_total", "probe_p99_ms", "rss_per_held_kb")})
    details["held"] = held
    merge(cold_start(size["cold"]))
    merge(import_time(size["imports"]))
    merge(log_throughput(size["log_lines"]))
    details["cancel_soak"] = cancel_soak(size["soak_rounds"], size["soak_wave"])
    if not quick and not args.no_fuzz:
        # Hypothesis stops early where a strategy has few distinct values (FetchDefinedStages, BuildQuickSyncStages),
        # so 4,200 per test gave 84,009 requests; 5,200 per test gives more than 100,000.
        details["fuzz"] = fuzz(examples=5200)
    if not args.no_go and not quick:
        details.update(go_anchor(quick))
    results["details"] = details
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(results, sort_keys=False)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
