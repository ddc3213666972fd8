#!/usr/bin/env python3
"""What strict config decoding costs: pipeplug's converter beside a stock cattrs Converter.

    python bench/structure_options.py [--calls 20000] [--rounds 7]

Both structure the same typical options class (ten fields: bools, an int, a
list, a mapping, a duration, a Literal, an Optional) from the same JSON value,
pipeplug's with its camelCase keys and every type checked, stock cattrs with
snake_case keys and its coercing defaults. Rounds alternate between the two;
each figure is the median µs per call. The stage path structures a ``with:``
once per distinct value (inject.py, ``reusable_options``), so this is a per-deployment cost, not
a per-call one. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import timeit
import typing as t

import attrs
import cattrs

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipeplug.configs import camel_case  # noqa: E402
from pipeplug.configs import parse_duration  # noqa: E402
from pipeplug.converter import StrictConverter  # noqa: E402


@attrs.frozen
class DeployOptions:
    dry_run: bool = False
    skip_backup: bool = False
    retries: int = 0
    names: list[str] = attrs.field(factory=list)
    url: str = ""
    env: dict[str, str] = attrs.field(factory=dict)
    timeout: datetime.timedelta = datetime.timedelta(seconds=30)
    ratio: float = 1.0
    mode: t.Literal["fast", "safe"] = "safe"
    on_rollback: t.Optional[str] = None


WITH = {"dry_run": True, "skip_backup": False, "retries": 3, "names": ["a", "b", "c"], "url": "https://example.test", "env": {"A": "1", "B": "2"},
        "timeout": "1m30s", "ratio": 0.5, "mode": "fast", "on_rollback": "undo.sh"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    strict = StrictConverter()
    stock = cattrs.Converter()
    stock.register_structure_hook(datetime.timedelta, lambda value, _: parse_duration(value))
    camel = {camel_case(k): v for k, v in WITH.items()}
    assert strict.structure(camel, DeployOptions) == stock.structure(WITH, DeployOptions)  # the same result, built once each

    samples: dict[str, list[float]] = {"strict": [], "stock": []}
    for _ in range(args.rounds):
        samples["strict"].append(timeit.timeit(lambda: strict.structure(camel, DeployOptions), number=args.calls) / args.calls * 1e6)
        samples["stock"].append(timeit.timeit(lambda: stock.structure(WITH, DeployOptions), number=args.calls) / args.calls * 1e6)
    strict_us, stock_us = statistics.median(samples["strict"]), statistics.median(samples["stock"])
    print(json.dumps({"strict_us": round(strict_us, 2), "stock_cattrs_us": round(stock_us, 2), "ratio": round(strict_us / stock_us, 2)}))


if __name__ == "__main__":
    main()
