"""The workspace database: connection rules, schema and migrations, in one place.

Every process (GUI, ``--batch``, trainer subprocesses, sync workers) opens the
same SQLite file through :class:`Store`.  The rules:

* WAL mode, so readers never block the writer and vice versa;
* ``synchronous=FULL``: a committed queue transition survives a power cut;
* a busy timeout, and writes that begin with ``BEGIN IMMEDIATE`` so a writer
  takes the lock up front instead of failing half-way; when another process
  holds the write lock longer than the timeout, :meth:`Store.write` keeps
  retrying with back-off (up to ``lock_wait`` seconds) rather than surfacing
  "database is locked" to the user;
* one connection per thread (``sqlite3`` connections are not shared);
* transactions are short: nothing slow (starting a process, training) ever
  happens while one is open.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blueno import BluenoError

BUSY_TIMEOUT_S = 0.5  # one wait inside SQLite's C code, where Ctrl-C cannot act: keep it short
LOCK_WAIT_S = 600.0
CLOSE_WAIT_S = 10.0  # close() waits this long for another thread to finish using its connection
WAIT_NOTICE_S = 3.0  # say what is being waited for after this long
WAL_WRITE_LOCK_OFFSET = 120  # the byte of ``-shm`` that SQLite's WAL writer locks (UNIX_SHM_BASE)
log = logging.getLogger(__name__)

# The statements of the run_keys triggers (migration 0003): a run's names counted in, or out.
_RUN_KEYS_ADD = "".join(
    f"""            INSERT INTO run_keys (experiment_id, kind, key, uses)
                SELECT coalesce(NEW.experiment_id, 0), '{kind}', key, 1 FROM json_each(NEW.{column}) WHERE true
                ON CONFLICT DO UPDATE SET uses = uses + 1;
""" for kind, column in (("p", "params"), ("m", "best"), ("m", "final")))
_RUN_KEYS_REMOVE = "".join(
    f"""            UPDATE run_keys SET uses = uses - 1 WHERE experiment_id = coalesce(OLD.experiment_id, 0)
                AND kind = '{kind}' AND key IN (SELECT key FROM json_each(OLD.{column}));
