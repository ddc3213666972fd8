"""Regenerate ``pipeplug._gen`` from ``proto/pipeplug/_gen``.

Usage (from anywhere)::

    python -m pipeplug._gen_tool           # regenerate in place
    python -m pipeplug._gen_tool --check   # exit 1 if committed code is stale

Needs ``grpcio-tools`` and ``mypy-protobuf`` (development dependencies only): protoc writes the
messages and their ``.pyi``; mypy-protobuf writes the ``_pb2_grpc.pyi`` stubs that give the
generated stubs and servicers types, so code calling them stays ``mypy --strict`` clean.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_PKG = "pipeplug/_gen"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
INIT_DOCSTRING = (
    '"""Generated subpackage (from proto/): do not edit; regenerate with `python -m pipeplug._gen_tool`."""\n'
)

_SERVICE_RE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)
_COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def proto_files() -> list[str]:
    """Proto paths relative to ``proto/`` (as protoc sees them), sorted."""
    return sorted(p.relative_to(PROTO_DIR).as_posix() for p in (PROTO_DIR / GEN_PKG).rglob("*.proto"))


def _has_service(rel: str) -> bool:
    text = _COMMENT_RE.sub("", (PROTO_DIR / rel).read_text(encoding="utf-8"))
    return bool(_SERVICE_RE.search(text))


def _grpc_stub_plugin() -> str:
    """The mypy-protobuf plugin that writes ``_pb2_grpc.pyi``: next to this interpreter first, then on PATH."""
    name = "protoc-gen-mypy_grpc"
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found; install mypy-protobuf (pip install -e '.[test]')")
    return found


def _protoc(args: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    wkt_include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    argv = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{wkt_include}", *args]
    rc = protoc.main(argv)
    if rc != 0:
        raise SystemExit(f"protoc failed (exit {rc}): {' '.join(argv)}")


def managed_files(out_root: Path) -> list[str]:
    """Generated files (and package __init__.py files) under out_root/pipeplug/_gen, sorted."""
    base = out_root / GEN_PKG
    if not base.is_dir():
        return []
    found = []
    for p in base.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and (
            p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py"
        ):
            found.append(p.relative_to(out_root).as_posix())
    return sorted(found)


def generate(out_root: Path) -> list[str]:
    """Generate all code into out_root (a repo root or a scratch dir); return managed files."""
    out_root = Path(out_root)
    for rel in managed_files(out_root):
        if rel.endswith(GENERATED_SUFFIXES):
            (out_root / rel).unlink()

    files = proto_files()
    if not files:
        raise SystemExit(f"no .proto files found under {PROTO_DIR / GEN_PKG}")
    _protoc([f"--python_out={out_root}", f"--pyi_out={out_root}", *files])
    with_services = [f for f in files if _has_service(f)]
    if with_services:
        _protoc(
            [
                f"--grpc_python_out={out_root}",
                f"--plugin=protoc-gen-mypy_grpc={_grpc_stub_plugin()}",
                f"--mypy_grpc_out=quiet:{out_root}",
                *with_services,
            ]
        )

    pkg_dirs = {(out_root / f).parent for f in files} | {out_root / GEN_PKG}
    for d in sorted(pkg_dirs):
        init = d / "__init__.py"
        init.write_text(INIT_DOCSTRING if d == out_root / GEN_PKG else "", encoding="utf-8")
    return managed_files(out_root)


def stale_files() -> list[str]:
    """Regenerate into a temp dir and list managed files that differ from the repo's copy."""
    with tempfile.TemporaryDirectory(prefix="pipeplug-gen-") as tmp:
        tmp_root = Path(tmp)
        fresh = set(generate(tmp_root))
        current = set(managed_files(ROOT))
        stale = []
        for rel in sorted(fresh | current):
            if rel not in current:
                stale.append(f"{rel} (missing)")
            elif rel not in fresh:
                stale.append(f"{rel} (no longer generated)")
            elif (tmp_root / rel).read_bytes() != (ROOT / rel).read_bytes():
                stale.append(f"{rel} (differs)")
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeplug._gen_tool", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify generated code is up to date")
    args = parser.parse_args(argv)

    if args.check:
        stale = stale_files()
        if stale:
            print("generated code is out of date; run `python -m pipeplug._gen_tool`:", file=sys.stderr)
            for rel in stale:
                print(f"  {rel}", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0

    for rel in generate(ROOT):
        print(rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
