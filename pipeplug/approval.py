"""Stage commands and approval behind ``ctx.commands()`` and ``ctx.wait_for_approval``, on ctx's public API.

The command types and the metadata keys the web UI reads live here too: they
are approval's vocabulary, and ``pipeplug.context`` imports them from here.

The approval loop follows the official WAIT_APPROVAL plugin's rules.
"""

from __future__ import annotations

import asyncio
import enum
import typing as t

from .piped import PipedError

if t.TYPE_CHECKING:
    from .context import Context
    from .piped import PipedClient

#: stage metadata key whose text the web UI shows on the stage
METADATA_KEY_STAGE_DISPLAY = "pipecd/stage-display-metadata"
#: stage metadata key listing who approved the stage, comma+space separated
METADATA_KEY_STAGE_APPROVED_USERS = "pipecd/stage-approved-users"


class CommandType(enum.IntEnum):
    """The commands a stage can receive (``model.Command.Type``)."""

    APPROVE_STAGE = 3
    SKIP_STAGE = 6


class StageCommand(t.NamedTuple):
    """A click on the stage's Approve or Skip button in the web UI."""

    id: str
    type: CommandType
    #: the user who clicked
    commander: str
    #: unix seconds
    created_at: int = 0


async def wait_for_approval(ctx: Context, min_approvers: int, approvers: t.Sequence[str] | None, interval: float | None) -> list[str]:
    """See :meth:`Context.wait_for_approval <pipeplug.context.Context.wait_for_approval>`."""
    allowed = list(ctx.authorized_operators if approvers is None else approvers)
    if isinstance(min_approvers, bool) or not isinstance(min_approvers, int) or min_approvers < 1:
        raise ValueError(f"wait_for_approval(min_approvers={min_approvers!r}): expected a whole number of at least 1")
    if allowed and min_approvers > len(set(allowed)):
        raise ValueError(
            f"wait_for_approval(min_approvers={min_approvers}) can never be met: only {len(set(allowed))} user(s) may approve "
            f"({', '.join(allowed)}); lower min_approvers or add approvers"
        )
    metadata = ctx.stage_metadata
    recorded = await metadata.get(METADATA_KEY_STAGE_APPROVED_USERS)
    approved = [user for user in (recorded or "").split(", ") if user]
    if len(approved) >= min_approvers:
        ctx.log.success("Already approved by %s", ", ".join(approved))
        return approved
    who = f" from {', '.join(allowed)}" if allowed else ""
    ctx.log.info("Waiting for approval of at least %d user(s)%s...", min_approvers, who)
    async for command in ctx.commands(interval=interval):
        user = command.commander
        if command.type != CommandType.APPROVE_STAGE or user in approved:
            continue
        if not user or (allowed and user not in allowed):
            ctx.log.warning("Ignoring an approval from %r: not one of the approvers (%s)", user, ", ".join(allowed) or "anyone")
            continue
        approved.append(user)
        ctx.log.info("Got approval from %s", user)
        names = ", ".join(approved)
        try:
            await metadata.put_many({METADATA_KEY_STAGE_APPROVED_USERS: names, METADATA_KEY_STAGE_DISPLAY: f"Approved by: {names}"})
        except PipedError as exc:
            ctx.log.error("Could not record the approval in stage metadata: %s", exc)
        if len(approved) >= min_approvers:
            ctx.log.success("Approved by %s", names)
            return approved
        ctx.log.info("Waiting for %d more approver(s)...", min_approvers - len(approved))
    raise AssertionError("unreachable: ctx.commands() never ends")  # pragma: no cover


async def poll_commands(ctx: Context, client: PipedClient, every: float) -> t.AsyncIterator[StageCommand]:
    """Yield each new Approve/Skip command of ctx's stage once, asking piped every ``every`` seconds; see ``ctx.commands()``."""
    seen: set[str] = set()
    known = {member.value for member in CommandType}
    while True:
        try:
            found = await client.list_stage_commands(ctx.deployment_id, ctx.stage_id)
        except PipedError as exc:
            if not exc.retryable:
                raise
            ctx.logger.warning("listing stage commands failed, trying again in %.1fs: %s", every, exc)
            found = []
        for command in found:
            if command.id in seen or command.type not in known:
                continue
            seen.add(command.id)
            yield StageCommand(command.id, CommandType(command.type), command.commander, command.created_at)
        await asyncio.sleep(every)
