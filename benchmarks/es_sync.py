"""Elasticsearch sync throughput, and what the outbox adds to finishing a run.

1. Documents per second from the outbox into ``tests/es_server.py`` with 1,000-document
   bulks (Blueno's whole path: claim, read the runs and their points, build documents,
   bulk, delete the outbox rows), next to the official client's ``helpers.bulk`` of the
   same documents prebuilt in memory (the ceiling this server allows).
2. The final-results transaction of a run (runs row + job state), with and without the
   outbox insert, on the workspace database as Blueno opens it (WAL, ``synchronous=FULL``).

Run: ``.venv/bin/python benchmarks/es_sync.py [--runs 2000] [--finishes 300]``.  The test
server is a single Python process; the figures measure Blueno's overhead, not a cluster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from elasticsearch import Elasticsearch  # noqa: E402
from elasticsearch.helpers import bulk  # noqa: E402
from es_server import EsTestServer  # noqa: E402

from blueno.elastic import EsConfig, SyncWorker  # noqa: E402
from blueno.store import Store, add_outbox, dumps, now  # noqa: E402
from blueno.workspace import Workspace  # noqa: E402

KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def open_workspace(root: Path) -> tuple[Workspace, Store]:
    workspace = Workspace(root).ensure()
    store = workspace.open_store()
    with store.write() as conn:  # the workspace identity table proposed for 0001 (docs/elasticsearch.md)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return workspace, store


def add_finished_runs(store: Store, count: int, epochs: int, outbox: bool) -> list[int]:
    t = now()
    ids = []
    with store.write() as conn:
        experiment = conn.execute(
            "INSERT INTO experiments (name, grid_text, created) VALUES ('bench', '', ?)", (t,)
        ).lastrowid
        for i in range(count):
            params = dumps({"learning_rate": 10 ** -(1 + i % 4), "units": 32 * (1 + i % 4), "dropout": 0.2})
            job = conn.execute(
                "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, attempt,"
                " created)"
                " VALUES (?, ?, '{}', 'mlp', 'digits@1a2b3c', 'succeeded', 1, ?)",
                (experiment, f"h{i}", t),
            ).lastrowid
            final = dumps({key: 0.5 for key in KEYS})
            run = conn.execute(
                "INSERT INTO runs (job_id, experiment_id, model, params, dataset, epochs_done, monitor,"
                " final, best, host, started, ended, created)"
                " VALUES (?, ?, 'mlp', ?, 'digits@1a2b3c', ?, 'val_accuracy', ?, ?, 'box', ?, ?, ?)",
                (job, experiment, params, epochs, final, final, t - 60, t, t - 60),
            ).lastrowid
            conn.executemany(
                "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run, key, step, 1 / (step + 1), t) for key in KEYS for step in range(epochs)],
            )
            if outbox:
                add_outbox(conn, "run", run)
            ids.append(run)
    return ids


def sync_throughput(runs: int, epochs: int) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        workspace, store = open_workspace(Path(tmp))
        add_finished_runs(store, runs, epochs, outbox=True)
        server = EsTestServer().up()
        try:
            worker = SyncWorker(workspace, store, EsConfig(urls=(server.url,), bulk_docs=1000))
            started = time.perf_counter()
            result = worker.drain()
            blueno_s = time.perf_counter() - started
            assert result.error is None and result.sent == runs, result
            docs = [
                {"_index": index, "_id": doc_id, "_source": source}
                for index in ("blueno-runs", "blueno-metrics")
                for doc_id, source in server.docs(index).items()
            ]
            raw_server = EsTestServer().up()
            try:
                started = time.perf_counter()
                bulk(Elasticsearch(raw_server.url), docs, chunk_size=1000)
                raw_s = time.perf_counter() - started
            finally:
                raw_server.down()
        finally:
            server.down()
            store.close()
    return [
        ("Blueno outbox → bulk (read, build, send, mark)", f"{result.docs:,}",
         f"{result.docs / blueno_s:,.0f}"),
        ("helpers.bulk of prebuilt documents (ceiling)", f"{len(docs):,}", f"{len(docs) / raw_s:,.0f}"),
    ]


def finish_cost(finishes: int) -> list[tuple[str, str, str]]:
    """Milliseconds for the transaction that records a finished run, as the trainer does it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _, store = open_workspace(Path(tmp))
        ids = add_finished_runs(store, 2 * finishes, epochs=0, outbox=False)
        final = dumps({key: 0.9 for key in KEYS})
        times: dict[bool, list[float]] = {False: [], True: []}
        for index, run in enumerate(ids):  # alternate, so that disk and load noise hit both alike
            with_outbox = bool(index % 2)
            started = time.perf_counter()
            with store.write() as conn:
                conn.execute("UPDATE runs SET final = ?, best = ?, ended = ? WHERE id = ?",
                             (final, final, now(), run))
                conn.execute("UPDATE jobs SET state = 'succeeded', ended = ? WHERE id = "
                             "(SELECT job_id FROM runs WHERE id = ?)", (now(), run))
                if with_outbox:
                    add_outbox(conn, "run", run)
            times[with_outbox].append((time.perf_counter() - started) * 1000)
        for with_outbox, label in ((False, "without outbox"), (True, "with outbox")):
            series = sorted(times[with_outbox])
            rows.append((f"finish a run, {label}", f"{statistics.median(series):.3f}",
                         f"{series[int(len(series) * 0.95)]:.3f}"))
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10, help="points per metric (4 metrics a run)")
    parser.add_argument("--finishes", type=int, default=300)
    args = parser.parse_args()
    print(f"| sync path ({args.runs:,} runs × (1 + {len(KEYS)}×{args.epochs} points), 1,000-doc bulks) "
          "| documents | documents/s |")
    print("| --- | ---: | ---: |")
    for row in sync_throughput(args.runs, args.epochs):
        print("| " + " | ".join(row) + " |")
    print()
    print(f"| final-results transaction ({args.finishes} each) | median ms | p95 ms |")
    print("| --- | ---: | ---: |")
    for row in finish_cost(args.finishes):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
