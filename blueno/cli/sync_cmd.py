"""``blueno sync es``: send pending results to Elasticsearch now, backfill, install templates, status.

A thin layer over :mod:`blueno.elastic` (imported when the command runs, so
other commands do not pay for the Elasticsearch client's import).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from blueno import BluenoError
from blueno.cli.common import print_json
from blueno.workspace import Workspace

if TYPE_CHECKING:
    from blueno.elastic import SyncStatus


def register(commands: argparse._SubParsersAction) -> None:
    sync = commands.add_parser("sync", help="sync results to external services")
    targets = sync.add_subparsers(dest="target", metavar="TARGET", required=True)
    es = targets.add_parser(
        "es", help="send pending runs to Elasticsearch",
        description="Send every pending run (and its metric points) to Elasticsearch, then report. "
        "Configured in settings.toml [elasticsearch] or BLUENO_ES_URL / BLUENO_ES_API_KEY.",
    )
    es.add_argument("--backfill", action="store_true",
                    help="queue every finished run first (for a new or emptied cluster)")
    es.add_argument("--install-templates", action="store_true",
                    help="create or update the index templates, then exit")
    es.add_argument("--status", action="store_true", help="show pending and parked runs; send nothing")
    es.add_argument("--retry-parked", action="store_true",
                    help="give runs the server rejected another chance (after fixing the mapping)")
    es.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                    help="how long to wait for retries the server asked for (default 60)")
    es.add_argument("--json", action="store_true", help="machine-readable output")
    es.set_defaults(func=run_sync_es)


def run_sync_es(workspace: Workspace, args: argparse.Namespace) -> int:
    from elasticsearch import ApiError, TransportError

    from blueno import elastic

    store = workspace.open_store()
    with store:
        if args.status:
            return _print_status(elastic.status(store, parked_limit=None), args.json)
        config = elastic.load_config(workspace)
        if config is None:
            raise BluenoError(
                "Elasticsearch is not configured: set urls in the [elasticsearch] section of "
                f"{workspace.settings_path} or BLUENO_ES_URL (see docs/elasticsearch.md)."
            )
        if args.install_templates:
            with config.client() as client:
                try:
                    names = elastic.install_templates(client, config)
                except (ApiError, TransportError) as exc:
                    reason = config.redact(str(exc))
                    raise BluenoError(f"cannot install the index templates: {reason}") from None
            print(f"installed index templates: {', '.join(names)}")
            return 0
        if args.retry_parked:
            print(f"{elastic.retry_parked(store)} parked run(s) queued again")
        if args.backfill:
            print(f"{elastic.backfill(store)} run(s) queued for Elasticsearch")
        with elastic.SyncWorker(workspace, store, config) as worker:
            result = worker.drain(wait=args.wait)
        state = elastic.status(store, parked_limit=None)
        if args.json:
            print_json({"sent_runs": result.sent, "documents": result.docs, "parked": result.parked,
                        "error": result.error, "pending": state.pending, "parked_total": state.parked})
        else:
            print(f"sent {result.sent} run(s), {result.docs} document(s); {state.summary()}")
        return 1 if result.error or state.pending else 0


def _print_status(state: SyncStatus, as_json: bool) -> int:
    if as_json:
        print_json({"pending": state.pending, "parked": state.parked, "last_error": state.last_error,
                    "oldest_pending": state.oldest_pending,
                    "parked_runs": [{"run_id": p.run_id, "reason": p.reason} for p in state.parked_runs]})
        return 0
    print(state.summary())
    for parked in state.parked_runs:
        print(f"  run {parked.run_id}: {parked.reason}")
    return 0
