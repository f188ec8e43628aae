"""What a Ray task does on a node: one attempt of one job, its trainer a subprocess.

The head sends an *order* (a dict: the job spec with the head's paths, the
command, the run folder's files to resume from, the user's plugins, where the
dataset comes from).  :func:`run_attempt` is a generator run as a streaming
Ray task: it lays out a node-side workspace that mirrors the head's paths
(``<node dir>/workspaces/<key>/``), brings the dataset into the node's cache,
starts the trainer as a subprocess and yields *items* back to the head:

* ``{"started": {...}}`` once the trainer runs (its node, GPU and pid);
* ``{"files": [Blob], "removed": [...]}`` the run folder's changes, always
  in the same item as, and so before, the events that name them (checkpoints
  leave the node before the epoch event is sent; the model before the result);
* ``{"events": bytes}`` complete JSON lines of the trainer protocol;
* ``{"log": bytes}`` the trainer's output; ``{"beat": t}`` when there is
  nothing else for a second, so the head can tell a silent node from a busy one;
* ``{"exit": returncode}`` last.

TensorFlow never loads here: the trainer is a subprocess in this worker's
process group (Ray kills the group when the worker dies) that also gets
SIGKILL if this worker dies (``PR_SET_PDEATHSIG``).  Every trainer carries
``$BLUENO_RAY_TAG`` so leftovers can be found.  Cancelling the task (Ray
raises ``KeyboardInterrupt`` here) stops the trainer: SIGTERM, then SIGKILL
after the grace period.  The loop never blocks longer than a tick, so a
cancel is seen at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from blueno.cluster.transfer import Blob, FolderMirror, remove_inside, write_verified

NODE_DIR_ENV = "BLUENO_NODE_DIR"  # where a node keeps its dataset cache and run folders
TAG_ENV = "BLUENO_RAY_TAG"  # set on every trainer a node starts: "<job>.<attempt>"
TICK_S = 0.05
BEAT_S = 1.0
DURABLE_TYPES = (b'"epoch"', b'"result"', b'"model"', b'"error"')
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


def node_dir() -> Path:
    """This node's folder for Blueno: ``$BLUENO_NODE_DIR``, else ``~/.cache/blueno-node``."""
    chosen = os.environ.get(NODE_DIR_ENV) or Path.home() / ".cache" / "blueno-node"
    return Path(chosen).expanduser().resolve()


def versions() -> dict[str, str]:
    """What must match between the head and every node."""
    import ray

    from blueno import __version__

    return {"python": platform.python_version(), "ray": ray.__version__, "blueno": __version__}


def warm_up(seconds: float = 0.3) -> str:
    """A task that only holds its slot a moment: run one per slot at connect so every worker is started."""
    time.sleep(seconds)
    return socket.gethostname()


def version_mismatch(head: dict[str, str], node: dict[str, str], where: str) -> str | None:
    """A message naming what differs (Python by major.minor), or None."""
    differ = []
    for key in ("python", "ray", "blueno"):
        a, b = head.get(key, "?"), node.get(key, "?")
        if key == "python":
            a, b = ".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])
        if a != b:
            differ.append(f"{key} {b} (the head has {a})")
    if not differ:
        return None
    return (f"the node {where} runs {', '.join(differ)}: every node must run the same Python, Ray and Blueno "
            "as the head. Install the head's versions there (pip install -e '.[ray]' from the same checkout) "
            "and restart its `ray start`.")


# -- the node's copy of a workspace ----------------------------------------------------


def _rewrite(value: Any, old: str, new: str) -> Any:
    """Every string that starts with the head's workspace path, moved to the node's."""
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return new + value[len(old):]
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    return value


def _install_plugins(root: Path, plugins: list[Blob]) -> None:
    """The user's models and transforms (``zoo/``, ``transforms/``) as the head has them."""
    for blob in plugins:
        target = root / blob.path
        with contextlib.suppress(OSError):
            if target.read_bytes() == blob.data:
                continue
        write_verified(root, blob)


