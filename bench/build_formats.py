"""Size and cold start of each `pipeplug build` format, side by side with the plain script.

Cold start = spawn with piped's argv until the first successful FetchDefinedStages
(what piped waits for before it starts), median of --runs runs. Each built file
runs as on a bare host: onefile with an empty PATH, shiv with a python3 that has
nothing installed. shiv unpacks itself on its first run per HOME, so it is
measured both with a fresh HOME every run (first start on a host) and warm.

    python bench/build_formats.py [--runs 7] [--write bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv

import grpc

from pipeplug.build import build_plugin
from pipeplug.testing import FakePiped
from pipeplug.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "example_app.py")
HEADING = "## Build formats"
FETCH = "/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/FetchDefinedStages"
STARTUP_LIMIT = 60.0


def cold_start(argv_head: list[str], env: dict[str, str], piped: str, cwd: str) -> float:
    """Seconds from spawn to the first answered FetchDefinedStages; the process is stopped by PID."""
    port = free_port()
    config = json.dumps({"name": "example", "url": "file:///bench", "port": port})
    output = tempfile.TemporaryFile(dir=cwd)
    started = time.perf_counter()
    process = subprocess.Popen([*argv_head, "start", "--piped-plugin-service", piped, "--config", config], env=env, cwd=cwd, stdout=output, stderr=output)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            fetch = channel.unary_unary(FETCH, request_serializer=lambda _: b"", response_deserializer=lambda data: data)
            while time.perf_counter() - started < STARTUP_LIMIT:
                if process.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(f"{argv_head[-1]} exited with {process.returncode} before serving:\n{output.read().decode()[-3000:]}")
                try:
                    fetch(None, timeout=1.0)
                    return time.perf_counter() - started
                except grpc.RpcError:
                    time.sleep(0.005)
            raise RuntimeError(f"{argv_head[-1]} did not serve within {STARTUP_LIMIT}s")
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def measure(runs: int) -> str:
    work = tempfile.mkdtemp(prefix="pipeplug-bench-build-")
    try:
        home = os.path.join(work, "home")
        empty_bin = os.path.join(work, "empty-bin")
        host = os.path.join(work, "host-python")
        os.makedirs(home)
        os.makedirs(empty_bin)
        venv.create(host, with_pip=False, symlinks=True)
        onefile, shiv = (build_plugin(EXAMPLE, os.path.join(work, fmt) + "/", fmt, version="bench") for fmt in ("onefile", "shiv"))
        bare = {"HOME": home, "PATH": empty_bin}
        with_python = {**bare, "PATH": os.path.join(host, "bin")}
        # (label, size, build seconds, argv head, env, fresh HOME each run)
        forms = [
            ("script (`python example_app.py`, pipeplug installed)", None, None, [sys.executable, EXAMPLE], dict(os.environ), False),
            ("onefile (PyInstaller)", onefile.size, onefile.seconds, [str(onefile.path)], bare, False),
            ("shiv, first run on a host (unpacks to ~/.shiv)", shiv.size, shiv.seconds, [str(shiv.path)], with_python, True),
            ("shiv, later runs", shiv.size, shiv.seconds, [str(shiv.path)], with_python, False),
        ]
        times: list[list[float]] = [[] for _ in forms]
        with FakePiped() as piped:
            address = f"localhost:{piped.port}"
            for run in range(runs):  # round-robin, so a change in machine load hits every form alike
                for (_, _, _, argv_head, env, fresh_home), samples in zip(forms, times):
                    run_env = {**env, "HOME": tempfile.mkdtemp(prefix=f"home{run}-", dir=work)} if fresh_home else env
                    samples.append(cold_start(argv_head, run_env, address, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = [statistics.median(samples) for samples in times]
    lines = [
        HEADING,
        "",
        f"`python bench/build_formats.py --runs {runs}` on {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end (absolute times move with it; "
        f"compare the ratios; runs alternate between forms); plugin: example_app.py. Cold start: spawn with piped's argv until the first "
        f"answered FetchDefinedStages, median of {runs} runs; ratio against the plain script.",
        "",
        "| form | size | build | cold start | vs script |",
        "|---|---:|---:|---:|---:|",
    ]
    for (label, size, seconds, *_), start in zip(forms, medians):
        size_text = f"{size / 1e6:.1f} MB" if size is not None else "-"
        build_text = f"{seconds:.0f} s" if seconds is not None else "-"
        lines.append(f"| {label} | {size_text} | {build_text} | {start * 1000:.0f} ms | {start / medians[0]:.2f}x |")
    return "\n".join(lines) + "\n"


def write_section(path: str, section: str) -> None:
    """Replace this script's section of RESULTS.md, or append it; other sections stay as they are."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(HEADING + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    with open(path, "w") as f:
        f.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", metavar="RESULTS.md", help="put the section into this file")
    args = parser.parse_args()
    section = measure(args.runs)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
