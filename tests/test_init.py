"""`pipeplug init`: the project it writes passes its own tests and runs under `pipeplug dev` at once.

Everything runs as a user would: the command, the project's pytest and
`pipeplug dev` are subprocesses, in a directory outside this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*argv: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def init(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("-m", "pipeplug.cli", "init", *args, cwd=str(tmp_path))


@pytest.mark.parametrize(
    ("kind", "files", "stages"),
    [
        ("stage", ["shop-greeter/shop_greeter.py", "shop-greeter/tests/test_shop_greeter.py"], ["SHOP_GREETER_GREET"]),
        ("deployment", ["shop-greeter/shop_greeter.py", "shop-greeter/dev/app/site/index.html"], ["SHOP_GREETER_SYNC"]),
    ],
)
def test_a_new_project_passes_its_tests_and_deploys_under_dev(tmp_path, kind, files, stages):
    made = init(tmp_path, "shop-greeter", "--kind", kind)
    assert made.returncode == 0, made.stderr
    for name in [*files, "shop-greeter/pyproject.toml", "shop-greeter/README.md", "shop-greeter/dev/plugin.yaml", "shop-greeter/dev/app/app.pipecd.yaml"]:
        assert (tmp_path / name).is_file(), name
    project = str(tmp_path / "shop-greeter")

    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    dev = run(
        "-m", "pipeplug.cli", "dev", "shop_greeter.py", "--app-config", "dev/app/app.pipecd.yaml", "--plugin-config", "dev/plugin.yaml",
        "--json", "--state", str(tmp_path / "dev.sqlite"), cwd=project,
    )  # fmt: skip
    assert dev.returncode == 0, dev.stdout + dev.stderr
    record = json.loads(dev.stdout)
    assert record["status"] == "SUCCESS"
    assert [s["name"] for s in record["stages"] if s["status"] == "SUCCESS"] == stages


def test_the_deployment_project_really_deploys(tmp_path):
    assert init(tmp_path, "files", "--kind", "deployment", "--dir", "proj").returncode == 0
    project = tmp_path / "proj"
    dev = run("-m", "pipeplug.cli", "dev", "files.py", "--app-config", "dev/app/app.pipecd.yaml", "--plugin-config", "dev/plugin.yaml", "--json", cwd=str(project))
    assert dev.returncode == 0, dev.stdout + dev.stderr
    assert (project / ".dev" / "target" / "index.html").read_text() == (project / "dev" / "app" / "site" / "index.html").read_text()


def test_refuses_a_directory_that_is_not_empty_unless_forced(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    refused = init(tmp_path, "busy")
    assert refused.returncode != 0 and "is not empty" in refused.stderr and "--force" in refused.stderr
    assert sorted(os.listdir(tmp_path / "busy")) == ["notes.txt"]
    forced = init(tmp_path, "busy", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "busy" / "busy.py").is_file() and (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["My_Plugin", "1plugin", "a b"])
def test_bad_names_are_refused_with_the_rule(tmp_path, name):
    refused = init(tmp_path, name)
    assert refused.returncode != 0
    assert "lower-case letters, digits and '-'" in refused.stderr and "Traceback" not in refused.stderr
    assert os.listdir(tmp_path) == []


def test_a_keyword_name_gets_a_module_name_python_can_import(tmp_path):
    assert init(tmp_path, "import").returncode == 0
    assert (tmp_path / "import" / "import_plugin.py").is_file()
