"""`mypy --strict` over the hand-written package and tests/type_check, with the config in pyproject.toml.

One mypy run serves both tests; errors are told apart by the file they are in.
Generated code (pipeplug/_gen) is read for its types and never reported (see
[tool.mypy] in pyproject.toml).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parent.parent

_ERROR = re.compile(r"^(?P<path>[^:\n]+):\d+(?::\d+)?: error: ", re.MULTILINE)
#: what tests/type_check/public_api.py's reveal_type(rollout) must print: the handler's own signature
_ROLLOUT = re.compile(
    r'tests/type_check/public_api\.py:\d+: note: Revealed type is "def \(ctx: pipeplug\.[\w.]*Context, '
    r'options: [\w.]*CanaryOptions\) -> pipeplug\.[\w.]*StageResult"'
)


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each file's error lines from one `mypy` run over pyproject's `files`: the package and tests/type_check."""
    run = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp_path_factory.mktemp("mypy-cache")),
            "--no-color-output", "--no-error-summary",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if run.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        pytest.fail(f"mypy exited {run.returncode}:\n{run.stdout}{run.stderr}")
    errors: dict[str, list[str]] = {}
    if not _ROLLOUT.search(run.stdout):  # also proves tests/type_check was checked at all
        errors["tests/type_check/public_api.py"] = [f"no note revealing rollout's signature; mypy printed:\n{run.stdout}"]
    for line in run.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.setdefault(Path(match["path"]).as_posix(), []).append(line)
    if run.returncode == 1 and not errors:
        pytest.fail(f"mypy failed without reporting an error line:\n{run.stdout}{run.stderr}")
    return errors


def test_public_api_types_as_a_user_sees_them(mypy_errors: dict[str, list[str]]) -> None:
    found = [line for path, lines in mypy_errors.items() if path.startswith("tests/type_check/") for line in lines]
    assert not found, "the public API's types changed:\n" + "\n".join(found)


def test_package_is_strict_clean(mypy_errors: dict[str, list[str]]) -> None:
    found = [line for path, lines in mypy_errors.items() if path.startswith("pipeplug/") for line in lines]
    assert not found, "mypy --strict errors:\n" + "\n".join(found)
