"""A real multi-node Ray cluster inside this machine, every address on 127.0.0.1.

``ray.cluster_utils.Cluster`` (a developer API: the Ray version is pinned)
starts a head and worker nodes as real processes.  On Linux Ray would
advertise the machine's network address; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
set before Ray is imported, ``node_ip_address="127.0.0.1"`` and no dashboard,
every Ray process listens and connects on loopback only, which
:func:`non_loopback_sockets` checks.  Each node gets its own
``$BLUENO_NODE_DIR`` (dataset cache, run folders), as separate boxes would.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

# Before Ray is imported anywhere in this process: Ray reads these at import and at node start.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_process_group_cleanup_enabled"] = "1"  # noqa: SIM112 - Ray spells it so; a worker's process group dies with it

import psutil  # noqa: E402
import ray  # noqa: E402
from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from blueno.cluster.node import NODE_DIR_ENV, TAG_ENV  # noqa: E402

ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before this module set the variable
RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "RuntimeEnvAgent", "log_monitor",
                     "monitor.py", "dashboard", "ray.util.client")


class LocalCluster:
    """A head (no work of its own) and worker nodes with fake GPUs, all on 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bray-", dir="/tmp"))  # short: Ray's socket paths are limited
        os.environ["RAY_TMPDIR"] = str(self.root / "t")
        (self.root / "t").mkdir()
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            # A node that misses heartbeats for a minute is dead (Ray's default: 15 s). The test machine is
            # shared and often loaded; a node the tests kill is noticed at once anyway, a hung one by
            # Blueno's own heartbeat limit.
            "_system_config": {"health_check_failure_threshold": 20, "health_check_timeout_ms": 10000},
        })
        self.nodes: list[object] = []
        self.count = 0

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, gpus: int = 2, cpus: int = 1, env: dict[str, str] | None = None) -> object:
        """A worker node with ``gpus`` fake GPUs, its own node folder and ``env`` for its processes."""
        self.count += 1
        node_dir = self.root / f"node{self.count}"
        node_dir.mkdir()
        extra = {NODE_DIR_ENV: str(node_dir), **(env or {})}
        with mock.patch.dict(os.environ, extra):  # the node's processes inherit the environment it starts with
            node = self.cluster.add_node(num_cpus=cpus, num_gpus=gpus, node_ip_address="127.0.0.1")
        node.blueno_dir = node_dir  # type: ignore[attr-defined]
        self.nodes.append(node)
        return node

    def freeze(self, node: object, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) a node's raylet and everything under it: a box that hangs, not one that dies."""
        raylet = node.all_processes["raylet"][0].process  # type: ignore[attr-defined]
        members = [psutil.Process(raylet.pid), *psutil.Process(raylet.pid).children(recursive=True)]
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.suspend() if frozen else member.resume()

    def remove_node(self, node: object) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            ray.shutdown()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()
        os.environ.pop("RAY_TMPDIR", None)
        shutil.rmtree(self.root, ignore_errors=True)


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def ray_processes() -> list[psutil.Process]:
    """Every Ray process on this machine (and the driver: this test process)."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if any(name in text for name in RAY_PROCESS_NAMES):
            found.append(proc)
    return found


def non_loopback_sockets() -> list[str]:
    """Sockets of Ray processes (and this driver) that listen on or talk to anything but loopback."""
    bad = []
    for proc in [*ray_processes(), psutil.Process()]:
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN and not _is_loopback(conn.laddr.ip):
                bad.append(f"pid {proc.pid} ({proc.name()}) listens on {conn.laddr.ip}:{conn.laddr.port}")
            elif conn.raddr and not _is_loopback(conn.raddr.ip):
                bad.append(f"pid {proc.pid} ({proc.name()}) talks to {conn.raddr.ip}:{conn.raddr.port}")
    return bad


def tagged_processes(prefix: str = "") -> list[psutil.Process]:
    """Live processes started by a node for a Blueno job (their environment carries the tag)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            tag = proc.environ().get(TAG_ENV)
            if tag is not None and tag.startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def local_cluster(nodes: int = 2, gpus: int = 2) -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        for _ in range(nodes):
            cluster.add_node(gpus=gpus)
        yield cluster
    finally:
        cluster.shutdown()
