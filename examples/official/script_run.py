#!/usr/bin/env python3
"""PipeCD's official SCRIPT_RUN stage plugin (pkg/app/pipedv1/plugin/scriptrun, pipecd v0.57.0), ported.

Same as the Go plugin: the stages `SCRIPT_RUN` and `SCRIPT_RUN_ROLLBACK`; the options `run`
(required), `env` and `onRollback`; one SCRIPT_RUN_ROLLBACK planned per SCRIPT_RUN that has
`onRollback`, at its index, whether or not piped asks for rollback; the deployment-plugin metadata
`started-<index>` = `_` written before the script runs, without which the rollback stage skips
its script; the script run by `/bin/sh -l -c` in the application directory, with the plugin's
environment, the `SR_*` variables (SR_DEPLOYMENT_ID, SR_APPLICATION_ID, SR_APPLICATION_NAME,
SR_TRIGGERED_AT, SR_TRIGGERED_COMMIT_HASH, SR_TRIGGERED_COMMANDER, SR_REPOSITORY_URL, SR_SUMMARY,
SR_IS_ROLLBACK, SR_LABELS_<KEY>, and SR_CONTEXT_RAW, all of them as JSON) and then `env`; its
stdout and stderr in the stage log; SUCCESS when it exits 0, FAILURE otherwise.

Where it knowingly differs:
- A cancelled stage (cancel button, stage timeout) stops the script and everything it started
  (its process group); the Go plugin leaves the script running.
- Output reaches the stage log line by line as it is printed; a failure says how the script
  ended ("command exited with status 1: ..."), where the Go plugin logs a broken format string.
"""

from __future__ import annotations

import json
import re

import attrs

import pipeplug

app = pipeplug.App("scriptrun")


@attrs.frozen
class ScriptRunOptions:
    run: str = attrs.field(validator=attrs.validators.min_len(1))
    env: dict[str, str] = attrs.field(factory=dict)
    on_rollback: str = ""


@app.pipeline_stages
def pipeline_stages(stages: list[pipeplug.RequestedStage]) -> list[pipeplug.PlannedStage]:
    planned = []
    for stage in stages:
        planned.append(pipeplug.PlannedStage(stage.name, stage.index))
        if stage.name == "SCRIPT_RUN" and stage.config.get("onRollback"):
            planned.append(pipeplug.PlannedStage("SCRIPT_RUN_ROLLBACK", stage.index, rollback=True))
    return planned


def script_env(d: pipeplug.Deployment, commit_hash: str, rollback: bool) -> dict[str, str]:
    """The `SR_*` variables: one per field of the JSON context, one per label, and the JSON itself."""
    info = {
        "deploymentID": d.id, "applicationID": d.application_id, "applicationName": d.application_name,
        "triggeredAt": d.created_at, "triggeredCommitHash": commit_hash, "triggeredCommander": d.triggered_by,
        "repositoryURL": d.repository_url, "summary": d.summary, "labels": dict(sorted(d.labels.items())),
        "isRollback": rollback,
    }  # fmt: skip
    env = {"SR_" + re.sub(r"(?<=[a-z])(?=[A-Z])", "_", k).upper(): str(v).lower() if isinstance(v, bool) else str(v) for k, v in info.items() if k != "labels"}
    env.update({f"SR_LABELS_{k.upper()}": v for k, v in d.labels.items()})
    return {**env, "SR_CONTEXT_RAW": json.dumps({k: v for k, v in info.items() if v}, separators=(",", ":"))}


async def execute(ctx: pipeplug.Context, script: str, options: ScriptRunOptions, deployment: pipeplug.Deployment, source: pipeplug.DeploymentSource) -> pipeplug.StageResult:
    ctx.log.info("Running commands...")
    for line in filter(None, script.split("\n")):
        ctx.log.info("   %s", line)
    env = {**script_env(deployment, source.commit_hash, ctx.stage_name == "SCRIPT_RUN_ROLLBACK"), **options.env}
    result = await ctx.run(["/bin/sh", "-l", "-c", script], env=env, cwd=source.application_directory)
    return pipeplug.StageResult(pipeplug.StageStatus.SUCCESS if result.ok else pipeplug.StageStatus.FAILURE, "" if result.ok else result.describe())


@app.stage("SCRIPT_RUN")
async def script_run(ctx: pipeplug.Context, options: ScriptRunOptions, deployment: pipeplug.Deployment, target_source: pipeplug.DeploymentSource) -> pipeplug.StageResult:
    ctx.log.info("Start executing the script run stage")
    await ctx.deployment_metadata.put(f"started-{ctx.stage_index}", "_")
    return await execute(ctx, options.run, options, deployment, target_source)


@app.stage("SCRIPT_RUN_ROLLBACK", rollback=True)
async def rollback(ctx: pipeplug.Context, options: ScriptRunOptions, deployment: pipeplug.Deployment, target_source: pipeplug.DeploymentSource) -> pipeplug.StageResult | None:
    ctx.log.info("Start executing the script run rollback stage")
    if await ctx.deployment_metadata.get(f"started-{ctx.stage_index}") is None:
        ctx.log.info("skip this rollback stage because the SCRIPT_RUN stage of index %d has not run", ctx.stage_index)
    elif options.on_rollback:
        return await execute(ctx, options.on_rollback, options, deployment, target_source)
    return None


if __name__ == "__main__":
    app.main()
