#!/usr/bin/env python3
"""PipeCD's official WAIT_APPROVAL stage plugin (pkg/app/pipedv1/plugin/waitapproval, pipecd v0.57.0), ported.

Same as the Go plugin: the stage `WAIT_APPROVAL`; its options `approvers` (required, not empty)
and `minApproverNum` (default 1, at least 1); planned with the Approve button
(`available_operation` APPROVE) and `authorized_operators` = `approvers`; approvals recorded in
the stage metadata `pipecd/stage-approved-users` ("alice, bob") and
`pipecd/stage-display-metadata` ("Approved by: alice, bob"), and read back first, so approvals
given before piped re-executed the stage still count; SUCCESS once `minApproverNum` different
users approved; "Wait approval cancelled" when piped cancels it.

Where it knowingly differs (all inside `ctx.wait_for_approval`):
- Approvals from users outside `approvers` are ignored and logged; the Go plugin counts anyone
  and relies on the control plane alone to enforce `authorized_operators`.
- `minApproverNum` larger than the number of approvers fails the stage at once, naming both;
  the Go plugin would wait forever.
- Approvers are recorded in the order they approved; the Go plugin writes them in random order.
- Commands are read as soon as the stage starts, then every 5s; the Go plugin first waits 5s.
"""

from __future__ import annotations

import asyncio

import attrs

import pipeplug

app = pipeplug.App("waitapproval")


@attrs.frozen
class WaitApprovalOptions:
    approvers: list[str] = attrs.field(validator=attrs.validators.min_len(1))
    min_approver_num: int = attrs.field(default=1, validator=attrs.validators.ge(1))


def plan(stage: pipeplug.RequestedStage) -> pipeplug.PlannedStage:
    return pipeplug.PlannedStage(
        stage.name, stage.index, available_operation=pipeplug.ManualOperation.APPROVE, authorized_operators=stage.config["approvers"]
    )


@app.stage("WAIT_APPROVAL", plan=plan)
async def wait_approval(ctx: pipeplug.Context, options: WaitApprovalOptions) -> None:
    try:
        await ctx.wait_for_approval(options.min_approver_num, approvers=options.approvers)
    except asyncio.CancelledError:
        ctx.log.info("Wait approval cancelled")
        raise


if __name__ == "__main__":
    app.main()
