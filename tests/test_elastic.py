"""Elasticsearch sync against tests/es_server.py with the real client over HTTP."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from es_server import EsTestServer, rejected_by_id
from waiting import wait_until

from blueno import BluenoError
from blueno.cli import main as cli_main
from blueno.elastic import (
    ENV_SETTINGS,
    EsConfig,
    SyncWorker,
    backfill,
    load_config,
    retry_parked,
    start_background_sync,
    status,
    workspace_id,
)
from blueno.store import Store, add_outbox, dumps, now
from blueno.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("loss", "val_loss", "val_accuracy")
EPOCHS = 3


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    for var in ENV_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    with workspace.open_store() as opened:
        yield opened


@pytest.fixture
def server() -> Iterator[EsTestServer]:
    es = EsTestServer().up()
    yield es
    es.faults.hold_bulks = False
    es.down()


def fast_config(url: str, **overrides: object) -> EsConfig:
    """Back-offs in milliseconds so fault tests finish in seconds."""
    options = {"backoff_s": 0.01, "max_backoff_s": 0.05, "claim_timeout_s": 30.0, "request_timeout": 5.0}
    return EsConfig(urls=(url,), **{**options, **overrides})  # type: ignore[arg-type]


def add_runs(store: Store, count: int, *, state: str = "succeeded", outbox: bool = True) -> list[int]:
    """Runs as the queue and the trainer leave them, written with plain SQL."""
    t = now()
    ids = []
    with store.write() as conn:
        experiment = conn.execute(
            "INSERT INTO experiments (name, grid_text, created) VALUES ('lr-sweep', 'x = 1', ?)", (t,)
        ).lastrowid
        for i in range(count):
            params = {"learning_rate": 10 ** -(1 + i % 4), "units": 32 * (1 + i % 3), "activation": "relu",
                      "batch_size": 64, "dropout": 0.5 if i % 2 else 0}
            config = {"model": "mlp", "params": params, "dataset": "digits@1a2b3c", "preprocessing": [],
                      "split": {"validation": 0.2, "test": 0.1, "seed": 1}}
            job = conn.execute(
                "INSERT INTO jobs (experiment_id, config_hash, config, model, dataset, state, attempt,"
                " epochs, created, started, ended)"
                " VALUES (?, ?, ?, 'mlp', 'digits@1a2b3c', ?, 1, ?, ?, ?, ?)",
                (experiment, f"hash{i}", dumps(config), state, EPOCHS, t - 60, t - 50, t),
            ).lastrowid
            final = {key: 0.5 + i / 1000 for key in KEYS}
            run = conn.execute(
                "INSERT INTO runs (job_id, experiment_id, model, params, dataset, epochs_done, best_epoch,"
                " monitor, final, best, evaluation, host, gpu, started, ended, created, blueno_version,"
                " git_commit) VALUES (?, ?, 'mlp', ?, 'digits@1a2b3c', ?, 2, 'val_accuracy', ?, ?, ?,"
                " 'box1', '0', ?, ?, ?, '0.1.0', 'abc123')",
                (job, experiment, dumps(params), EPOCHS, dumps(final), dumps(final),
                 dumps({"test": {"accuracy": 0.9}, "confusion": [[1, 0], [0, 1]]}), t - 50, t, t - 60),
            ).lastrowid
            conn.executemany(
                "INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)",
                [(run, key, step, 1.0 / (step + 1), t - 50 + step) for key in KEYS for step in range(EPOCHS)],
            )
            if outbox:
                add_outbox(conn, "run", run)
            ids.append(run)
    return ids


def outbox_rows(store: Store) -> int:
    return store.query_one("SELECT count(*) FROM outbox")[0]


def run_ids(server: EsTestServer) -> list[int]:
    return [doc["run_id"] for doc in server.docs("blueno-runs*").values()]


def docs_per_run() -> int:
    return 1 + len(KEYS) * EPOCHS


# -- configuration ------------------------------------------------------------------------------


def test_that_no_url_means_no_sync(workspace: Workspace, store: Store) -> None:
    assert load_config(workspace) is None
    assert start_background_sync(workspace, store) is None


def test_that_the_environment_overrides_the_settings_file(workspace: Workspace) -> None:
    workspace.settings_path.write_text(
        '[elasticsearch]\nurls = ["http://settings:9200"]\nindex_prefix = "lab"\nverify_certs = true\n'
    )
    config = load_config(workspace, {"BLUENO_ES_URL": "https://a:9200, https://b:9200",
                                     "BLUENO_ES_VERIFY_CERTS": "false"})
    assert config is not None
    assert config.urls == ("https://a:9200", "https://b:9200")
    assert (config.index_prefix, config.verify_certs, config.runs_index) == ("lab", False, "lab-runs")


def test_that_the_api_key_is_read_from_credentials_and_never_shown(workspace: Workspace) -> None:
    (workspace.credentials_dir / "elasticsearch-api-key").write_text("sekrit-key-123\n")
    config = load_config(workspace, {"BLUENO_ES_URL": "http://localhost:9200"})
    assert config is not None and config.api_key == "sekrit-key-123"
    assert "sekrit" not in repr(config)
    assert config.redact("auth failed for sekrit-key-123") == "auth failed for ***"


def test_that_a_password_in_the_url_moves_out_of_it(workspace: Workspace) -> None:
    config = load_config(workspace, {"BLUENO_ES_URL": "https://ann:pa55word@es.lab:9243"})
    assert config is not None
    assert config.urls == ("https://es.lab:9243",)
    assert (config.username, config.password) == ("ann", "pa55word")
    assert "pa55word" not in repr(config)


def test_that_a_password_from_the_url_never_reaches_an_error(workspace: Workspace, store: Store,
                                                              server: EsTestServer) -> None:
    server.down()
    add_runs(store, 1)
    config = load_config(workspace, {"BLUENO_ES_URL": f"http://ann:pa55word@127.0.0.1:{server.port}"})
    assert config is not None
    error = SyncWorker(workspace, store, config).drain().error or ""
    assert "cannot reach http://127.0.0.1" in error and "pa55word" not in error
    assert "pa55word" not in (status(store).last_error or "")


def test_that_syncing_without_configuration_says_how_to_configure(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["--home", str(workspace.root), "sync", "es"]) == 2
    assert "BLUENO_ES_URL" in capsys.readouterr().err
    assert cli_main(["--home", str(workspace.root), "sync", "es", "--status"]) == 0
    assert "Elasticsearch: in sync" in capsys.readouterr().out


def test_that_a_typo_in_the_settings_is_named(workspace: Workspace) -> None:
    workspace.settings_path.write_text('[elasticsearch]\nurl = "http://x:9200"\napi_kee = "k"\n')
    with pytest.raises(BluenoError, match="api_kee"):
        load_config(workspace)


def test_that_an_invalid_index_prefix_is_refused(workspace: Workspace) -> None:
    with pytest.raises(BluenoError, match="index_prefix"):
        load_config(workspace, {"BLUENO_ES_URL": "http://x:9200", "BLUENO_ES_INDEX_PREFIX": "Lab*"})


# -- documents ---------------------------------------------------------------------------------


def test_that_templates_exist_before_the_first_document(store: Store, server: EsTestServer,
                                                        workspace: Workspace) -> None:
    add_runs(store, 2)
    SyncWorker(workspace, store, fast_config(server.url)).drain()
    paths = [(r.method, r.path.split("?")[0]) for r in server.state.requests]
    first_bulk = next(i for i, p in enumerate(paths) if p[1].endswith("/_bulk"))
    assert ("PUT", "/_index_template/blueno-runs") in paths[:first_bulk]
    assert ("PUT", "/_index_template/blueno-metrics") in paths[:first_bulk]
    assert server.state.created_from_template == {"blueno-runs": "blueno-runs",
                                                  "blueno-metrics": "blueno-metrics"}
    template = Elasticsearch(server.url).indices.get_index_template(name="blueno-runs")
    assert template["index_templates"][0]["index_template"]["index_patterns"] == ["blueno-runs*"]


def test_that_a_run_document_is_typed_and_has_a_deterministic_id(store: Store, server: EsTestServer,
                                                                 workspace: Workspace) -> None:
    (run,) = add_runs(store, 1)
    result = SyncWorker(workspace, store, fast_config(server.url)).drain()
    assert (result.sent, result.docs, result.error) == (1, docs_per_run(), None)
    ws = workspace_id(store)
    client = Elasticsearch(server.url)
    doc = client.get(index="blueno-runs", id=f"{ws}:{run}")["_source"]
    assert doc["run_id"] == run and doc["workspace"] == ws
    assert (doc["experiment"], doc["model"], doc["dataset_name"], doc["dataset_version"]) == (
        "lr-sweep", "mlp", "digits", "1a2b3c")
    assert doc["params"] == {"learning_rate": 0.1, "units": 32, "activation": "relu", "batch_size": 64,
                             "dropout": 0}
    assert doc["best_value"] == doc["best"]["val_accuracy"] and doc["monitor"] == "val_accuracy"
    assert doc["evaluation"] == {"test.accuracy": 0.9}  # numbers only: no confusion matrix explosion
    assert doc["state"] == "succeeded" and doc["duration_s"] == pytest.approx(50, abs=0.01)
    assert doc["ended"].endswith("Z") and doc["@timestamp"] == doc["ended"]
    assert (doc["blueno_version"], doc["git_commit"]) == ("0.1.0", "abc123")
    point = client.get(index="blueno-metrics", id=f"{ws}:{run}:val_loss:2")["_source"]
    assert (point["metric"], point["step"], point["value"]) == ("val_loss", 2, pytest.approx(1 / 3))
    points = client.count(index="blueno-metrics", query={"term": {"run_id": run}})["count"]
    assert points == len(KEYS) * EPOCHS
    assert outbox_rows(store) == 0


def test_that_a_resend_overwrites_and_an_older_copy_never_wins(store: Store, server: EsTestServer,
                                                                workspace: Workspace) -> None:
    (run,) = add_runs(store, 1)
    worker = SyncWorker(workspace, store, fast_config(server.url))
    stale = worker._actions([run])  # read before the run changes: what a slow second worker holds
    with store.write() as conn:
        conn.execute("UPDATE runs SET model_url = 'gs://lab/run.keras' WHERE id = ?", (run,))
        add_outbox(conn, "run", run)
    worker.drain()
    worker._send(*stale)  # the late, older copy arrives last
    docs = server.docs("blueno-runs")
    assert len(docs) == 1 and next(iter(docs.values()))["model_url"] == "gs://lab/run.keras"
    backfill(store)
    worker.drain()  # a plain resend overwrites: still one document per run
    assert run_ids(server) == [run]


def test_that_a_rejected_run_is_parked_with_the_reason_and_the_rest_flows(
    store: Store, server: EsTestServer, workspace: Workspace
) -> None:
    runs = add_runs(store, 5)
    ws = workspace_id(store)
    server.faults.reject_ids = {f"{ws}:{runs[2]}"}
    result = SyncWorker(workspace, store, fast_config(server.url)).drain()
    assert (result.sent, result.parked) == (4, 1)
    state = status(store)
    assert (state.pending, state.parked) == (0, 1)
    assert state.parked_runs[0].run_id == runs[2]
    assert "document_parsing_exception" in state.parked_runs[0].reason
    assert "parked" in state.summary()
    server.faults.reject_ids = set()
    assert retry_parked(store) == 1
    SyncWorker(workspace, store, fast_config(server.url)).drain()
    assert sorted(run_ids(server)) == runs and outbox_rows(store) == 0


def test_that_an_unknown_field_meets_the_strict_mapping(store: Store, server: EsTestServer,
                                                        workspace: Workspace) -> None:
    """The template's ``dynamic: strict`` turns a schema slip into a parked run, not a mess of fields."""
    _, second = add_runs(store, 2)
    worker = SyncWorker(workspace, store, fast_config(server.url))
    worker.run_once()  # templates installed, indices created from them
    actions, outcomes, owners = worker._actions([second])
    actions[0]["_source"]["surprise"] = 1
    worker._send(actions, outcomes, owners)
    assert "strict_dynamic_mapping_exception" in (outcomes[second].park or "")


