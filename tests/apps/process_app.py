"""A plugin whose stages run the command their `with:` names through ctx.run / ctx.run_sync.

`with: {command, kwargs}`; the stage answers the ProcessResult as JSON in its message.
"""

from __future__ import annotations

import json
import typing as t

import pipeplug

app = pipeplug.App("process")


def _answer(result: pipeplug.ProcessResult) -> pipeplug.StageResult:
    status = pipeplug.StageStatus.SUCCESS if result.ok else pipeplug.StageStatus.FAILURE
    return pipeplug.StageResult(status, json.dumps(result._asdict()))


@app.stage("RUN")
async def run(ctx: pipeplug.Context, options: dict[str, t.Any]) -> pipeplug.StageResult:
    return _answer(await ctx.run(options["command"], **options.get("kwargs", {})))


@app.stage("RUN_SYNC")
def run_sync(ctx: pipeplug.Context, options: dict[str, t.Any]) -> pipeplug.StageResult:
    return _answer(ctx.run_sync(options["command"], **options.get("kwargs", {})))


if __name__ == "__main__":
    app.main()
