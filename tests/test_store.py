"""The workspace database: connection rules, migrations, lock waits."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from blueno import BluenoError
from blueno.store import SCHEMA_VERSION, Store
from blueno.workspace import Workspace


def test_that_a_new_database_is_in_wal_mode_with_full_sync_and_the_current_schema(store: Store) -> None:
    conn = store.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert store.schema_version() == SCHEMA_VERSION
    names = {row[0] for row in store.query("SELECT name FROM _migrations")}
    assert "0001_initial" in names
    tables = {row[0] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"datasets", "experiments", "jobs", "runs", "metrics", "latest_metrics", "outbox"} <= tables


def test_that_a_database_from_a_newer_blueno_is_refused_with_the_fix(workspace: Workspace) -> None:
    conn = sqlite3.connect(workspace.db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(BluenoError, match="newer Blueno.*Upgrade Blueno"):
        Store(workspace.db_path)


def test_that_a_failed_write_leaves_the_database_as_it_was(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('x', '', 0)")
        raise RuntimeError("boom")
    assert store.query("SELECT count(*) FROM experiments")[0][0] == 0


def test_that_a_write_waits_out_a_lock_held_longer_than_the_busy_timeout(workspace: Workspace) -> None:
    """Another process holds the write lock for twice the busy timeout: no error, it completes after."""
    busy_timeout = 0.5
    Store(workspace.db_path).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(workspace.db_path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('holder', '', 0)")
        print("locked", flush=True)
        time.sleep({2 * busy_timeout})
        conn.execute("COMMIT")
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    store = Store(workspace.db_path, busy_timeout=busy_timeout, migrate=False)
    started = time.monotonic()
    with store.write() as conn:
        conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('waiter', '', 0)")
    waited = time.monotonic() - started
    holder.wait(10)
    names = [row[0] for row in store.query("SELECT name FROM experiments ORDER BY id")]
    store.close()
    assert names == ["holder", "waiter"]
    assert waited >= busy_timeout  # it really had to wait past one busy timeout


def test_that_data_version_changes_when_another_connection_commits(workspace: Workspace) -> None:
    watcher, writer = Store(workspace.db_path), Store(workspace.db_path)
    before = watcher.data_version()
    assert watcher.data_version() == before
    with writer.write() as conn:
        conn.execute("INSERT INTO experiments (name, grid_text, created) VALUES ('x', '', 0)")
    assert watcher.data_version() != before
    watcher.close()
    writer.close()


def test_that_a_workspace_on_a_network_filesystem_is_refused(tmp_path, monkeypatch) -> None:
    import blueno.workspace as workspace_module

    monkeypatch.setattr(workspace_module, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(BluenoError, match="network filesystem.*local disk"):
        Workspace(tmp_path / "ws").ensure()


def test_that_the_workspace_is_chosen_by_home_then_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BLUENO_HOME", str(tmp_path / "from-env"))
    assert Workspace.locate().root == (tmp_path / "from-env").resolve()
    assert Workspace.locate(tmp_path / "given").root == (tmp_path / "given").resolve()


def test_that_saving_settings_merges_sections_and_keeps_secrets_private(workspace: Workspace) -> None:
    workspace.settings_path.write_text('[gcs]\nbucket = "gs://lab/blueno"\n[other]\nkeep = 1\n')
    workspace.save_settings({"gcs": {"bucket": "", "credentials": "credentials/gcs.json"},
                             "elasticsearch": {"urls": ["http://127.0.0.1:9200"]}})
    assert workspace.settings() == {
        "gcs": {"credentials": "credentials/gcs.json"},
        "other": {"keep": 1},
        "elasticsearch": {"urls": ["http://127.0.0.1:9200"]},
    }
    key = workspace.save_secret("es-api-key", "s3cr3t ")
    assert key.read_text() == "s3cr3t\n"
    assert key.stat().st_mode & 0o777 == 0o600


def test_that_close_waits_for_a_query_another_thread_is_running_and_then_closes_its_connection(
    workspace: Workspace,
) -> None:
    """A view's background read while its window closes: closing under the query crashed the process."""
    import threading

    store = Store(workspace.db_path)
    started, results = threading.Event(), []
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n"

    def read() -> None:
        with store.snapshot() as conn:
            started.set()
            results.append(conn.execute(slow).fetchone()[0])
            results.append(conn)

    reader = threading.Thread(target=read)
    reader.start()
    assert started.wait(10)
    began = time.monotonic()
    store.close()  # from the main thread, while the reader's query runs
    waited = time.monotonic() - began
    reader.join(30)
    assert results[0] == 3_000_000  # the query finished on its open connection
    with pytest.raises(sqlite3.ProgrammingError):  # and close() closed it afterwards
        results[1].execute("SELECT 1")
    assert waited > 0.01
    assert store.query_one("SELECT count(*) FROM jobs")[0] == 0  # the store opens a new connection if used again
    store.close()
