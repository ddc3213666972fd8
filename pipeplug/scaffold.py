"""``pipeplug init``: a ready plugin project, tested and runnable the minute it is written.

Two kinds, as PipeCD's plugins come: ``stage`` (stages only, like WAIT) and
``deployment`` (versions, strategy, a sync and a rollback stage, live state and
plan preview, like the Kubernetes plugin). Each project has the plugin file,
pytest tests using pipeplug's fixtures, an app config and plugin config that
``pipeplug dev`` runs, a ``pyproject.toml`` and a README with the commands.
The templates are plain text with ``__NAME__``-style holes, so they read as the
files they become.
"""

from __future__ import annotations

import keyword
import os
import re
import typing as t
from pathlib import Path

import click

KINDS = ("stage", "deployment")
PLUGIN_NAME = re.compile(r"[a-z][a-z0-9-]*")


class ScaffoldError(click.ClickException):
    """The project cannot be written; the message says why and what to do."""


def init_project(name: str, kind: str, directory: str | os.PathLike[str] | None = None, *, force: bool = False) -> list[Path]:
    """Write a new plugin project named ``name`` into ``directory`` (default ``./<name>``); return the files written."""
    if not PLUGIN_NAME.fullmatch(name):
        raise ScaffoldError(f"plugin name {name!r}: use lower-case letters, digits and '-', starting with a letter (e.g. my-plugin); piped stores it as ~/.piped/plugins/<name>")
    if kind not in KINDS:
        raise ScaffoldError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    root = Path(directory if directory is not None else name).absolute()
    if root.exists() and not root.is_dir():
        raise ScaffoldError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise ScaffoldError(f"{root} is not empty; choose another --dir, or pass --force to write over the files it shares with the project")
    holes = _holes(name, root)
    written = []
    for relative, template in _files(kind, holes["__MODULE__"]).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(template, holes))
        written.append(path)
    return written


def _holes(name: str, root: Path) -> dict[str, str]:
    module = name.replace("-", "_")
    if keyword.iskeyword(module):
        module += "_plugin"
    return {
        "__NAME__": name,
        "__MODULE__": module,
        "__PREFIX__": module.upper(),
        "__TARGET_DIR__": str(root / ".dev" / "target"),
    }


def _fill(template: str, holes: t.Mapping[str, str]) -> str:
    for hole, value in holes.items():
        template = template.replace(hole, value)
    return template.lstrip("\n")


def _files(kind: str, module: str) -> dict[str, str]:
    common = {"pyproject.toml": PYPROJECT, ".gitignore": GITIGNORE}
    if kind == "stage":
        return {
            **common,
            f"{module}.py": STAGE_PLUGIN,
            f"tests/test_{module}.py": STAGE_TESTS,
            "dev/app/app.pipecd.yaml": STAGE_APP_CONFIG,
            "dev/plugin.yaml": STAGE_PLUGIN_CONFIG,
            "README.md": README.replace("__EXTRA__", ""),
        }
    return {
        **common,
        f"{module}.py": DEPLOYMENT_PLUGIN,
        f"tests/test_{module}.py": DEPLOYMENT_TESTS,
        "dev/app/app.pipecd.yaml": DEPLOYMENT_APP_CONFIG,
        "dev/app/site/index.html": "<h1>hello from __NAME__</h1>\n",
        "dev/plugin.yaml": DEPLOYMENT_PLUGIN_CONFIG,
        "README.md": README.replace("__EXTRA__", DEPLOYMENT_README),
    }


# -- templates -------------------------------------------------------------------

PYPROJECT = '''
[project]
name = "__NAME__"
version = "0.1.0"
description = "PipeCD plugin __NAME__, written with pipeplug"
requires-python = ">=3.10"
dependencies = ["pipeplug"]

[project.optional-dependencies]
test = ["pytest>=8"]  # pipeplug's pytest fixtures load with pipeplug

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
'''

GITIGNORE = """
__pycache__/
.pytest_cache/
.pipeplug/
.dev/
dist/
"""

