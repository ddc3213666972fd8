"""What ``pipeplug dev`` shows: rich terminal output for people, one JSON record for scripts.

Both outputs get the same events. The terminal one prints the planned
pipeline, a header per stage with its log lines streaming under it, a live
status line per stage with elapsed time, and a summary table. The JSON one
keeps stdout for the final record and writes notes and violations to stderr,
so ``pipeplug dev --json | jq`` works.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import typing as t

from rich.console import Console
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from .._gen.model import common_pb2 as common_pb
from .._gen.model import deployment_pb2 as model_pb

STAGE_STATUS = {v.number: v.name.removeprefix("STAGE_") for v in model_pb.StageStatus.DESCRIPTOR.values}
DEPLOYMENT_STATUS = {v.number: v.name.removeprefix("DEPLOYMENT_") for v in model_pb.DeploymentStatus.DESCRIPTOR.values}
STRATEGY = {v.number: v.name for v in common_pb.SyncStrategy.DESCRIPTOR.values}
ARTIFACT_KIND = {v.number: v.name for v in common_pb.ArtifactVersion.Kind.DESCRIPTOR.values}
SEVERITY_STYLE = {0: "", 1: "green", 2: "red"}
STATUS_STYLE = {
    "SUCCESS": "green", "FAILURE": "red", "CANCELLED": "yellow", "SKIPPED": "dim", "EXITED": "cyan",
    "RUNNING": "bold blue", "NOT_STARTED_YET": "dim", "ROLLING_BACK": "yellow", "PENDING": "yellow", "PLANNED": "blue",
}  # fmt: skip


class Output:
    """Events from a run; subclasses render them. Methods may be called from helper threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.violations: list[str] = []

    def start(self) -> None: ...
    def close(self) -> None: ...
    def note(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def plugin_output(self, plugin: str, line: str) -> None: ...
    def plugins_ready(self, plugins: t.Sequence[t.Any]) -> None: ...
    def planned(self, deployment: model_pb.Deployment) -> None: ...
    def stage_started(self, stage: model_pb.PipelineStage, attempt: int) -> None: ...
    def stage_log(self, stage_id: str, blocks: t.Sequence[t.Any]) -> None: ...
    def stage_finished(self, stage: model_pb.PipelineStage, status: int, note: str) -> None: ...
    def deployment_status(self, deployment: model_pb.Deployment) -> None: ...
    def waiting_for_approval(self, stage: model_pb.PipelineStage, hint: str) -> None: ...
    def summary(self, record: dict[str, t.Any]) -> None: ...
    def livestate(self, record: dict[str, t.Any]) -> None: ...
    def plan_preview(self, record: dict[str, t.Any]) -> None: ...

    def violation(self, text: str) -> None:
        with self.lock:
            if text in self.violations:
                return  # the same rule broken on every poll is said once
            self.violations.append(text)
        self.show_violation(text)

    def show_violation(self, text: str) -> None: ...


class JsonOutput(Output):
    """Machine-readable: the record on stdout, everything else as plain lines on stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.err = sys.stderr

    def _line(self, text: str) -> None:
        with self.lock:
            print(text, file=self.err, flush=True)

    def note(self, text: str) -> None:
        self._line(f"note: {text}")

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}")

    def error(self, text: str) -> None:
        self._line(f"error: {text}")

    def show_violation(self, text: str) -> None:
        self._line(f"VIOLATION: {text}")

    def summary(self, record: dict[str, t.Any]) -> None:
        print(json.dumps(record, indent=2), flush=True)

    livestate = plan_preview = summary


class RichOutput(Output):
    """For a terminal: stage headers with streaming logs, a live status table, a summary."""

    def __init__(self, *, verbose: bool = False, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(highlight=False)
        self.verbose = verbose
        self.stages: list[model_pb.PipelineStage] = []
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.status: dict[str, int] = {}
        self.waiting: dict[str, str] = {}
        self.deployment_state = ""
        self.live: Live | None = None

    def start(self) -> None:
        if self.console.is_terminal:
            self.live = Live(get_renderable=self._live_view, console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _print(self, *renderables: t.Any) -> None:
        with self.lock:
            self.console.print(*renderables)

    def note(self, text: str) -> None:
        self._print(Text(f"• {text}", style="dim"))

    def warn(self, text: str) -> None:
        self._print(Text(f"! {text}", style="yellow"))

    def error(self, text: str) -> None:
        self._print(Text(f"✖ {text}", style="bold red"))

    def show_violation(self, text: str) -> None:
        self._print(Text(f"✖ {text}", style="bold red"))

    def plugin_output(self, plugin: str, line: str) -> None:
        if self.verbose:
            self._print(Text(f"  [{plugin}] {line}", style="dim"))

    def plugins_ready(self, plugins: t.Sequence[t.Any]) -> None:
        table = Table(title="plugins", title_justify="left", box=None, padding=(0, 2))
        for column in ("name", "pid", "port", "stages"):
            table.add_column(column)
        for p in plugins:
            table.add_row(p.name, str(p.pid), str(p.spec.port), ", ".join(p.stages) or "-")
        self._print(table)

    def planned(self, deployment: model_pb.Deployment) -> None:
        with self.lock:
            self.stages = list(deployment.stages)
            for s in self.stages:
                self.status.setdefault(s.id, s.status)
        versions = ", ".join(f"{v.name + ' ' if v.name else ''}{v.version} ({ARTIFACT_KIND.get(v.kind, v.kind)})" for v in deployment.versions)
        self._print(
            Text.assemble(
                ("planned ", "bold"), (STRATEGY.get(deployment.trigger.sync_strategy, "?"), "bold cyan"),
                (f": {deployment.summary}" if deployment.summary else "", ""), ("\nversions: ", "dim"), (versions, ""),
            )  # fmt: skip
        )
        table = Table(box=None, padding=(0, 2))
        for column in ("#", "stage", "index", "kind", "requires"):
            table.add_column(column)
        ids = {s.id: i for i, s in enumerate(deployment.stages)}
        for i, s in enumerate(deployment.stages):
            requires = ", ".join(f"#{ids[r]}" if r in ids else r[:8] for r in s.requires)
            kind = "rollback" if s.rollback else ""
            table.add_row(str(i), s.name + (f" — {s.desc}" if s.desc else ""), str(s.index), kind, requires)
        self._print(table)

    def stage_started(self, stage: model_pb.PipelineStage, attempt: int) -> None:
        with self.lock:
            self.started[stage.id] = time.monotonic()
            self.ended.pop(stage.id, None)
            self.status[stage.id] = model_pb.STAGE_RUNNING
        again = f" (attempt {attempt})" if attempt > 1 else ""
        label = "rollback " if stage.rollback else ""
        self._print(Text.assemble(("▶ ", "bold blue"), (f"{label}{stage.name}", "bold"), (f"  index {stage.index}{again}", "dim")))

    def stage_log(self, stage_id: str, blocks: t.Sequence[t.Any]) -> None:
        for block in blocks:
            self._print(Text(f"  │ {block.log}", style=SEVERITY_STYLE.get(block.severity, "")))

    def stage_finished(self, stage: model_pb.PipelineStage, status: int, note: str) -> None:
        with self.lock:
            self.status[stage.id] = status
            self.waiting.pop(stage.id, None)
            started = self.started.get(stage.id)
            self.ended[stage.id] = time.monotonic()
        name = STAGE_STATUS.get(status, str(status))
        took = f" in {self.ended[stage.id] - started:.1f}s" if started else ""
        self._print(Text.assemble(("  └ ", "dim"), (name, STATUS_STYLE.get(name, "")), (f"{took}", "dim")))
        if note:
            self._print(Text("    " + note.replace("\n", "\n    "), style="dim"))

    def deployment_status(self, deployment: model_pb.Deployment) -> None:
        with self.lock:
            self.deployment_state = DEPLOYMENT_STATUS.get(deployment.status, "")
        if deployment.status == model_pb.DEPLOYMENT_ROLLING_BACK:
            self._print(Text(f"↩ rolling back: {deployment.status_reason}", style="yellow"))

    def waiting_for_approval(self, stage: model_pb.PipelineStage, hint: str) -> None:
        with self.lock:
            self.waiting[stage.id] = hint
        self._print(Text(f"  ⏸ {hint}", style="bold magenta"))

    def _live_view(self) -> t.Any:
        with self.lock:
            stages = list(self.stages)
            rows = []
            now = time.monotonic()
            for s in stages:
                status = STAGE_STATUS.get(self.status.get(s.id, s.status), "?")
                started = self.started.get(s.id)
                elapsed = f"{(self.ended.get(s.id, now) - started):6.1f}s" if started else ""
                extra = "  waiting for approval" if s.id in self.waiting else ""
                rows.append((s.name + (" (rollback)" if s.rollback else ""), status, elapsed + extra))
            state = self.deployment_state
        table = Table(box=None, padding=(0, 2), show_header=False)
        for name, status, elapsed in rows:
            table.add_row(Text(name), Text(status, style=STATUS_STYLE.get(status, "")), Text(elapsed, style="dim"))
        return Group(Text(f"deployment {state}", style=STATUS_STYLE.get(state, "")), table) if rows else Text("")

    def summary(self, record: dict[str, t.Any]) -> None:
        self.close()
        table = Table(title=f"deployment {record['deployment_id'][:8]}", title_justify="left")
        for column in ("stage", "index", "status", "duration", "attempts"):
            table.add_column(column)
        for s in record["stages"]:
            duration = f"{s['duration_seconds']:.1f}s" if s["duration_seconds"] is not None else "-"
            name = s["name"] + (" (rollback)" if s["rollback"] else "")
            table.add_row(name, str(s["index"]), Text(s["status"], style=STATUS_STYLE.get(s["status"], "")), duration, str(s["attempts"]))
        self._print(table)
        status = record["status"]
        self._print(Text.assemble(("result: ", "bold"), (status, "bold " + STATUS_STYLE.get(status, "")), (f"  {record['status_reason']}", "dim")))
        if record["violations"]:
            self._print(Text(f"{len(record['violations'])} thing(s) real piped would not accept; see ✖ above", style="bold red"))

    def livestate(self, record: dict[str, t.Any]) -> None:
        table = Table(title=f"live state of {record['application_name']}", title_justify="left")
        for column in ("plugin", "deploy target", "resource", "type", "health"):
            table.add_column(column)
        for r in record["resources"]:
            table.add_row(r["plugin_name"], r["deploy_target"], r["name"], r["resource_type"], Text(r["health"], style="green" if r["health"] == "HEALTHY" else "red"))
        self._print(table)
        sync = record["sync_state"]
        self._print(Text.assemble(("health: ", "bold"), (record["health"], ""), ("   sync: ", "bold"), (sync["status"], "bold")))
        for line in filter(None, (sync["short_reason"], sync["reason"])):
            self._print(Text(f"  {line}", style="dim"))

    def plan_preview(self, record: dict[str, t.Any]) -> None:
        self._print(Text.assemble(("strategy: ", "bold"), (record["strategy"], "cyan"), (f"  {record['strategy_summary']}", "dim")))
        for result in record["results"]:
            self._print(Text.assemble((f"{result['plugin_name']} → {result['deploy_target'] or '(no target)'}: ", "bold"), (result["summary"], "")))
            if result["details"]:
                language = result["diff_language"] or "diff"
                self._print(Syntax(result["details"], language, theme="ansi_dark", background_color="default"))
        for error in record["errors"]:
            self._print(Text(f"✖ {escape(error)}", style="red"))
