"""Optional notifications: a Slack-compatible webhook when a job fails or an experiment finishes.

Off by default.  Turned on by the settings file::

    [notify]
    webhook_url = "https://hooks.slack.com/services/…"   # or BLUENO_NOTIFY_WEBHOOK_URL, or the
                                    # secret file credentials/notify-webhook-url (mode 0600)
    on_job_failed = true            # default true
    on_experiment_finished = true   # default true
    enabled = true                  # false keeps the URL but sends nothing

The message is Slack's incoming-webhook JSON (``{"text": …}``), which
Mattermost, Rocket.Chat, Discord (``/slack``) and Teams connectors also take,
with the headline figures: the best runs on validation, job counts, the error
of a failed job.  The webhook URL is a secret (it carries the token): it is
never logged, printed or put in an exception message.

The scheduler calls :func:`on_job_finished` after it records how a job ended;
it returns at once and posts from a daemon thread, so a slow receiver never
holds up scheduling.  Each delivery has an overall deadline (``DEADLINE_S``,
not a per-read timeout: a receiver trickling a byte every 2 s is cut off), and
a process that exits waits for pending deliveries at most until their
deadline.  An experiment is announced once per "all its jobs ended" (a row in
``meta`` makes the announcement idempotent across processes).

Notifications are optional: a ``[notify]`` section of the wrong shape, an
unreadable settings file, a ``file:`` or scheme-less URL, a receiver that
answers garbage are each logged (never with the URL) and nothing is sent;
they never raise into the scheduler.
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from blueno import BluenoError
from blueno.runs import figures, score, top_runs
from blueno.settings_check import notify_problems as settings_problems
from blueno.settings_check import url_problem
from blueno.store import Store, now
from blueno.workspace import Workspace, check_secret_mode

ENV_URL = "BLUENO_NOTIFY_WEBHOOK_URL"
SECRET_FILE = "notify-webhook-url"  # in credentials/: what Workspace.save_secret writes for the settings dialog
TIMEOUT_S = 10.0  # per connect / read
DEADLINE_S = 20.0  # for one whole delivery, retries included
EXIT_WAIT_S = 5.0  # at most this long, a process that exits waits for its pending deliveries
log = logging.getLogger(__name__)
_pending: list[tuple[threading.Thread, float]] = []  # deliveries to wait for at exit, with their deadlines


@dataclass(frozen=True)
class NotifyConfig:
    webhook_url: str | None = None
    on_job_failed: bool = True
    on_experiment_finished: bool = True

    def __repr__(self) -> str:  # the URL carries the webhook's token
        return (f"NotifyConfig(webhook_url={'***' if self.webhook_url else None}, "
                f"on_job_failed={self.on_job_failed}, on_experiment_finished={self.on_experiment_finished})")

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)


def load_config(workspace: Workspace) -> NotifyConfig:
    """The environment, else ``[notify] webhook_url``, else the secret file (``credentials/notify-webhook-url``).

    ``enabled = false`` in ``[notify]`` turns notifications off while keeping the URL.
    A settings file that cannot be read or a section of the wrong shape turns
    notifications off with a logged warning: an optional feature never stops the scheduler.
    """
    try:
        section = workspace.settings().get("notify")
    except BluenoError as exc:
        log.warning("notifications are off: %s", exc)
        return NotifyConfig()
    problems = settings_problems(section)
    if problems:
        log.warning("notifications are off: %s (in %s)", "; ".join(problems), workspace.settings_path)
        return NotifyConfig()
    section = section or {}
    url = os.environ.get(ENV_URL) or section.get("webhook_url") or None
    if url is None:
        path = workspace.credentials_dir / str(section.get("webhook_url_file") or SECRET_FILE)
        try:
            url = path.read_text(encoding="utf-8").strip() or None
            check_secret_mode(path)
        except (OSError, UnicodeDecodeError):
            url = None
    if url is not None and (problem := url_problem(url)):
        log.warning("notifications are off: %s", problem)
        return NotifyConfig()
    if not section.get("enabled", True):
        url = None
    return NotifyConfig(url.strip() if url else None, bool(section.get("on_job_failed", True)),
                        bool(section.get("on_experiment_finished", True)))


def post(
    config: NotifyConfig, message: dict[str, Any], timeout: float = TIMEOUT_S, deadline: float = DEADLINE_S
) -> bool:
    """POST the JSON message; True when the receiver accepted it (2xx).  Failures are logged without the URL.

    The exchange runs in a daemon thread given ``deadline`` seconds in all: a
    receiver that trickles its answer is abandoned then, and never holds the process.
    """
    if not config.webhook_url:
        return False
    if problem := url_problem(config.webhook_url):
        log.warning("notification not sent: %s", problem)
        return False
    outcome: list[bool] = []
    worker = threading.Thread(target=lambda: outcome.append(_deliver(config.webhook_url or "", message,
                                                                     timeout, time.monotonic() + deadline)),
                              name="blueno-notify-post", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        log.warning("notification webhook failed (no complete answer within %.0f s); the message was not "
                    "delivered", deadline)
        return False
    return bool(outcome and outcome[0])


def _deliver(url: str, message: dict[str, Any], timeout: float, deadline: float) -> bool:
    request = urllib.request.Request(
        url, data=json.dumps(message).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "blueno-notify"},
    )
    for attempt in (1, 2):
        try:
            left = deadline - time.monotonic()
            with urllib.request.urlopen(request, timeout=max(0.1, min(timeout, left))) as response:
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            retry = exc.code == 429 or exc.code >= 500
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = type(getattr(exc, "reason", exc)).__name__  # never str(exc): it may quote the URL
            retry = not isinstance(exc, (ValueError, http.client.HTTPException))
        except Exception as exc:  # noqa: BLE001 - whatever the receiver does, the sender only logs
            reason, retry = type(exc).__name__, False
        if not retry or attempt == 2 or time.monotonic() + 1 > deadline:
            log.warning("notification webhook failed (%s); the message was not delivered", reason)
            return False
    return False


@atexit.register
def _wait_for_deliveries() -> None:
    """At exit, give pending deliveries a short while (``EXIT_WAIT_S``): delivered if the receiver is well,
    never holding ``--batch`` up for a slow one (the threads are daemons: they stop with the process)."""
    until = time.monotonic() + EXIT_WAIT_S
    for thread, deadline in list(_pending):
        thread.join(max(0.0, min(deadline, until) - time.monotonic()))


def slack_escape(text: object) -> str:
    """Text as Slack shows it literally: ``<!channel>`` and ``<url|text>`` in a name or parameter do nothing."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- messages ---------------------------------------------------------------------


