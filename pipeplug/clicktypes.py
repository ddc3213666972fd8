"""What pipeplug's two click command lines share: the duration type, and start-up errors as usage errors."""

from __future__ import annotations

import contextlib
import typing as t

import click

from .configs import parse_duration
from .server import StartupError


if t.TYPE_CHECKING:
    _FloatParam = click.ParamType[float]
else:
    _FloatParam = click.ParamType  # generic only for type checkers


class _Duration(_FloatParam):
    name = "duration"

    def convert(self, value: t.Any, param: t.Any, ctx: t.Any) -> float:
        try:
            return parse_duration(value).total_seconds() if isinstance(value, str) else float(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: a Go-style duration ("10s", "1m30s") as seconds
DURATION = _Duration()


@contextlib.contextmanager
def reported() -> t.Iterator[None]:
    """A start-up problem becomes click's usage error: one line on stderr, exit status 1."""
    try:
        yield
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None
