#!/usr/bin/env python3
"""A plugin whose stages exercise every way of talking back to piped, for tests/test_piped_client.py and friends.

Each stage writes what it saw to its stage log, so a test reads the results
from the FakePiped the plugin talks to:

- METADATA / METADATA_SYNC: stage, deployment and shared metadata, shared objects (async / sync twins).
- TOOL: ``ctx.install_tool`` (and its sync twin) with ``with.script``.
- REFUSED: calls pipeplug or piped refuse (empty key, wrong value type, read-only, closed deployment).
- SYNC_ON_LOOP: a ``*_sync`` call from an async handler (refused: it would stall the loop).
- COMMANDS: logs each command from ``ctx.commands()`` until ``with.count`` arrived.
- APPROVAL / APPROVAL_SYNC: ``ctx.wait_for_approval(with.min, approvers=with.approvers)``.
- LINES: writes ``with.lines`` numbered lines (async, no await in between; ``with.pad``
  characters wide), then
  ``with.text`` as is, then, with ``with.gate``, waits for one command and writes ``with.after`` lines.
- LOGGING: ``logging`` calls inside the stage, in its task and its sync thread, and a thread it starts.
- SECRET: logs the config's secret token (the stage log must mask it).
- FAIL / RAISE / NEEDS_OPTIONS / HANG: the failure paths.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import attrs

import pipeplug

@attrs.frozen
class Config:
    token: str = pipeplug.secret(default="")


app = pipeplug.App("talkback", config=Config)
user_log = logging.getLogger("talkback.user")


@attrs.frozen
class Options:
    lines: int = 0
    pad: int = 0
    text: str = ""
    gate: bool = False
    after: int = 0
    count: int = 1
    min: int = 1
    approvers: list[str] | None = None
    script: str = ""
    interval: float = 0.05


@attrs.frozen
class Required:
    count: int


@app.stage("METADATA")
async def metadata(ctx: pipeplug.Context) -> None:
    stage, plugin = ctx.stage_metadata, ctx.deployment_metadata
    ctx.log.info("missing=%r", await stage.get("missing"))
    await stage.put("one", "1")
    await stage.put_many({"two": "2", "three": "3"})
    ctx.log.info("stage=%s,%s,%s", await stage.get("one"), await stage.get("two"), await stage.get("three"))
    await plugin.put("p", "x")
    await plugin.put_many({"q": "y"})
    ctx.log.info("plugin=%s,%s", await plugin.get("p"), await plugin.get("q"))
    ctx.log.info("shared=%s", await ctx.shared_metadata.get("DeploymentNotification"))
    ctx.log.info("object-missing=%r", await ctx.shared_objects.get("none"))
    await ctx.shared_objects.put("blob", b"\x00\xffdata")
    ctx.log.info("object=%r", await ctx.shared_objects.get("blob"))


@app.stage("METADATA_SYNC")
def metadata_sync(ctx: pipeplug.Context) -> None:
    stage, plugin = ctx.stage_metadata, ctx.deployment_metadata
    ctx.log.info("missing=%r", stage.get_sync("missing"))
    stage.put_sync("one", "1")
    stage.put_many_sync({"two": "2"})
    ctx.log.info("stage=%s,%s", stage.get_sync("one"), stage.get_sync("two"))
    plugin.put_sync("p", "sync")
    plugin.put_many_sync({"q": "sync"})
    ctx.log.info("plugin=%s,%s", plugin.get_sync("p"), plugin.get_sync("q"))
    ctx.log.info("shared=%s", ctx.shared_metadata.get_sync("DeploymentNotification"))
    ctx.shared_objects.put_sync("blob", b"sync")
    ctx.log.info("object=%r", ctx.shared_objects.get_sync("blob"))


@app.stage("TOOL")
async def tool(ctx: pipeplug.Context, options: Options) -> None:
    path = await ctx.install_tool("hello", "1.0", options.script)
    ctx.log.info("installed=%s", path)
    again = await asyncio.to_thread(ctx.install_tool_sync, "hello", "1.0", options.script)
    ctx.log.info("again=%s", again)


@app.stage("REFUSED")
async def refused(ctx: pipeplug.Context) -> None:
    attempts = {
        "empty-key": lambda: ctx.stage_metadata.get(""),
        "empty-put-many-key": lambda: ctx.deployment_metadata.put_many({"": "x"}),
        "not-a-str": lambda: ctx.stage_metadata.put("k", 1),  # type: ignore[arg-type]
        "not-bytes": lambda: ctx.shared_objects.put("k", "text"),  # type: ignore[arg-type]
        "read-only": lambda: ctx.shared_metadata.put("k", "v"),
        "empty-tool": lambda: ctx.install_tool("", "1", "true"),
    }
    for name, attempt in attempts.items():
        try:
            await attempt()
        except (ValueError, TypeError) as exc:
            ctx.log.info("%s: %s: %s", name, type(exc).__name__, exc)
    try:
        await ctx.stage_metadata.get("after-close")
    except pipeplug.PipedError as exc:
        ctx.log.info("piped-error: rpc=%s code=%s details=%s | %s", exc.rpc, exc.code.name, exc.details, exc)


@app.stage("SYNC_ON_LOOP")
async def sync_on_loop(ctx: pipeplug.Context) -> None:
    ctx.stage_metadata.get_sync("k")


@app.stage("COMMANDS")
async def commands(ctx: pipeplug.Context, options: Options) -> None:
    seen = 0
    async for command in ctx.commands(interval=options.interval):
        ctx.log.info("command %s %s by %s", command.id, command.type.name, command.commander)
        seen += 1
        if seen >= options.count:
            return


@app.stage("APPROVAL")
async def approval(ctx: pipeplug.Context, options: Options) -> None:
    approved = await ctx.wait_for_approval(options.min, approvers=options.approvers, interval=options.interval)
    ctx.log.info("result=%s", ",".join(approved))


@app.stage("APPROVAL_SYNC")
def approval_sync(ctx: pipeplug.Context, options: Options) -> None:
    approved = ctx.wait_for_approval_sync(options.min, approvers=options.approvers, interval=options.interval)
    ctx.log.info("result=%s", ",".join(approved))


@app.stage("LINES")
async def lines(ctx: pipeplug.Context, options: Options) -> None:
    padding = " " + "x" * options.pad if options.pad else ""
    for i in range(options.lines):
        ctx.log.info("line %d%s", i, padding)
    if options.text:
        ctx.log.info(options.text)
    if options.gate:
        async for _ in ctx.commands(interval=options.interval):
            break
        for i in range(options.after):
            ctx.log.info("after %d", i)


@app.stage("LOGGING")
async def logging_stage(ctx: pipeplug.Context) -> None:
    user_log.info("from logging in the stage task")
    user_log.error("an error from logging")
    await asyncio.to_thread(user_log.warning, "from logging in a copied-context thread")

    def own_thread() -> None:
        user_log.info("from a thread the stage started")

    user_log.addHandler(ctx.log)
    try:
        thread = threading.Thread(target=own_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
    finally:
        user_log.removeHandler(ctx.log)
    ctx.log.success("done")


@app.stage("SECRET")
def secret(ctx: pipeplug.Context, config: Config) -> None:
    ctx.log.info("token is %s", config.token)
    user_log.info("via logging: %s", config.token)


@app.stage("FAIL")
def fail() -> pipeplug.StageResult:
    return pipeplug.StageResult(pipeplug.StageStatus.FAILURE, "the target refused the change\nsecond line of the reason")


@app.stage("RAISE")
async def raise_() -> None:
    def deep() -> None:
        raise RuntimeError("boom from deep inside")

    deep()


@app.stage("NEEDS_OPTIONS")
def needs_options(options: Required) -> None:
    pass


@app.stage("HANG")
async def hang(ctx: pipeplug.Context) -> None:
    ctx.log.info("hanging")
    await asyncio.Event().wait()


if __name__ == "__main__":
    app.main()
