"""Instructions per call, counted by valgrind: pipeplug against the raw servicer, a figure that holds still.

Server CPU time per call differs by up to 8% between identical processes on a
shared machine (README.md), more than one change to the call path moves it, so
`run.py`'s ratios need many rounds to show a few percent. callgrind counts the
instructions a process executes in user space, the same from run to run within
about 0.3%: a change to pipeplug's call path shows here exactly. It does not
count the kernel's share (about 40% of the CPU time of a call here: the same
socket and epoll work for both servers) nor cache misses, so it complements
`run.py`'s CPU ratio rather than replacing it.

    python bench/instructions.py [--calls 2000]

Each server (bench/wait_app.py and bench/raw_servicer.py, started with piped's
argv under ``valgrind --tool=callgrind``) gets 300 warm-up calls of each RPC,
then counting is zeroed, ``--calls`` calls of one RPC are made at 16 in flight
on one connection, and the count is dumped. Needs valgrind (Debian:
``apt-get install valgrind``). Progress goes to stderr; the last line on
stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

from run import PY
from run import RAW
from run import WAIT_APP
from run import fake_piped
from run import free_port
from run import loadgen
from run import note
from run import stop
from run import wait_answers

RPCS = ("fetch", "execute")


def count(kind: str, piped: str, calls: int, workdir: str) -> dict[str, float]:
    """Instructions per call of each RPC for one server started under callgrind."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    out = os.path.join(workdir, f"{kind}.callgrind")
    config = json.dumps({"name": "wait", "url": "file:///bench", "port": port})
    argv = [PY, WAIT_APP if kind == "pipeplug" else RAW, "start", "--piped-plugin-service", piped, "--config", config]
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_answers(address, proc, limit=300.0)
        for rpc in RPCS:
            loadgen("calls", "--addr", address, "--rpc", rpc, "-n", "300", "--concurrency", "16", "--warmup", "0")
        result = {}
        for rpc in RPCS:
            subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True, timeout=60)
            answered = loadgen("calls", "--addr", address, "--rpc", rpc, "-n", str(calls), "--concurrency", "16", "--warmup", "0")
            if answered["errors"]:
                raise RuntimeError(f"{kind} {rpc}: {answered['errors']} errors, first: {answered['first_error']}")
            before = set(glob.glob(out + ".*"))
            subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True, timeout=60)
            (dump,) = set(glob.glob(out + ".*")) - before
            result[rpc] = _total(dump) / calls
            note(f"{kind} {rpc}: {result[rpc]:,.0f} instructions per call")
        return result
    finally:
        stop(proc)


def _total(dump: str) -> int:
    """The instruction count of a callgrind dump (its ``totals:`` or ``summary:`` line)."""
    with open(dump) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"{dump}: no totals line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per RPC (default 2000)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench/instructions.py needs valgrind (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as workdir, fake_piped() as piped:
        per_call = {kind: count(kind, piped, args.calls, workdir) for kind in ("pipeplug", "raw")}
    print(
        json.dumps(
            {
                "instructions_per_call": {f"{kind}_{rpc}": round(v) for kind, values in per_call.items() for rpc, v in values.items()},
                "ratio": {rpc: round(per_call["pipeplug"][rpc] / per_call["raw"][rpc], 4) for rpc in RPCS},
            }
        )
    )


if __name__ == "__main__":
    main()