def test_that_backfill_queues_each_finished_run_once(store: Store, workspace: Workspace) -> None:
    add_runs(store, 3, outbox=False)
    add_runs(store, 2, state="running", outbox=False)
    assert backfill(store) == 3
    assert backfill(store) == 0


def test_that_a_slow_server_times_out_and_nothing_is_lost(store: Store, server: EsTestServer,
                                                          workspace: Workspace) -> None:
    add_runs(store, 3)
    server.faults.slow_s = 1.0
    worker = SyncWorker(workspace, store, fast_config(server.url, request_timeout=0.3))
    result = worker.drain()
    assert result.error is not None and "no answer" in result.error
    assert status(store).pending == 3 and "no answer" in (status(store).last_error or "")
    server.faults.slow_s = 0
    worker.drain(wait=2)  # waits out the rows' back-off itself
    assert len(set(run_ids(server))) == 3 and outbox_rows(store) == 0


def test_that_the_background_thread_syncs_new_runs(store: Store, server: EsTestServer,
                                                   workspace: Workspace) -> None:
    workspace.settings_path.write_text(f'[elasticsearch]\nurls = ["{server.url}"]\npoll_s = 0.05\n')
    worker = start_background_sync(workspace, store)
    assert worker is not None
    try:
        add_runs(store, 4)
        wait_until(lambda: not outbox_rows(store), timeout=10)
    finally:
        worker.stop()
    assert len(run_ids(server)) == 4 and outbox_rows(store) == 0