def _figure_text(run: dict[str, Any]) -> str:
    f = figures(run)
    parts = [f"{run['monitor']} {score(run):.4g}" if score(run) is not None else "no score"]
    for key in ("validation.accuracy", "validation.auc", "validation.f1"):
        if f.get(key) is not None:
            parts.append(f"{key.split('.')[1]} {f[key]:.4g}")
    return ", ".join(parts)


def _params_text(run: dict[str, Any], limit: int = 6) -> str:
    params = run.get("params") or {}
    shown = [f"{k}={v}" for k, v in sorted(params.items()) if k not in ("epochs", "monitor")][:limit]
    return slack_escape(" ".join(shown))


def experiment_message(store: Store, experiment_id: int) -> dict[str, Any]:
    experiment = store.query_one("SELECT name FROM experiments WHERE id = ?", (experiment_id,))
    name = slack_escape(experiment["name"]) if experiment else f"#{experiment_id}"
    counts = dict(store.query("SELECT state, count(*) FROM jobs WHERE experiment_id = ? GROUP BY state",
                              (experiment_id,)))
    lines = [f"*Blueno: experiment {name} (#{experiment_id}) finished*: "
             + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))]
    best = top_runs(store, experiment_id, limit=3)
    for i, run in enumerate(best, 1):
        lines.append(f"{i}. run {run['id']} {slack_escape(run['model'])}: {_figure_text(run)} "
                     f"({_params_text(run)})")
    if not best:
        lines.append("No run produced a result.")
    return {"text": "\n".join(lines), "username": "Blueno"}