STAGE_PLUGIN = '''
"""__NAME__: a PipeCD v1 stage plugin, written with pipeplug.

Its stage __PREFIX___GREET logs a greeting, waits, and fails when told to.
Run `python -m pytest`, `pipeplug dev` and `pipeplug build` as the README says.
"""

from __future__ import annotations

import asyncio
import datetime

import attrs

import pipeplug

__version__ = "0.1.0"

app = pipeplug.App("__NAME__")


@attrs.frozen
class GreetOptions:
    """The stage's `with:` block in the app config."""

    #: who to greet
    name: str
    #: how long to wait after greeting, e.g. "5s"
    wait: datetime.timedelta = datetime.timedelta(0)
    #: end the stage as FAILURE, to try rollbacks
    fail: bool = False


@app.stage("__PREFIX___GREET")
async def greet(ctx: pipeplug.Context, options: GreetOptions) -> pipeplug.StageResult:
    ctx.log.info("hello, %s", options.name)
    if options.wait:
        ctx.log.info("waiting %s", options.wait)
        await asyncio.sleep(options.wait.total_seconds())  # piped's cancel button cancels this
    if options.fail:
        return pipeplug.StageResult(pipeplug.StageStatus.FAILURE, f"told to fail after greeting {options.name}")
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS, f"greeted {options.name}")


if __name__ == "__main__":
    app.main()
'''

STAGE_TESTS = '''
"""Tests of __NAME__, over real gRPC with pipeplug's fixtures (a fake piped checks every rule)."""

from __future__ import annotations

import pytest

from pipeplug import StageStatus

from __MODULE__ import app


@pytest.fixture
def pipeplug_app():
    return app


def test_the_stage_is_served(pipeplug_client):
    assert pipeplug_client.fetch_defined_stages() == ["__PREFIX___GREET"]


def test_greets(pipeplug_client):
    run = pipeplug_client.execute_stage("__PREFIX___GREET", {"name": "alice", "wait": "10ms"})
    assert run.status == StageStatus.SUCCESS
    assert "hello, alice" in run.log_text and run.log_completed


def test_fails_when_told(pipeplug_client):
    run = pipeplug_client.execute_stage("__PREFIX___GREET", {"name": "bob", "fail": True})
    assert (run.status, run.message) == (StageStatus.FAILURE, "told to fail after greeting bob")


def test_bad_options_are_refused(pipeplug_client):
    run = pipeplug_client.execute_stage("__PREFIX___GREET", {"nmae": "typo"})
    assert run.status == StageStatus.FAILURE and "nmae" in run.message


def test_starts_as_piped_starts_it(plugin_process):
    plugin = plugin_process("__MODULE__.py")
    assert plugin.returncode is None and plugin.address
'''

STAGE_APP_CONFIG = """
# An application whose pipeline uses the plugin's stage; `pipeplug dev` runs it (see README.md).
apiVersion: pipecd.dev/v1beta1
kind: Application
spec:
  name: __NAME__-dev
  planner:
    alwaysUsePipeline: true   # a stage-only plugin offers no quick sync
  pipeline:
    stages:
      - name: __PREFIX___GREET
        with:
          name: world
          wait: 1s
"""

STAGE_PLUGIN_CONFIG = """
# The plugin's entry of piped's spec.plugins[]; `pipeplug dev` passes it as --config, as piped does.
name: __NAME__
port: 7001
"""

