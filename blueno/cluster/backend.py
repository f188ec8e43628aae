"""The head's side of the Ray backend: one Ray task per claimed job, its stream written locally.

The scheduler (queue, lock, recovery, database) stays on the head.  For each
claimed job it asks :meth:`RayBackend.launch` for a :class:`RayLaunched`, the
remote twin of a local trainer process: the same ``poll``/``terminate``/
``escalate``/``cleanup`` the scheduler's loop already drives.  ``poll`` never
blocks: it takes what the node's streaming task (:func:`blueno.cluster.node.run_attempt`)
has sent so far, writes the run folder's files (crc32c-verified) into the
head's ``models/``, appends event lines to the attempt's local events file and
output to the run's log, in that order.  The scheduler's ingester reads that
events file exactly as it reads a local trainer's, with the attempt guard, so
remote curves live exactly like local ones.

Failures: a trainer that exits non-zero is a crash (counted); a lost node
(``NodeDiedError``, a crashed worker, or a node silent for longer than the
heartbeat limit) is an interruption (requeued, not counted, resumes from the
checkpoint the head holds).  Ray's own retries are off: every retry is a
Blueno attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from blueno import BluenoError
from blueno.cluster import node as node_side
from blueno.cluster.transfer import Blob, TransferError, pack
from blueno.workspace import Workspace

RAY_VERSION = "2.60.0"  # pinned: ray.cluster_utils (the tests' cluster) is a developer API
HEARTBEAT_LIMIT_S = 30.0  # a node silent this long is treated as lost
CAPACITY_REFRESH_S = 1.0
VERSION_CHECK_S = 60.0  # a node that does not answer the version check in this time gets no work
TRANSFER_RECORD = ".blueno-transfer.json"  # in a run folder on the head: every file that came from a node
EXIT_LOST = -1  # the returncode of an attempt whose node was lost (recorded as interrupted)
_ITEMS_PER_POLL = 64


def import_ray() -> Any:
    """``ray``, or a message saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BluenoError(
            "the Ray backend needs Ray: pip install -e '.[ray]' (the same version on every node)"
        ) from None
    return ray


