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

Connections: each thread keeps its connection to a registry open between
calls. SQLite checkpoints the write-ahead log whenever a connection closes,
holding the database's exclusive lock meanwhile; with connections opened and
closed per call, a process paused at that moment (SIGSTOP, a suspended
laptop) would lock every other process out of the registry.

Leases: a process works on a run only while it holds the run's *lease*, an
owner (``host:pid``) and a fencing token that grows by one every time the run
is claimed, resumed or marked ``interrupted``. Every write a worker makes
(progress, epoch metrics, heartbeats, the final status, its artefact files) is
conditioned on its token still being the current one; the first write that
finds it outdated raises :class:`LeaseLost` and the worker stops, so a worker
that was paused past its heartbeat and woke up after another worker resumed
the run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from fairaudit import workspace
from fairaudit.errors import FairauditError

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
FINISHED = (DONE, FAILED, CANCELLED, INTERRUPTED)
RESUMABLE = (FAILED, CANCELLED, INTERRUPTED)

STALE_ENV = "FAIRAUDIT_STALE_SECONDS"
STALE_SECONDS = 120.0  # default heartbeat age after which a run counts as dead
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 2

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
    lease_owner TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0,
    model_sha256 TEXT,
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
    time REAL NOT NULL,
    lease_token INTEGER
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
# Columns added after the first schema: (table, column, declaration), added to older registries on open.
_ADDED_COLUMNS = (("runs", "lease_owner", "TEXT"), ("runs", "lease_token", "INTEGER NOT NULL DEFAULT 0"),
                  ("runs", "model_sha256", "TEXT"), ("metrics", "lease_token", "INTEGER"))
HOST = socket.gethostname()
# SQLite result codes (the low byte of an extended code) that mean the file itself is unusable.
_SQLITE_DAMAGED = {11: "damaged", 26: "not an SQLite database"}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SQLITE_CANTOPEN, _SQLITE_READONLY = 14, 8
_OPEN_PER_THREAD = 4  # registries a thread keeps a connection to (the least recently used one is closed)
_LOCAL = threading.local()


class RegistryError(FairauditError):
    """The run registry file cannot be opened or read."""


class LeaseLost(FairauditError):
    """This process no longer holds the run it was working on: another worker took it over, or it was marked
    ``interrupted``. The run's record is left as the current holder wrote it."""


@dataclass
class Lease:
    """A process's hold on one run: ``owner`` (``host:pid``) and the fencing ``token`` it was granted.

    ``lost`` turns true the first time a write finds that the run's token has moved on.
    """

    run_id: str
    owner: str
    token: int
    lost: bool = False


def owner_id(pid: int) -> str:
    return f"{HOST}:{pid}"