def test_that_the_cli_installs_templates_backfills_and_reports(store: Store, server: EsTestServer,
                                                               workspace: Workspace,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(workspace.root)]
    workspace.settings_path.write_text(f'[elasticsearch]\nurls = ["{server.url}"]\nbackoff_s = 0.01\n')
    assert cli_main([*home, "sync", "es", "--install-templates"]) == 0
    assert set(server.state.templates) == {"blueno-runs", "blueno-metrics"}
    add_runs(store, 3, outbox=False)
    assert cli_main([*home, "sync", "es", "--backfill"]) == 0
    assert "sent 3 run(s)" in capsys.readouterr().out
    server.down()
    add_runs(store, 2)
    assert cli_main([*home, "sync", "es", "--wait", "0"]) == 1
    assert cli_main([*home, "sync", "es", "--status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["pending"] == 2 and "cannot reach" in report["last_error"]


def template_fields(kind: str) -> dict[str, str]:
    body = json.loads((ROOT / "resources" / "elasticsearch" / f"{kind}.json").read_text())
    return {name: spec["type"] for name, spec in body["template"]["mappings"]["properties"].items()}


def test_that_the_kibana_objects_reference_each_other_and_real_fields() -> None:
    """Kibana cannot run here: check the saved objects' wiring and fields against the templates."""
    lines = (ROOT / "resources" / "kibana" / "blueno.ndjson").read_text().splitlines()
    objects = [json.loads(line) for line in lines]
    present = {(obj["type"], obj["id"]) for obj in objects}
    views = {obj["id"]: obj["attributes"] for obj in objects if obj["type"] == "index-pattern"}
    fields = {"blueno-runs": template_fields("runs"), "blueno-metrics": template_fields("metrics")}
    assert {view["title"] for view in views.values()} == {"blueno-runs*", "blueno-metrics*"}
    for view_id, view in views.items():
        assert fields[view_id][view["timeFieldName"]] == "date"

    def known(view_id: str, name: str) -> bool:
        return name in fields[view_id] or (view_id == "blueno-runs" and name.split(".")[0] == "params")

    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in present, (obj["id"], ref)
        if obj["type"] == "lens":
            (view_id,) = {ref["id"] for ref in obj["references"]}
            layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
            for layer in layers.values():
                for column in layer["columns"].values():
                    name = column.get("sourceField", "___records___")
                    assert name == "___records___" or known(view_id, name), (obj["id"], name)
        if obj["type"] == "search":
            assert all(known("blueno-runs", name) for name in obj["attributes"]["columns"])
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            names = {ref["name"] for ref in obj["references"]}
            assert {f"{p['panelIndex']}:{p['panelRefName']}" for p in panels} == names
            assert len(panels) == 5


# -- the guarantees of issue 5 (fault injection, issue 7 item 8) ---------------------------------


@pytest.mark.slow
def test_that_a_server_down_for_a_200_run_grid_loses_nothing(store: Store, server: EsTestServer,
                                                            workspace: Workspace) -> None:
    server.down()
    worker = SyncWorker(workspace, store, fast_config(server.url, max_backoff_s=0.02, max_attempts=2))
    for _ in range(10):  # the grid finishes in waves while the server is away
        add_runs(store, 20)
        result = worker.drain()
        assert result.error is not None and "cannot reach" in result.error and result.parked == 0
        time.sleep(0.02)  # pacing, the scenario itself: the grid's waves end apart while the server is away
    state = status(store)
    assert state.pending == 200 and state.parked == 0
    # An outage is not the documents' fault: it never counts towards parking them.
    assert store.query_one("SELECT max(attempts) FROM outbox")[0] == 0
    assert "200 pending, last error: cannot reach" in state.summary()
    server.up()
    worker.drain(wait=5)  # waits out the rows' back-off itself
    ids = run_ids(server)
    print(f"\nserver down for 200 runs, then up: {len(ids)} run documents, {len(set(ids))} distinct runs")
    assert len(ids) == len(set(ids)) == 200
    assert len(server.docs("blueno-metrics*")) == 200 * len(KEYS) * EPOCHS
    assert outbox_rows(store) == 0


def one_sync_pass(root: str, url: str) -> None:
    """What the killed process runs: one pass, with a lease that expires at once."""
    workspace = Workspace.locate(root)
    with workspace.open_store() as store:
        SyncWorker(workspace, store, EsConfig(urls=(url,), claim_timeout_s=0.0)).run_once()


@pytest.mark.slow
def test_that_sigkill_between_send_and_mark_never_duplicates(store: Store, server: EsTestServer,
                                                             workspace: Workspace) -> None:
    """A real sync process sends a bulk; the server applies it and holds the answer; SIGKILL.

    The process is forked (the client is already imported: 50 rounds take seconds, not a minute).
    """
    fork = multiprocessing.get_context("fork")
    server.faults.hold_bulks = True
    kills = 0
    for _ in range(50):
        add_runs(store, 3)
        proc = fork.Process(target=one_sync_pass, args=(str(workspace.root), server.url))
        proc.start()
        try:
            held = server.next_held(timeout=15)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        held.set()
        kills += proc.exitcode == -signal.SIGKILL
    assert kills == 50
    assert status(store).pending > 0  # the killed passes never marked their runs done
    server.faults.hold_bulks = False
    SyncWorker(workspace, store, fast_config(server.url, claim_timeout_s=0.0)).drain(wait=5)
    ids = run_ids(server)
    writes = sum(n for (index, _), n in server.state.writes.items() if index == "blueno-runs")
    print(f"\n50 SIGKILLs between send and mark: {len(ids)} run documents, {len(set(ids))} distinct "
          f"runs, after {writes} writes of run documents (resends overwrite, never duplicate)")
    assert writes > 2 * len(ids)
    assert len(ids) == len(set(ids)) == 150
    metric_ids = list(server.docs("blueno-metrics*"))
    assert len(metric_ids) == len(set(metric_ids)) == 150 * len(KEYS) * EPOCHS
    assert outbox_rows(store) == 0


@pytest.mark.slow
def test_that_429s_and_rejections_end_with_every_valid_document_indexed(
    store: Store, server: EsTestServer, workspace: Workspace
) -> None:
    runs = add_runs(store, 200)
    ws = workspace_id(store)
    server.faults.item_429_fraction = 0.10
    server.faults.request_429_fraction = 0.02
    server.faults.reject_fraction = 0.01
    server.rng.seed(7)
    expected = {f"{ws}:{run}" for run in runs} | {
        f"{ws}:{run}:{key}:{step}" for run in runs for key in KEYS for step in range(EPOCHS)}
    rejected = {doc_id for doc_id in expected if rejected_by_id(doc_id, server.faults.reject_fraction)}
    worker = SyncWorker(workspace, store, fast_config(server.url, batch_runs=50, max_attempts=20))
    passes = 0
    while status(store).pending and passes < 100:
        worker.drain(wait=1)
        passes += 1
    state = status(store, parked_limit=None)
    received = set(server.docs("blueno-*"))
    parked_runs = {p.run_id for p in state.parked_runs}
    print(f"\n10% of items 429, 2% of requests 429, 1% rejected: {len(received)} of "
          f"{len(expected) - len(rejected)} valid documents indexed, {len(rejected)} rejected, "
          f"{state.parked} runs parked, {passes} drain passes")
    assert state.pending == 0 and passes < 100
    assert received == expected - rejected
    assert rejected and parked_runs == {int(doc_id.split(":")[1]) for doc_id in rejected}
    assert all("document_parsing_exception" in p.reason for p in state.parked_runs)


def test_that_no_credential_reaches_logs_the_database_or_documents(
    store: Store, workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "b2xhLXNlY3JldC1hcGkta2V5LTQy"
    es = EsTestServer(api_key=secret).up()
    (workspace.credentials_dir / "elasticsearch-api-key").write_text(secret)
    workspace.settings_path.write_text(f'[elasticsearch]\nurls = ["{es.url}"]\nbackoff_s = 0.01\n')
    log_file = tmp_path / "sync.log"
    handler = logging.FileHandler(log_file)
    # elastic_transport.node logs every request and response but does not propagate: listen to it too
    loggers = [logging.getLogger(), logging.getLogger("elastic_transport.node")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        runs = add_runs(store, 20)
        es.faults.reject_ids = {f"{workspace_id(store)}:{runs[0]}"}
        config = load_config(workspace)
        assert config is not None and config.api_key == secret
        worker = SyncWorker(workspace, store, config)
        es.down()
        assert "cannot reach" in (worker.drain().error or "")
        es.up()
        worker.drain(wait=2)  # waits out the rows' back-off itself
        wrong = SyncWorker(workspace, store, EsConfig(urls=(es.url,), api_key=secret[::-1]))
        add_runs(store, 1)
        assert "401" in wait_until(lambda: wrong.drain().error, timeout=10, message="the wrong key's error")
        cli_main(["--home", str(workspace.root), "sync", "es", "--status"])
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
        es.down()
    assert len(run_ids(es)) == 19 and status(store).parked == 1
    assert log_file.stat().st_size > 0 and "/_bulk HTTP" in log_file.read_text()
    sent = [r.headers.get("authorization") for r in es.state.requests]
    assert f"ApiKey {secret}" in sent  # it was really used ...
    store.close()
    db_bytes = b"".join(p.read_bytes() for p in workspace.root.glob("blueno.db*"))
    places = {"log": log_file.read_bytes(), "database": db_bytes, "documents": es.bodies(),
              "output": capsys.readouterr().out.encode()}
    for place, data in places.items():  # ... and is nowhere else
        assert secret.encode() not in data, place
        assert secret[::-1].encode() not in data, place


@pytest.mark.parametrize("step_s", [-3600.0, 0.0, 3600.0])
def test_that_a_runs_second_sync_wins_whatever_the_clock_says(
    workspace: Workspace, store: Store, server: EsTestServer, monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    """Document versions come from a counter the database owns: a clock stepped back between two syncs
    of one run (or forward, or not at all) never keeps the older copy."""
    import time as clock

    (run,) = add_runs(store, 1)
    SyncWorker(workspace, store, fast_config(server.url)).drain()
    real_ns = clock.time_ns
    monkeypatch.setattr(clock, "time_ns", lambda: real_ns() + int(step_s * 1e9))
    with store.write() as conn:
        conn.execute("UPDATE runs SET epochs_done = 99 WHERE id = ?", (run,))
        add_outbox(conn, "run", run)
    SyncWorker(workspace, store, fast_config(server.url)).drain()
    (doc,) = server.docs("blueno-runs*").values()
    assert doc["epochs_done"] == 99


def test_that_the_scheduler_process_syncs_kept_trainings_and_one_sender_runs_at_a_time(
        store: Store, server: EsTestServer, workspace: Workspace) -> None:
    """The app's Start launches a syncing scheduler: a window's sync and its never send at once, and
    results written after the window closed still reach Elasticsearch (not left in the outbox)."""
    from blueno import service
    from blueno.elastic.sync import SYNC_LOCK, background_sync_held

    workspace.settings_path.write_text(
        f'[scheduler]\nslots = 1\n[elasticsearch]\nurls = ["{server.url}"]\npoll_s = 0.05\n')
    window = start_background_sync(workspace, store)  # the window opened first: it syncs
    assert window is not None
    wait_until(lambda: window.active, timeout=10, message="the window's sync took the lock")
    process = service.start_scheduler(workspace)  # what the window's Start does
    try:
        add_runs(store, 2)
        wait_until(lambda: not outbox_rows(store), timeout=20)
        assert window.active  # the scheduler's sync stood by meanwhile: one sender
        window.stop()  # the window closes, training kept in the background
        lock = workspace.root / SYNC_LOCK
        wait_until(lambda: lock.read_text().strip() == str(process.pid), timeout=30,
                   message="the scheduler process took over the sync")
        add_runs(store, 3)
        wait_until(lambda: not outbox_rows(store), timeout=30, message="the scheduler sent the new results")
        assert len(set(run_ids(server))) == 5
        reopened = start_background_sync(workspace, store)  # a new window while the scheduler syncs
        assert reopened is not None
        try:
            add_runs(store, 1)
            wait_until(lambda: not outbox_rows(store), timeout=30)
            assert not reopened.active and background_sync_held(workspace)  # it stood by
        finally:
            reopened.stop()
        assert len(set(run_ids(server))) == 6
        service.control_scheduler(workspace, "stop")
        assert process.wait(timeout=60) == 0
    finally:
        window.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