def ensure_dataset(base: Path, dataset: dict[str, Any]) -> Path:
    """The dataset version in this node's cache (keyed by its manifest), fetched and verified once.

    From the bucket when the order names one (``blueno.datasets.remote``),
    else from the head through Ray's object store.  Concurrent attempts on
    one node wait on a file lock; a version is used only once every file
    passed its crc32c check (the ``.verified`` stamp).
    """
    folder = base / "datasets" / dataset["key"]
    stamp = folder / ".verified"
    if stamp.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{dataset['key']}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return folder
        if dataset.get("url"):
            from blueno.datasets.remote import download_version
            from blueno.workspace import Workspace

            download_version(Workspace(base), folder, dataset["url"], dataset["name"], dataset["version"],
                             dataset["manifest"])
        else:
            import ray

            blobs: list[Blob] = ray.get(dataset["blobs"][0])
            for blob in blobs:
                write_verified(folder, blob)
        stamp.write_text(json.dumps({"files": len(dataset["manifest"].get("files", []))}))
    return folder


# -- one attempt -------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the trainer and everything it started; SIGKILL what is left after ``grace``."""
    try:
        members = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        members = []
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    for member in members:
        with contextlib.suppress(psutil.Error):
            if member.is_running():
                member.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=2)


def _read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class _EventTail:
    """Complete lines appended to the node's events file since the last read."""

    def __init__(self, path: Path, node_root: str, head_root: str) -> None:
        self.path, self.offset = path, 0
        self.node_root = json.dumps(node_root)[1:-1].encode()
        self.head_root = json.dumps(head_root)[1:-1].encode()

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read(1 << 22)
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        if end < 0:
            return b""
        self.offset += end + 1
        # Paths a trainer reports (a checkpoint it names) mean the same file on the head.
        return data[:end + 1].replace(self.node_root, self.head_root)


def run_attempt(order: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run one attempt on this node and stream what happens (see the module's docstring)."""
    import ray

    base = node_dir()
    node_id = ray.get_runtime_context().get_node_id()
    where = f"{socket.gethostname()} (node {node_id[:8]})"
    problem = version_mismatch(order["versions"], versions(), where)
    if problem:
        yield {"log": f"=== blueno: {problem}\n".encode(), "exit": 1}
        return
    head_root, run_rel = order["head_root"], order["run_rel"]
    root = base / "workspaces" / order["workspace_key"]
    run_dir = root / run_rel
    for folder in (root / "logs", run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for blob in order["run_files"]:  # the checkpoint to resume from, as the head holds it
        write_verified(run_dir, blob)
    _install_plugins(root, order["plugins"])
    spec = _rewrite(order["spec"], head_root, str(root))
    if order.get("dataset"):
        spec["dataset"]["path"] = str(ensure_dataset(base, order["dataset"]))
        if spec["dataset"].get("manifest_file"):  # the node's copy of the file the head's spec names
            manifest_file = Path(spec["dataset"]["manifest_file"])
            if not manifest_file.is_file():
                manifest_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = manifest_file.with_name(f".{manifest_file.name}.{os.getpid()}")
                tmp.write_text(json.dumps(order["dataset"]["manifest"], separators=(",", ":")))
                os.replace(tmp, manifest_file)
    spec["node"] = where
    spec_path, events_path = Path(spec["job_spec"]), Path(spec["events"])
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec_path.with_name(spec_path.name + ".tmp")
    tmp.write_text(json.dumps(spec, indent=1, sort_keys=True))
    os.replace(tmp, spec_path)
    events_path.unlink(missing_ok=True)
    events_path.touch()

    argv = [sys.executable if part == order["head_python"] else part for part in order["argv"]]
    argv = _rewrite(argv, head_root, str(root))
    cwd = order.get("cwd")
    cwd = _rewrite(cwd, head_root, str(root)) if cwd else str(root)
    if not Path(cwd).is_dir():
        cwd = str(root)
    env = dict(os.environ)
    env.update(order["env"])
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")])),
        "BLUENO_HOME": str(root), "BLUENO_JOB": str(spec_path), "BLUENO_EVENTS": str(events_path),
        "BLUENO_SLOT": spec.get("slot") or "ray", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PYTHONUNBUFFERED": "1",
        TAG_ENV: order["tag"],
    })
    # Ray chose this task's GPU and set CUDA_VISIBLE_DEVICES for it; keep it (an empty one means CPU).
    env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    mirror = FolderMirror(run_dir)
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    except OSError as exc:
        yield {"log": f"=== blueno: cannot start {argv[0]} on {where}: {exc.strerror}\n".encode(), "exit": 127}
        return
    try:
        yield from _supervise(proc, order, where, node_id, mirror, _EventTail(events_path, str(root), head_root))
    except (KeyboardInterrupt, GeneratorExit):  # ray.cancel: stop the trainer, then end the task
        _stop(proc, float(order.get("grace", 10.0)))
        raise
    finally:
        if proc.poll() is None:
            _stop(proc, 0.0)
        with contextlib.suppress(OSError):
            proc.stdout.close()  # type: ignore[union-attr]
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # the head has every file it needs


def _supervise(proc: subprocess.Popen[bytes], order: dict[str, Any], where: str, node_id: str,
               mirror: FolderMirror, tail: _EventTail) -> Iterator[dict[str, Any]]:
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    os.set_blocking(out_fd, False)
    try:
        exit_fd: int | None = os.pidfd_open(proc.pid)  # readable the moment the trainer exits
    except (AttributeError, OSError):
        exit_fd = None  # an old kernel: the tick notices
    try:
        yield from _loop(proc, order, where, node_id, mirror, tail, out_fd, exit_fd)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)


