"""PluginProcess: a plugin started as a real subprocess with piped's argv, stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

import grpc

from ..launcher import free_port
from ._loop import STARTUP_TIMEOUT


class PluginStartError(RuntimeError):
    """The plugin process died or never answered on its port."""


_LAUNCHER = "import sys; from pipeplug.loading import load_app; load_app(sys.argv.pop(1)).main(sys.argv[1:])"


class PluginProcess:
    """A plugin started as a real subprocess with piped's argv, stopped by PID.

    ``target`` is a plugin file (run as ``<python> file.py``, or with
    ``executable`` when given, e.g. the file itself for a shebang script) or a
    ``MODULE:APP`` / ``file.py:app`` target (run through a tiny ``python -c``
    launcher). After the program, argv is exactly piped's:
    ``start --piped-plugin-service <addr> --config <json>``.

    :param name: ``spec.plugins[].name``; omitted from the config when None,
        so a pipeplug app uses its own name.
    :param config: the plugin's ``config`` (omitted when None, as piped does).
    :param deploy_targets: piped's ``deployTargets`` entries ``{"name", "labels"?, "config"}``.
    """

    def __init__(
        self,
        target: str,
        *,
        piped_address: str,
        name: str | None = None,
        config: t.Any = None,
        deploy_targets: t.Sequence[t.Mapping[str, t.Any]] = (),
        port: int = 0,
        executable: str | t.Sequence[str] | None = None,
        env: t.Mapping[str, str] | None = None,
        cwd: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.target = target
        self.piped_address = piped_address
        self.name = name
        self.config = config
        self.deploy_targets = [dict(d) for d in deploy_targets]
        self.port = port or free_port()
        self.executable = [executable] if isinstance(executable, str) else list(executable or [])
        self.env = env
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._output: t.IO[bytes] | None = None
        self._kept_output = ""

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: where the plugin serves."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the plugin process is not started")
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended (negative: killed by that signal), else None."""
        return None if self.process is None else self.process.poll()

    def config_json(self) -> str:
        """The ``--config`` value, shaped like piped's ``json.Marshal`` of ``spec.plugins[]``."""
        entry: dict[str, t.Any] = {}
        if self.name is not None:
            entry["name"] = self.name
        entry["url"] = "file://" + os.path.abspath(self._file())
        entry["port"] = self.port
        if self.config is not None:
            entry["config"] = self.config
        if self.deploy_targets:
            entry["deployTargets"] = [{"config": None, **d} for d in self.deploy_targets]
        return json.dumps(entry, separators=(",", ":"))

    def _file(self) -> str:
        if os.path.isfile(self.target):
            return self.target
        head, sep, _ = self.target.rpartition(":")
        return head if sep and os.path.isfile(head) else self.target

    def argv(self) -> list[str]:
        """The full argv: the program, then piped's five arguments."""
        if os.path.isfile(self.target):
            program = self.executable or [sys.executable, self.target]
        else:
            program = [*(self.executable or [sys.executable]), "-c", _LAUNCHER, self.target]
        return [*program, "start", "--piped-plugin-service", self.piped_address, "--config", self.config_json()]

    def start(self) -> PluginProcess:
        """Start the process and wait until it answers FetchDefinedStages, as piped does."""
        if self.process is not None:
            raise RuntimeError("the plugin process is already started")
        self._output = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._output, stderr=self._output, env=env, cwd=self.cwd)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(grace=1.0)
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with grpc.insecure_channel(self.address) as channel:
            fetch = channel.unary_unary(
                "/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/FetchDefinedStages",
                request_serializer=lambda _: b"",
                response_deserializer=lambda data: data,
            )
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise PluginStartError(
                        f"plugin {self.target} exited with status {self.process.returncode} before serving on {self.address}; "
                        f"its output ends with:\n{self.stderr_text(tail=40)}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PluginStartError(
                        f"plugin {self.target} (pid {self.pid}) did not answer on {self.address} within {self.startup_timeout:.0f}s "
                        f"(real piped would hang here); its output ends with:\n{self.stderr_text(tail=40)}"
                    )
                try:
                    fetch(None, timeout=min(1.0, remaining))
                    return
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        return  # it answers, even if with an error: piped's next step reports that
                time.sleep(0.05)

    def stderr_text(self, tail: int | None = None) -> str:
        """What the plugin wrote to stdout and stderr (which piped shares with it); ``tail`` keeps the last lines."""
        if self._output is None:
            text = self._kept_output
        else:
            self._output.flush()
            self._output.seek(0)
            text = self._output.read().decode(errors="replace")
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after ``grace`` seconds, as piped does; return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STARTUP_TIMEOUT)
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL by PID, as when piped's host dies; return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait(STARTUP_TIMEOUT)
        return process.returncode

    def close(self) -> None:
        """Stop the process and release its output file."""
        self.stop()
        if self._output is not None:
            self._kept_output = self.stderr_text()
            self._output.close()
            self._output = None

    def __enter__(self) -> PluginProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "not started" if self.process is None else f"pid {self.process.pid}" + (f" exited {self.returncode}" if self.returncode is not None else "")
        return f"<PluginProcess {self.target} {self.address} {state}>"
