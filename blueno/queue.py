"""The job queue: enqueue, atomic claim, guarded completion, cancel, retry, recovery.

Every transition is one short ``BEGIN IMMEDIATE`` transaction.  Two counters
keep it honest:

* ``attempt`` grows with every claim.  Whatever an attempt writes later is
  guarded by ``WHERE attempt = ?``, so a late write from an abandoned attempt
  (a trainer that outlived its scheduler) changes nothing;
* ``failures`` counts attempts that crashed.  An attempt *interrupted* because
  its scheduler stopped or died is not the job's fault and does not count
  against ``max_failures``; training resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from blueno import BluenoError
from blueno.store import Store, add_outbox, dumps, now
from blueno.wakeup import poke

if TYPE_CHECKING:
    from blueno.grid import Grid

# A job interrupted this many times (its scheduler killed under it again and
# again) is failed rather than requeued forever.
MAX_ATTEMPTS = 50


class JobState(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminated(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


# The slot of a job claimed for a cluster until a node has started its trainer (see blueno.cluster).
PLACING = "placing"

# Trainer exit codes (see blueno.trainer).
EXIT_OK = 0
EXIT_PERMANENT = 2
EXIT_STALE = 3


@dataclass(frozen=True)
class Job:
    id: int
    experiment_id: int
    run_id: int | None
    config_hash: str
    config: dict[str, Any]
    model: str
    dataset: str
    state: JobState
    priority: int
    attempt: int
    failures: int
    max_failures: int
    slot: str | None
    gpu: str | None
    host: str | None
    pid: int | None
    pid_started: float | None
    scheduler_pid: int | None
    heartbeat: float | None
    cancel_requested: bool
    epoch: int
    epochs: int | None
    error: str | None
    created: float
    claimed: float | None
    started: float | None
    ended: float | None

    @property
    def placing(self) -> bool:
        """Claimed for a cluster, waiting for a node to start its trainer."""
        return self.state == JobState.RUNNING and self.slot == PLACING

    @property
    def shown_state(self) -> str:
        """The state as people read it: *placing* until a cluster node runs the job."""
        return PLACING if self.placing else str(self.state)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["config"] = json.loads(data["config"])
        data["state"] = JobState(data["state"])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)


JOB_SELECT = """
    SELECT jobs.id, jobs.experiment_id, runs.id AS run_id, jobs.config_hash, jobs.config, jobs.model,
           jobs.dataset, jobs.state, jobs.priority, jobs.attempt, jobs.failures, jobs.max_failures,
           jobs.slot, jobs.gpu, jobs.host, jobs.pid, jobs.pid_started, jobs.scheduler_pid,
           jobs.heartbeat, jobs.cancel_requested, jobs.epoch, jobs.epochs, jobs.error, jobs.created,
           jobs.claimed, jobs.started, jobs.ended
    FROM jobs LEFT JOIN runs ON runs.job_id = jobs.id
"""


@dataclass(frozen=True)
class SubmitResult:
    experiment_id: int | None
    added: list[int]  # new job ids
    requeued: list[int]  # earlier failed/cancelled jobs of the same configuration, queued again
    skipped: int  # configurations already succeeded, queued or running

    @property
    def total(self) -> int:
        return len(self.added) + len(self.requeued) + self.skipped


@dataclass(frozen=True)
class RecoveryReport:
    requeued: list[int]
    cancelled: list[int]
    failed: list[int]
    killed: list[int]  # jobs whose orphaned trainer was still alive and was stopped


# Terminal control sequences (colours, cursor moves) that a trainer's log line may carry.
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def plain_text(error: str | None) -> str | None:
    """An error as stored: without terminal colour codes, which mean nothing in a table, a report or ES."""
    return None if error is None else _ANSI.sub("", error)


def _placeholders(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


def finish_success(conn: sqlite3.Connection, job_id: int, attempt: int) -> bool:
    """Mark a running attempt succeeded, inside the caller's transaction.

    False when the attempt is stale (the job was requeued, cancelled or claimed
    again meanwhile): the caller must then roll back whatever it wrote.
    """
    cursor = conn.execute(
        "UPDATE jobs SET state = 'succeeded', ended = ?, error = NULL, pid = NULL "
        "WHERE id = ? AND attempt = ? AND state = 'running'",
        (now(), job_id, attempt),
    )
    return cursor.rowcount == 1


def insert_job(
    conn: sqlite3.Connection, experiment_id: int | None, config: dict[str, Any], config_hash: str, *,
    priority: int, max_failures: int, created: float,
) -> tuple[int, int]:
    """Insert a queued job and its run, inside the caller's transaction; returns (job id, run id)."""
    job_id = conn.execute(
        "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, priority, "
        "max_failures, epochs, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (experiment_id, config_hash, dumps(config), config["model"], config["dataset"], priority, max_failures,
         config["params"].get("epochs"), created),
    ).lastrowid
    run_id = conn.execute(
        "INSERT INTO runs (job_id, experiment_id, model, params, dataset, created) VALUES (?, ?, ?, ?, ?, ?)",
        (job_id, experiment_id, config["model"], dumps(config["params"]), config["dataset"], created),
    ).lastrowid
    return job_id, run_id


