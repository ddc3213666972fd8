"""pipeplug.launcher: the one parser of MODULE:APP, the program rule, piped's argv, readiness and stop by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeplug import launcher
from pipeplug.loading import split_target

from .support import APPS


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("plugin.py", ("plugin.py", "")),
        ("plugin.py:app", ("plugin.py", "app")),
        ("pkg.module:my_app", ("pkg.module", "my_app")),
        ("pkg.module", ("pkg.module", "")),
        ("C:\\plugins\\wait.py", ("C:\\plugins\\wait.py", "")),  # a drive colon is not an attribute
        ("plugin.py:not-a-name", ("plugin.py:not-a-name", "")),
    ],
)
def test_split_target_follows_flask(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


def test_programs_are_what_piped_would_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "wait.py"
    script.write_text("")
    binary = tmp_path / "wait"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert launcher.resolve_program(str(script)).argv == (sys.executable, str(script))
    assert launcher.resolve_program(str(binary)) == launcher.Program((str(binary),), "wait", f"file://{binary}", script=str(binary))
    by_app = launcher.resolve_program(f"{script}:app")
    assert by_app.argv == (sys.executable, "-c", launcher.APP_RUNNER, f"{script}:app") and by_app.url == f"file://{script}"
    module = launcher.resolve_program("pkg.plugin:app", python=["/opt/py"])
    assert (module.argv, module.default_name, module.url) == (("/opt/py", "-c", launcher.APP_RUNNER, "pkg.plugin:app"), "plugin", "")


def test_bad_targets_say_what_to_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    not_executable = tmp_path / "wait"
    not_executable.write_text("")
    with pytest.raises(launcher.LaunchError, match="chmod"):
        launcher.resolve_program(str(not_executable))
    with pytest.raises(launcher.LaunchError, match="not found"):
        launcher.resolve_program("missing/wait.py:app")
    with pytest.raises(launcher.LaunchError, match="expected FILE.py, FILE.py:APP"):
        launcher.resolve_program("not a module")


def test_argv_is_pipeds_with_compact_json() -> None:
    argv = launcher.piped_argv(("prog",), "localhost:9087", {"name": "p", "port": 1})
    assert argv == ["prog", "start", "--piped-plugin-service", "localhost:9087", "--config", '{"name":"p","port":1}']
    assert json.loads(argv[-1]) == {"name": "p", "port": 1}


def test_a_plugin_that_exits_is_reported_not_waited_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = launcher.free_port()
    argv = launcher.piped_argv(launcher.resolve_program(os.path.join(APPS, "loading", "broken_import.py:app")).argv, "localhost:9", {"port": port})
    proc = launcher.spawn(argv, output=subprocess.DEVNULL)
    try:
        with pytest.raises(launcher.NotAnswering, match="exited with status 1") as err:
            launcher.wait_answered(proc, f"127.0.0.1:{port}", 30)
        assert err.value.exited
    finally:
        launcher.stop(proc)


def test_stop_terminates_by_pid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = launcher.spawn([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], output=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    finally:
        code = launcher.stop(proc, grace=10)
    assert code == -15


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may give a just-closed port to the next bind: a plugin once got one port for gRPC and admin."""
    offered = iter([41001, 41001, 41001, 41002])

    class Kernel:  # a socket whose bind(port 0) gets the kernel's next offer
        def __init__(self, *args: object) -> None:
            self.port = 0

        def __enter__(self) -> Kernel:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(launcher, "_handed_out", set())
    monkeypatch.setattr(launcher.socket, "socket", Kernel)
    assert [launcher.free_port(), launcher.free_port()] == [41001, 41002]


def test_free_port_gives_ports_one_can_bind() -> None:
    import socket

    ports = [launcher.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
