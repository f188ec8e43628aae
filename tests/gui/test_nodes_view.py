"""The Nodes tab: the cluster as the head recorded it, read from the database off the GUI thread."""

from __future__ import annotations

from blueno.cluster import save_nodes
from blueno.cluster.backend import NodeInfo
from gui.nodes_view import QtNodesView


def test_that_the_nodes_tab_says_jobs_run_here_without_a_cluster(qtbot, store) -> None:
    view = QtNodesView(store)
    qtbot.addWidget(view)
    view.refresh()
    qtbot.waitUntil(lambda: "local backend" in view.summary.text(), timeout=5000)
    assert view.model.rowCount() == 0


def test_that_the_nodes_tab_shows_each_node_its_gpus_and_its_jobs(qtbot, workspace, store) -> None:
    nodes = [NodeInfo("a" * 56, "box1", "10.0.0.1", True, 2.0, 8.0, 2),
             NodeInfo("b" * 56, "box2", "10.0.0.2", True, 4.0, 16.0, 4, problem=None),
             NodeInfo("c" * 56, "box3", "10.0.0.3", False, 2.0, 8.0, 0)]
    with workspace.open_store() as head:  # the scheduler's own connection
        save_nodes(head, nodes, {"a" * 56: [3, 5], "b" * 56: [7]})
    view = QtNodesView(store)
    qtbot.addWidget(view)
    view.refresh()
    qtbot.waitUntil(lambda: view.model.rowCount() == 3, timeout=5000)
    assert "2 nodes up, 6 GPUs, 6 slots, 3 jobs running" in view.summary.text()
    rows = {view.model.index(r, 1).data(): [view.model.index(r, c).data() for c in range(8)] for r in range(3)}
    assert rows["box1"][0] == "a" * 8 and rows["box1"][6] == "3, 5"
    assert rows["box3"][3] == "lost"


def test_that_a_run_names_the_node_it_trained_on() -> None:
    from gui.run_detail import describe

    run = {"id": 4, "model": "mlp", "state": "succeeded", "dataset": "digits@1a2b", "epochs_done": 2,
           "best_epoch": None, "monitor": None, "error": None, "model_path": "models/run-4/model.keras",
           "model_dir": "models/run-4", "log_path": "logs/run-4.log", "params": {}, "final": {}, "best": {},
           "evaluation": {}, "host": "box2 (node 3fa2b1c0)", "gpu": "1"}
    assert "trained on box2 (node 3fa2b1c0) GPU 1" in describe(run)
    assert "trained on" not in describe({**run, "host": None})
