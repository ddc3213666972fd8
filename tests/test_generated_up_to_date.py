"""The committed pipeplug/_gen code must match what proto/ generates."""

from __future__ import annotations

import pytest

pytest.importorskip("grpc_tools", reason="grpcio-tools is needed to regenerate code")


def test_generated_code_is_up_to_date():
    from grpc_tools import protoc  # noqa: F401  (ensures the compiler is importable)

    from pipeplug import _gen_tool

    stale = _gen_tool.stale_files()
    if stale:
        try:
            from importlib.metadata import version

            tools = f"grpcio-tools {version('grpcio-tools')}"
        except Exception:  # pragma: no cover - metadata lookup is best effort
            tools = "grpcio-tools (unknown version)"
        pytest.fail(
            f"generated code is out of date (checked with {tools}); "
            "run `python -m pipeplug._gen_tool`. Stale files:\n  " + "\n  ".join(stale)
        )
