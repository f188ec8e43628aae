"""Elasticsearch sync: the outbox drained by bulk requests with deterministic ids.

A finished (or failed) run and its outbox row are committed in one SQLite
transaction by the trainer, so a result is never lost and never announced
before it exists.  The :class:`SyncWorker` sends it later, built from the
database alone, whatever happened to the process that trained it:

* ids are derived from the workspace and the run (and metric and step), so a
  resend after a crash overwrites the same documents instead of adding copies;
* documents carry an external version (the time their content was read), so a
  slow, older resend can never overwrite a newer one (the GUI and a ``--batch``
  run may both sync one workspace);
* an outbox row is deleted only after every document of its run was accepted;
  a worker killed in between resends the run, which is harmless;
* connection errors and timeouts back off (nothing is lost), 429 is retried,
  and a document the server rejects (a mapping error) parks its row with the
  server's reason so the rest keeps flowing and the user can see why.

Secrets from the configuration never reach a log line, an outbox row or a
document: every message that leaves this module goes through :meth:`EsConfig.redact`.
"""

from blueno.elastic.config import ENV_SETTINGS, EsConfig, load_config
from blueno.elastic.documents import iso_time, metric_document, run_document, workspace_id
from blueno.elastic.sync import (
    ParkedRun,
    SyncResult,
    SyncStatus,
    SyncWorker,
    backfill,
    install_templates,
    retry_parked,
    start_background_sync,
    status,
)

__all__ = [
    "ENV_SETTINGS", "EsConfig", "ParkedRun", "SyncResult", "SyncStatus", "SyncWorker", "backfill",
    "install_templates", "iso_time", "load_config", "metric_document", "retry_parked", "run_document",
    "start_background_sync", "status", "workspace_id",
]