@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster as the head sees it (what the app's nodes panel shows)."""

    node_id: str
    host: str
    address: str
    alive: bool
    gpus: float
    cpus: float
    slots: int
    problem: str | None = None  # why it gets no work (a version mismatch), if it does not


def workspace_key(workspace: Workspace) -> str:
    """Names the node-side copy of this workspace: the same head and folder → the same copy."""
    return hashlib.sha256(f"{socket.gethostname()}:{workspace.root}".encode()).hexdigest()[:16]


class RayBackend:
    """Places jobs on a Ray cluster; keeps at most as many in flight as the cluster has free slots."""

    def __init__(self, workspace: Workspace, address: str, *, heartbeat_limit: float = HEARTBEAT_LIMIT_S,
                 gpus_per_job: float = 1.0, cpus_per_job: float = 1.0) -> None:
        self.workspace = workspace
        self.address = address
        self.heartbeat_limit = heartbeat_limit
        self.gpus_per_job = gpus_per_job
        self.cpus_per_job = cpus_per_job
        self.versions: dict[str, str] = {}
        self.refused: dict[str, str] = {}  # node id → why it gets no work
        self.lost: set[str] = set()  # nodes our tasks saw die (Ray marks them dead only later)
        self._nodes: list[NodeInfo] = []
        self._checked: set[str] = set()
        self._probes: dict[str, tuple[float, Any]] = {}  # node id → (asked at, the version probe's ref)
        self._capacity_at = -math.inf
        self._datasets: dict[str, Any] = {}  # manifest hash → ObjectRef of its files
        self._task: Any = None
        self._ray: Any = None
        self.gpu_mode = True

    # -- connecting ----------------------------------------------------------------

    def connect(self) -> RayBackend:
        """Join the cluster as a driver and check every node's versions; a clear error when either fails."""
        ray = import_ray()
        self._ray = ray
        if not ray.is_initialized():
            self._reachable()
            try:
                ray.init(address=self.address, namespace="blueno", log_to_driver=False,
                         logging_level="WARNING", include_dashboard=False)
            except ConnectionError as exc:
                raise BluenoError(
                    f"no Ray cluster answers at {self.address!r} ({exc}). Start one with `ray start --head` "
                    "on the head box (see docs/cluster.md), or give its address: --ray HOST:6379."
                ) from None
            except RuntimeError as exc:
                if "version" in str(exc).lower():
                    raise BluenoError(
                        f"the Ray cluster at {self.address} runs another Python or Ray than this head: {exc}. "
                        "Install the same versions everywhere (docs/cluster.md)."
                    ) from None
                raise
        self.versions = node_side.versions()
        self._task = ray.remote(max_retries=0, retry_exceptions=False)(node_side.run_attempt)
        self.refresh(force=True, wait=VERSION_CHECK_S)
        alive = [n for n in self._nodes if n.alive]
        if alive and all(n.node_id in self.refused for n in alive if n.slots):
            raise BluenoError("no node of the cluster can take work: " + "; ".join(self.refused.values()))
        self._warm_up()
        return self

    def _reachable(self, timeout: float = 5.0) -> None:
        """Refuse an address nothing answers at (Ray itself would retry for minutes)."""
        if self.address in ("auto", "local") or ":" not in self.address:
            return
        host, _, port = self.address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except (OSError, ValueError) as exc:
            raise BluenoError(
                f"nothing answers at {self.address} ({exc}). Is the head's Ray running (`ray start --head` there; "
                "`ray status` says), is the address right, and is its port open to this box? See docs/cluster.md."
            ) from None

    def _resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = {"num_gpus": self.gpus_per_job, "num_cpus": 0} if self.gpu_mode else \
            {"num_gpus": 0, "num_cpus": self.cpus_per_job}
        if self.refused:  # nodes with other versions get no work
            resources["label_selector"] = {"ray.io/node-id": f"!in({','.join(sorted(self.refused))})"}
        return resources

    def _warm_up(self) -> None:
        """Start a Ray worker for every slot now (a second or so each), not when the grid's first jobs wait."""
        warm = self._ray.remote(max_retries=0)(node_side.warm_up)
        refs = [warm.options(**self._resources()).remote() for _ in range(self.capacity())]
        with contextlib.suppress(Exception):  # a slow warm-up only costs the first jobs their start-up
            self._ray.get(refs, timeout=120)

    def close(self) -> None:
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()

    def _check_versions(self, wait: float = 0.0) -> None:
        """Ask each new node for its versions (a tiny task pinned to it); refuse those that differ.

        Never blocks the scheduler's loop (``wait`` = 0): a node counts only
        once its answer is in, and one that gives none within a minute is refused.
        """
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(node_side.versions)
        for node in self._nodes:
            if node.alive and node.slots and node.node_id not in self._checked and node.node_id not in self._probes:
                strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
                self._probes[node.node_id] = (time.monotonic(), probe.options(
                    num_cpus=0, max_retries=0, scheduling_strategy=strategy).remote())
        if not self._probes:
            return
        refs = [ref for _, ref in self._probes.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait, fetch_local=True)
        for node_id, (asked, ref) in list(self._probes.items()):
            where = next((f"{n.host} (node {node_id[:8]})" for n in self._nodes if n.node_id == node_id), node_id)
            if ref not in ready:
                if time.monotonic() - asked > VERSION_CHECK_S:
                    self.refused[node_id] = (f"the node {where} did not answer a version check "
                                             f"in {VERSION_CHECK_S:.0f} s")
                    del self._probes[node_id]
                continue
            del self._probes[node_id]
            try:
                found = ray.get(ref)
            except Exception as exc:  # a node that cannot even run a probe gets no work
                self.refused[node_id] = f"the node {where} failed a version check: {type(exc).__name__}"
                continue
            problem = node_side.version_mismatch(self.versions, found, where)
            if problem:
                self.refused[node_id] = problem
            self._checked.add(node_id)

    # -- capacity -----------------------------------------------------------------------

    def refresh(self, force: bool = False, wait: float = 0.0) -> list[NodeInfo]:
        """The cluster's nodes (at most once a second unless ``force``); new nodes get a version check."""
        if not force and time.monotonic() - self._capacity_at < CAPACITY_REFRESH_S:
            return self._nodes
        self._capacity_at = time.monotonic()
        raw = self._ray.nodes()
        total_gpus = sum(float(n.get("Resources", {}).get("GPU", 0)) for n in raw if n.get("Alive"))
        self.gpu_mode = self.gpus_per_job > 0 and total_gpus > 0
        nodes = []
        for entry in raw:
            resources = entry.get("Resources", {})
            gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
            node_id = entry["NodeID"]
            alive = bool(entry.get("Alive")) and node_id not in self.lost
            if self.gpu_mode:
                slots = int(gpus // self.gpus_per_job)
            else:
                slots = int(cpus // self.cpus_per_job) if self.cpus_per_job > 0 else 0
            nodes.append(NodeInfo(node_id, entry.get("NodeManagerHostname", "?"), entry.get("NodeManagerAddress", "?"),
                                  alive, gpus, cpus, slots if alive else 0, self.refused.get(node_id)))
        self._nodes = nodes
        self._check_versions(wait)
        self._nodes = [NodeInfo(n.node_id, n.host, n.address, n.alive, n.gpus, n.cpus, n.slots,
                                self.refused.get(n.node_id) or (None if n.node_id in self._checked or not n.slots
                                                                else "version check under way"))
                       for n in nodes]
        return self._nodes

    def capacity(self) -> int:
        """Jobs the cluster can run at once now: the slots of live nodes that passed the version check."""
        return sum(n.slots for n in self.refresh() if n.alive and n.node_id in self._checked
                   and n.node_id not in self.refused)

    # -- launching --------------------------------------------------------------------------

    def _dataset(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        version = spec.get("dataset")
        if not version:
            return None
        manifest = version.get("manifest")
        if manifest is None:  # the spec names the manifest's file (written once per manifest hash)
            manifest = json.loads(Path(version["manifest_file"]).read_text())
        order = {"key": version["manifest_hash"], "name": version["name"], "version": version["version"],
                 "manifest": manifest, "url": None, "blobs": None}
        bucket = self.workspace.settings().get("gcs", {}).get("bucket")
        if bucket and version.get("remote_url"):
            order["url"] = version["remote_url"]
            return order
        ref = self._datasets.get(order["key"])
        if ref is None:
            folder = Path(version["path"])
            names = [f["path"] for f in manifest["files"]]
            if (folder / "manifest.json").is_file():
                names.append("manifest.json")
            blobs = pack(folder, names)
            expected = {f["path"]: f["crc32c"] for f in manifest["files"]}
            bad = [b.path for b in blobs if b.path in expected and b.crc32c != expected[b.path]]
            if bad:
                raise BluenoError(f"{folder / bad[0]} does not match its manifest (crc32c): the dataset "
                                  f"{version['name']}@{version['version']} is damaged on the head; "
                                  "`blueno data verify` says more")
            ref = self._ray.put(blobs)
            self._datasets[order["key"]] = ref
        order["blobs"] = [ref]  # inside a list: the node fetches it only when its cache misses
        return order

    def _plugins(self) -> list[Blob]:
        blobs = []
        for folder in (self.workspace.zoo_dir, self.workspace.transforms_dir):
            if folder.is_dir():
                names = sorted(p.name for p in folder.glob("*.py"))
                blobs += [Blob(f"{folder.name}/{b.path}", b.data, b.crc32c) for b in pack(folder, names)]
        return blobs

    def launch(self, job: Any, slot: Any, spec: dict[str, Any], argv: list[str], cwd: Path | None,
               log: IO[bytes], env: dict[str, str] | None = None, grace: float = 10.0, *,
               queue: Any = None, run: dict[str, Any] | None = None,
               on_placed: Callable[[str], None] | None = None) -> RayLaunched:
        """Submit one attempt as a Ray task; returns at once (the job is *placing* until it starts).

        Once a node has started the trainer, ``queue.mark_placed`` records the
        node on the job and its run (with the ``run`` columns), then
        ``on_placed(slot label)`` is called.
        """
        run_dir = Path(spec["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        run_rel = run_dir.relative_to(self.workspace.root).as_posix()
        run_files = [b for b in pack(run_dir) if b.path != TRANSFER_RECORD]
        passthrough = {k: v for k, v in (env or os.environ).items()
                       if k.startswith("BLUENO_") and k not in ("BLUENO_HOME", "BLUENO_JOB", "BLUENO_EVENTS")}
        order = {
            "job_id": job.id, "attempt": job.attempt, "tag": f"{job.id}.{job.attempt}",
            "workspace_key": workspace_key(self.workspace), "head_root": str(self.workspace.root),
            "run_rel": run_rel, "spec": spec, "argv": list(argv), "cwd": str(cwd) if cwd else None,
            "env": passthrough, "run_files": run_files, "plugins": self._plugins(),
            "dataset": self._dataset(spec), "versions": self.versions, "head_python": sys.executable,
            "grace": grace,
        }
        gen = self._task.options(**self._resources(), name=f"blueno-job-{job.id}-attempt-{job.attempt}").remote(order)
        events_path = Path(spec["events"])
        events_path.parent.mkdir(parents=True, exist_ok=True)
        return RayLaunched(job=job, slot=slot, log=log, gen=gen, backend=self, run_dir=run_dir,
                           events_fd=os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                             0o644),
                           queue=queue, run=run or {}, on_placed=on_placed)

    def record(self, store: Any, running: Iterable[Any]) -> None:
        """Save the cluster as the app shows it: each node, its GPUs and the jobs running there."""
        from blueno.cluster import save_nodes

        by_node: dict[str, list[int]] = {}
        for launched in running:
            started = getattr(launched, "started", None)
            if started:
                by_node.setdefault(started.get("node_id", ""), []).append(launched.job.id)
        save_nodes(store, self.refresh(), by_node)

    def node_lost(self, node_id: str) -> None:
        if node_id:
            self.lost.add(node_id)
            self._capacity_at = -math.inf


@dataclass
class RayLaunched:
    """A job running (or being placed) on the cluster, driven like a local trainer process."""

    job: Any
    slot: Any
    log: IO[bytes]
    gen: Any  # ray.ObjectRefGenerator
    backend: RayBackend
    run_dir: Path
    events_fd: int | None
    pidfd: int | None = None
    kill_at: float | None = None
    interrupted: bool = False
    failure: str | None = None
    source: Any = None
    next_ingest: float = 0.0
    started: dict[str, Any] | None = None
    returncode: int | None = None
    members: list[Any] = field(default_factory=list)
    queue: Any = None  # blueno.queue.JobQueue: where the node is recorded once the trainer runs
    run: dict[str, Any] = field(default_factory=dict)
    on_placed: Callable[[str], None] | None = None
    _last_item: float = field(default_factory=time.monotonic)
    _pending: Any = None  # the next item's ObjectRef, until its bytes are on the head
    _forced: bool = False

    @property
    def placing(self) -> bool:
        return self.started is None and self.returncode is None

    def poll(self) -> int | None:
        """Apply what the node sent since the last call; the trainer's returncode once it is over."""
        if self.returncode is not None:
            return self.returncode
        ray = self.backend._ray
        for _ in range(_ITEMS_PER_POLL):
            try:
                if self._pending is None:
                    if not self.gen.next_ready():
                        if self.gen.is_finished():
                            return self._ended_without_exit()
                        break
                    self._pending = next(self.gen)
                # A large item lives in the node's object store: take it only once it is here, so a node
                # that dies meanwhile never blocks the scheduler's loop (its silence counts instead).
                ready, _ = ray.wait([self._pending], timeout=0, fetch_local=True)
                if not ready:
                    break
                item, self._pending = ray.get(self._pending), None
            except StopIteration:
                return self._ended_without_exit()
            except Exception as exc:
                return self._failed(exc)
            self._last_item = time.monotonic()
            try:
                self._apply(item)
            except (TransferError, OSError) as exc:
                self.failure = f"a file from the node could not be kept: {exc}"
                self.terminate(0.0, interrupted=False)
                self.backend._ray.cancel(self.gen, force=True)
                return self._end(1, self.failure)
            if "exit" in item:
                return self._end(int(item["exit"]), "")
        if (self.started is not None and self.kill_at is None
                and time.monotonic() - self._last_item > self.backend.heartbeat_limit):
            node_id = self.started.get("node_id", "")
            self._note(f"the node {self.started.get('node')} was silent for more than "
                       f"{self.backend.heartbeat_limit:.0f} s: treated as lost")
            self.backend.node_lost(node_id)
            with contextlib.suppress(Exception):
                ray.cancel(self.gen, force=True)
            self.interrupted = True
            return self._end(EXIT_LOST, "node silent")
        return None

    def _apply(self, item: dict[str, Any]) -> None:
        if "started" in item:
            self.started = item["started"]
            self._note(f"trainer started on {self.started['node']}, GPU {self.started.get('gpu') or '-'}, "
                       f"pid {self.started['pid']}")
            self._placed(self.started)
        if item.get("files") or item.get("removed"):
            written = node_side.apply_files(self.run_dir, item)
            if written:
                self._record(written)
        if item.get("events") and self.events_fd is not None:
            data = item["events"]
            view = memoryview(data)
            while view:
                view = view[os.write(self.events_fd, view):]
            if any(kind in data for kind in node_side.DURABLE_TYPES):
                os.fsync(self.events_fd)
        if item.get("log"):
            self.log.write(item["log"])
            self.log.flush()

    def _placed(self, info: dict[str, Any]) -> None:
        gpu = info.get("gpu")
        where = f"{info.get('node_id', '')[:8]}/{'gpu' + gpu if gpu else 'cpu'}"
        if self.queue is not None:
            self.queue.mark_placed(self.job.id, self.job.attempt, where, info["node"], gpu, run=self.run)
        if self.on_placed is not None:
            self.on_placed(where)

    def _record(self, written: list[tuple[str, str]]) -> None:
        """Keep, on the head, which files came from which node with which crc32c (verified on arrival)."""
        path = self.run_dir / TRANSFER_RECORD
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {}
        node = (self.started or {}).get("node")
        for rel, crc in written:
            record[rel] = {"crc32c": crc, "node": node, "attempt": self.job.attempt}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _ended_without_exit(self) -> int:
        """The stream ended before the node said how the trainer ended: stopped by us, or the node went away."""
        if self.kill_at is not None:
            return self._end(143, "stopped")
        self.interrupted = True
        self._note("the node's task ended without the trainer's exit status: treated as a lost node")
        return self._end(EXIT_LOST, "no exit")

    def _failed(self, exc: BaseException) -> int:
        from ray import exceptions as rex

        cause = exc.cause if isinstance(exc, rex.RayTaskError) else exc
        if isinstance(cause, rex.TaskCancelledError | KeyboardInterrupt):
            return self._end(143, "stopped")
        lost = (rex.NodeDiedError, rex.WorkerCrashedError, rex.ObjectLostError, rex.OwnerDiedError,
                rex.LocalRayletDiedError, rex.RaySystemError)
        if isinstance(exc, lost):
            if self.started and isinstance(exc, rex.NodeDiedError):
                self.backend.node_lost(self.started.get("node_id", ""))
            self.interrupted = True
            self._note(f"lost the node: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            return self._end(EXIT_LOST, "node lost")
        text = str(exc).strip().splitlines()
        self.failure = f"the node's task failed: {text[-1][:300] if text else type(exc).__name__}"
        self._note(self.failure)
        return self._end(1, self.failure)

    def _note(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.log.write(f"=== blueno (ray): {text}\n".encode())
            self.log.flush()

    def _end(self, returncode: int, _why: str) -> int:
        self.returncode = returncode
        return returncode

    def terminate(self, grace: float, *, interrupted: bool) -> None:
        """Ask the node to stop the trainer (Ray raises KeyboardInterrupt in the task); never blocks."""
        self.interrupted = self.interrupted or interrupted
        if self.kill_at is not None or self.returncode is not None:
            return
        self.kill_at = time.monotonic() + grace + 2.0  # the node's own SIGTERM→SIGKILL, plus a margin
        with contextlib.suppress(Exception):
            self.backend._ray.cancel(self.gen, force=False)

    def escalate(self) -> None:
        """Past the grace period: kill the worker (its process group, the trainer with it)."""
        if self.kill_at is not None and not self._forced and time.monotonic() >= self.kill_at:
            self._forced = True
            with contextlib.suppress(Exception):
                self.backend._ray.cancel(self.gen, force=True)

    def cleanup(self) -> set[int]:
        """After the end: close the events file (nothing runs on the head to reap)."""
        if self.events_fd is not None:
            os.close(self.events_fd)
            self.events_fd = None
        with contextlib.suppress(OSError):
            self.log.close()
        return set()
