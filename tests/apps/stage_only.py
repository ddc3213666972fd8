#!/usr/bin/env python3
"""A stage-only plugin with nothing but defaults around two stages."""

import pipeplug

app = pipeplug.App("stageonly")


@app.stage("NOOP")
def noop() -> None:
    return None


@app.stage("NOOP_ROLLBACK", rollback=True)
def noop_rollback() -> None:
    return None


@app.stage("NOOP_QUICK", quick_sync=True)
async def noop_quick() -> None:
    return None


if __name__ == "__main__":
    app.main()
