#!/usr/bin/env python3
"""PipeCD's official WAIT stage plugin (pkg/app/pipedv1/plugin/wait, pipecd v0.57.0), ported to pipeplug.

Same as the Go plugin: the stage `WAIT`; its option `duration` (required, greater than 0); the
stage metadata `startTime` (unix seconds as a decimal string), read first so that a stage piped
re-executes after a crash waits only what is left, or ends at once; progress lines every 10s;
"Wait cancelled" when piped cancels it. No quick sync, no rollback stage.

Where it knowingly differs:
- An invalid `with:` is refused at planning as well (pipeplug decodes options strictly), and the
  failure names the field; the Go plugin decodes it only when the stage runs.
- If piped cannot read or write `startTime`, the stage fails naming the call, instead of silently
  starting the wait over (the Go plugin only logs it to the process log).
- Durations print the Python way (`0:01:00`), not Go's (`1m0s`).
"""

from __future__ import annotations

import asyncio
import datetime
import time

import attrs

import pipeplug

app = pipeplug.App("wait")
LOG_INTERVAL = 10.0


def _positive(_: object, attribute: attrs.Attribute[datetime.timedelta], value: datetime.timedelta) -> None:
    if value <= datetime.timedelta(0):
        raise ValueError(f"{attribute.name} must be greater than 0, got {value}")


@attrs.frozen
class WaitOptions:
    duration: datetime.timedelta = attrs.field(validator=_positive)


@app.stage("WAIT")
async def wait(ctx: pipeplug.Context, options: WaitOptions) -> None:
    saved = await ctx.stage_metadata.get("startTime")
    start = int(saved) if saved and saved.isdigit() else time.time()
    await ctx.stage_metadata.put("startTime", str(int(start)))
    since = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(start))
    end = start + options.duration.total_seconds()
    if time.time() >= end:
        ctx.log.info("Already waited for %s since %s", options.duration, since)
        return
    ctx.log.info("Waiting for %s since %s...", options.duration, since)
    try:
        while (remaining := end - time.time()) > 0:
            await asyncio.sleep(min(LOG_INTERVAL, remaining))
            if time.time() < end:
                ctx.log.info("%s elapsed...", datetime.timedelta(seconds=int(time.time() - start)))
    except asyncio.CancelledError:
        ctx.log.info("Wait cancelled")
        raise
    ctx.log.info("Waited for %s", options.duration)


if __name__ == "__main__":
    app.main()
