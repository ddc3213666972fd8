"""Values PipeCD configs write with units: ``Percentage`` ("50%") and ``Replicas`` ("3" or "50%").

They read the same inputs as the Go SDK's ``sdk/unit`` types, so a plugin
ported from Go accepts the same app configs, and they keep the Go SDK's
arithmetic (a percentage of replicas rounds up). The decoder structures them
through ``__pipeplug_decode__`` and the schema describes them through
``__pipeplug_schema__``; ``str()`` gives the form Go writes back.
"""

from __future__ import annotations

import math
import re
import typing as t

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DIGITS = re.compile(r"([+-]?)([0-9]+)(%?)")


def _int64_digits(limit: int) -> str:
    """A regular expression for the decimal numbers from 0 to ``limit``, leading zeros allowed.

    JSON Schema has no way to bound the number written in a string but a
    pattern, and the decoder refuses what does not fit in 64 bits, as Go does.
    """
    text = str(limit)
    shorter = f"[0-9]{{1,{len(text) - 1}}}"
    # same length as the limit: a prefix of it, then a smaller digit, then anything
    same = [f"{text[:i]}[0-{int(d) - 1}][0-9]{{{len(text) - i - 1}}}" for i, d in enumerate(text) if d != "0"]
    return "0*(" + "|".join([shorter, *same, text]) + ")"


#: an optionally signed decimal integer that fits in 64 bits, as Go's strconv.ParseInt(s, 10, 64) reads it
_INT64_PATTERN = f"(\\+?{_int64_digits(_INT64_MAX)}|-{_int64_digits(-_INT64_MIN)})"


def _parse(value: t.Any, what: str, examples: str) -> tuple[int, bool]:
    """(number, written with %) of ``value``: a JSON integer, or a string of one with an optional "%"."""
    from .configs import describe  # imported late: units load in plugins that never decode

    if isinstance(value, int) and not isinstance(value, bool):
        number, suffix = value, False
    elif isinstance(value, str) and (match := _DIGITS.fullmatch(value)):
        number, suffix = int(match.group(1) + match.group(2)), bool(match.group(3))
    else:
        raise ValueError(f"expected {what} such as {examples}, got {describe(value)}")
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"expected {what} that fits in 64 bits, got {describe(value)}")
    return number, suffix


def _schema(description: str, examples: list[t.Any]) -> dict[str, t.Any]:
    return {
        "anyOf": [
            {"type": "integer", "minimum": _INT64_MIN, "maximum": _INT64_MAX},
            {"type": "string", "pattern": f"^{_INT64_PATTERN}%?$"},
        ],
        "description": description,
        "examples": examples,
    }


class Percentage:
    """A percentage written ``50%``, ``"50"`` or ``50``; ``int(p)`` is the number, whatever the form.

    Like the Go SDK's ``unit.Percentage``: any whole number that fits in 64 bits
    is accepted (no 0-100 check: that is the plugin's to make), and whether it
    was written with ``%`` is kept for ``str()``.
    """

    __slots__ = ("number", "has_suffix")

    def __init__(self, number: int, has_suffix: bool = False) -> None:
        self.number = number
        #: written with a trailing "%"
        self.has_suffix = has_suffix

    @classmethod
    def __pipeplug_decode__(cls, value: t.Any) -> Percentage:
        """Read a config value; ValueError says what was expected."""
        return cls(*_parse(value, "a percentage", '"50%" or 50'))

    @classmethod
    def __pipeplug_schema__(cls) -> dict[str, t.Any]:
        """The JSON Schema of what :meth:`__pipeplug_decode__` accepts."""
        return _schema('a percentage: a whole number, or a string of one with or without "%"', ["50%", 50])

    def __int__(self) -> int:
        return self.number

    def __str__(self) -> str:
        return f"{self.number}%" if self.has_suffix else str(self.number)

    def __repr__(self) -> str:
        return f"Percentage({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Percentage) and (self.number, self.has_suffix) == (other.number, other.has_suffix)

    def __hash__(self) -> int:
        return hash((Percentage, self.number, self.has_suffix))


class Replicas:
    """A number of replicas: ``3``, ``"3"``, or ``"50%"`` of a total that :meth:`calculate` is given.

    Like the Go SDK's ``unit.Replicas``, except for JSON numbers that are not
    plain integers (``2.9``, ``3.0``, ``1e3``): they are refused here, as an
    ``int`` field refuses them, where Go truncates them in silence (2.9 is 2).
    """

    __slots__ = ("number", "is_percentage")

    def __init__(self, number: int, is_percentage: bool = False) -> None:
        self.number = number
        #: a percentage of the total rather than a count
        self.is_percentage = is_percentage

    @classmethod
    def __pipeplug_decode__(cls, value: t.Any) -> Replicas:
        """Read a config value; ValueError says what was expected."""
        return cls(*_parse(value, "a number of replicas", '3, "3" or "50%"'))

    @classmethod
    def __pipeplug_schema__(cls) -> dict[str, t.Any]:
        """The JSON Schema of what :meth:`__pipeplug_decode__` accepts."""
        return _schema('replicas: a whole number, or a string of one, or a percentage of the total such as "50%"', [3, "50%"])

    def calculate(self, total: int, default: int) -> int:
        """The count this stands for, out of ``total``; ``default`` when it is zero (``0`` or ``"0%"``).

        A percentage rounds up, so any non-zero share of a non-empty total is at
        least one replica: 50% of 3 is 2, 10% of 3 is 1. The product is divided
        in floating point, as the Go SDK does, so both round alike.
        """
        if self.number == 0:
            return default
        if not self.is_percentage:
            return self.number
        return math.ceil(float(self.number * total) / 100.0)

    def __str__(self) -> str:
        return f"{self.number}%" if self.is_percentage else str(self.number)

    def __repr__(self) -> str:
        return f"Replicas({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replicas) and (self.number, self.is_percentage) == (other.number, other.is_percentage)

    def __hash__(self) -> int:
        return hash((Replicas, self.number, self.is_percentage))