def stale_seconds() -> float:
    """Heartbeat age after which a running run counts as dead: ``$FAIRAUDIT_STALE_SECONDS``, default 120."""
    raw = os.environ.get(STALE_ENV)
    if raw is None:
        return STALE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise FairauditError(f"{STALE_ENV} must be a number of seconds > 0, got {raw!r}.")
    return value


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


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
    """The SQLite layer; each call opens its own short connection, so an object can be shared by threads.

    A file that is not a readable SQLite database (damaged, truncated, or a
    folder) raises :class:`RegistryError` with one sentence saying how to
    start over.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else workspace.home() / "runs.sqlite"
        workspace.ensure_folder(self.path.parent, "the run registry's folder")
        self._enable_wal()
        with self._connect() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current < SCHEMA_VERSION:
            self._migrate()

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

    def _migrate(self) -> None:
        """Create the tables of a new registry, or add the columns a registry of an older version lacks."""
        with self.transaction() as conn:  # one process migrates; the others find it done
            if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                return
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            for table, column, declaration in _ADDED_COLUMNS:
                if column not in {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (opened on first use, kept open), or a fresh one while it is in a
        transaction."""
        conn, kept = self._connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            error = self._unusable(exc)
            if error is None:
                raise
            self._forget(conn)
            kept = False
            raise error from None
        finally:
            if not kept:
                conn.close()
            elif conn.in_transaction:  # a transaction that neither committed nor rolled back: never keep it open
                try:
                    conn.rollback()
                except sqlite3.Error:
                    self._forget(conn)
                    conn.close()

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) or exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc) or exc
        return conn

    def _connection(self) -> tuple[sqlite3.Connection, bool]:
        """``(connection, kept)``: the thread's open connection to this file if it is free and still the same
        file (not moved aside or replaced), else a new one, kept open unless the thread's one is busy."""
        pool = getattr(_LOCAL, "pool", None)
        if pool is None or _LOCAL.pid != os.getpid():  # a forked child must not share its parent's handles
            pool = _LOCAL.pool = OrderedDict()
            _LOCAL.pid = os.getpid()
        key = str(self.path.absolute())
        entry = pool.get(key)
        if entry is not None:
            conn, inode = entry
            if conn.in_transaction:  # nested use inside a transaction of this thread
                return self._open(), False
            if inode == _inode(self.path):
                pool.move_to_end(key)
                return conn, True
            del pool[key]
            conn.close()
        conn = self._open()
        pool[key] = (conn, _inode(self.path))
        while len(pool) > _OPEN_PER_THREAD:
            pool.popitem(last=False)[1][0].close()
        return conn, True

    def _forget(self, conn: sqlite3.Connection) -> None:
        pool = getattr(_LOCAL, "pool", {})
        for key, (kept, _) in list(pool.items()):
            if kept is conn:
                del pool[key]

    def _unusable(self, exc: sqlite3.Error) -> RegistryError | None:
        """The one-sentence error for a registry file that cannot be used at all, else ``None``."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        aside = (f"move it aside (for example rename it to {self.path.name}.broken) and run the command again to "
                 "start an empty registry")
        if code in _SQLITE_DAMAGED or "malformed" in str(exc) or "not a database" in str(exc):
            return RegistryError(f"the run registry '{self.path}' is {_SQLITE_DAMAGED.get(code, 'damaged')} "
                                 f"({exc}); {aside}.")
        if code == _SQLITE_CANTOPEN:
            what = "a folder, not a file" if self.path.is_dir() else "not readable"
            return RegistryError(f"the run registry '{self.path}' cannot be opened: it is {what}; {aside}.")
        if code == _SQLITE_READONLY:
            return RegistryError(f"the run registry '{self.path}' is read-only; make it and its folder writable, "
                                 "or point FAIRAUDIT_HOME at a workspace you can write to.")
        return None

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

    # ------------------------------------------------------------------ leases

    def _lost(self, lease: Lease) -> LeaseLost:
        lease.lost = True
        return LeaseLost(f"run '{lease.run_id}' was taken over by another worker or marked interrupted while this "
                         f"process (lease {lease.token}) was working on it, so this process stopped without "
                         "writing anything more.")

    def _check_lease(self, conn: sqlite3.Connection, lease: Lease) -> None:
        row = conn.execute("SELECT lease_token FROM runs WHERE id = ?", (lease.run_id,)).fetchone()
        if row is None or row[0] != lease.token:
            raise self._lost(lease)

    @contextmanager
    def fenced(self, lease: Lease) -> Iterator[sqlite3.Connection]:
        """A write transaction that raises :class:`LeaseLost` unless ``lease`` is still the run's lease.

        Claims and resumes take the same database lock, so whatever the block
        does (e.g. renaming an artefact into the run's folder) happens while
        the lease is certainly held.
        """
        with self.transaction() as conn:
            self._check_lease(conn, lease)
            yield conn

    def current_lease(self, run_id: str) -> Lease:
        """The lease as the registry has it now (who holds the run, with which token)."""
        row = self._row(run_id, "lease_owner, lease_token")
        return Lease(run_id, row["lease_owner"], row["lease_token"])

    def _row(self, run_id: str, columns: str = "*") -> sqlite3.Row:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise FairauditError(f"there is no run '{run_id}'.")
        return row

    def _grant(self, conn: sqlite3.Connection, run_id: str, pid: int) -> Lease | None:
        """Make ``pid`` the holder of queued run ``run_id`` (``running``, next token) in ``conn``'s transaction."""
        now, owner = time.time(), owner_id(pid)
        if conn.execute("UPDATE runs SET status = ?, worker_pid = ?, worker_host = ?, heartbeat = ?, started = ?,"
                        " attempts = attempts + 1, lease_owner = ?, lease_token = lease_token + 1"
                        " WHERE id = ? AND status = ?", (RUNNING, pid, HOST, now, now, owner, run_id, QUEUED)
                        ).rowcount != 1:
            return None
        token = conn.execute("SELECT lease_token FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        return Lease(run_id, owner, token)

    def update_fields(self, run_id: str, conn: sqlite3.Connection | None = None, *, lease: Lease | None = None,
                      **fields: Any) -> int:
        """Set columns of one run (JSON columns take Python objects); returns the number of rows changed.

        With ``lease`` the update only happens while that lease is current, else :class:`LeaseLost` is raised.
        """
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"unknown run columns: {sorted(unknown)}")
        values = {k: _dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        sql = f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?"
        args: tuple = (*values.values(), run_id)
        if lease is not None:
            sql, args = sql + " AND lease_token = ?", args + (lease.token,)
        if conn is not None:
            changed = conn.execute(sql, args).rowcount
        else:
            with self._connect() as own:
                changed = own.execute(sql, args).rowcount
        if lease is not None and changed == 0:
            raise self._lost(lease)
        return changed

    # ------------------------------------------------------------------ runs

    def create_run(self, spec, *, config: dict, backend: str = "local", status: str = QUEUED,
                   worker_pid: int | None = None, workdir: str | None = None,
                   on_created: Callable[[sqlite3.Connection], None] | None = None) -> str:
        """Record a new run of ``spec`` (a :class:`~fairaudit.jobs.spec.JobSpec`) and return its id.

        A run created ``running`` for ``worker_pid`` is held by it (lease token
        1, see :meth:`current_lease`). ``on_created(conn)`` runs inside the
        same transaction (used to start workers atomically with the submission).
        """
        now = time.time()
        held = status == RUNNING and worker_pid is not None
        with self.transaction() as conn:
            while True:
                run_id = new_run_id()
                if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    break
            conn.execute(
                "INSERT INTO runs (id, method, dataset, model, status, progress, backend, spec, config, seed, device,"
                " workdir, worker_pid, worker_host, heartbeat, created, started, attempts, lease_owner, lease_token)"
                " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, spec.method, spec.dataset, spec.model, status, backend, _dumps(spec.to_dict()),
                 _dumps(config), spec.seed, spec.device, workdir, worker_pid,
                 HOST if worker_pid else None, now if worker_pid else None, now,
                 now if status == RUNNING else None, int(held), owner_id(worker_pid) if held else None, int(held)))
            if on_created is not None:
                on_created(conn)
        return run_id

    def claim_next(self, pid: int, backend: str = "local") -> Lease | None:
        """Atomically move the oldest queued run of ``backend`` to ``running`` for worker ``pid``; its lease."""
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE status = ? AND backend = ? ORDER BY created LIMIT 1",
                               (QUEUED, backend)).fetchone()
            return None if row is None else self._grant(conn, row["id"], pid)

    def claim(self, run_id: str, pid: int) -> Lease | None:
        """Move one queued run to ``running`` for ``pid`` and return its lease; ``None`` if it was not queued."""
        with self.transaction() as conn:
            return self._grant(conn, run_id, pid)

    def update_progress(self, run_id: str, fraction: float, event: dict | None = None,
                        phase: str | None = None, lease: Lease | None = None) -> None:
        """Store the overall progress (``fraction`` in [0, 1]) and the latest event; also a heartbeat."""
        fields: dict[str, Any] = {"progress": min(1.0, max(0.0, float(fraction))), "heartbeat": time.time()}
        if event is not None:
            fields["event"] = event
        if phase is not None:
            fields["phase"] = phase
        self.update_fields(run_id, lease=lease, **fields)

    def heartbeat(self, run_id: str, lease: Lease | None = None) -> None:
        """Refresh the run's heartbeat; with ``lease`` only while it is current (else :class:`LeaseLost`)."""
        self.update_fields(run_id, lease=lease, heartbeat=time.time())

    def append_metric(self, run_id: str, step: int, epoch: int | None, name: str, value: float,
                      kind: str = "epoch") -> None:
        self.append_metrics(run_id, [(step, epoch, name, value)], kind)

    def append_metrics(self, run_id: str, rows: list[tuple[int, int | None, str, float]],
                       kind: str = "epoch", lease: Lease | None = None) -> None:
        """Insert ``(step, epoch, name, value)`` rows; ``kind`` is ``"epoch"`` or ``"step"``.

        With ``lease`` the rows are written only while it is current (else
        :class:`LeaseLost`), and each row records the lease token that wrote it.
        """
        now = time.time()
        token = None if lease is None else lease.token
        with self.transaction() as conn:
            if lease is not None:
                self._check_lease(conn, lease)
            conn.executemany("INSERT INTO metrics (run_id, step, epoch, kind, name, value, time, lease_token)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [(run_id, step, epoch, kind, name, value, now, token)
                              for step, epoch, name, value in rows])

    def next_step(self, run_id: str) -> int:
        """The step number after the last recorded metric (a resumed run continues the count)."""
        with self._connect() as conn:
            row = conn.execute("SELECT MAX(step) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def metrics(self, run_id: str, kind: str | None = "epoch") -> list[dict]:
        """Recorded metrics as ``[{step, epoch, kind, name, value, time, lease_token}]`` in step order."""
        sql = "SELECT step, epoch, kind, name, value, time, lease_token FROM metrics WHERE run_id = ?"
        args: tuple = (run_id,)
        if kind is not None:
            sql += " AND kind = ?"
            args += (kind,)
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(sql + " ORDER BY step, rowid", args)]

    def set_status(self, run_id: str, status: str, lease: Lease | None = None, **fields: Any) -> None:
        """Set ``status`` and any other columns (JSON columns take Python objects); with ``lease`` only while it
        is current (else :class:`LeaseLost`)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        if status in FINISHED:
            fields.setdefault("finished", time.time())
        self.update_fields(run_id, lease=lease, status=status, **fields)

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

    def cancel_requested(self, run_id: str, lease: Lease | None = None) -> bool:
        """The run's cancel flag; with ``lease``, :class:`LeaseLost` if the lease is no longer current."""
        with self._connect() as conn:
            row = conn.execute("SELECT cancel_requested, lease_token FROM runs WHERE id = ?", (run_id,)).fetchone()
        if lease is not None and (row is None or row["lease_token"] != lease.token):
            raise self._lost(lease)
        return bool(row and row[0])

    def reopen(self, run_id: str, *, claim_pid: int | None = None, backend: str | None = None) -> Lease | None:
        """Queue a resumable run again (``resume=1``) for ``backend`` (default: its own), or claim it at once
        for ``claim_pid`` and return that lease. Either way the lease token moves on."""
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise FairauditError(f"there is no run '{run_id}'.")
            if row["status"] not in RESUMABLE:
                raise FairauditError(f"run '{run_id}' is {row['status']}; only {', '.join(RESUMABLE)} runs can be "
                                     "resumed.")
            fields: dict[str, Any] = {"status": QUEUED, "resume": 1, "cancel_requested": 0, "message": None,
                                      "traceback": None, "finished": None, "lease_owner": None}
            if backend is not None:
                fields["backend"] = backend
            self.update_fields(run_id, conn, **fields)
            if claim_pid is not None:
                return self._grant(conn, run_id, claim_pid)
            conn.execute("UPDATE runs SET lease_token = lease_token + 1 WHERE id = ?", (run_id,))
            return None

    def get(self, run_id: str) -> dict:
        """All fields of one run (JSON parsed), plus its epoch ``metrics``."""
        run = _parse(self._row(run_id))
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
        run is gone when its heartbeat is older than :func:`stale_seconds`.
        Its lease is revoked (the token moves on), so a process that was only
        paused cannot write to the run when it wakes up. Called on every
        listing, so it only takes the write lock when it found such a run.
        """
        sql = "SELECT id, worker_pid, worker_host, heartbeat FROM runs WHERE status = ?"
        with self._connect() as conn:
            if not self._gone(conn.execute(sql, (RUNNING,)).fetchall()):
                return []
        gone = []
        with self.transaction() as conn:  # look again under the lock: the run may have finished meanwhile
            for run_id, why in self._gone(conn.execute(sql, (RUNNING,)).fetchall()):
                self.update_fields(run_id, conn, status=INTERRUPTED, finished=time.time(), lease_owner=None,
                                   message=f"interrupted: {why}; resume it to continue from its last checkpoint.")
                conn.execute("UPDATE runs SET lease_token = lease_token + 1 WHERE id = ?", (run_id,))
                gone.append(run_id)
        return gone

    @staticmethod
    def _gone(rows: list[sqlite3.Row]) -> list[tuple[str, str]]:
        now, stale = time.time(), stale_seconds()
        gone = []
        for row in rows:
            if row["worker_host"] == HOST and not pid_alive(row["worker_pid"]):
                gone.append((row["id"], "its worker process died"))
            elif row["heartbeat"] is not None and now - row["heartbeat"] > stale:
                gone.append((row["id"], "its worker stopped sending heartbeats"))
        return gone

    # ------------------------------------------------------------------ workers

    def live_workers(self, backend: str, conn: sqlite3.Connection | None = None) -> list[int]:
        """Pids of this host's live workers for ``backend``; rows of dead or silent workers are removed."""
        if conn is None:
            with self.transaction() as own:
                return self.live_workers(backend, own)
        now, stale = time.time(), stale_seconds()
        alive = []
        for row in conn.execute("SELECT pid, backend, heartbeat FROM workers WHERE host = ?", (HOST,)).fetchall():
            if not pid_alive(row["pid"]) or now - row["heartbeat"] > stale:
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
