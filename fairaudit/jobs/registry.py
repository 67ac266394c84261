"""The run registry: one SQLite file in the workspace (``$FAIRAUDIT_HOME/runs.sqlite``).

Every process that submits, runs or lists jobs (the app's script threads, a
second browser tab, worker processes, the CLI) opens the same file. The
database runs in WAL mode (readers never block the writer) with a busy
timeout, and every state change that other processes race on (creating a run,
claiming the next queued run, starting or retiring workers) happens inside one
``BEGIN IMMEDIATE`` transaction, so two sessions submitting at once lose
nothing and a queued run is claimed by exactly one worker.

Statuses: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled``;
a ``running`` run whose process died (its pid is gone, or its heartbeat is
older than :data:`STALE_SECONDS`) becomes ``interrupted`` the next time any
process looks (:meth:`JobRegistry.mark_interrupted`). ``interrupted``,
``failed`` and ``cancelled`` runs can be resumed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from fairaudit import workspace
from fairaudit.errors import FairauditError

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
FINISHED = (DONE, FAILED, CANCELLED, INTERRUPTED)
RESUMABLE = (FAILED, CANCELLED, INTERRUPTED)

STALE_SECONDS = float(os.environ.get("FAIRAUDIT_STALE_SECONDS", "120"))
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1

_JSON_COLUMNS = ("spec", "config", "event", "before", "after", "summary", "artifacts", "stats", "history",
                 "versions", "timings")
# Large fields that list views do not need.
_HEAVY_COLUMNS = ("before", "after", "history", "traceback", "spec", "versions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    progress REAL NOT NULL DEFAULT 0,
    backend TEXT NOT NULL DEFAULT 'local',
    spec TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT,
    event TEXT,
    message TEXT,
    traceback TEXT,
    before TEXT,
    after TEXT,
    summary TEXT,
    artifacts TEXT,
    stats TEXT,
    history TEXT,
    versions TEXT,
    timings TEXT,
    workdir TEXT,
    result_path TEXT,
    worker_pid INTEGER,
    worker_host TEXT,
    heartbeat REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    seconds REAL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, backend, created);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs (dataset, created);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, kind, step);
CREATE TABLE IF NOT EXISTS workers (
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    backend TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (host, pid)
);
"""

