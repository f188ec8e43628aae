"""Case 8: Elasticsearch away for a whole grid, a relay SIGKILLed between send and mark, 429s and rejections.

Runs against tests/es_server.py (real HTTP, the official client) with the Elasticsearch track's fixtures.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
from es_server import EsTestServer, rejected_by_id
from test_elastic import (  # noqa: F401  (fixtures: a workspace with the sync schema, its store, the server)
    EPOCHS,
    KEYS,
    add_runs,
    fast_config,
    one_sync_pass,
    run_ids,
    server,
    store,
    workspace,
)

from blueno.elastic import SyncWorker, status, workspace_id
from blueno.store import Store
from blueno.workspace import Workspace


@pytest.mark.slow
def test_that_an_outage_kills_429s_and_rejections_end_with_one_document_per_run_and_rejects_parked(
    store: Store, server: EsTestServer, workspace: Workspace  # noqa: F811
) -> None:
    runs, kills = 200, 50
    server.down()
    worker = SyncWorker(workspace, store, fast_config(server.url, max_backoff_s=0.02, max_attempts=20))
    ids: list[int] = []
    for _ in range(10):  # the grid finishes in waves while the server is away
        ids += add_runs(store, runs // 10)
        assert worker.drain().error is not None
    assert status(store).pending == runs and status(store).parked == 0

    server.up()
    server.rng.seed(7)
    server.faults.item_429_fraction = 0.10
    server.faults.reject_fraction = 0.01
    server.faults.hold_bulks = True
    fork = multiprocessing.get_context("fork")
    killed = 0
    for _ in range(kills):  # a relay sends a bulk, the server applies it, the relay dies before marking
        relay = fork.Process(target=one_sync_pass, args=(str(workspace.root), server.url))
        relay.start()
        try:
            held = server.next_held(timeout=15)
        finally:
            os.kill(relay.pid, signal.SIGKILL)
            relay.join(10)
        held.set()
        killed += relay.exitcode == -signal.SIGKILL
    server.faults.hold_bulks = False
    passes = 0
    while status(store).pending and passes < 100:
        worker.drain(wait=1)
        passes += 1

    ws = workspace_id(store)
    expected = {f"{ws}:{run}" for run in ids} | {
        f"{ws}:{run}:{key}:{step}" for run in ids for key in KEYS for step in range(EPOCHS)}
    rejected = {doc_id for doc_id in expected if rejected_by_id(doc_id, server.faults.reject_fraction)}
    received = set(server.docs("blueno-*"))
    documents = run_ids(server)
    state = status(store, parked_limit=None)
    parked = {p.run_id: p.reason for p in state.parked_runs}
    writes = sum(n for (index, _), n in server.state.writes.items() if index == "blueno-runs")
    print(f"\nCASE 8: server down for {runs} runs, then up with 10% of items 429 and 1% rejected; {killed} relays "
          f"SIGKILLed between send and mark: {len(documents)} run documents for {len(set(documents))} distinct "
          f"runs ({len(documents) - len(set(documents))} duplicates) after {writes} writes; {len(rejected)} "
          f"documents rejected, {len(parked)} runs parked with their reason; {passes} drain passes")
    assert killed == kills
    assert state.pending == 0
    assert len(documents) == len(set(documents))
    assert received == expected - rejected
    assert rejected and set(parked) == {int(doc_id.split(":")[1]) for doc_id in rejected}
    assert all(reason and "document_parsing_exception" in reason for reason in parked.values())
