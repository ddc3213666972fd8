"""Everything ``pipeplug dev`` remembers, in one SQLite file.

piped keeps deployments, stage metadata, logs and commands in its control
plane; here one local file plays that part, so a run can be resumed after a
hard kill, the next run knows the last successful commit, and a second
terminal (``pipeplug dev approve``) can add commands. The deployment itself is
stored as the serialized ``model.Deployment`` (the snapshot piped's scheduler
works from), with a few columns copied out for queries.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import typing as t
import uuid

from .._gen.model import command_pb2 as command_pb
from .._gen.model import deployment_pb2 as model_pb

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    app_config TEXT NOT NULL,
    status INTEGER NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    commit_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL,
    proto BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_by_app ON deployments (application_id, created_at);
CREATE TABLE IF NOT EXISTS stage_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL,
    stage_id TEXT NOT NULL,
    name TEXT NOT NULL,
    stage_index INTEGER NOT NULL,
    rollback INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    status INTEGER,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS stage_metadata (
    deployment_id TEXT NOT NULL, stage_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (deployment_id, stage_id, key)
);
CREATE TABLE IF NOT EXISTS plugin_metadata (
    deployment_id TEXT NOT NULL, plugin_name TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (deployment_id, plugin_name, key)
);
CREATE TABLE IF NOT EXISTS shared_metadata (
    deployment_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (deployment_id, key)
);
CREATE TABLE IF NOT EXISTS shared_objects (
    application_id TEXT NOT NULL, plugin_name TEXT NOT NULL, key TEXT NOT NULL, object BLOB NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (application_id, plugin_name, key)
);
CREATE TABLE IF NOT EXISTS stage_logs (
    deployment_id TEXT NOT NULL,
    stage_id TEXT NOT NULL,
    retried_count INTEGER NOT NULL,
    block_index INTEGER NOT NULL,
    log TEXT NOT NULL,
    severity INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    durable INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_logs_by_stage ON stage_logs (deployment_id, stage_id, retried_count, block_index);
CREATE TABLE IF NOT EXISTS stage_log_streams (
    deployment_id TEXT NOT NULL, stage_id TEXT NOT NULL, retried_count INTEGER NOT NULL, completed INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, stage_id, retried_count)
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    stage_id TEXT NOT NULL,
    type INTEGER NOT NULL,
    commander TEXT NOT NULL,
    created_at REAL NOT NULL,
    handled_at REAL
);
CREATE TABLE IF NOT EXISTS violations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id TEXT NOT NULL, at REAL NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plugin_processes (
    pid INTEGER NOT NULL, name TEXT NOT NULL, argv TEXT NOT NULL, started_at REAL NOT NULL, stopped_at REAL
);
"""

FINAL_STATUSES = (model_pb.DEPLOYMENT_SUCCESS, model_pb.DEPLOYMENT_FAILURE, model_pb.DEPLOYMENT_CANCELLED)


