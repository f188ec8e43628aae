"""The outbox drained by bulk requests: one pass, repeated passes, a background thread, status."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk

from blueno import BluenoError, resource
from blueno.elastic.config import EsConfig, load_config
from blueno.elastic.documents import RUNS_SQL, metric_document, run_document, workspace_id
from blueno.locks import FileLock
from blueno.store import Store, doc_version, now
from blueno.workspace import Workspace

log = logging.getLogger(__name__)

TEMPLATES_DIR = resource("elasticsearch")  # package data: present in a wheel, not only in a checkout
SYNC_LOCK = ".es-sync.lock"  # held by the one process whose background thread syncs the workspace


class SyncLock(FileLock):
    """An exclusive ``flock`` on ``<workspace>/.es-sync.lock``: one background sync per workspace.

    The scheduler process and the window both start a background sync; only
    the holder sends, the other stands by and takes over when the holder
    ends (the kernel drops the lock however it ends), so results of
    trainings kept running after the window closed still go out, and no two
    loops send the same outbox at once.
    """

    def __init__(self, workspace: Workspace) -> None:
        super().__init__(workspace.root / SYNC_LOCK, note_pid=True)


def background_sync_held(workspace: Workspace) -> bool:
    """Another process's background sync runs on this workspace now (it holds the sync lock)."""
    probe = SyncLock(workspace)
    if not probe.path.exists():
        return False
    if probe.try_acquire():
        probe.release()
        return False
    return True


@dataclass(frozen=True)
class ParkedRun:
    run_id: int
    reason: str


@dataclass(frozen=True)
class SyncStatus:
    """What the GUI's status bar and ``blueno sync es --status`` show."""

    pending: int
    parked: int
    last_error: str | None
    oldest_pending: float | None
    parked_runs: tuple[ParkedRun, ...] = ()

    def summary(self) -> str:
        if not self.pending and not self.parked:
            return "Elasticsearch: in sync"
        text = f"Elasticsearch: {self.pending} pending"
        if self.pending and self.last_error:
            text += f", last error: {self.last_error}"
        if self.parked:
            text += f"; {self.parked} parked (rejected by the server: blueno sync es --status)"
        return text


def status(store: Store, parked_limit: int | None = 20) -> SyncStatus:
    """Read the outbox; works without any Elasticsearch configuration."""
    with store.snapshot() as conn:
        pending, parked, oldest = conn.execute(
            "SELECT count(*) FILTER (WHERE parked = 0), count(*) FILTER (WHERE parked = 1),"
            " min(created) FILTER (WHERE parked = 0) FROM outbox"
        ).fetchone()
        error = conn.execute(
            "SELECT last_error FROM outbox WHERE parked = 0 AND last_error IS NOT NULL"
            " ORDER BY next_try DESC LIMIT 1"
        ).fetchone()
        rows = conn.execute(
            "SELECT ref, parked_reason FROM outbox WHERE parked = 1 ORDER BY id LIMIT ?",
            (-1 if parked_limit is None else parked_limit,),
        ).fetchall()
    return SyncStatus(
        pending=pending, parked=parked, last_error=error[0] if error else None, oldest_pending=oldest,
        parked_runs=tuple(ParkedRun(r[0], r[1] or "") for r in rows),
    )


def backfill(store: Store) -> int:
    """Announce every finished run not already in the outbox (for a new or emptied cluster)."""
    with store.write() as conn:
        cursor = conn.execute(
            """
            INSERT INTO outbox (topic, ref, created)
            SELECT 'run', r.id, ? FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
            WHERE (j.state IN ('succeeded', 'failed', 'cancelled')
                   OR (r.job_id IS NULL AND r.ended IS NOT NULL))
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.topic = 'run' AND o.ref = r.id)
            ORDER BY r.id
            """,
            (now(),),
        )
        return cursor.rowcount