_RUN_COLUMNS = frozenset(re.findall(r"^    (\w+) [A-Z]+", _SCHEMA.split("CREATE INDEX")[0], re.MULTILINE))
HOST = socket.gethostname()


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal check is all we have
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def new_run_id() -> str:
    """Sortable and readable: ``20250101-120000-3fa2c1``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


class JobRegistry:
    """The SQLite layer; each call opens its own short connection, so an object can be shared by threads."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else workspace.home() / "runs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._enable_wal()
        with self._connect() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ connections

    def _enable_wal(self) -> None:
        # WAL is a property of the database file, set once. Switching the journal mode does not wait on the
        # busy handler, so two processes creating the registry at the same moment retry instead of failing.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                with self._connect() as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database lock at once (``BEGIN IMMEDIATE``)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def update_fields(self, run_id: str, conn: sqlite3.Connection | None = None, **fields: Any) -> int:
        """Set columns of one run (JSON columns take Python objects); returns the number of rows changed."""
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"unknown run columns: {sorted(unknown)}")
        values = {k: _dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?"
        if conn is not None:
            return conn.execute(sql, (*values.values(), run_id)).rowcount
        with self._connect() as own:
            return own.execute(sql, (*values.values(), run_id)).rowcount

    # ------------------------------------------------------------------ runs

    def create_run(self, spec, *, config: dict, backend: str = "local", status: str = QUEUED,
                   worker_pid: int | None = None, workdir: str | None = None,
                   on_created: Callable[[sqlite3.Connection], None] | None = None) -> str:
        """Record a new run of ``spec`` (a :class:`~fairaudit.jobs.spec.JobSpec`) and return its id.

        ``on_created(conn)`` runs inside the same transaction (used to start
        workers atomically with the submission).
        """
        now = time.time()
        with self.transaction() as conn:
            while True:
                run_id = new_run_id()
                if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    break
            conn.execute(
                "INSERT INTO runs (id, method, dataset, model, status, progress, backend, spec, config, seed, device,"
                " workdir, worker_pid, worker_host, heartbeat, created, started)"
                " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, spec.method, spec.dataset, spec.model, status, backend, _dumps(spec.to_dict()),
                 _dumps(config), spec.seed, spec.device, workdir, worker_pid,
                 HOST if worker_pid else None, now if worker_pid else None, now,
                 now if status == RUNNING else None))
            if on_created is not None:
                on_created(conn)
        return run_id

    def claim_next(self, pid: int, backend: str = "local") -> str | None:
        """Atomically move the oldest queued run of ``backend`` to ``running`` for worker ``pid``."""
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE status = ? AND backend = ? ORDER BY created LIMIT 1",
                               (QUEUED, backend)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE runs SET status = ?, worker_pid = ?, worker_host = ?, heartbeat = ?, started = ?,"
                         " attempts = attempts + 1 WHERE id = ? AND status = ?",
                         (RUNNING, pid, HOST, now, now, row["id"], QUEUED))
            return row["id"]

    def claim(self, run_id: str, pid: int) -> bool:
        """Move one queued run to ``running`` for ``pid``; ``False`` if it was not queued."""
        now = time.time()
        with self.transaction() as conn:
            return conn.execute("UPDATE runs SET status = ?, worker_pid = ?, worker_host = ?, heartbeat = ?,"
                                " started = ?, attempts = attempts + 1 WHERE id = ? AND status = ?",
                                (RUNNING, pid, HOST, now, now, run_id, QUEUED)).rowcount == 1

    def update_progress(self, run_id: str, fraction: float, event: dict | None = None,
                        phase: str | None = None) -> None:
        """Store the overall progress (``fraction`` in [0, 1]) and the latest event; also a heartbeat."""
        fields: dict[str, Any] = {"progress": min(1.0, max(0.0, float(fraction))), "heartbeat": time.time()}
        if event is not None:
            fields["event"] = event
        if phase is not None:
            fields["phase"] = phase
        self.update_fields(run_id, **fields)

    def heartbeat(self, run_id: str) -> None:
        self.update_fields(run_id, heartbeat=time.time())

    def append_metric(self, run_id: str, step: int, epoch: int | None, name: str, value: float,
                      kind: str = "epoch") -> None:
        self.append_metrics(run_id, [(step, epoch, name, value)], kind)

    def append_metrics(self, run_id: str, rows: list[tuple[int, int | None, str, float]],
                       kind: str = "epoch") -> None:
        """Insert ``(step, epoch, name, value)`` rows; ``kind`` is ``"epoch"`` or ``"step"``."""
        now = time.time()
        with self._connect() as conn:
            conn.executemany("INSERT INTO metrics (run_id, step, epoch, kind, name, value, time)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(run_id, step, epoch, kind, name, value, now) for step, epoch, name, value in rows])

    def next_step(self, run_id: str) -> int:
        """The step number after the last recorded metric (a resumed run continues the count)."""
        with self._connect() as conn:
            row = conn.execute("SELECT MAX(step) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def metrics(self, run_id: str, kind: str | None = "epoch") -> list[dict]:
        """Recorded metrics as ``[{step, epoch, kind, name, value, time}]`` in step order."""
        sql = "SELECT step, epoch, kind, name, value, time FROM metrics WHERE run_id = ?"
        args: tuple = (run_id,)
        if kind is not None:
            sql += " AND kind = ?"
            args += (kind,)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql + " ORDER BY step, rowid", args)]

    def set_status(self, run_id: str, status: str, **fields: Any) -> None:
        """Set ``status`` and any other columns (JSON columns take Python objects)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if status in FINISHED:
            fields.setdefault("finished", time.time())
        self.update_fields(run_id, status=status, **fields)

    def request_cancel(self, run_id: str) -> str:
        """Cancel a queued run now, or ask a running one to stop; returns the status after the call."""
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise FairauditError(f"there is no run '{run_id}'.")
            if row["status"] == QUEUED:
                self.update_fields(run_id, conn, status=CANCELLED, finished=time.time(),
                                   message="cancelled before it started.")
                return CANCELLED
            if row["status"] == RUNNING:
                self.update_fields(run_id, conn, cancel_requested=1)
            return row["status"]

    def cancel_requested(self, run_id: str) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def reopen(self, run_id: str, *, claim_pid: int | None = None, backend: str | None = None) -> None:
        """Queue a resumable run again (``resume=1``) for ``backend`` (default: its own), or claim it at once
        for ``claim_pid``."""
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise FairauditError(f"there is no run '{run_id}'.")
            if row["status"] not in RESUMABLE:
                raise FairauditError(f"run '{run_id}' is {row['status']}; only {', '.join(RESUMABLE)} runs can be "
                                     "resumed.")
            fields: dict[str, Any] = {"status": QUEUED, "resume": 1, "cancel_requested": 0, "message": None,
                                      "traceback": None, "finished": None}
            if backend is not None:
                fields["backend"] = backend
            if claim_pid is not None:
                fields.update(status=RUNNING, worker_pid=claim_pid, worker_host=HOST, heartbeat=now, started=now)
                conn.execute("UPDATE runs SET attempts = attempts + 1 WHERE id = ?", (run_id,))
            self.update_fields(run_id, conn, **fields)

    def get(self, run_id: str) -> dict:
        """All fields of one run (JSON parsed), plus its epoch ``metrics``."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise FairauditError(f"there is no run '{run_id}'.")
        run = _parse(row)
        run["metrics"] = self.metrics(run_id, "epoch")
        return run

    def list(self, limit: int = 100, dataset: str | None = None, status: str | None = None) -> list[dict]:
        """Newest first, without the heavy fields (``before``/``after`` reports, history, traceback, spec)."""
        columns = [c for c in self._columns() if c not in _HEAVY_COLUMNS]
        sql = f"SELECT {', '.join(columns)} FROM runs"
        where, args = [], []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        with self._connect() as conn:
            return [_parse(r) for r in conn.execute(sql, (*args, int(limit)))]

    def _columns(self) -> list[str]:
        with self._connect() as conn:
            return [r["name"] for r in conn.execute("PRAGMA table_info(runs)")]

    def mark_interrupted(self) -> list[str]:
        """Mark ``running`` runs whose process is gone as ``interrupted``; return their ids.

        A run held by a process of this host is gone when its pid is dead; any
        run is gone when its heartbeat is older than :data:`STALE_SECONDS`.
        Called on every listing, so it only takes the write lock when it found
        such a run.
        """
        sql = "SELECT id, worker_pid, worker_host, heartbeat FROM runs WHERE status = ?"
        with self._connect() as conn:
            if not self._gone(conn.execute(sql, (RUNNING,)).fetchall()):
                return []
        gone = []
        with self.transaction() as conn:  # look again under the lock: the run may have finished meanwhile
            for run_id, why in self._gone(conn.execute(sql, (RUNNING,)).fetchall()):
                self.update_fields(run_id, conn, status=INTERRUPTED, finished=time.time(),
                                   message=f"interrupted: {why}; resume it to continue from its last checkpoint.")
                gone.append(run_id)
        return gone

    @staticmethod
    def _gone(rows: list[sqlite3.Row]) -> list[tuple[str, str]]:
        now = time.time()
        gone = []
        for row in rows:
            if row["worker_host"] == HOST and not pid_alive(row["worker_pid"]):
                gone.append((row["id"], "its worker process died"))
            elif row["heartbeat"] is not None and now - row["heartbeat"] > STALE_SECONDS:
                gone.append((row["id"], "its worker stopped sending heartbeats"))
        return gone

    # ------------------------------------------------------------------ workers

    def live_workers(self, backend: str, conn: sqlite3.Connection | None = None) -> list[int]:
        """Pids of this host's live workers for ``backend``; rows of dead workers are removed."""
        if conn is None:
            with self.transaction() as own:
                return self.live_workers(backend, own)
        now = time.time()
        alive = []
        for row in conn.execute("SELECT pid, backend, heartbeat FROM workers WHERE host = ?", (HOST,)).fetchall():
            if not pid_alive(row["pid"]) or now - row["heartbeat"] > STALE_SECONDS:
                conn.execute("DELETE FROM workers WHERE host = ? AND pid = ?", (HOST, row["pid"]))
            elif row["backend"] == backend:
                alive.append(row["pid"])
        return alive

    def add_worker(self, pid: int, backend: str, conn: sqlite3.Connection | None = None) -> None:
        now = time.time()
        sql = "INSERT OR REPLACE INTO workers (host, pid, backend, started, heartbeat) VALUES (?, ?, ?, ?, ?)"
        if conn is not None:
            conn.execute(sql, (HOST, pid, backend, now, now))
            return
        with self._connect() as own:
            own.execute(sql, (HOST, pid, backend, now, now))

    def worker_heartbeat(self, pid: int) -> None:
        with self._connect() as conn:
            conn.execute("UPDATE workers SET heartbeat = ? WHERE host = ? AND pid = ?", (time.time(), HOST, pid))

    def retire_worker(self, pid: int, backend: str) -> bool:
        """Remove worker ``pid`` unless a run of its backend is queued (then it must keep working)."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE status = ? AND backend = ? LIMIT 1",
                            (QUEUED, backend)).fetchone():
                return False
            conn.execute("DELETE FROM workers WHERE host = ? AND pid = ?", (HOST, pid))
            return True

    def remove_worker(self, pid: int) -> None:
        with self._connect() as conn:
            conn.execute("DELETE FROM workers WHERE host = ? AND pid = ?", (HOST, pid))


def _parse(row: sqlite3.Row) -> dict:
    run = dict(row)
    for key in _JSON_COLUMNS:
        if key in run and run[key] is not None:
            run[key] = json.loads(run[key])
    if "cancel_requested" in run:
        run["cancel_requested"] = bool(run["cancel_requested"])
    if "resume" in run:
        run["resume"] = bool(run["resume"])
    return run