class JobQueue:
    """The queue over one workspace database; safe to use from many processes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reading --------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        row = self.store.query_one(JOB_SELECT + " WHERE jobs.id = ?", (job_id,))
        if row is None:
            raise BluenoError(f"there is no job {job_id}; `blueno queue ls` lists them")
        return Job.from_row(row)

    def jobs(
        self,
        state: JobState | str | None = None,
        experiment_id: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[Job]:
        where, params = [], []
        if state is not None:
            where.append("jobs.state = ?")
            params.append(str(state))
        if experiment_id is not None:
            where.append("jobs.experiment_id = ?")
            params.append(experiment_id)
        if ids is not None:
            where.append(f"jobs.id IN ({_placeholders(ids)})")
            params.extend(ids)
        sql = JOB_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY jobs.id"
        return [Job.from_row(row) for row in self.store.query(sql, params)]

    def counts(self, experiment_id: int | None = None) -> dict[JobState, int]:
        sql, params = "SELECT state, count(*) FROM jobs", ()
        if experiment_id is not None:
            sql, params = sql + " WHERE experiment_id = ?", (experiment_id,)
        found = dict(self.store.query(sql + " GROUP BY state", params))
        return {state: found.get(str(state), 0) for state in JobState}

    def has_runnable(self) -> bool:
        return self.store.query_one("SELECT 1 FROM jobs WHERE state = 'queued' LIMIT 1") is not None

    # -- enqueue --------------------------------------------------------------

    def submit(self, grid: Grid, resolve: Callable[[str], str] | None = None) -> SubmitResult:
        """Queue every configuration of ``grid`` that has not succeeded yet.

        ``resolve`` turns the grid's dataset name into ``name@version``; the
        version is part of each configuration's hash, so re-submitting the same
        grid on the same data resumes the sweep instead of restarting it.
        Configurations already queued, running or succeeded are skipped;
        failed or cancelled ones are queued again.
        """
        refs = {name: resolve(name) if resolve and name else name for name in grid.datasets or (grid.dataset,)}
        planned = [(cfg, cfg.config_hash(refs[cfg.dataset])) for cfg in grid.configs]
        added: list[int] = []
        requeued: list[int] = []
        skipped = 0
        created = now()
        with self.store.write() as conn:
            experiment_id = self._experiment_for(conn, grid, created)
            for cfg, config_hash in planned:
                existing = conn.execute(
                    "SELECT id, state FROM jobs WHERE config_hash = ? ORDER BY id DESC LIMIT 1",
                    (config_hash,),
                ).fetchone()
                if existing is not None and existing["state"] in ("failed", "cancelled"):
                    conn.execute(
                        "UPDATE jobs SET state = 'queued', failures = 0, error = NULL, ended = NULL, "
                        "cancel_requested = 0, priority = ?, max_failures = ? WHERE id = ?",
                        (grid.priority, grid.max_failures, existing["id"]),
                    )
                    requeued.append(existing["id"])
                    continue
                if existing is not None:
                    skipped += 1
                    continue
                job_id, _ = insert_job(conn, experiment_id, cfg.to_json(refs[cfg.dataset]), config_hash,
                                       priority=grid.priority, max_failures=grid.max_failures, created=created)
                added.append(job_id)
            if not added and not requeued and experiment_id is not None:
                # Nothing new: don't leave an empty experiment behind.
                conn.execute(
                    "DELETE FROM experiments WHERE id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM jobs WHERE experiment_id = ?)",
                    (experiment_id, experiment_id),
                )
        if added or requeued:
            self.wake_scheduler()
        return SubmitResult(experiment_id if added or requeued else None, added, requeued, skipped)

    @staticmethod
    def _experiment_for(conn: sqlite3.Connection, grid: Grid, created: float) -> int:
        """The experiment of this grid: the same name and text reuse the earlier one."""
        row = conn.execute(
            "SELECT id FROM experiments WHERE name = ? AND grid_text = ? ORDER BY id DESC LIMIT 1",
            (grid.name, grid.text),
        ).fetchone()
        if row is not None:
            return row["id"]
        return conn.execute(
            "INSERT INTO experiments (name, grid_file, grid_text, created) VALUES (?, ?, ?, ?)",
            (grid.name, str(grid.path) if grid.path else None, grid.text, created),
        ).lastrowid

    # -- the scheduler's side -------------------------------------------------

    def claim(self, slot: str, gpu: str | None, host: str, scheduler_pid: int) -> Job | None:
        """Atomically take the most urgent queued job for ``slot``; None when none is queued."""
        t = now()
        with self.store.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, slot = ?, gpu = ?, host = ?, "
                "scheduler_pid = ?, pid = NULL, pid_started = NULL, claimed = ?, heartbeat = ?, "
                "started = COALESCE(started, ?), error = NULL "
                "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' "
                "            ORDER BY priority DESC, id LIMIT 1) "
                "RETURNING id",
                (slot, gpu, host, scheduler_pid, t, t, t),
            ).fetchone()
            if row is None:
                return None
            return Job.from_row(conn.execute(JOB_SELECT + " WHERE jobs.id = ?", (row["id"],)).fetchone())

    def mark_started(self, job_id: int, attempt: int, pid: int, pid_started: float | None,
                     run: dict[str, Any] | None = None) -> bool:
        """Record the attempt's process and, on its run, where and with what it runs (``run`` columns)."""
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET pid = ?, pid_started = ? WHERE id = ? AND attempt = ? AND state = 'running'",
                (pid, pid_started, job_id, attempt),
            )
            if cursor.rowcount == 1 and run:
                conn.execute(
                    "UPDATE runs SET started = COALESCE(started, ?), host = ?, gpu = ?, blueno_version = ?, "
                    "git_commit = ?, log_path = ? WHERE job_id = ?",
                    (now(), run.get("host"), run.get("gpu"), run.get("blueno_version"), run.get("git_commit"),
                     run.get("log_path"), job_id),
                )
            return cursor.rowcount == 1

    def record_error(self, job_id: int, attempt: int, message: str) -> bool:
        """Say why a running attempt cannot succeed (its exit is recorded by :meth:`on_exit`)."""
        with self.store.write() as conn:
            return conn.execute(
                "UPDATE jobs SET error = ? WHERE id = ? AND attempt = ? AND state = 'running'",
                (message, job_id, attempt),
            ).rowcount == 1

    def mark_placed(self, job_id: int, attempt: int, slot: str, host: str, gpu: str | None,
                    run: dict[str, Any] | None = None) -> bool:
        """A cluster node started this attempt's trainer: record where (the job and its run name the node)."""
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET slot = ?, host = ?, gpu = ? WHERE id = ? AND attempt = ? AND state = 'running'",
                (slot, host, gpu, job_id, attempt),
            )
            if cursor.rowcount != 1:
                return False
            run = run or {}
            conn.execute(
                "UPDATE runs SET started = COALESCE(started, ?), host = ?, gpu = ?, "
                "blueno_version = COALESCE(?, blueno_version), git_commit = COALESCE(?, git_commit), "
                "log_path = COALESCE(?, log_path) WHERE job_id = ?",
                (now(), host, gpu, run.get("blueno_version"), run.get("git_commit"), run.get("log_path"), job_id),
            )
            return True

    def heartbeat(self, job_ids: Iterable[int]) -> None:
        ids = list(job_ids)
        if not ids:
            return
        with self.store.write() as conn:
            conn.execute(
                f"UPDATE jobs SET heartbeat = ? WHERE state = 'running' AND id IN ({_placeholders(ids)})",
                (now(), *ids),
            )

    def cancel_requested(self, job_ids: Sequence[int]) -> list[int]:
        """Which of these running jobs someone asked to cancel."""
        if not job_ids:
            return []
        rows = self.store.query(
            f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({_placeholders(job_ids)})",
            list(job_ids),
        )
        return [row["id"] for row in rows]

    def on_exit(
        self, job_id: int, attempt: int, returncode: int, *, interrupted: bool = False, detail: str = ""
    ) -> JobState:
        """Record how an attempt's process ended; returns the job's state afterwards.

        Success is committed when the attempt's ``result`` event is ingested
        (with its results, in one transaction).  Everything else is decided here: cancelled, interrupted
        (requeued, not counted), a permanent failure, or a crash (requeued
        until ``max_failures``).
        """
        t = now()
        with self.store.write() as conn:
            row = conn.execute(
                "SELECT state, attempt, failures, max_failures, cancel_requested, error "
                "FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None or row["state"] != "running" or row["attempt"] != attempt:
                return JobState(row["state"]) if row else JobState.FAILED
            if row["cancel_requested"]:
                return self._end(conn, job_id, JobState.CANCELLED, "cancelled by the user", t)
            if interrupted:
                if attempt >= MAX_ATTEMPTS:
                    return self._end(conn, job_id, JobState.FAILED, f"interrupted {attempt} times", t)
                self._requeue(conn, job_id, count_failure=False)
                return JobState.QUEUED
            if returncode == EXIT_OK:
                reason = "the trainer exited without recording a result"
            elif returncode == EXIT_PERMANENT:
                reason = row["error"] or "the trainer rejected the configuration (exit 2)"
                conn.execute("UPDATE jobs SET failures = failures + 1 WHERE id = ?", (job_id,))
                return self._end(conn, job_id, JobState.FAILED, reason, t)
            elif returncode < 0:
                reason = f"the trainer was killed by signal {-returncode}"
            else:
                reason = f"the trainer exited with status {returncode}"
            if detail:
                reason = f"{reason}: {detail}"
            failures = row["failures"] + 1
            if failures >= row["max_failures"]:
                conn.execute("UPDATE jobs SET failures = ? WHERE id = ?", (failures, job_id))
                return self._end(conn, job_id, JobState.FAILED, f"{reason} (attempt {attempt}, giving up)", t)
            self._requeue(conn, job_id, count_failure=True, error=reason)
            return JobState.QUEUED

    @staticmethod
    def _requeue(conn: sqlite3.Connection, job_id: int, *, count_failure: bool, error: str | None = None) -> None:
        error = plain_text(error)
        conn.execute(
            "UPDATE jobs SET state = 'queued', pid = NULL, pid_started = NULL, slot = NULL, gpu = NULL, "
            "scheduler_pid = NULL, failures = failures + ?, error = COALESCE(?, error) WHERE id = ?",
            (1 if count_failure else 0, error, job_id),
        )

    @staticmethod
    def _end(conn: sqlite3.Connection, job_id: int, state: JobState, error: str | None, t: float) -> JobState:
        error = plain_text(error)
        conn.execute(
            "UPDATE jobs SET state = ?, error = ?, ended = ?, pid = NULL, cancel_requested = 0 WHERE id = ?",
            (str(state), error, t, job_id),
        )
        run = conn.execute("SELECT id, started FROM runs WHERE job_id = ?", (job_id,)).fetchone()
        if run is not None:
            conn.execute("UPDATE runs SET ended = ? WHERE id = ?", (t, run["id"]))
            if run["started"] is not None:  # a run that trained at all is worth reporting
                add_outbox(conn, "run", run["id"])
        return state

    def recover(self, process_alive: Callable[[int, float | None], bool],
                stop_processes: Callable[[list[int]], None],
                settle: Callable[[int, int], None] | None = None) -> RecoveryReport:
        """Settle jobs left ``running`` by a scheduler that is gone.

        Call only while holding the workspace's scheduler lock (so no other
        scheduler owns them).  ``process_alive(pid, started)`` must say whether
        that exact process (pid *and* start time: pids are reused) still runs;
        ``stop_processes`` ends orphaned trainers' process groups (all at
        once) before their jobs are requeued; ``settle(job_id, attempt)`` then
        records what each attempt reported (it may have succeeded).  Interrupted jobs are requeued without counting a
        failure and resume from their checkpoint.
        """
        report = RecoveryReport([], [], [], [])
        rows = self.store.query(
            "SELECT id, attempt, pid, pid_started, cancel_requested FROM jobs WHERE state = 'running'"
        )
        orphans = [row for row in rows if row["pid"] is not None and process_alive(row["pid"], row["pid_started"])]
        if orphans:
            stop_processes([row["pid"] for row in orphans])
            report.killed.extend(row["id"] for row in orphans)
        if settle is not None:
            for row in rows:
                settle(row["id"], row["attempt"])
        t = now()
        with self.store.write() as conn:
            for row in rows:
                current = conn.execute("SELECT state, attempt FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                if current["state"] != "running" or current["attempt"] != row["attempt"]:
                    continue  # it finished by itself meanwhile
                if row["cancel_requested"]:
                    self._end(conn, row["id"], JobState.CANCELLED, "cancelled by the user", t)
                    report.cancelled.append(row["id"])
                elif row["attempt"] >= MAX_ATTEMPTS:
                    self._end(conn, row["id"], JobState.FAILED, f"interrupted {row['attempt']} times", t)
                    report.failed.append(row["id"])
                else:
                    self._requeue(conn, row["id"], count_failure=False)
                    report.requeued.append(row["id"])
        return report

    # -- the user's side ------------------------------------------------------

    def cancel(self, job_ids: Sequence[int]) -> dict[str, list[int]]:
        """Cancel jobs: queued or held ones at once; running ones through their scheduler."""
        self._require(job_ids)
        t = now()
        result: dict[str, list[int]] = {"cancelled": [], "stopping": [], "unchanged": []}
        with self.store.write() as conn:
            for job_id in job_ids:
                state = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()["state"]
                if state in ("queued", "held"):
                    self._end(conn, job_id, JobState.CANCELLED, "cancelled by the user", t)
                    result["cancelled"].append(job_id)
                elif state == "running":
                    conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                    result["stopping"].append(job_id)
                else:
                    result["unchanged"].append(job_id)
        if result["stopping"]:
            self.wake_scheduler()
        return result

    def retry(self, job_ids: Sequence[int]) -> dict[str, list[int]]:
        """Queue failed or cancelled jobs again, with a fresh failure budget."""
        return self._transition(
            job_ids, ("failed", "cancelled"),
            "state = 'queued', failures = 0, error = NULL, ended = NULL, cancel_requested = 0",
            "queued",
        )

    def hold(self, job_ids: Sequence[int]) -> dict[str, list[int]]:
        return self._transition(job_ids, ("queued",), "state = 'held'", "held")

    def release(self, job_ids: Sequence[int]) -> dict[str, list[int]]:
        return self._transition(job_ids, ("held",), "state = 'queued'", "queued")

    def prioritize(self, job_ids: Sequence[int], priority: int) -> None:
        """Higher priority runs first; ties run in submission order."""
        self._require(job_ids)
        with self.store.write() as conn:
            conn.execute(
                f"UPDATE jobs SET priority = ? WHERE id IN ({_placeholders(job_ids)})", (priority, *job_ids)
            )

    def shift_priority(self, job_ids: Sequence[int], step: int) -> None:
        """Move each job's priority by ``step`` in one transaction (no read-then-write race)."""
        self._require(job_ids)
        with self.store.write() as conn:
            conn.execute(
                f"UPDATE jobs SET priority = priority + ? WHERE id IN ({_placeholders(job_ids)})", (step, *job_ids)
            )

    def _transition(
        self, job_ids: Sequence[int], from_states: tuple[str, ...], assignment: str, label: str
    ) -> dict[str, list[int]]:
        self._require(job_ids)
        result: dict[str, list[int]] = {label: [], "unchanged": []}
        with self.store.write() as conn:
            for job_id in job_ids:
                cursor = conn.execute(
                    f"UPDATE jobs SET {assignment} WHERE id = ? AND state IN ({_placeholders(from_states)})",
                    (job_id, *from_states),
                )
                result[label if cursor.rowcount else "unchanged"].append(job_id)
        if result[label] and label == "queued":
            self.wake_scheduler()
        return result

    def wake_scheduler(self) -> None:
        """Tell the workspace's scheduler, in whatever process, to look at the queue now (never blocks)."""
        poke(self.store.path.parent)

    def _require(self, job_ids: Sequence[int]) -> None:
        if not job_ids:
            raise BluenoError("no job ids given")
        found = {
            row["id"]
            for row in self.store.query(
                f"SELECT id FROM jobs WHERE id IN ({_placeholders(job_ids)})", list(job_ids)
            )
        }
        missing = [str(i) for i in job_ids if i not in found]
        if missing:
            raise BluenoError(f"no such job: {', '.join(missing)}; `blueno queue ls` lists them")