def retry_parked(store: Store) -> int:
    """Give parked runs another chance (after fixing the mapping or the template)."""
    with store.write() as conn:
        return conn.execute(
            "UPDATE outbox SET parked = 0, parked_reason = NULL, attempts = 0, next_try = 0 WHERE parked = 1"
        ).rowcount


def install_templates(client: Elasticsearch, config: EsConfig) -> list[str]:
    """Create or update the runs and metrics index templates; returns their names."""
    names = []
    for kind in ("runs", "metrics"):
        body = json.loads(TEMPLATES_DIR.joinpath(f"{kind}.json").read_text(encoding="utf-8"))
        name = f"{config.index_prefix}-{kind}"
        client.indices.put_index_template(
            name=name, index_patterns=[f"{name}*"], priority=body["priority"],
            template=body["template"], meta=body["_meta"],
        )
        names.append(name)
    return names


@dataclass
class SyncResult:
    """What one pass (or several, added up) did."""

    claimed: int = 0  # distinct runs taken from the outbox
    sent: int = 0  # runs whose documents were all accepted
    docs: int = 0  # documents accepted
    retried: int = 0  # runs put back with a back-off
    parked: int = 0  # runs parked with the server's reason
    error: str | None = None  # a request-level failure (server down, timeout, auth)

    def __add__(self, other: SyncResult) -> SyncResult:
        return SyncResult(
            self.claimed + other.claimed, self.sent + other.sent, self.docs + other.docs,
            self.retried + other.retried, self.parked + other.parked, other.error or self.error,
        )


@dataclass
class _Outcome:
    """What became of one run's documents in a pass."""

    expected: int
    accepted: int = 0
    park: str | None = None
    retry: str | None = None


