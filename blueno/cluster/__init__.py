"""One grid over a whole lab: the Ray backend (optional extra ``[ray]``).

The head (the box with the workspace) keeps the queue, the scheduler lock,
recovery and the database; each claimed job becomes one Ray task that runs
the trainer as a subprocess on whichever node has a free GPU and streams its
events back (:mod:`blueno.cluster.backend` on the head,
:mod:`blueno.cluster.node` on the nodes, :mod:`blueno.cluster.transfer` for
the files in between).  ``docs/cluster.md`` says how to set a lab up.

This facade imports no Ray: the settings and the nodes snapshot the app
shows are read from the workspace alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from blueno import BluenoError
from blueno.store import Store, now
from blueno.workspace import Workspace

BACKENDS = ("local", "ray")
NODES_META_KEY = "cluster_nodes"  # the head writes its view of the cluster here (JSON), the app reads it


@dataclass(frozen=True)
class ClusterSettings:
    """``[scheduler] backend = "ray"`` and its knobs (settings.toml), or the ``--ray`` flag."""

    address: str
    heartbeat_limit: float = 30.0
    gpus_per_job: float = 1.0
    cpus_per_job: float = 1.0


def cluster_settings(workspace: Workspace, address: str | None = None) -> ClusterSettings | None:
    """The Ray settings when jobs run on a cluster (``--ray ADDRESS`` wins), else None (local)."""
    section = workspace.settings().get("scheduler", {})
    backend = str(section.get("backend", "local"))
    if backend not in BACKENDS:
        raise BluenoError(f"{workspace.settings_path}: [scheduler] backend = {backend!r}; "
                          f"use one of {', '.join(repr(b) for b in BACKENDS)}")
    if address is None and backend != "ray":
        return None
    address = address or section.get("address")
    if not address:
        raise BluenoError(f"{workspace.settings_path}: [scheduler] backend = \"ray\" needs an address, e.g. "
                          "address = \"head-box:6379\" (or \"auto\" for a cluster started on this box)")

    def number(key: str, default: float) -> float:
        value = section.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise BluenoError(f"{workspace.settings_path}: [scheduler] {key} = {value!r}; give a number >= 0")
        return float(value)

    return ClusterSettings(str(address), number("heartbeat_limit", 30.0), number("gpus_per_job", 1.0),
                           number("cpus_per_job", 1.0))


def connect(workspace: Workspace, address: str | None = None) -> Any:
    """A connected :class:`~blueno.cluster.backend.RayBackend` when jobs run on a cluster, else None.

    ``address`` (``--ray``) wins over ``[scheduler] backend``/``address``; the
    connection checks every node's Python, Ray and Blueno (a clear message
    when they differ) and starts a worker per slot before the grid starts.
    """
    chosen = cluster_settings(workspace, address)
    if chosen is None:
        return None
    from blueno.cluster.backend import RayBackend

    return RayBackend(workspace, chosen.address, heartbeat_limit=chosen.heartbeat_limit,
                      gpus_per_job=chosen.gpus_per_job, cpus_per_job=chosen.cpus_per_job).connect()


def save_nodes(store: Store, nodes: list[Any], running: dict[str, list[int]]) -> None:
    """Record the cluster as the head sees it: each node, its GPUs, the jobs on it."""
    rows = [{**asdict(n), "jobs": running.get(n.node_id, [])} for n in nodes]
    value = json.dumps({"time": now(), "nodes": rows})
    with store.write() as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                     "value = excluded.value", (NODES_META_KEY, value))


def nodes(store: Store) -> dict[str, Any]:
    """The last view of the cluster a head recorded: ``{"time": t, "nodes": [...]}`` (empty when none)."""
    row = store.query_one("SELECT value FROM meta WHERE key = ?", (NODES_META_KEY,))
    return json.loads(row["value"]) if row else {"time": None, "nodes": []}
