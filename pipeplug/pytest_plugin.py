"""pytest fixtures for plugin authors, loaded automatically once pipeplug is installed.

- ``fake_piped``: a started :class:`~pipeplug.testing.FakePiped`; the test fails
  at teardown if the plugin broke one of piped's rules.
- ``plugin_process``: a factory that starts a plugin file as piped does and
  stops it (by PID) at teardown.
- ``pipeplug_client``: a :class:`~pipeplug.testing.TestClient` for the app
  named by ``@pytest.mark.pipeplug_app("path/to/plugin.py:app")`` or returned by
  your own ``pipeplug_app`` fixture.
"""

from __future__ import annotations

import typing as t

import pytest

from .testing import FakePiped
from .testing import PluginProcess
from .testing import TestClient

if t.TYPE_CHECKING:
    from .app import App


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pipeplug_app(target): the App (or 'file.py:app' / 'module:app') pipeplug_client serves")


@pytest.fixture
def fake_piped() -> t.Iterator[FakePiped]:
    """A FakePiped for this test; fails the test at teardown if the plugin broke piped's rules.

    A test that provokes violations on purpose should read and clear
    ``fake_piped.violations``.
    """
    with FakePiped() as fake:
        yield fake
        fake.assert_no_violations()


@pytest.fixture
def plugin_process(fake_piped: FakePiped) -> t.Iterator[t.Callable[..., PluginProcess]]:
    """Start plugins as piped does: ``plugin_process("plugin.py", config={...})``; each is stopped at teardown.

    The plugin talks to ``fake_piped`` unless ``piped_address=`` is given; like
    piped, the address is passed as ``localhost:<port>``.
    """
    started: list[PluginProcess] = []

    def start(target: str, **options: t.Any) -> PluginProcess:
        options.setdefault("piped_address", f"localhost:{fake_piped.port}")
        process = PluginProcess(target, **options)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in reversed(started):
            process.close()


@pytest.fixture
def pipeplug_app(request: pytest.FixtureRequest) -> App:
    """The app under test: from ``@pytest.mark.pipeplug_app(...)``; override this fixture to supply it directly."""
    marker = request.node.get_closest_marker("pipeplug_app")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            "pipeplug_client needs an app: mark the test with @pytest.mark.pipeplug_app('plugin.py:app') "
            "or define a `pipeplug_app` fixture returning your App"
        )
    target = marker.args[0]
    if isinstance(target, str):
        from .loading import load_app

        return load_app(target)
    return t.cast("App", target)


@pytest.fixture
def pipeplug_client(pipeplug_app: App, fake_piped: FakePiped) -> t.Iterator[TestClient]:
    """A TestClient serving ``pipeplug_app`` in-process, wired to ``fake_piped``."""
    with TestClient(pipeplug_app, piped=fake_piped) as client:
        yield client