class SyncWorker:
    """Drains the outbox into Elasticsearch: one pass with :meth:`run_once`, or a background thread."""

    def __init__(self, workspace: Workspace, store: Store, config: EsConfig) -> None:
        self.workspace = workspace
        self.store = store
        self.config = config
        self._client: Elasticsearch | None = None
        self._templates_ready = False
        self._outages = 0  # request-level failures in a row: they set the pace, not the rows' attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = SyncLock(workspace)

    @property
    def active(self) -> bool:
        """This worker's thread is the workspace's syncing one (False: it stands by for another process's)."""
        return self._lock.held

    @property
    def client(self) -> Elasticsearch:
        if self._client is None:
            self._client = self.config.client()
        return self._client

    # -- one pass ---------------------------------------------------------------

    def run_once(self) -> SyncResult:
        """Claim due rows, send their runs in bulk, record what happened; never raises for the server."""
        rows = self._claim()
        if not rows:
            return SyncResult()
        claimed: dict[int, list[sqlite3.Row]] = {}
        for row in rows:
            claimed.setdefault(row["ref"], []).append(row)
        outcomes: dict[int, _Outcome] = {}
        try:
            if not self._templates_ready:
                install_templates(self.client, self.config)
                self._templates_ready = True
            actions, outcomes, owners = self._actions(list(claimed))
            self._send(actions, outcomes, owners)
        except (TransportError, ApiError) as exc:
            error = self._describe(exc)
            self._outages += 1
            log.warning("Elasticsearch sync: %s", error)
            for outcome in outcomes.values():
                if outcome.accepted < outcome.expected:
                    outcome.retry = error
            unsent = {ref: _Outcome(expected=1, retry=error) for ref in claimed if ref not in outcomes}
            result = self._record(claimed, {**outcomes, **unsent}, request_error=True)
            result.error = error
            return result
        self._outages = 0
        return self._record(claimed, outcomes, request_error=False)

    def _claim(self) -> list[sqlite3.Row]:
        """Take due rows with a lease (``next_try`` moved ahead) so another worker leaves them alone."""
        moment = now()
        with self.store.write() as conn:
            rows = conn.execute(
                "SELECT id, ref, attempts FROM outbox WHERE parked = 0 AND next_try <= ? AND topic = 'run'"
                " ORDER BY id LIMIT ?",
                (moment, self.config.batch_runs),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET next_try = ? WHERE id = ?",
                [(moment + self.config.claim_timeout_s, row["id"]) for row in rows],
            )
        return rows

    def _actions(
        self, refs: list[int]
    ) -> tuple[list[dict[str, Any]], dict[int, _Outcome], dict[str, int]]:
        """Bulk actions for the runs, read from one snapshot of the database."""
        ws = workspace_id(self.store)
        marks = ",".join("?" * len(refs))
        with self.store.snapshot() as conn:
            runs = {row["id"]: dict(row) for row in conn.execute(RUNS_SQL.format(marks=marks), refs)}
            # The first read fixed the snapshot: a later snapshot that sees newer content sees a larger
            # counter (bumped with every announced change), so an older resend cannot overwrite it
            # (external_gte), whatever the wall clock does between the two.
            version = doc_version(conn)
            points = conn.execute(
                f"SELECT run_id, key, step, value, time FROM metrics WHERE run_id IN ({marks})"
                " ORDER BY run_id, key, step",
                refs,
            ).fetchall()
        outcomes = {ref: _Outcome(expected=0) for ref in refs}
        for ref in refs:
            if ref not in runs:
                outcomes[ref].park = f"run {ref} is not in the database (deleted?)"
        actions: list[dict[str, Any]] = []
        owners: dict[str, int] = {}

        def add(index: str, doc_id: str, ref: int, source: dict[str, Any]) -> None:
            actions.append({"_index": index, "_id": doc_id, "version": version,
                            "version_type": "external_gte", "_source": source})
            owners[doc_id] = ref
            outcomes[ref].expected += 1

        for ref, run in runs.items():
            add(self.config.runs_index, f"{ws}:{ref}", ref, run_document(run, ws))
        for point in points:
            run = runs.get(point["run_id"])
            if run is None:  # points left by a deleted run: that run is parked above
                continue
            doc_id = f"{ws}:{run['id']}:{point['key']}:{point['step']}"
            add(self.config.metrics_index, doc_id, run["id"], metric_document(run, point, ws))
        return actions, outcomes, owners

    def _send(
        self, actions: list[dict[str, Any]], outcomes: dict[int, _Outcome], owners: dict[str, int]
    ) -> None:
        """Stream the actions in bulks; note per run what was accepted, what to retry, what to park."""
        results = streaming_bulk(
            self.client, actions, chunk_size=self.config.bulk_docs, raise_on_error=False,
            max_retries=3, initial_backoff=self.config.backoff_s, max_backoff=self.config.max_backoff_s,
        )
        for ok, item in results:
            ((_, info),) = item.items()
            outcome = outcomes[owners[info["_id"]]]
            error = info.get("error") or {}
            kind = error.get("type", "") if isinstance(error, dict) else ""
            if ok or kind == "version_conflict_engine_exception":  # a newer version is already there
                outcome.accepted += 1
                continue
            reason = self.config.redact(
                f"{info.get('_index')}/{info['_id']}: HTTP {info.get('status')} {kind}: "
                f"{error.get('reason', error) if isinstance(error, dict) else error}"
            )[:2000]
            if info.get("status") == 429 or info.get("status", 500) >= 500:
                outcome.retry = reason
            else:
                outcome.park = outcome.park or reason

    def _record(self, claimed: dict[int, list[sqlite3.Row]], outcomes: dict[int, _Outcome], *,
                request_error: bool) -> SyncResult:
        """One short transaction: delete what was accepted, park rejects, back off the rest.

        ``attempts`` counts only item-level failures (the server answered and refused), so a
        cluster that is down for a week never parks the results it will gladly take afterwards;
        request-level failures back off with the worker's run of outages instead.
        """
        result = SyncResult(claimed=len(claimed))
        moment = now()
        with self.store.write() as conn:
            for ref, rows in claimed.items():
                outcome = outcomes[ref]
                ids = [row["id"] for row in rows]
                if outcome.park is None and outcome.retry is None:
                    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
                    result.sent += 1
                    result.docs += outcome.accepted
                    continue
                attempts = max(row["attempts"] for row in rows) + (0 if request_error else 1)
                # Transient failures are retried first, so that every valid document of a run
                # with a rejected one still arrives before the run is parked.
                if outcome.retry is not None and (request_error or attempts < self.config.max_attempts):
                    delay = self.config.backoff(self._outages if request_error else attempts)
                    conn.executemany(
                        "UPDATE outbox SET attempts = ?, next_try = ?, last_error = ? WHERE id = ?",
                        [(attempts, moment + delay, outcome.retry, i) for i in ids],
                    )
                    result.retried += 1
                    continue
                reason = outcome.park or f"gave up after {attempts} attempts; last error: {outcome.retry}"
                conn.executemany(
                    "UPDATE outbox SET parked = 1, parked_reason = ?, last_error = ?, attempts = ?"
                    " WHERE id = ?",
                    [(reason, reason, attempts, i) for i in ids],
                )
                result.parked += 1
                log.warning("Elasticsearch sync: run %s parked: %s", ref, reason)
        return result

    def _describe(self, exc: TransportError | ApiError) -> str:
        """A one-line, secret-free account of a request-level failure."""
        if isinstance(exc, ApiError):
            text = f"HTTP {exc.status_code} from Elasticsearch: {exc.message}"
            if exc.status_code in (401, 403):
                text += " (check the API key or user in [elasticsearch] settings)"
        elif isinstance(exc, ConnectionTimeout):
            text = f"no answer from {', '.join(self.config.urls)} within {self.config.request_timeout:g} s"
        else:
            text = f"cannot reach {', '.join(self.config.urls)}: {exc}"
        return self.config.redact(text)[:1000]

    # -- repeated passes ----------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest unparked row may be tried (None: nothing pending)."""
        row = self.store.query_one("SELECT min(next_try) FROM outbox WHERE parked = 0 AND topic = 'run'")
        return row[0] if row else None

    def drain(self, wait: float = 0.0) -> SyncResult:
        """Send everything due; wait up to ``wait`` seconds for back-offs; stop at a request-level error."""
        total = SyncResult()
        deadline = time.monotonic() + wait
        while not self._stop.is_set():
            result = self.run_once()
            total += result
            if result.error:
                break
            if result.claimed:
                continue
            due = self.next_due()
            if due is None or time.monotonic() + max(due - now(), 0) > deadline:
                break
            self._stop.wait(max(due - now(), 0))
        return total

    def start(self) -> SyncWorker:
        """Sync in a daemon thread until :meth:`stop` (the GUI and ``--batch`` use this)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="blueno-es-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._lock.release()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._lock.try_acquire():  # another process syncs: stand by, take over when it ends
                self._stop.wait(self.config.poll_s)
                continue
            try:
                result = self.run_once()
            except (sqlite3.Error, BluenoError, OSError) as exc:  # the database, not the server
                self._outages += 1
                result = SyncResult(error=self.config.redact(str(exc)))
                log.error("Elasticsearch sync: %s", result.error)
            if result.error:
                delay = self.config.backoff(self._outages)
            elif result.claimed:
                continue
            else:
                due = self.next_due()
                delay = self.config.poll_s if due is None else min(max(due - now(), 0.0), self.config.poll_s)
            self._stop.wait(delay)

    def __enter__(self) -> SyncWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_background_sync(workspace: Workspace, store: Store) -> SyncWorker | None:
    """Start syncing in a thread when Elasticsearch is configured; None (and no thread) otherwise.

    The thread sends only while it holds the workspace's sync lock (see
    :class:`SyncLock`); while another process's does, it stands by.
    """
    config = load_config(workspace)
    if config is None:
        return None
    log.info("Elasticsearch sync to %s (index prefix %s)", ", ".join(config.urls), config.index_prefix)
    return SyncWorker(workspace, store, config).start()