DEPLOYMENT_PLUGIN = '''
"""__NAME__: a PipeCD v1 deployment plugin, written with pipeplug.

It deploys a directory of the application (`source`, default `site`) into each
deploy target's `path`: the sync stage copies the files, the rollback stage
puts the running commit's files back, live state compares the target with git,
and plan preview shows what a deployment would change.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import attrs

import pipeplug
from pipeplug import diff

__version__ = "0.1.0"


@attrs.frozen
class Target:
    """A deploy target's `config` in piped's config."""

    #: the directory this target serves files from
    path: str


@attrs.frozen
class AppSpec:
    """The app config's `spec.plugins.__NAME__` section."""

    #: the application's directory to deploy, relative to its app.pipecd.yaml
    source: str = "site"


app = pipeplug.App("__NAME__", deploy_target_config=Target, app_spec=AppSpec)


def files_of(directory: str) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``directory`` (empty if it does not exist)."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, directory)] = hashlib.sha256(f.read()).hexdigest()
    return found


def source_of(source: pipeplug.DeploymentSource, spec: AppSpec) -> str:
    return os.path.join(source.application_directory, spec.source)


def copy_tree(ctx: pipeplug.Context, source: str, target: str) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for path in sorted(files_of(target)):
        ctx.log.info("deployed %s", path)


@app.versions
def versions(target_source: pipeplug.DeploymentSource) -> list[pipeplug.ArtifactVersion]:
    return [pipeplug.ArtifactVersion(version=target_source.commit_hash[:12], name="files", kind=pipeplug.ArtifactKind.GIT_SOURCE)]


@app.strategy
def strategy(running_source: pipeplug.DeploymentSource | None) -> pipeplug.StrategyDecision:
    if running_source is None:
        return pipeplug.StrategyDecision(pipeplug.SyncStrategy.QUICK_SYNC, "first deployment")
    return pipeplug.StrategyDecision(pipeplug.SyncStrategy.PIPELINE, "later deployments go through the pipeline")


@app.stage("__PREFIX___SYNC", quick_sync=True)
def sync(ctx: pipeplug.Context, deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource, app_spec: AppSpec) -> None:
    for target in deploy_targets:
        ctx.log.info("syncing %s into %s", target.name, target.config.path)
        copy_tree(ctx, source_of(target_source, app_spec), target.config.path)


@app.stage("__PREFIX___ROLLBACK", rollback=True)
def rollback(
    ctx: pipeplug.Context,
    deploy_targets: list[pipeplug.DeployTarget],
    running_source: pipeplug.DeploymentSource | None,
    app_spec: AppSpec,
) -> None:
    if running_source is None:
        ctx.log.info("first deployment: nothing to roll back to")
        return
    for target in deploy_targets:
        copy_tree(ctx, source_of(running_source, app_spec), target.config.path)
        ctx.log.info("%s rolled back to %s", target.name, running_source.commit_hash)


@app.livestate
def livestate(deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource, app_spec: AppSpec) -> pipeplug.Livestate:
    wanted = files_of(source_of(target_source, app_spec))
    resources, reasons = [], []
    for target in deploy_targets:
        live = files_of(target.config.path)
        resources += [pipeplug.Resource(id=f"{target.name}:{p}", name=p, resource_type="file", deploy_target=target.name) for p in sorted(live)]
        verdict = diff.sync_verdict(wanted, live)
        if verdict.sync_status is not pipeplug.SyncStatus.SYNCED:
            reasons.append(f"{target.name}: {verdict.reason}")
    if reasons:
        return pipeplug.Livestate(resources, pipeplug.SyncStatus.OUT_OF_SYNC, "files differ from git", "\\n".join(reasons))
    return pipeplug.Livestate(resources, pipeplug.SyncStatus.SYNCED)


@app.plan_preview
def plan_preview(deploy_targets: list[pipeplug.DeployTarget], target_source: pipeplug.DeploymentSource, app_spec: AppSpec) -> list[pipeplug.PlanPreview]:
    wanted = files_of(source_of(target_source, app_spec))
    previews = []
    for target in deploy_targets:
        changes = diff.diff(files_of(target.config.path), wanted)
        previews.append(pipeplug.PlanPreview(changes.summary, deploy_target=target.name, no_change=not changes, details=changes.render()))
    return previews


if __name__ == "__main__":
    app.main()
'''

