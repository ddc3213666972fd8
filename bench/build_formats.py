"""Size and cold start of each `pipeplug build` format, side by side with the plain script.

Cold start = spawn with piped's argv until the first answered FetchDefinedStages
(what piped waits for before it starts), median of --runs runs. Each built file
runs as on a bare host: static and onefile with an empty PATH, shiv with a python3
that has nothing installed. shiv unpacks itself on its first run per HOME, so it
is measured both with a fresh HOME every run (first start on a host) and warm.

Besides the formats, two forms that are not formats, to show why static is built
as it is: the onefile with an uncompressed archive (what static wraps), and the
naive static route (staticx with its default xz over the zlib onefile).

    python bench/build_formats.py [--runs 7] [--write bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import venv
from pathlib import Path

import grpc

from pipeplug import build
from pipeplug.build import build_plugin
from pipeplug.testing import FakePiped
from pipeplug.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = {
    "example_app.py": os.path.join(ROOT, "example_app.py"),
    "stage-only (tests/apps/stage_only.py)": os.path.join(ROOT, "tests", "apps", "stage_only.py"),
}
HEADING = "## Build formats"
FETCH = "/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/FetchDefinedStages"
STARTUP_LIMIT = 60.0


class Form(t.NamedTuple):
    label: str
    size: int | None
    build_seconds: float | None
    argv_head: list[str]
    env: dict[str, str]
    fresh_home: bool  # a new HOME every run (shiv's first start on a host)


def cold_start(argv_head: list[str], env: dict[str, str], piped: str, cwd: str) -> float:
    """Seconds from spawn to the first answered FetchDefinedStages; the process is stopped by PID.

    Waits for the port with plain TCP connects, then makes the call on a fresh channel: a gRPC
    channel whose first connect is refused backs off for about a second before it tries again.
    """
    port = free_port()
    config = json.dumps({"name": "bench", "url": "file:///bench", "port": port})
    output = tempfile.TemporaryFile(dir=cwd)
    started = time.perf_counter()
    process = subprocess.Popen([*argv_head, "start", "--piped-plugin-service", piped, "--config", config], env=env, cwd=cwd, stdout=output, stderr=output)
    try:
        while True:
            if process.poll() is not None:
                output.seek(0)
                raise RuntimeError(f"{argv_head[-1]} exited with {process.returncode} before serving:\n{output.read().decode()[-3000:]}")
            if time.perf_counter() - started > STARTUP_LIMIT:
                raise RuntimeError(f"{argv_head[-1]} did not listen within {STARTUP_LIMIT}s")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                time.sleep(0.002)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            fetch = channel.unary_unary(FETCH, request_serializer=lambda _: b"", response_deserializer=lambda data: data)
            fetch(None, timeout=STARTUP_LIMIT, wait_for_ready=True)
        return time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def reference_build(app: str, out: str, *, compress: bool, naive_static: bool) -> tuple[str, float]:
    """A form that is not a format, with pipeplug's private builders: the onefile with an uncompressed
    archive (what static wraps), or the naive static route (staticx with its default xz over the
    zlib onefile; its libraries are made portable first, or staticx refuses a pyenv Python's)."""
    started = time.monotonic()
    target = build._resolve(app)
    os.makedirs(out)
    dest = Path(out) / "reference"
    with tempfile.TemporaryDirectory(prefix="pipeplug-bench-") as work_dir:
        work = Path(work_dir)
        built = build._build_onefile(target, "bench", work, dest, lambda _: None, compress=compress, portable_libraries=naive_static)
        if naive_static:
            built = build._wrap_static(built, work, dest, lambda _: None, compress=True)
        shutil.copyfile(built, dest)
    os.chmod(dest, 0o755)
    return str(dest), time.monotonic() - started


def forms_for(app: str, work: str, bare: dict[str, str], with_python: dict[str, str]) -> list[Form]:
    built = {fmt: build_plugin(app, os.path.join(work, fmt) + "/", fmt, version="bench") for fmt in ("static", "onefile", "shiv")}
    plain, plain_seconds = reference_build(app, os.path.join(work, "uncompressed"), compress=False, naive_static=False)
    naive, naive_seconds = reference_build(app, os.path.join(work, "naive"), compress=True, naive_static=True)
    forms = [
        Form("script (`python app.py`, pipeplug installed)", None, None, [sys.executable, app], dict(os.environ), False),
        Form("**static** (default: uncompressed onefile + staticx --no-compress)", built["static"].size, built["static"].seconds, [str(built["static"].path)], bare, False),
        Form("onefile (PyInstaller, zlib archive)", built["onefile"].size, built["onefile"].seconds, [str(built["onefile"].path)], bare, False),
        Form("onefile with an uncompressed archive (not a format)", os.path.getsize(plain), plain_seconds, [plain], bare, False),
        Form("naive static: staticx (xz) over the zlib onefile (not a format)", os.path.getsize(naive), naive_seconds, [naive], bare, False),
    ]
    shiv = built["shiv"]
    forms += [
        Form("shiv, first run on a host (unpacks to ~/.shiv)", shiv.size, shiv.seconds, [str(shiv.path)], with_python, True),
        Form("shiv, later runs", shiv.size, shiv.seconds, [str(shiv.path)], with_python, False),
    ]
    return forms


def measure(runs: int) -> str:
    work = tempfile.mkdtemp(prefix="pipeplug-bench-build-")
    load_before = os.getloadavg()[0]
    tables = []
    try:
        home = os.path.join(work, "home")
        empty_bin = os.path.join(work, "empty-bin")
        host = os.path.join(work, "host-python")
        os.makedirs(home)
        os.makedirs(empty_bin)
        venv.create(host, with_pip=False, symlinks=True)
        bare = {"HOME": home, "PATH": empty_bin}
        with_python = {**bare, "PATH": os.path.join(host, "bin")}
        for label, app in APPS.items():
            forms = forms_for(app, os.path.join(work, os.path.basename(app)), bare, with_python)
            times: list[list[float]] = [[] for _ in forms]
            with FakePiped() as piped:
                address = f"localhost:{piped.port}"
                for run in range(runs):  # round-robin, so a change in machine load hits every form alike
                    for form, samples in zip(forms, times):
                        env = {**form.env, "HOME": tempfile.mkdtemp(prefix=f"home{run}-", dir=work)} if form.fresh_home else form.env
                        samples.append(cold_start(form.argv_head, env, address, work))
            tables.append(_table(label, forms, [statistics.median(samples) for samples in times]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"`python bench/build_formats.py --runs {runs}`, {now}, on {platform.system()} {platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other work: load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; absolute times move "
        f"with it, compare the ratios: runs alternate between forms), Python {platform.python_version()} ({sys.executable}). Cold start: "
        f"spawn with piped's argv until the first answered FetchDefinedStages, median of {runs} runs. Ratios against the plain script "
        "and against `--format onefile`."
    )
    return "\n\n".join([HEADING, intro, *tables]) + "\n"


def _table(label: str, forms: list[Form], medians: list[float]) -> str:
    onefile = next(m for form, m in zip(forms, medians) if form.label.startswith("onefile (PyInstaller"))
    lines = [f"Plugin: {label}", "", "| form | size | build | cold start | vs script | vs onefile |", "|---|---:|---:|---:|---:|---:|"]
    for form, start in zip(forms, medians):
        size = f"{form.size / 1e6:.1f} MB" if form.size is not None else "-"
        seconds = f"{form.build_seconds:.0f} s" if form.build_seconds is not None else "-"
        lines.append(f"| {form.label} | {size} | {seconds} | {start * 1000:.0f} ms | {start / medians[0]:.2f}x | {start / onefile:.2f}x |")
    return "\n".join(lines)


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
