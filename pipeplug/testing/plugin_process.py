"""PluginProcess: a plugin started as a real subprocess with piped's argv, stopped by PID."""

from __future__ import annotations

import os
import subprocess
import tempfile
import typing as t

import grpc

from .. import launcher
from ..launcher import LaunchError
from ..launcher import NotAnswering
from ..launcher import Program
from ..launcher import free_port
from ..launcher import piped_argv
from ..launcher import resolve_program
from ..launcher import spawn
from ..launcher import wait_answered
from ._loop import STARTUP_TIMEOUT


class PluginStartError(LaunchError):
    """The plugin process died or never answered on its port."""


class PluginProcess:
    """A plugin started as a real subprocess with piped's argv, stopped by PID.

    ``target`` is what :func:`pipeplug.launcher.resolve_program` runs: a
    ``file.py`` (with this Python, or with ``executable``), an executable file
    (run directly, or through ``executable`` such as a wrapper), or a
    ``MODULE:APP`` / ``file.py:app`` target (run through pipeplug's App
    runner). After the program, argv is exactly piped's:
    ``start --piped-plugin-service <addr> --config <json>``.

    :param name: ``spec.plugins[].name``; omitted from the config when None,
        so a pipeplug app uses its own name.
    :param config: the plugin's ``config`` (omitted when None, as piped does).
    :param deploy_targets: piped's ``deployTargets`` entries ``{"name", "labels"?, "config"}``.
    :param extra_args: flags after piped's argv (``--admin-port``, ``--tls-cert`` ...), which
        piped itself never passes.
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
        extra_args: t.Sequence[str] = (),
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
        self.extra_args = list(extra_args)
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
        return piped_argv((), self.piped_address, self._entry())[-1]

    def _entry(self) -> dict[str, t.Any]:
        entry: dict[str, t.Any] = {}
        if self.name is not None:
            entry["name"] = self.name
        entry["url"] = self._program().url or "file://" + os.path.abspath(self.target)
        entry["port"] = self.port
        if self.config is not None:
            entry["config"] = self.config
        if self.deploy_targets:
            entry["deployTargets"] = [{"config": None, **d} for d in self.deploy_targets]
        return entry

    def _program(self) -> Program:
        if self.executable and os.path.isfile(self.target):
            full = os.path.abspath(self.target)
            return Program(tuple(self.executable), os.path.basename(full), "file://" + full, script=full)
        return resolve_program(self.target, python=self.executable)

    def argv(self) -> list[str]:
        """The full argv: the program, then piped's five arguments, then ``extra_args``."""
        return [*piped_argv(self._program().argv, self.piped_address, self._entry()), *self.extra_args]

    def start(self, *, wait: bool = True) -> PluginProcess:
        """Start the process and (unless ``wait=False``) wait until it answers, as piped does."""
        if self.process is not None:
            raise RuntimeError("the plugin process is already started")
        argv = self.argv()
        self._output = tempfile.TemporaryFile()
        try:
            self.process = spawn(argv, output=self._output, env=self.env, cwd=self.cwd)
            if wait:
                self.wait_ready()
        except BaseException:
            self.stop(grace=1.0)
            self.close()
            raise
        return self

    def wait_ready(self, *, credentials: grpc.ChannelCredentials | None = None) -> PluginProcess:
        """Wait until FetchDefinedStages is answered (over ``credentials`` for a TLS plugin).

        Raises :class:`PluginStartError` with the plugin's last output when it
        exits first or does not answer within ``startup_timeout``.
        """
        if self.process is None:
            raise RuntimeError("the plugin process is not started")
        try:
            wait_answered(self.process, self.address, self.startup_timeout, credentials=credentials)
        except NotAnswering as exc:
            raise PluginStartError(f"plugin {self.target} {exc}; its output ends with:\n{self.stderr_text(tail=40)}") from None
        return self

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the plugin by PID, if it still runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the plugin to exit on its own; its exit status."""
        if self.process is None:
            raise RuntimeError("the plugin process is not started")
        return self.process.wait(timeout)

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
        return None if self.process is None else launcher.stop(self.process, grace)

    def kill(self) -> int | None:
        """SIGKILL by PID, as when piped's host dies; return the exit status."""
        return None if self.process is None else launcher.kill(self.process)

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
