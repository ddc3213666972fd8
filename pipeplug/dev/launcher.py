"""``pipeplug dev``'s plugins: piped's config entry, and an async wrapper around :mod:`pipeplug.launcher`.

piped runs each plugin binary with ``start --piped-plugin-service
localhost:<P> --config <json>``, where the JSON is the plugin's
``spec.plugins[]`` entry, dials ``localhost:<port>`` until it answers, then
calls FetchDefinedStages. pipeplug dev does the same, but with a deadline
(real piped would wait forever) and with the plugin's output captured, so a
crash can be shown with its last lines.

Plugins run in their own session, so the terminal's Ctrl-C reaches only
``pipeplug dev`` (which then cancels like piped's UI cancel). On Linux a
parent-death signal makes sure a plugin does not outlive a killed
``pipeplug dev``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import threading
import time
import typing as t

import attrs
import grpc
import yaml

from .. import launcher
from .._gen.plugin import deployment_pb2 as deploy_pb
from .._gen.plugin import deployment_pb2_grpc as deploy_grpc
from .._gen.plugin import livestate_pb2_grpc as live_grpc
from .._gen.plugin import planpreview_pb2_grpc as preview_grpc
from ..launcher import LaunchError
from ..launcher import free_port
from ..launcher import piped_argv
from ..launcher import resolve_program
from ..launcher import spawn


@attrs.frozen
class PluginSpec:
    """One plugin to launch: how to run it, and its ``spec.plugins[]`` entry."""

    target: str
    #: the program and leading arguments; piped's argv follows
    program: tuple[str, ...]
    #: piped's ``spec.plugins[]`` entry, sent as ``--config``
    entry: t.Mapping[str, t.Any]
    #: where the entry came from, for messages
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def port(self) -> int:
        return int(self.entry["port"])

    @property
    def deploy_target_names(self) -> list[str]:
        return [str(d["name"]) for d in self.entry.get("deployTargets") or []]


def load_entry(path: str) -> dict[str, t.Any]:
    """Read a plugin config file: one ``spec.plugins[]`` entry, in YAML or JSON."""
    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise LaunchError(f"plugin config {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise LaunchError(f"plugin config {path}: not valid YAML or JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LaunchError(f"plugin config {path}: expected a mapping shaped like piped's spec.plugins[] entry (name, url, port, config, deployTargets)")
    return data


def build_spec(target: str, entry: t.Mapping[str, t.Any], source: str) -> PluginSpec:
    """Check an entry as piped would and fill what ``pipeplug dev`` may fill (name, url, port)."""
    resolved = resolve_program(target)
    program, default_name, url = resolved.argv, resolved.default_name, resolved.url
    problems, notes = [], []
    unknown = sorted(set(entry) - {"name", "url", "port", "config", "deployTargets"})
    if unknown:
        notes.append(f"{source}: piped ignores unknown field(s) {', '.join(unknown)}")
    name = entry.get("name")
    if name is None:
        name = default_name
        notes.append(f"{source}: no `name`; using {name!r} (piped requires spec.plugins[].name; it must match spec.plugins.<name> in app configs)")
    elif not isinstance(name, str) or not name:
        problems.append("name: a non-empty string is required")
    port = entry.get("port") or 0
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        problems.append(f"port: expected a port number, got {port!r}")
        port = 0
    if port == 0:
        port = free_port()
        notes.append(f"{source}: no `port`; using free port {port} (real piped needs one: with port 0 it would hang)")
    given_url = entry.get("url")
    if given_url:
        scheme = str(given_url).split(":", 1)[0] if ":" in str(given_url) else ""
        if scheme not in ("file", "https", "oci", "http"):
            notes.append(f"{source}: url {given_url!r}: real piped would reject this: only file://, https:// and oci:// urls work")
        elif scheme == "http":
            notes.append(f"{source}: url {given_url!r}: piped downloads http, but plugins built on the Go SDK refuse to start from an http url")
    targets = entry.get("deployTargets") or []
    if not isinstance(targets, list):
        problems.append("deployTargets: expected a list of {name, labels, config}")
        targets = []
    seen = set()
    for i, dt in enumerate(targets):
        if not isinstance(dt, dict) or not isinstance(dt.get("name"), str) or not dt["name"]:
            problems.append(f"deployTargets[{i}].name: a non-empty string is required")
        elif dt["name"] in seen:
            problems.append(f"deployTargets[{i}].name: {dt['name']!r} is repeated")
        else:
            seen.add(dt["name"])
    if problems:
        raise LaunchError(f"plugin config {source}:\n" + "\n".join(f"  - {p}" for p in problems))
    return PluginSpec(target=target, program=program, entry=piped_entry(name, given_url or url, port, entry), source=source, notes=tuple(notes))


def piped_entry(name: str, url: str, port: int, entry: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The entry in piped's key order, with empty ``config``/``deployTargets``/``labels`` omitted as piped omits them."""
    out: dict[str, t.Any] = {"name": name, "url": url, "port": port}
    if entry.get("config") not in (None, {}, []):
        out["config"] = entry["config"]
    targets = []
    for dt in entry.get("deployTargets") or []:
        target: dict[str, t.Any] = {"name": dt["name"]}
        if dt.get("labels"):
            target["labels"] = dt["labels"]
        target["config"] = dt.get("config")
        targets.append(target)
    if targets:
        out["deployTargets"] = targets
    return out


