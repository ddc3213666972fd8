"""Helpers for the `pipeplug dev` tests: run the real command as a subprocess and read its state file."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import typing as t

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "apps")
EXAMPLES = os.path.join(ROOT, "examples")
EXAMPLE_APP = os.path.join(ROOT, "example_app.py")
STAGES_APP = os.path.join(APPS, "dev_stages.py")
RAW_APP = os.path.join(APPS, "dev_raw.py")
SECRET_APP = os.path.join(APPS, "secret_app.py")

#: piped's 5 s intervals, shortened on both sides so tests stay fast
FAST_ENV = {
    "PIPEPLUG_DEV_COMMAND_INTERVAL": "0.1",
    "PIPEPLUG_COMMAND_POLL_INTERVAL": "0.1",
    "PIPEPLUG_LOG_FLUSH_INTERVAL": "0.1",
    "PYTHONUNBUFFERED": "1",
}


class Dev:
    """One test's workspace: a state file, plugin configs, and the dev processes it started."""

    def __init__(self, tmp_path: t.Any) -> None:
        self.tmp = tmp_path
        self.state = str(tmp_path / "state" / "dev.sqlite")
        self.procs: list[subprocess.Popen[str]] = []

    def plugin_config(self, name: str, **entry: t.Any) -> str:
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **entry}))
        return str(path)

    def example_config(self) -> str:
        return self.plugin_config("example", deployTargets=[{"name": "local", "config": {"path": str(self.tmp / "target")}}])

    def app_config(self, spec: dict[str, t.Any], name: str = "app.pipecd.yaml", directory: str = "app") -> str:
        app_dir = self.tmp / directory
        app_dir.mkdir(exist_ok=True)
        path = app_dir / name
        path.write_text(yaml.safe_dump({"apiVersion": "pipecd.dev/v1beta1", "kind": "Application", "spec": spec}))
        return str(path)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipeplug.cli", "dev", *args, "--state", self.state]

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, **FAST_ENV}
        proc = subprocess.Popen(self.argv(*args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 60) -> Result:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)

    run_cli = run

    def logs(self, deployment_id: str, stage_id: str) -> list[str]:
        with self.db() as db:
            rows = db.execute("SELECT log FROM stage_logs WHERE deployment_id=? AND stage_id=? ORDER BY block_index", (deployment_id, stage_id)).fetchall()
        return [r[0] for r in rows]

    def wait_for_stage(self, name: str, status: int = 1, timeout: float = 30) -> None:
        """Wait until the state file shows stage ``name`` in ``status`` (RUNNING by default)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for d in self.deployments():
                if any(s.name == name and s.status == status for s in d.stages):
                    return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"pipeplug dev exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
        raise AssertionError(f"stage {name} never reached status {status}")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.state, timeout=10)

    def deployments(self) -> list[t.Any]:
        from pipeplug._gen.model import deployment_pb2 as model_pb

        if not os.path.exists(self.state):
            return []
        with self.db() as db:
            try:
                rows = db.execute("SELECT proto FROM deployments ORDER BY created_at").fetchall()
            except sqlite3.OperationalError:
                return []
        return [model_pb.Deployment.FromString(r[0]) for r in rows]

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        with self.db() as db:
            return dict(db.execute("SELECT key, value FROM stage_metadata WHERE deployment_id=? AND stage_id=?", (deployment_id, stage_id)).fetchall())

    def plugin_pids(self) -> list[int]:
        if not os.path.exists(self.state):
            return []
        with self.db() as db:
            return [r[0] for r in db.execute("SELECT pid FROM plugin_processes").fetchall()]

    def cleanup(self) -> None:
        """Stop, by PID, every dev process this test started and every plugin they started."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        for pid in self.plugin_pids():
            if _is_plugin(pid):
                os.kill(pid, signal.SIGKILL)


def _is_plugin(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"--piped-plugin-service" in f.read()
    except OSError:
        return False


def alive(pid: int) -> bool:
    return _is_plugin(pid)


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    @property
    def record(self) -> dict[str, t.Any]:
        try:
            return json.loads(self.out)
        except ValueError:
            raise AssertionError(f"no JSON on stdout (exit {self.code}):\nstdout: {self.out}\nstderr: {self.err}") from None

    def stage(self, name: str) -> dict[str, t.Any]:
        return next(s for s in self.record["stages"] if s["name"] == name)

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.out}\nstderr: {self.err}>"
