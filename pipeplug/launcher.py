"""Starting a plugin exactly as piped does, and stopping it by PID.

piped runs a plugin binary with ``start --piped-plugin-service localhost:<P>
--config <json>`` (the JSON is the plugin's ``spec.plugins[]`` entry), dials
the plugin's port until an RPC is answered, and stops it with SIGTERM, then
SIGKILL. ``pipeplug.testing``, ``pipeplug dev`` and the tests all start
plugins through this module, so there is one program rule, one argv, one
readiness check and one way to stop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import typing as t

import attrs
import grpc

from .loading import split_target


class LaunchError(RuntimeError):
    """A plugin could not be started or never became ready; the message is for users."""


#: Runs ``MODULE:APP`` as a built plugin binary would: ``load_app(target).main(['start', ...])``.
APP_RUNNER = "import sys\nfrom pipeplug.loading import load_app\nload_app(sys.argv[1]).main(sys.argv[2:])\n"

#: Sets PR_SET_PDEATHSIG (SIGTERM), then execs the plugin, so the plugin keeps piped's exact argv.
_DEATH_SIGNAL_SHIM = (
    "import ctypes, os, sys\n"
    "try:\n ctypes.CDLL(None, use_errno=True).prctl(1, 15)\nexcept Exception:\n pass\n"
    "if os.getppid() != int(sys.argv[1]):\n sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)

_FETCH_DEFINED_STAGES = "/grpc.plugin.deploymentapi.v1alpha1.DeploymentService/FetchDefinedStages"

#: The first call fails while the plugin is still starting, and grpc then waits about a second
#: (its default reconnect backoff) before connecting again: more than a Python plugin needs to
#: start. Reconnect after 50-100 ms instead. (``grpc.min_reconnect_backoff_ms`` is left alone:
#: it is also the least time a connection attempt gets, which a loaded machine may need.)
_POLL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 100),
)


#: ports free_port() handed out in this process
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and never one handed out before in this process.

    The kernel may give a port just closed to the next caller at once, so two calls
    in a row (a plugin's gRPC port, then its admin port) could return the same port
    before the plugin binds either.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise LaunchError("no free TCP port on 127.0.0.1 that was not handed out already (100 tries)")


@attrs.frozen
class Program:
    """How to run a target: the leading argv (piped's five arguments follow), and what names it."""

    argv: tuple[str, ...]
    #: the plugin name to use when its config gives none: the file's or module's stem
    default_name: str
    #: the ``file://`` url piped's config would carry, or "" for a module target
    url: str
    #: the plugin file, when the target is a script run directly (not through the App runner)
    script: str = ""


def resolve_program(target: str, *, python: t.Sequence[str] = ()) -> Program:
    """The program for a target, as piped would run it.

    ``file.py`` runs as a script with ``python`` (like piped running it
    through its shebang); ``file.py:app`` and ``package.module[:app]`` run the
    App through :data:`APP_RUNNER`; any other existing file must be an
    executable and runs directly. ``python`` defaults to this interpreter.
    """
    interpreter = tuple(python) or (sys.executable,)
    if os.path.isfile(target):
        full = os.path.abspath(target)
        if target.endswith(".py"):
            return Program((*interpreter, full), _stem(full), f"file://{full}", script=full)
        if not os.access(full, os.X_OK):
            raise LaunchError(f"plugin {target}: not executable; piped runs the binary directly, so `chmod +x {target}`")
        return Program((full,), _stem(full), f"file://{full}", script=full)
    module, attr = split_target(target)
    if attr and module.endswith(".py"):
        full = os.path.abspath(module)
        if not os.path.isfile(full):
            raise LaunchError(f"plugin {target}: file {module} not found")
        return Program((*interpreter, "-c", APP_RUNNER, f"{full}:{attr}"), _stem(full), f"file://{full}")
    if not attr and (target.endswith(".py") or os.sep in target):
        raise LaunchError(f"plugin {target}: file not found")
    if not all(part.isidentifier() for part in module.split(".")):
        raise LaunchError(f"plugin {target}: expected FILE.py, FILE.py:APP, package.module[:APP] or an executable")
    return Program((*interpreter, "-c", APP_RUNNER, target), module.rsplit(".", 1)[-1], "")


def piped_argv(program: t.Sequence[str], service_address: str, entry: t.Mapping[str, t.Any]) -> list[str]:
    """The program, then exactly piped's arguments; ``entry`` is sent as ``json.Marshal`` would (compact)."""
    config = json.dumps(entry, separators=(",", ":"))
    return [*program, "start", "--piped-plugin-service", service_address, "--config", config]


def spawn(
    argv: t.Sequence[str],
    *,
    output: int | t.IO[bytes],
    env: t.Mapping[str, str] | None = None,
    cwd: str | None = None,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr to ``output``, as piped shares its own with plugins.

    ``own_session`` puts the plugin in its own session (the terminal's Ctrl-C
    then reaches only its parent) and, on Linux, has it sent SIGTERM when its
    parent dies, so it cannot outlive a killed parent.
    """
    command = list(argv)
    if own_session and sys.platform.startswith("linux"):
        command = [sys.executable, "-c", _DEATH_SIGNAL_SHIM, str(os.getpid()), *command]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=own_session
        )
    except OSError as exc:
        raise LaunchError(f"cannot start {argv[0]}: {exc.strerror}") from None


class NotAnswering(LaunchError):
    """The plugin exited, or did not answer within the deadline; ``exited`` says which."""

    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited


def wait_answered(process: subprocess.Popen[bytes], address: str, timeout: float, *, credentials: grpc.ChannelCredentials | None = None) -> None:
    """Block until the plugin at ``address`` answers FetchDefinedStages, as piped waits before using it.

    Any answer counts, even an error: piped's next step reports that. Raises
    :class:`NotAnswering` when the process exits first or ``timeout`` passes
    (real piped would wait forever).
    """
    deadline = time.monotonic() + timeout
    channel = grpc.secure_channel(address, credentials, _POLL_OPTIONS) if credentials is not None else grpc.insecure_channel(address, _POLL_OPTIONS)
    with channel:
        fetch: grpc.UnaryUnaryMultiCallable[None, bytes] = channel.unary_unary(_FETCH_DEFINED_STAGES, request_serializer=lambda _: b"", response_deserializer=lambda data: data)
        while True:
            if process.poll() is not None:
                raise NotAnswering(f"exited with status {process.returncode} before serving on {address}", exited=True)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAnswering(f"(pid {process.pid}) did not answer on {address} within {timeout:.0f}s (real piped would hang here)", exited=False)
            try:
                fetch(None, timeout=min(1.0, remaining))
                return
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM by PID, then SIGKILL after ``grace`` seconds, as piped stops its plugins; the exit status."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            kill(process)
    return process.returncode


def kill(process: subprocess.Popen[bytes]) -> int | None:
    """SIGKILL by PID, as when piped's host dies; the exit status."""
    if process.poll() is None:
        _signal(process, signal.SIGKILL)
        process.wait(15)
    return process.returncode


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