def _loop(proc: subprocess.Popen[bytes], order: dict[str, Any], where: str, node_id: str, mirror: FolderMirror,
          tail: _EventTail, out_fd: int, exit_fd: int | None) -> Iterator[dict[str, Any]]:
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
    yield {"started": {"node": where, "host": socket.gethostname(), "gpu": gpu, "pid": proc.pid,
                       "node_id": node_id}}
    last = time.monotonic()
    raylet = os.getppid()  # Ray's node manager started this worker
    while True:
        if os.getppid() != raylet:  # the node manager died: this node is going away, and the trainer with it
            _stop(proc, 0.0)
            os._exit(1)  # no normal end: the head must see a lost node, not a finished task
        with contextlib.suppress(InterruptedError):
            select.select([out_fd] + ([exit_fd] if exit_fd is not None else []), [], [], TICK_S)
        returncode = proc.poll()
        item: dict[str, Any] = {}
        log = _read_available(out_fd)
        events = tail.read()
        if returncode is not None:  # after its exit: whatever it still wrote
            log += _read_available(out_fd)
            events += tail.read()
        if events and any(kind in events for kind in DURABLE_TYPES) or (returncode is not None):
            files, removed = mirror.changes()  # read after the events: the files they name are complete
            if files or removed:
                item["files"], item["removed"] = files, removed
        if events:
            item["events"] = events
        if log:
            item["log"] = log
        if returncode is not None:
            item["exit"] = returncode
            yield item
            return
        if item or time.monotonic() - last >= BEAT_S:
            yield item or {"beat": time.time()}
            last = time.monotonic()


def apply_files(run_dir: Path, item: dict[str, Any]) -> list[tuple[str, str]]:
    """On the head: write an item's files (verified) and removals into the run folder; (path, crc32c) written."""
    written = []
    for blob in item.get("files") or []:
        write_verified(run_dir, blob)
        written.append((blob.path, blob.crc32c))
    for rel in item.get("removed") or []:
        remove_inside(run_dir, rel)
    return written
