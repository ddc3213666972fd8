"""Naming the host the way Go does (GOOS/GOARCH).

build names release files with it and the fake piped renders install
scripts with it; neither should import the other for it.
"""

from __future__ import annotations

import platform
import re
import sys


def go_platform(system: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """(os, arch) spelled as Go does (GOOS/GOARCH), as PipeCD names its release files."""
    system = system or sys.platform
    machine = (machine or platform.machine()).lower()
    goos = {"win32": "windows", "cygwin": "windows"}.get(system, re.sub(r"\d+$", "", system))
    arches = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i686": "386", "armv7l": "arm"}
    return goos, arches.get(machine, machine)
