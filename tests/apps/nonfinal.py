#!/usr/bin/env python3
"""Stage handlers that return a status which does not end a stage (the Go interop case of issue 12, point 4).

Real piped leaves a deployment RUNNING when ExecuteStage answers RUNNING or
NOT_STARTED_YET; pipeplug answers FAILURE instead, as the Go SDK does, so the
deployment fails and rolls back.
"""

import pipeplug
from pipeplug import StageResult
from pipeplug import StageStatus

app = pipeplug.App("nonfinal")


@app.stage("RETURN_RUNNING")
def return_running() -> StageStatus:
    return StageStatus.RUNNING


@app.stage("RETURN_NOT_STARTED")
async def return_not_started() -> StageResult:
    return StageResult(StageStatus.NOT_STARTED_YET, "not yet")


@app.stage("NEVER_REACHED")
def never_reached() -> None:
    raise AssertionError("the stage before it ended the deployment")


@app.stage("NONFINAL_ROLLBACK", rollback=True)
def rollback(ctx: pipeplug.Context) -> None:
    ctx.log.info("rolled back")


if __name__ == "__main__":
    app.main()