def job_failed_message(store: Store, job_id: int) -> dict[str, Any]:
    row = store.query_one(
        "SELECT jobs.id, jobs.model, jobs.error, jobs.attempt, jobs.experiment_id, runs.id AS run_id, "
        "experiments.name FROM jobs LEFT JOIN runs ON runs.job_id = jobs.id "
        "LEFT JOIN experiments ON experiments.id = jobs.experiment_id WHERE jobs.id = ?", (job_id,))
    error = (row["error"] or "no reason recorded").strip().splitlines()
    text = (f"*Blueno: job {row['id']} failed* (run {row['run_id']}, {slack_escape(row['model'])}, experiment "
            f"{slack_escape(row['name'])} #{row['experiment_id']}, attempt {row['attempt']})\n"
            f"> {slack_escape(error[-1][:500]) if error else ''}")
    return {"text": text, "username": "Blueno"}


# -- hooks ------------------------------------------------------------------------------


def _experiment_done(store: Store, experiment_id: int) -> int | None:
    """How many jobs the experiment has when all of them have ended; None while any is still to run."""
    row = store.query_one(
        "SELECT count(*) AS n, sum(state IN ('queued', 'held', 'running')) AS open FROM jobs "
        "WHERE experiment_id = ?", (experiment_id,))
    return row["n"] if row["n"] and not row["open"] else None


def _claim_announcement(store: Store, key: str) -> bool:
    """True for exactly one caller per key, across processes."""
    with store.write() as conn:
        return conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                            (key, str(now()))).rowcount == 1


def _send(config: NotifyConfig, message: dict[str, Any], wait: bool) -> threading.Thread | None:
    if wait:
        post(config, message)
        return None
    thread = threading.Thread(target=post, args=(config, message), name="blueno-notify", daemon=True)
    thread.start()
    _pending[:] = [(t, d) for t, d in _pending if t.is_alive()] + [(thread, time.monotonic() + DEADLINE_S)]
    return thread


def on_experiment_finished(
    workspace: Workspace, store: Store, experiment_id: int, *, wait: bool = False
) -> threading.Thread | None:
    """Announce a finished experiment once (per number of jobs it has), if configured to."""
    config = load_config(workspace)
    if not config.enabled or not config.on_experiment_finished:
        return None
    n_jobs = _experiment_done(store, experiment_id)
    if n_jobs is None or not _claim_announcement(store, f"notify:experiment:{experiment_id}:{n_jobs}"):
        return None
    return _send(config, experiment_message(store, experiment_id), wait)


def on_job_finished(
    workspace: Workspace, store: Store, job_id: int, *, wait: bool = False
) -> list[threading.Thread]:
    """Call after a job reached its final state: notifies a failure, and its experiment's end.

    Cheap when notifications are off (one settings read).  Returns the sending
    threads (empty when nothing was sent, or when ``wait`` sent synchronously).
    Never raises: a notification problem is logged and scheduling goes on.
    """
    try:
        return _on_job_finished(workspace, store, job_id, wait)
    except Exception as exc:  # noqa: BLE001 - an optional feature must not stop the scheduler
        log.warning("notification skipped for job %s: %s", job_id, type(exc).__name__)
        return []


def _on_job_finished(workspace: Workspace, store: Store, job_id: int, wait: bool) -> list[threading.Thread]:
    config = load_config(workspace)
    if not config.enabled:
        return []
    row = store.query_one("SELECT state, experiment_id, attempt FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        return []
    threads = []
    if row["state"] == "failed" and config.on_job_failed and _claim_announcement(
            store, f"notify:job-failed:{job_id}:{row['attempt']}"):
        threads.append(_send(config, job_failed_message(store, job_id), wait))
    if row["state"] in ("succeeded", "failed", "cancelled"):
        threads.append(on_experiment_finished(workspace, store, row["experiment_id"], wait=wait))
    return [t for t in threads if t is not None]