class State:
    """The SQLite state file; safe to share between the event loop and helper threads."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        with self._lock:
            self.db.executescript(SCHEMA)
            found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif found[0] != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has state schema {found[0]}, this pipeplug writes {SCHEMA_VERSION}; use another --state file")

    @property
    def snapshots_dir(self) -> str:
        return os.path.join(self.directory, "snapshots")

    @property
    def tools_dir(self) -> str:
        return os.path.join(self.directory, "tools")

    def work_dir(self, deployment_id: str) -> str:
        return os.path.join(self.directory, "work", deployment_id)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def _exec(self, sql: str, args: t.Sequence[t.Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    # -- deployments ------------------------------------------------------------

    def save_deployment(self, d: model_pb.Deployment, app_config: str) -> None:
        completed = d.completed_at or None
        self._exec(
            "INSERT INTO deployments (id, application_id, app_config, status, status_reason, commit_hash, created_at, completed_at, proto) "
            "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET status=excluded.status, status_reason=excluded.status_reason, "
            "completed_at=excluded.completed_at, proto=excluded.proto",
            (d.id, d.application_id, app_config, d.status, d.status_reason, d.trigger.commit.hash, time.time(), completed, d.SerializeToString()),
        )

    def deployment(self, deployment_id: str) -> model_pb.Deployment | None:
        row = self._exec("SELECT proto FROM deployments WHERE id=?", (deployment_id,)).fetchone()
        return model_pb.Deployment.FromString(row[0]) if row else None

    def last_deployment(self, application_id: str, *, unfinished: bool = False, status: int | None = None) -> model_pb.Deployment | None:
        """The newest deployment of the app; ``unfinished`` ones are PENDING to ROLLING_BACK."""
        sql, args = "SELECT proto FROM deployments WHERE application_id=?", [t.cast(t.Any, application_id)]
        if unfinished:
            sql += f" AND status NOT IN ({','.join('?' * len(FINAL_STATUSES))})"
            args += FINAL_STATUSES
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        row = self._exec(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args).fetchone()
        return model_pb.Deployment.FromString(row[0]) if row else None

    def last_successful(self, application_id: str) -> model_pb.Deployment | None:
        row = self._exec(
            "SELECT proto FROM deployments WHERE application_id=? AND status=? ORDER BY completed_at DESC, rowid DESC LIMIT 1",
            (application_id, model_pb.DEPLOYMENT_SUCCESS),
        ).fetchone()
        return model_pb.Deployment.FromString(row[0]) if row else None

    def running_deployment(self, deployment_id: str | None = None) -> model_pb.Deployment | None:
        """The newest unfinished deployment of any app (for ``pipeplug dev approve``)."""
        if deployment_id:
            return self.deployment(deployment_id)
        row = self._exec(
            f"SELECT proto FROM deployments WHERE status NOT IN ({','.join('?' * len(FINAL_STATUSES))}) ORDER BY created_at DESC LIMIT 1",
            FINAL_STATUSES,
        ).fetchone()
        return model_pb.Deployment.FromString(row[0]) if row else None

    # -- stage attempts -----------------------------------------------------------

    def stage_started(self, deployment_id: str, stage: model_pb.PipelineStage) -> int:
        cur = self._exec(
            "INSERT INTO stage_runs (deployment_id, stage_id, name, stage_index, rollback, started_at) VALUES (?,?,?,?,?,?)",
            (deployment_id, stage.id, stage.name, stage.index, int(stage.rollback), time.time()),
        )
        return int(cur.lastrowid or 0)

    def stage_finished(self, run_id: int, status: int, note: str = "") -> None:
        self._exec("UPDATE stage_runs SET finished_at=?, status=?, note=? WHERE id=?", (time.time(), status, note, run_id))

    def stage_runs(self, deployment_id: str) -> list[dict[str, t.Any]]:
        rows = self._exec(
            "SELECT stage_id, name, stage_index, rollback, started_at, finished_at, status, note FROM stage_runs WHERE deployment_id=? ORDER BY id",
            (deployment_id,),
        ).fetchall()
        keys = ("stage_id", "name", "index", "rollback", "started_at", "finished_at", "status", "note")
        return [dict(zip(keys, row)) for row in rows]

    # -- metadata -------------------------------------------------------------------

    def seed_stage_metadata(self, deployment_id: str, stage: model_pb.PipelineStage) -> None:
        for key, value in stage.metadata.items():
            self._exec("INSERT OR IGNORE INTO stage_metadata VALUES (?,?,?,?)", (deployment_id, stage.id, key, value))

    def put_stage_metadata(self, deployment_id: str, stage_id: str, values: t.Mapping[str, str]) -> None:
        with self._lock:
            for key, value in values.items():
                self.db.execute("INSERT OR REPLACE INTO stage_metadata VALUES (?,?,?,?)", (deployment_id, stage_id, key, value))

    def stage_metadata(self, deployment_id: str, stage_id: str) -> dict[str, str]:
        rows = self._exec("SELECT key, value FROM stage_metadata WHERE deployment_id=? AND stage_id=?", (deployment_id, stage_id)).fetchall()
        return dict(rows)

    def put_plugin_metadata(self, deployment_id: str, plugin: str, values: t.Mapping[str, str]) -> None:
        with self._lock:
            for key, value in values.items():
                self.db.execute("INSERT OR REPLACE INTO plugin_metadata VALUES (?,?,?,?)", (deployment_id, plugin, key, value))

    def plugin_metadata(self, deployment_id: str) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for plugin, key, value in self._exec("SELECT plugin_name, key, value FROM plugin_metadata WHERE deployment_id=?", (deployment_id,)).fetchall():
            found.setdefault(plugin, {})[key] = value
        return found

    def shared_metadata(self, deployment_id: str) -> dict[str, str]:
        return dict(self._exec("SELECT key, value FROM shared_metadata WHERE deployment_id=?", (deployment_id,)).fetchall())

    def put_shared_metadata(self, deployment_id: str, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO shared_metadata VALUES (?,?,?)", (deployment_id, key, value))

    def get_shared_object(self, application_id: str, plugin: str, key: str) -> bytes | None:
        row = self._exec("SELECT object FROM shared_objects WHERE application_id=? AND plugin_name=? AND key=?", (application_id, plugin, key)).fetchone()
        return bytes(row[0]) if row else None

    def put_shared_object(self, application_id: str, plugin: str, key: str, value: bytes) -> None:
        self._exec("INSERT OR REPLACE INTO shared_objects VALUES (?,?,?,?,?)", (application_id, plugin, key, value, time.time()))

    # -- logs -----------------------------------------------------------------------

    def add_log_blocks(self, deployment_id: str, stage_id: str, retried_count: int, blocks: t.Iterable[t.Any], *, durable: bool) -> None:
        with self._lock:
            for b in blocks:
                self.db.execute(
                    "INSERT INTO stage_logs VALUES (?,?,?,?,?,?,?,?)",
                    (deployment_id, stage_id, retried_count, b.index, b.log, b.severity, b.created_at, int(durable)),
                )

    def logs(self, deployment_id: str, stage_id: str) -> list[tuple[int, str, int]]:
        rows = self._exec(
            "SELECT block_index, log, severity FROM stage_logs WHERE deployment_id=? AND stage_id=? ORDER BY block_index, rowid",
            (deployment_id, stage_id),
        ).fetchall()
        return [tuple(r) for r in rows]

    def log_completed(self, deployment_id: str, stage_id: str, retried_count: int) -> bool:
        row = self._exec(
            "SELECT completed FROM stage_log_streams WHERE deployment_id=? AND stage_id=? AND retried_count=?", (deployment_id, stage_id, retried_count)
        ).fetchone()
        return bool(row and row[0])

    def complete_log(self, deployment_id: str, stage_id: str, retried_count: int) -> None:
        self._exec("INSERT OR REPLACE INTO stage_log_streams VALUES (?,?,?,1)", (deployment_id, stage_id, retried_count))

    # -- commands -------------------------------------------------------------------

    def add_command(self, deployment_id: str, stage_id: str, kind: int, commander: str) -> str:
        command_id = str(uuid.uuid4())
        self._exec("INSERT INTO commands VALUES (?,?,?,?,?,?,NULL)", (command_id, deployment_id, stage_id, kind, commander, time.time()))
        return command_id

    def unhandled_stage_commands(self) -> list[command_pb.Command]:
        """Every unhandled APPROVE_STAGE / SKIP_STAGE command, as piped's command store lists them."""
        rows = self._exec(
            "SELECT id, deployment_id, stage_id, type, commander, created_at FROM commands WHERE handled_at IS NULL AND type IN (?,?) ORDER BY created_at",
            (command_pb.Command.APPROVE_STAGE, command_pb.Command.SKIP_STAGE),
        ).fetchall()
        return [_command(*row) for row in rows]

    def mark_stage_commands_handled(self, deployment_id: str, stage_id: str) -> None:
        self._exec("UPDATE commands SET handled_at=? WHERE deployment_id=? AND stage_id=? AND handled_at IS NULL", (time.time(), deployment_id, stage_id))

    def commanders(self, deployment_id: str, stage_id: str) -> list[str]:
        rows = self._exec("SELECT commander FROM commands WHERE deployment_id=? AND stage_id=? ORDER BY created_at", (deployment_id, stage_id)).fetchall()
        return [r[0] for r in rows]

    # -- violations and processes ---------------------------------------------------

    def add_violation(self, deployment_id: str, message: str) -> None:
        self._exec("INSERT INTO violations (deployment_id, at, message) VALUES (?,?,?)", (deployment_id, time.time(), message))

    def violations(self, deployment_id: str) -> list[str]:
        return [r[0] for r in self._exec("SELECT message FROM violations WHERE deployment_id=? ORDER BY id", (deployment_id,)).fetchall()]

    def plugin_started(self, pid: int, name: str, argv: t.Sequence[str]) -> None:
        self._exec("INSERT INTO plugin_processes VALUES (?,?,?,?,NULL)", (pid, name, json.dumps(list(argv)), time.time()))

    def plugin_stopped(self, pid: int) -> None:
        self._exec("UPDATE plugin_processes SET stopped_at=? WHERE pid=? AND stopped_at IS NULL", (time.time(), pid))

    def live_plugin_processes(self) -> list[tuple[int, str, list[str]]]:
        rows = self._exec("SELECT pid, name, argv FROM plugin_processes WHERE stopped_at IS NULL").fetchall()
        return [(pid, name, json.loads(argv)) for pid, name, argv in rows]


def _command(command_id: str, deployment_id: str, stage_id: str, kind: int, commander: str, created_at: float) -> command_pb.Command:
    command = command_pb.Command(
        id=command_id,
        piped_id="pipeplug-dev",
        deployment_id=deployment_id,
        stage_id=stage_id,
        commander=commander,
        type=t.cast(t.Any, kind),
        status=command_pb.COMMAND_NOT_HANDLED_YET,
        created_at=int(created_at),
        updated_at=int(created_at),
    )
    if kind == command_pb.Command.APPROVE_STAGE:
        command.approve_stage.deployment_id = deployment_id
        command.approve_stage.stage_id = stage_id
    elif kind == command_pb.Command.SKIP_STAGE:
        command.skip_stage.deployment_id = deployment_id
        command.skip_stage.stage_id = stage_id
    return command