class PluginProcess:
    """A running plugin: its process, its captured output and its gRPC stubs."""

    def __init__(self, spec: PluginSpec, service_address: str, *, log_path: str, on_output: t.Callable[[str, str], object] | None = None) -> None:
        self.spec = spec
        self.argv = piped_argv(spec.program, service_address, spec.entry)
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.log_path = log_path
        self.on_output = on_output
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.aio.Channel | None = None
        self.deployment: t.Any = None
        self.livestate: t.Any = None
        self.planpreview: t.Any = None
        self.stages: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> None:
        try:
            self.proc = spawn(self.argv, output=subprocess.PIPE, own_session=True)
        except LaunchError as exc:
            raise LaunchError(f"plugin {self.name}: {exc}") from None
        self._reader = threading.Thread(target=self._read, name=f"plugin-{self.name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                if self.on_output is not None:
                    self.on_output(self.name, line)

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def tail_text(self, lines: int = 15) -> str:
        if self._reader is not None and self.exited() is not None:
            self._reader.join(1)  # let the last lines arrive
        shown = list(self.tail)[-lines:]
        return "\n".join(f"    | {line}" for line in shown) if shown else "    | (no output)"

    async def connect(self, timeout: float) -> None:
        """Wait until the plugin answers, like piped (but bounded), then fetch the stage list piped routes by."""
        deadline = time.monotonic() + timeout
        address = f"localhost:{self.spec.port}"
        assert self.proc is not None
        try:
            await asyncio.to_thread(launcher.wait_answered, self.proc, address, timeout)
        except launcher.NotAnswering as exc:
            if exc.exited:
                code = t.cast(int, self.exited())
                raise LaunchError(
                    f"plugin {self.name} exited with code {code} before listening on {address}. Its last output:\n{self.tail_text()}" + _hint(self.spec, code)
                ) from None
            raise LaunchError(
                f"plugin {self.name} did not listen on {address} (or never answered FetchDefinedStages there) within {timeout:g}s "
                f"(--port-timeout); real piped would wait forever here. Its last output:\n{self.tail_text()}"
            ) from None
        self.channel = grpc.aio.insecure_channel(address)
        self.deployment = deploy_grpc.DeploymentServiceStub(self.channel)
        self.livestate = live_grpc.LivestateServiceStub(self.channel)
        self.planpreview = preview_grpc.PlanPreviewServiceStub(self.channel)
        try:
            response = await self.deployment.FetchDefinedStages(deploy_pb.FetchDefinedStagesRequest(), timeout=max(1.0, deadline - time.monotonic()))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise LaunchError(f"plugin {self.name} accepted the connection but did not answer FetchDefinedStages within {timeout:g}s; real piped would hang") from None
            raise LaunchError(
                f"plugin {self.name}: FetchDefinedStages failed with {exc.code().name}: {exc.details()}. real piped would refuse to start: "
                "every plugin must serve DeploymentService.FetchDefinedStages"
            ) from None
        self.stages = list(response.stages)

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after ``grace`` seconds, as piped stops its plugins."""
        if self.channel is not None:
            await self.channel.close(grace=None)
        if self.proc is None:
            return None
        code = await asyncio.to_thread(launcher.stop, self.proc, grace)
        if self._reader is not None:
            self._reader.join(2)
        return code

    def kill_now(self) -> None:
        """Second Ctrl-C: SIGKILL by PID, no waiting."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_leftovers(processes: t.Iterable[tuple[int, str, list[str]]], log: t.Callable[[str], None]) -> list[int]:
    """SIGTERM plugin processes an earlier, killed ``pipeplug dev`` left behind (matched by PID *and* argv)."""
    stopped = []
    for pid, name, argv in processes:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                running = [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
        except OSError:
            stopped.append(pid)  # gone (or no /proc): nothing to stop
            continue
        if running[-len(argv):] != argv:
            stopped.append(pid)  # the PID was reused by something else
            continue
        log(f"stopping plugin {name} (pid {pid}) left running by an earlier pipeplug dev")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        stopped.append(pid)
    return stopped


def _hint(spec: PluginSpec, code: int) -> str:
    """Why a script may end before listening, said only when it is the likely cause.

    A script that never calls app.main() imports its handlers and ends with
    status 0. Any other status means something failed (a registration error,
    a bad config), and its output already says what.
    """
    if code == 0 and len(spec.program) == 2 and spec.program[1].endswith(".py"):
        return f"\n  hint: {spec.target} runs as a script; it must call app.main() under `if __name__ == \"__main__\":`, or pass {spec.target}:app"
    return ""