DEPLOYMENT_TESTS = '''
"""Tests of __NAME__, over real gRPC with pipeplug's fixtures (a fake piped checks every rule)."""

from __future__ import annotations

import pytest

from pipeplug import StageStatus
from pipeplug import SyncStatus
from pipeplug import SyncStrategy
from pipeplug.testing import TestClient

from __MODULE__ import app


@pytest.fixture
def target_dir(tmp_path):
    return tmp_path / "target"


@pytest.fixture
def client(fake_piped, target_dir):
    with TestClient(app, piped=fake_piped, deploy_targets=[{"name": "local", "config": {"path": str(target_dir)}}]) as client:
        yield client


def make_app(root, page):
    """An application directory as piped checks it out: app.pipecd.yaml and the files to deploy."""
    (root / "site").mkdir(parents=True)
    (root / "app.pipecd.yaml").write_text("apiVersion: pipecd.dev/v1beta1\\nkind: Application\\nspec:\\n  name: demo\\n")
    (root / "site" / "index.html").write_text(page)
    return str(root)


def test_planning(client, tmp_path):
    source = make_app(tmp_path / "v1", "one")
    assert client.determine_strategy(target_source=source).strategy == SyncStrategy.QUICK_SYNC
    assert [s.name for s in client.build_quick_sync_stages(rollback=True)] == ["__PREFIX___SYNC", "__PREFIX___ROLLBACK"]


def test_sync_then_the_target_is_in_sync(client, tmp_path, target_dir):
    source = make_app(tmp_path / "v1", "one")
    before = client.get_plan_preview(target_source=source)
    assert before[0].summary == "1 added, 0 changed, 0 removed"
    run = client.execute_stage("__PREFIX___SYNC", target_source=source)
    assert run.status == StageStatus.SUCCESS and "deployed index.html" in run.log_text
    assert (target_dir / "index.html").read_text() == "one"
    assert client.get_livestate(deploy_source=source).sync_status == SyncStatus.SYNCED
    assert client.get_plan_preview(target_source=source)[0].no_change


def test_rollback_restores_the_running_commit(client, tmp_path, target_dir):
    old, new = make_app(tmp_path / "old", "old"), make_app(tmp_path / "new", "new")
    client.execute_stage("__PREFIX___SYNC", target_source=new)
    run = client.execute_stage("__PREFIX___ROLLBACK", rollback=True, target_source=new, running_source=old)
    assert run.status == StageStatus.SUCCESS
    assert (target_dir / "index.html").read_text() == "old"


def test_starts_as_piped_starts_it(plugin_process, target_dir):
    plugin = plugin_process("__MODULE__.py", deploy_targets=[{"name": "local", "config": {"path": str(target_dir)}}])
    assert plugin.returncode is None and plugin.address
'''

DEPLOYMENT_APP_CONFIG = """
# An application deployed by the plugin; `pipeplug dev` runs it (see README.md).
# The first deployment is quick-synced; later ones go through the pipeline below.
apiVersion: pipecd.dev/v1beta1
kind: Application
spec:
  name: __NAME__-dev
  pipeline:
    stages:
      - name: __PREFIX___SYNC
  plugins:
    __NAME__:
      source: site
"""

DEPLOYMENT_PLUGIN_CONFIG = """
# The plugin's entry of piped's spec.plugins[]; `pipeplug dev` passes it as --config, as piped does.
name: __NAME__
port: 7001
deployTargets:
  - name: local
    config:
      path: __TARGET_DIR__   # where the files are deployed to
"""

DEPLOYMENT_README = """
`dev/app/site/` is the application's content: change `index.html` and run `pipeplug dev` again
to see a pipeline deployment, or `pipeplug dev plan-preview ...` / `pipeplug dev livestate ...`
(same arguments) for what would change and what is live. The target directory is `.dev/target`.
"""

README = """
# __NAME__

A PipeCD v1 plugin, written with [pipeplug](https://pypi.org/project/pipeplug/).

```sh
pip install -e '.[test]'        # pipeplug and the test tools
python -m pytest                # the tests, over real gRPC against a fake piped
pipeplug dev __MODULE__.py --app-config dev/app/app.pipecd.yaml --plugin-config dev/plugin.yaml
```

`pipeplug dev` starts the plugin as piped does, plans and runs the deployment in
`dev/app/app.pipecd.yaml`, and checks everything the plugin sends against piped's rules.
__EXTRA__
## Ship it

```sh
pip install 'pipeplug[build]'
pipeplug build __MODULE__.py:app --version v0.1.0          # one file, runs in piped's own image
pipeplug push oci://registry.example.com/plugins/__NAME__:v0.1.0 dist/__NAME___v0.1.0_linux_amd64
```

Then add the printed snippet to piped's config under `spec.plugins`.
"""
