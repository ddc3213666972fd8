#!/usr/bin/env python3
"""A plugin whose handlers leak its secret token into every kind of reply.

The token is a ``pipeplug.secret()`` field of the plugin config, so none of
these may carry it out of the process: LEAK_RAISE's error, LEAK_RESULT's
message, the versions hook's error, the livestate reply, a failed start.
"""

import attrs

import pipeplug


@attrs.frozen
class Config:
    token: str = pipeplug.secret()
    fail_at_startup: bool = False


app = pipeplug.App("secretive", config=Config)


@app.on_startup
def check_token(config: Config) -> None:
    if config.fail_at_startup:
        raise PermissionError(f"token {config.token} expired")


@app.stage("LEAK_RAISE")
def leak_raise(config: Config) -> None:
    raise RuntimeError(f"failed with {config.token}")


@app.stage("LEAK_RESULT")
async def leak_result(config: Config) -> pipeplug.StageResult:
    return pipeplug.StageResult(pipeplug.StageStatus.FAILURE, f"the token {config.token} was refused")


@app.versions
def versions(config: Config) -> list[pipeplug.ArtifactVersion]:
    raise RuntimeError(f"registry refused {config.token}")


@app.livestate
def livestate(config: Config) -> pipeplug.Livestate:
    resource = pipeplug.Resource(id="r", name="r", health_description=f"logged in as {config.token}")
    return pipeplug.Livestate([resource], pipeplug.SyncStatus.SYNCED, reason=f"token {config.token}")


if __name__ == "__main__":
    app.main()