""" for kind, column in (("p", "params"), ("m", "best"), ("m", "final")))

# Named, ordered, forward-only migrations (the sqlite-utils ``migrations`` idea).
# ``PRAGMA user_version`` holds how many have been applied; ``_migrations``
# records when.  Never edit a migration that has shipped: append a new one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version TEXT NOT NULL,            -- short hash of the manifest
            manifest_hash TEXT NOT NULL,      -- full sha256 of the canonical manifest
            kind TEXT NOT NULL,               -- npy_folder | npz | image_folder | csv | arrays (derived)
            path TEXT NOT NULL,               -- relative to the workspace, or absolute when linked
            linked INTEGER NOT NULL DEFAULT 0,
            manifest TEXT NOT NULL,           -- JSON: files (path, size, crc32c), shapes, dtypes
            n_samples INTEGER NOT NULL,
            n_classes INTEGER,
            n_files INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            sample_shape TEXT,                -- JSON list
            classes TEXT,                     -- JSON {label: count}
            parent_id INTEGER REFERENCES datasets(id),
            transform TEXT,                   -- JSON {"name": ..., "params": {...}} that derived it
            remote_url TEXT,                  -- gs://… when pushed
            source TEXT,                      -- where it was imported from
            created REAL NOT NULL,
            UNIQUE (name, version)
        );
        CREATE INDEX datasets_by_parent ON datasets (parent_id);

        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            grid_file TEXT,
            grid_text TEXT NOT NULL,          -- the TOML exactly as submitted
            created REAL NOT NULL
        );

        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            config_hash TEXT NOT NULL,
            config TEXT NOT NULL,             -- JSON: model, params, dataset, split, preprocessing
            model TEXT NOT NULL,
            dataset TEXT NOT NULL,            -- name@version
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'held', 'running', 'succeeded', 'failed', 'cancelled')),
            priority INTEGER NOT NULL DEFAULT 0,
            attempt INTEGER NOT NULL DEFAULT 0,     -- claims so far; guards late writes
            failures INTEGER NOT NULL DEFAULT 0,    -- attempts that crashed or errored
            max_failures INTEGER NOT NULL DEFAULT 3,
            slot TEXT,
            gpu TEXT,
            host TEXT,
            pid INTEGER,
            pid_started REAL,                 -- process create time: tells pid reuse apart
            scheduler_pid INTEGER,
            heartbeat REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            epoch INTEGER NOT NULL DEFAULT 0,
            epochs INTEGER,
            error TEXT,
            created REAL NOT NULL,
            claimed REAL,                     -- when this attempt was claimed
            started REAL,                     -- first claim
            ended REAL
        );
        CREATE INDEX jobs_by_state ON jobs (state, priority DESC, id);
        CREATE INDEX jobs_by_config ON jobs (config_hash);
        CREATE INDEX jobs_by_experiment ON jobs (experiment_id);

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            job_id INTEGER UNIQUE REFERENCES jobs(id),   -- NULL for runs made without training
            experiment_id INTEGER REFERENCES experiments(id),
            kind TEXT NOT NULL DEFAULT 'train',           -- train | ensemble
            model TEXT NOT NULL,
            params TEXT NOT NULL,             -- JSON
            dataset TEXT NOT NULL,            -- name@version it trained on
            epochs_done INTEGER NOT NULL DEFAULT 0,
            best_epoch INTEGER,
            monitor TEXT,                     -- metric that chose the best checkpoint
            final TEXT,                       -- JSON: metrics of the last epoch
            best TEXT,                        -- JSON: metrics of the best (saved) epoch
            evaluation TEXT,                  -- JSON: evaluation of the saved model
            model_path TEXT,
            log_path TEXT,
            model_url TEXT,
            host TEXT,
            gpu TEXT,
            blueno_version TEXT,              -- the Blueno that trained it
            git_commit TEXT,                  -- `git rev-parse HEAD` of the workspace, when it is a checkout
            started REAL,
            ended REAL,
            created REAL NOT NULL
        );
        CREATE INDEX runs_by_experiment ON runs (experiment_id);

        -- Append-only metric points; (run, key, step) makes re-ingestion harmless.
        CREATE TABLE metrics (
            run_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,                       -- NULL for NaN
            time REAL NOT NULL,
            PRIMARY KEY (run_id, key, step)
        ) WITHOUT ROWID;

        -- The newest point per (run, key): a runs table never scans history.
        CREATE TABLE latest_metrics (
            run_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            step INTEGER NOT NULL,
            value REAL,
            time REAL NOT NULL,
            PRIMARY KEY (run_id, key)
        ) WITHOUT ROWID;

        -- Rows written in the same transaction as the result they announce.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,              -- 'run'
            ref INTEGER NOT NULL,             -- the run id
            created REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            parked INTEGER NOT NULL DEFAULT 0,
            parked_reason TEXT
        );
        CREATE INDEX outbox_due ON outbox (parked, next_try);

        -- Facts about this workspace database, e.g. 'workspace_id' (a UUID made on first sync)
        -- that keeps this box's Elasticsearch documents apart from other boxes'.
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        -- Schedulers that run (or ran) on this workspace: lets a GUI attach.
        CREATE TABLE schedulers (
            id INTEGER PRIMARY KEY,
            pid INTEGER NOT NULL,
            pid_started REAL,
            host TEXT NOT NULL,
            mode TEXT NOT NULL,               -- batch | gui | cli
            slots TEXT NOT NULL,              -- JSON list of slot names
            state TEXT NOT NULL,              -- running | paused | stopped
            started REAL NOT NULL,
            heartbeat REAL NOT NULL,
            stopped REAL
        );
        """,
    ),
    (
        "0002_event_ingest",
        """
        -- How far the scheduler has ingested each attempt's events (docs/trainer-protocol.md):
        -- written in the same transaction as what those events said, so ingesting is idempotent.
        CREATE TABLE event_ingest (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            attempt INTEGER NOT NULL,
            position INTEGER NOT NULL,        -- where the source resumes (a byte offset for files)
            seq INTEGER NOT NULL,             -- the last event sequence number ingested
            checkpoint TEXT,                  -- the last checkpoint the attempt reported
            problems INTEGER NOT NULL DEFAULT 0,  -- lines that were not valid events
            PRIMARY KEY (job_id, attempt)
        );
        """,
    ),
    (
        "0003_run_keys",
        f"""
        -- The parameter and metric names the runs of each experiment have, kept by triggers, so the
        -- runs table's columns (blueno/run_table.py) are known without parsing every run's JSON.
        -- `uses` counts the objects (params, best, final) holding the key; a key at 0 is removed.
        CREATE TABLE run_keys (
            experiment_id INTEGER NOT NULL,   -- 0 for runs without an experiment
            kind TEXT NOT NULL,               -- p: a parameter, m: a metric (best or final)
            key TEXT NOT NULL,
            uses INTEGER NOT NULL,
            PRIMARY KEY (experiment_id, kind, key)
        ) WITHOUT ROWID;

        INSERT INTO run_keys (experiment_id, kind, key, uses)
        SELECT experiment, kind, key, count(*) FROM (
            SELECT coalesce(r.experiment_id, 0) AS experiment, 'p' AS kind, k.key AS key
              FROM runs r, json_each(r.params) k
            UNION ALL SELECT coalesce(r.experiment_id, 0), 'm', k.key FROM runs r, json_each(r.best) k
            UNION ALL SELECT coalesce(r.experiment_id, 0), 'm', k.key FROM runs r, json_each(r.final) k
        ) GROUP BY experiment, kind, key;

        CREATE TRIGGER run_keys_insert AFTER INSERT ON runs BEGIN
{_RUN_KEYS_ADD}        END;

        CREATE TRIGGER run_keys_delete AFTER DELETE ON runs BEGIN
{_RUN_KEYS_REMOVE}            DELETE FROM run_keys WHERE uses <= 0;
        END;

        -- Per epoch the ingester rewrites best and final: only keys that come or go change anything.
        CREATE TRIGGER run_keys_update AFTER UPDATE OF experiment_id, params, best, final ON runs BEGIN
{_RUN_KEYS_REMOVE}{_RUN_KEYS_ADD}            DELETE FROM run_keys WHERE uses <= 0;
        END;
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)


def now() -> float:
    """Wall-clock time as stored in every table (seconds since the epoch)."""
    return time.time()


def dumps(value: Any) -> str:
    """Canonical JSON, as stored in the JSON columns."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def lock_holder(db_path: Path) -> str | None:
    """"process PID (its command line)" holding the database's write lock, from /proc/locks (Linux)."""
    try:
        inode = os.stat(f"{db_path}-shm").st_ino
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in locks:
        parts = line.split()
        if len(parts) < 8 or "WRITE" not in parts or parts[-2] != str(WAL_WRITE_LOCK_OFFSET):
            continue
        if parts[-3].rsplit(":", 1)[-1] != str(inode):
            continue
        pid = parts[-4]
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = ""
        return f"process {pid}" + (f" ({command.strip()[:120]})" if command.strip() else "")
    return None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Store:
    """One workspace database, shared safely between threads and processes."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = BUSY_TIMEOUT_S,
        lock_wait: float = LOCK_WAIT_S,
        migrate: bool = True,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.lock_wait = lock_wait
        self._local = threading.local()
        # Every thread's connection with the lock its thread holds while using it (see close()).
        self._all: list[tuple[sqlite3.Connection, threading.RLock]] = []
        self._all_lock = threading.Lock()
        if migrate:
            self.migrate()

    # -- connections --------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as exc:
                raise BluenoError(
                    f"cannot open the workspace database {self.path}: {exc}. "
                    "If the file is damaged, restore it from a backup or choose another --home."
                ) from None
            self._local.conn = conn
            self._local.in_use = threading.RLock()
            with self._all_lock:
                self._all.append((conn, self._local.in_use))
        return conn

    @contextmanager
    def _held(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, marked in use (close() waits for it) until the block ends."""
        conn = self.connection()
        with self._local.in_use:
            yield conn

    def close(self) -> None:
        """Close every connection this store opened (all threads).

        A connection another thread is using at that moment (a view's
        background read while its window closes) is closed when that use
        ends, never under it: closing an SQLite connection in use from another
        thread crashed the process.  The store opens new connections if used again.
        """
        with self._all_lock:
            opened, self._all = self._all, []
        self._local = threading.local()
        for conn, in_use in opened:
            if in_use.acquire(timeout=CLOSE_WAIT_S):
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
                finally:
                    in_use.release()
            # else: still in use after the wait; the last reference to it closes it (CPython frees the
            # connection, which closes it, once the thread's block ends: this store no longer holds it).

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retry(self, op):
        """Run ``op`` again while another process holds the lock, up to ``lock_wait``.

        After a few seconds it says (as a logged warning) which process holds
        the lock; when ``lock_wait`` runs out it ends in a BluenoError, not a
        traceback.  The waits are short sleeps here in Python, so Ctrl-C acts at once.
        """
        started = time.monotonic()
        deadline = started + self.lock_wait
        delay = 0.01
        noticed = False
        while True:
            try:
                return op()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise BluenoError(
                        f"the workspace database {self.path} stayed locked for {self.lock_wait:.0f} s by "
                        f"{lock_holder(self.path) or 'another process'}; nothing was changed. Wait for it to "
                        "finish (or stop it), then try again."
                    ) from None
            if not noticed and time.monotonic() - started > WAIT_NOTICE_S:
                noticed = True
                log.warning("waiting for the workspace database %s: %s holds its write lock (giving up after "
                            "%.0f s; Ctrl-C stops now)", self.path, lock_holder(self.path) or "another process",
                            self.lock_wait)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    # -- transactions -------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT`` or rollback.

        Keep the body short.  Nested use on the same thread joins the outer
        transaction.
        """
        with self._held() as conn:
            if conn.in_transaction:
                yield conn
                return
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite already rolled back after e.g. a full disk
                    conn.execute("ROLLBACK")
                raise
            else:
                self._retry(lambda: conn.execute("COMMIT"))

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same database state."""
        with self._held() as conn:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Read rows outside any explicit transaction."""
        with self._held() as conn:
            return self._retry(lambda: conn.execute(sql, params).fetchall())

    def query_tuples(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`query`, as plain tuples (``sqlite3.Row`` costs more than a query of many small rows)."""
        with self._held() as conn:
            cursor = conn.cursor()
            cursor.row_factory = None
            return self._retry(lambda: cursor.execute(sql, params).fetchall())

    def query_one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def data_version(self) -> int:
        """Changes when another connection commits: the GUI's cheap change probe."""
        with self._held() as conn:
            return conn.execute("PRAGMA data_version").fetchone()[0]

    # -- schema -------------------------------------------------------------

    def schema_version(self) -> int:
        with self._held() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply missing migrations; refuse a database made by a newer Blueno."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise BluenoError(
                f"{self.path} has schema version {version}, but this Blueno knows only up to "
                f"{SCHEMA_VERSION}: it was written by a newer Blueno. Upgrade Blueno "
                "(git pull, then make), or open another workspace with --home."
            )
        if version == SCHEMA_VERSION:
            return version
        with self.write() as conn:
            # Re-read inside the lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)"
            )
            for index in range(version, SCHEMA_VERSION):
                name, sql = MIGRATIONS[index]
                for statement in _split_sql(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, now()))
                conn.execute(f"PRAGMA user_version = {index + 1}")
        return SCHEMA_VERSION


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    statements, current = [], []
    for line in script.splitlines():
        current.append(line)
        candidate = "\n".join(current)
        if sqlite3.complete_statement(candidate):
            if candidate.strip():
                statements.append(candidate)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


# Elasticsearch document versions: a counter in ``meta`` bumped by every transaction that announces new
# content, read inside the snapshot a sync sends.  It only grows with the database's own commit order,
# never with the wall clock (a clock stepping back cannot make an older copy win).  The base keeps the
# versions above the microsecond timestamps that earlier Blueno versions used (about 1.8e15 in 2026).
DOC_VERSION_KEY = "es_doc_version"
DOC_VERSION_BASE = 4_000_000_000_000_000


def add_outbox(conn: sqlite3.Connection, topic: str, ref: int) -> None:
    """Announce a result for sync; call inside the transaction that writes the result."""
    conn.execute("INSERT INTO outbox (topic, ref, created) VALUES (?, ?, ?)", (topic, ref, now()))
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", (DOC_VERSION_KEY,)
    )


def doc_version(conn: sqlite3.Connection) -> int:
    """The document version of what this connection's snapshot sees (monotonic, owned by the database)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (DOC_VERSION_KEY,)).fetchone()
    return DOC_VERSION_BASE + (int(row[0]) if row else 0)
