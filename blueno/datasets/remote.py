"""Google Cloud Storage: push, pull and list dataset versions, and keep run models there.

Layout in a bucket (``gs://BUCKET/PREFIX`` from ``--to`` or ``[gcs] bucket``)::

    PREFIX/<name>/<version>/<file>…          the version's files, as in data/
    PREFIX/<name>/<version>/manifest.json    uploaded last: a version with it is complete
    PREFIX/models/run-<id>/model.keras       each finished run's model

Sync is by checksum: GCS keeps a crc32c per object, the manifest has one per
file, so only files whose checksums differ travel, in parallel.  Uploads carry
generation preconditions (0 = "must not exist yet", or the generation we saw)
so two pushers never silently overwrite each other; downloads are written to a
temporary name, checked against the manifest and only then renamed.
Credentials come from a service-account key in ``credentials/`` or from
Application Default Credentials; errors name the file and the fix, never its
contents.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c

from blueno import BluenoError
from blueno.datasets.kinds import KINDS
from blueno.datasets.manifest import (
    MANIFEST_NAME,
    file_crc32c,
    manifest_hash,
    short_version,
    walk_files,
    write_manifest,
)
from blueno.datasets.registry import (
    DatasetVersion,
    check_name,
    find,
    insert_version,
    is_verified,
    parse_ref,
    resolve,
    verify,
    version_folder,
    write_stamp,
)
from blueno.datasets.task import Cancelled, Task, ensure_task
from blueno.limits import check_free_space, manifest_problems
from blueno.store import Store
from blueno.workspace import Workspace, check_secret_mode

log = logging.getLogger(__name__)
DEFAULT_KEY = "credentials/gcs.json"
WORKERS = 8
NO_CREDENTIALS = (
    "no Google Cloud credentials found. Either save a service-account JSON key as {key} "
    "(Cloud console: IAM & Admin → Service accounts → your account → Keys → Add key → JSON; the account "
    "needs the 'Storage Object Admin' role on the bucket), or set credentials = \"path/to/key.json\" under "
    "[gcs] in settings.toml, or run `gcloud auth application-default login` on this machine."
)


# -- addresses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """``gs://bucket/prefix`` split into its parts."""

    bucket: str
    prefix: str

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"gs://{self.bucket}/{self.key(*parts)}".rstrip("/")


def parse_url(url: str) -> Location:
    if not url.startswith("gs://") or len(url) <= 5 or url[5] == "/":
        raise BluenoError(f"{url!r} is not a Cloud Storage address: write gs://BUCKET or gs://BUCKET/PREFIX")
    bucket, _, prefix = url[5:].partition("/")
    return Location(bucket, prefix.strip("/"))


def configured_url(workspace: Workspace, url: str | None = None) -> str:
    """``url``, else ``[gcs] bucket`` from settings.toml, else an error saying how to set one."""
    chosen = url or workspace.settings().get("gcs", {}).get("bucket")
    if not chosen:
        raise BluenoError(
            f"no bucket given: pass gs://BUCKET/PREFIX, or add to {workspace.settings_path}:\n"
            '  [gcs]\n  bucket = "gs://my-bucket/blueno"'
        )
    parse_url(chosen)
    return chosen.rstrip("/")


def version_url(base: str, version: DatasetVersion) -> str:
    """The address ``pull`` takes for this version under ``base`` (``gs://bucket/prefix``)."""
    return f"{base.rstrip('/')}/{version.name}@{version.version}"


# -- client and errors ------------------------------------------------------------------------


def client(workspace: Workspace):  # -> google.cloud.storage.Client
    """A storage client: the emulator when STORAGE_EMULATOR_HOST is set, else the configured credentials."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage
    from google.oauth2 import service_account

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "blueno-emulator"))
    setting = workspace.settings().get("gcs", {}).get("credentials")
    key = Path(setting).expanduser() if setting else Path(DEFAULT_KEY)
    key = key if key.is_absolute() else workspace.root / key
    if setting and not key.is_file():
        raise BluenoError(f"settings.toml names the key {key}, which does not exist. " + _fix(workspace))
    if key.is_file():
        check_secret_mode(key)
        try:
            credentials = service_account.Credentials.from_service_account_file(
                str(key), scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
            )
        except (ValueError, KeyError, OSError, json.JSONDecodeError):
            # The exception text could quote the key: say what is wrong without it.
            raise BluenoError(
                f"{key} is not a valid service-account key. Download a fresh JSON key (Cloud console: "
                "IAM & Admin → Service accounts → Keys → Add key → JSON) and save it there."
            ) from None
        return storage.Client(project=credentials.project_id, credentials=credentials)
    try:
        credentials, project = google.auth.default()
    except DefaultCredentialsError:
        raise BluenoError(_fix(workspace)) from None
    return storage.Client(project=project, credentials=credentials)


CONNECT_TIMEOUT_S = 5.0  # per connection attempt: a desktop app should not wait 60 s for a SYN
READ_TIMEOUT_S = 60.0  # per read of a large object
RETRY_DEADLINE_S = 20.0  # all retries of one call together (the client's default is 120 s)


def _endpoint() -> str:
    return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"


def _call() -> dict[str, Any]:
    """Timeout and retry policy for every Cloud Storage call: bounded, and saying what it retries."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    said: list[bool] = []

    def on_error(exc: BaseException) -> None:
        if not said:
            said.append(True)
            log.warning("Cloud Storage at %s did not answer (%s); retrying for up to %.0f s", _endpoint(),
                        type(exc).__name__, RETRY_DEADLINE_S)

    retry = copy.copy(DEFAULT_RETRY.with_timeout(RETRY_DEADLINE_S))
    retry._on_error = on_error  # google.api_core's Retry calls it before each retry
    return {"timeout": (CONNECT_TIMEOUT_S, READ_TIMEOUT_S), "retry": retry}


def _fix(workspace: Workspace) -> str:
    return NO_CREDENTIALS.format(key=workspace.root / DEFAULT_KEY)


class RemoteUnavailable(BluenoError):
    """Cloud Storage could not be reached: worth retrying later, unlike a bad bucket or credential."""


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn Cloud Storage failures into one clear message (class names only: never a token or key)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from requests import exceptions as http

    try:
        yield
    except BluenoError:
        raise
    except api.Forbidden:
        raise BluenoError(f"{what}: permission denied. Give the service account the 'Storage Object "
                          "Admin' role on the bucket (or use an account that has it).") from None
    except api.Unauthorized:
        raise BluenoError(f"{what}: the credentials were rejected. Check the key in credentials/ "
                          "or run `gcloud auth application-default login` again.") from None
    except api.PreconditionFailed:
        raise BluenoError(f"{what}: the remote object changed while Blueno worked on it (another push?). "
                          "Nothing was overwritten; run the command again.") from None
    except api.NotFound:
        raise BluenoError(f"{what}: not found. Check the bucket name and that the credentials can see it "
                          "(`blueno data remote ls gs://BUCKET`).") from None
    except auth.RefreshError as exc:
        raise BluenoError(f"{what}: Google refused the credentials ({type(exc).__name__}). Replace the key "
                          "in credentials/ or re-run `gcloud auth application-default login`.") from None
    except (http.ConnectionError, http.Timeout, auth.TransportError, api.ServiceUnavailable,
            api.RetryError) as exc:
        raise RemoteUnavailable(
            f"{what}: cannot reach Cloud Storage at {_endpoint()} ({type(exc).__name__}; each connection "
            f"attempt waits {CONNECT_TIMEOUT_S:.0f} s, retries stop after {RETRY_DEADLINE_S:.0f} s). Check the "
            "network connection (a proxy? offline?) and try again; with an emulator, check that it runs "
            "and STORAGE_EMULATOR_HOST."
        ) from None
    except api.GoogleAPICallError as exc:
        raise BluenoError(f"{what}: Cloud Storage answered {exc.code} ({type(exc).__name__}).") from None


# -- parallel transfers ----------------------------------------------------------------------


def _parallel(work: list[Any], fn: Callable[[Any], None], task: Task, workers: int = WORKERS) -> None:
    """Run ``fn`` over ``work`` on a thread pool; the first error (or a cancel) stops the rest."""
    if not work:
        return
    stop = threading.Event()

    def guarded(item: Any) -> None:
        if stop.is_set() or task.cancelled:
            raise Cancelled("cancelled; nothing was changed")
        fn(item)

    pool = ThreadPoolExecutor(max_workers=min(workers, len(work)))
    try:
        done, _ = wait([pool.submit(guarded, item) for item in work], return_when=FIRST_EXCEPTION)
        failed = next((f.exception() for f in done if f.exception() is not None), None)
        if failed is not None:
            raise failed
    except BaseException:  # an error, a cancel or Ctrl-C: the queued transfers must not start
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _HashingWriter:
    """A file wrapper that computes crc32c of what the client writes into it (one pass per download)."""

    def __init__(self, f: Any, task: Task, limit: int | None = None, name: str = "") -> None:
        self._f, self._task, self.checksum = f, task, google_crc32c.Checksum()
        self._limit, self._name, self.written = limit, name, 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self._limit is not None and self.written > self._limit:  # never past the manifest's size
            raise BluenoError(f"{self._name} is corrupt: it is larger than the {self._limit:,} bytes the manifest "
                              "says (the download stopped there). Push the version again from a good copy.")
        self.checksum.update(data)
        self._task.advance(nbytes=len(data))
        return self._f.write(data)

    def crc32c(self) -> str:
        return base64.b64encode(self.checksum.digest()).decode("ascii")


def _download_verified(blob: Any, dest: Path, expected_crc: str, expected_size: int, task: Task,
                       expected_by: str = "the manifest") -> None:
    """Download to a temporary name next to ``dest``; rename only when size and crc32c match."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".part-{uuid.uuid4().hex[:8]}-{dest.name}")
    try:
        with open(part, "wb") as f:
            writer = _HashingWriter(f, task, expected_size, f"gs://{blob.bucket.name}/{blob.name}")
            blob.download_to_file(writer, checksum=None, **_call())
        size, crc = part.stat().st_size, writer.crc32c()
        if crc != expected_crc or size != expected_size:
            raise BluenoError(
                f"gs://{blob.bucket.name}/{blob.name} is corrupt: it has {size} bytes with crc32c {crc}, "
                f"{expected_by} says {expected_size} bytes with {expected_crc}. Nothing was kept; upload a good "
                "copy again from a machine that has it."
            )
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)


# -- datasets -------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """What a push or pull did: files that travelled, were copied inside the bucket, or were in place."""

    url: str
    version: DatasetVersion
    transferred: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes: int = 0
    copied: list[str] = field(default_factory=list)  # push: unchanged files reused from another version

    def describe(self, verb: str) -> str:
        reused = f", {len(self.copied)} copied inside the bucket from other versions" if self.copied else ""
        return (f"{self.version.ref}: {verb} {len(self.transferred)} files ({self.bytes / 1e6:.1f} MB)"
                f"{reused}, {self.skipped} already in place; {self.url}")


def _remote_objects(bucket: Any, name_prefix: str, version: str) -> tuple[dict[str, Any], dict[Any, Any]]:
    """(this version's blobs by path, other versions' blobs by (crc32c, size)) from one listing."""
    mine, others = {}, {}
    for blob in bucket.list_blobs(prefix=name_prefix + "/", **_call()):
        folder, _, path = blob.name[len(name_prefix) + 1:].partition("/")
        if folder == version:
            mine[path] = blob
        elif path and path != MANIFEST_NAME:
            others[(blob.crc32c, blob.size)] = blob
    return mine, others


def push(
    workspace: Workspace, store: Store, ref: str, url: str | None = None, *, task: Task | None = None,
    workers: int = WORKERS,
) -> SyncResult:
    """Upload a verified local version; only files whose crc32c differs from the remote object travel.

    A file another version of the same dataset already has in the bucket (same
    crc32c and size) is copied there server-side instead of uploaded again.
    """
    task = ensure_task(task)
    base = configured_url(workspace, url)
    location = parse_url(base)
    version = resolve(store, workspace, ref)
    if not is_verified(workspace, version):
        report = verify(workspace, version, task)
        if not report.ok:
            raise BluenoError(report.describe() + "\nNot pushed: a bucket should only get verified data.")
    prefix = location.key(version.name, version.version)
    result = SyncResult(location.url(version.name, version.version), version)
    with _errors(f"push to {result.url}"):
        bucket = client(workspace).bucket(location.bucket)
        remote, reusable = _remote_objects(bucket, location.key(version.name), version.version)
        manifest_blob = remote.pop(MANIFEST_NAME, None)
        if manifest_blob is not None:
            theirs = json.loads(manifest_blob.download_as_bytes(**_call()))
            if manifest_hash(theirs) != version.manifest_hash:
                raise BluenoError(
                    f"{result.url}/{MANIFEST_NAME} describes different content than {version.ref}; "
                    "refusing to overwrite it. Inspect the bucket, or push under another prefix."
                )
        todo = [f for f in version.files
                if f["path"] not in remote or remote[f["path"]].crc32c != f["crc32c"]]
        result.skipped = len(version.files) - len(todo)
        task.start("uploading", len(todo), sum(f["size"] for f in todo))
        copied: list[str] = []  # list.append is atomic: safe from the pool's threads

        def upload(entry: dict[str, Any]) -> None:
            existing = remote.get(entry["path"])
            generation = existing.generation if existing is not None else 0
            name = f"{prefix}/{entry['path']}"
            source = reusable.get((entry["crc32c"], entry["size"]))
            if source is not None:
                blob = bucket.copy_blob(source, bucket, name, if_generation_match=generation, **_call())
                copied.append(entry["path"])
            else:
                blob = bucket.blob(name)
                blob.upload_from_filename(
                    str(version.path / entry["path"]), checksum="crc32c", if_generation_match=generation, **_call()
                )
            if blob.crc32c != entry["crc32c"]:
                raise BluenoError(f"{entry['path']} changed on disk during the push (crc32c {blob.crc32c}, "
                                  f"manifest {entry['crc32c']}); run `blueno data verify {version.ref}`.")
            task.advance(files=1, nbytes=entry["size"], current=entry["path"])

        _parallel(todo, upload, task, workers)
        if manifest_blob is None:
            text = json.dumps(version.manifest, indent=1, sort_keys=True) + "\n"
            bucket.blob(f"{prefix}/{MANIFEST_NAME}").upload_from_string(
                text, content_type="application/json", if_generation_match=0, **_call()
            )
    reused = set(copied)
    uploaded = [f for f in todo if f["path"] not in reused]
    result.copied = sorted(copied)
    result.transferred = [f["path"] for f in uploaded]
    result.bytes = sum(f["size"] for f in uploaded)
    with store.write() as conn:
        conn.execute("UPDATE datasets SET remote_url = ? WHERE id = ?", (base, version.id))
    result.version = resolve(store, workspace, version.ref)
    return result


def _remote_versions(bucket: Any, location: Location, name: str) -> list[tuple[str, Any]]:
    """(version, manifest blob) of every complete version of ``name``, newest first."""
    prefix = location.key(name)
    found = [
        (blob.name[len(prefix) + 1:].split("/")[0], blob)
        for blob in bucket.list_blobs(prefix=prefix + "/", **_call())
        if blob.name.count("/") == prefix.count("/") + 2 and blob.name.endswith("/" + MANIFEST_NAME)
    ]
    return sorted(found, key=lambda pair: pair[1].updated, reverse=True)


def parse_pull_url(url: str) -> tuple[Location, str, str | None]:
    """``gs://b/p/NAME[@VERSION]`` → (location of p, name, version or None)."""
    location = parse_url(url)
    parent, _, last = location.prefix.rpartition("/")
    if not last:
        raise BluenoError(f"{url}: name the dataset to pull, as gs://BUCKET/PREFIX/NAME[@VERSION]")
    name, version = parse_ref(last)
    return Location(location.bucket, parent), name, version


def pull(workspace: Workspace, store: Store, url: str, *, task: Task | None = None,
         workers: int = WORKERS) -> DatasetVersion:
    """Fetch ``gs://…/NAME[@VERSION]`` (newest when no version); only files missing or different travel."""
    return pull_sync(workspace, store, url, task=task, workers=workers).version


def pull_sync(workspace: Workspace, store: Store, url: str, *, task: Task | None = None,
              workers: int = WORKERS) -> SyncResult:
    """:func:`pull`, also saying what travelled (the CLI prints it)."""
    task = ensure_task(task)
    location, name, wanted = parse_pull_url(url)
    with _errors(f"pull {url}"):
        bucket = client(workspace).bucket(location.bucket)
        candidates = _remote_versions(bucket, location, name)
        matches = [c for c in candidates if wanted is None or c[0] == wanted] or [
            c for c in candidates if wanted and c[0].startswith(wanted)
        ]
        if len(matches) != 1 and not (wanted is None and matches):
            listing = ", ".join(f"{name}@{v}" for v, _ in candidates) or "none"
            raise BluenoError(f"{url}: no such version under {location.url()} (there: {listing})")
        version, manifest_blob = matches[0]
        manifest = json.loads(manifest_blob.download_as_bytes(**_call()))
        full_hash = manifest_hash(manifest)
        if short_version(full_hash) != version:
            raise BluenoError(f"{location.url(name, version)}/{MANIFEST_NAME} does not hash to {version}: "
                              "the remote manifest was altered. Push the version again from a good copy.")
        if problems := manifest_problems(manifest, KINDS):
            raise BluenoError(f"{location.url(name, version)}/{MANIFEST_NAME} cannot be trusted: "
                              f"{'; '.join(problems)}. Refusing to download it; push it again from a good copy.")
        unsafe = [f["path"] for f in manifest["files"] if not _is_relative_inside(f["path"])]
        if unsafe:
            raise BluenoError(f"{location.url(name, version)}/{MANIFEST_NAME} lists paths outside the "
                              f"dataset folder ({unsafe[0]!r}); refusing to download it.")
        local = find(store, workspace, name, version)
        if local is not None and local.linked:
            raise BluenoError(f"{local.ref} is linked to {local.path}, which Blueno never writes to; "
                              f"restore the files there, or `blueno data rm {local.ref}` and pull again.")
        target = version_folder(workspace, check_name(name), version)
        prefix = location.key(name, version)
        if target.exists():  # a local copy with files missing or damaged: repair it file by file
            transferred = _download_into(bucket, prefix, target, manifest, task, workers)
            for extra in set(walk_files(target)) - {f["path"] for f in manifest["files"]} - {MANIFEST_NAME}:
                (target / extra).unlink()
        else:  # all or nothing: download beside data/, publish with one rename
            workspace.ensure()
            check_free_space(workspace.data_dir, sum(int(f["size"]) for f in manifest["files"]),
                             location.url(name, version))
            scratch = workspace.data_dir / f".tmp-pull-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            try:
                transferred = _download_into(bucket, prefix, scratch, manifest, task, workers)
                target.parent.mkdir(parents=True, exist_ok=True)
                scratch.rename(target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    write_manifest(target, manifest)
    pulled = insert_version(
        store, workspace, name=name, version=version, full_hash=full_hash, manifest=manifest, path=target,
        linked=False, source=location.url(name, version), remote_url=location.url(),
        parent_id=_find_parent(store, workspace, manifest.get("parent")),
    )
    write_stamp(workspace, pulled)
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    return SyncResult(
        location.url(name, version), pulled, transferred, skipped=len(sizes) - len(transferred),
        bytes=sum(sizes[p] for p in transferred),
    )


def _is_relative_inside(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts and "\\" not in path


def _find_parent(store: Store, workspace: Workspace, parent_ref: str | None) -> int | None:
    if not parent_ref:
        return None
    name, version = parse_ref(parent_ref)
    found = find(store, workspace, name, version or "")
    return found.id if found else None


def _download_into(bucket: Any, prefix: str, folder: Path, manifest: dict[str, Any], task: Task,
                   workers: int) -> list[str]:
    """Download every manifest file that is missing or different in ``folder``; returns their paths."""
    def in_place(entry: dict[str, Any]) -> bool:
        path = folder / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
        return file_crc32c(path) == entry["crc32c"]

    todo = [entry for entry in manifest["files"] if not in_place(entry)]
    task.start("downloading", len(todo), sum(f["size"] for f in todo))

    def download(entry: dict[str, Any]) -> None:
        _download_verified(bucket.blob(f"{prefix}/{entry['path']}"), folder / entry["path"],
                           entry["crc32c"], entry["size"], task)
        task.advance(files=1, current=entry["path"])

    _parallel(todo, download, task, workers)
    return [f["path"] for f in todo]


def download_source(workspace: Workspace, url: str, into: Path, *, task: Task | None = None,
                    workers: int = WORKERS) -> Path:
    """Download every object under ``gs://bucket/prefix`` (data that is not a Blueno version yet) into ``into``.

    Each object is checked against the crc32c and size Cloud Storage keeps for
    it as it lands, so :func:`blueno.datasets.import_source` then imports
    exactly what is in the bucket.
    """
    task = ensure_task(task)
    location = parse_url(url)
    with _errors(f"list {location.url()}"):
        bucket = client(workspace).bucket(location.bucket)
        prefix = f"{location.prefix}/" if location.prefix else ""
        blobs = [b for b in bucket.list_blobs(prefix=prefix) if not b.name.endswith("/")]
    if not blobs:
        raise BluenoError(f"{location.url()} holds no objects: check the address (`blueno data remote ls` lists "
                          "Blueno datasets; `gsutil ls` any prefix)")
    names = {b.name[len(prefix):]: b for b in blobs}
    if MANIFEST_NAME in names:
        raise BluenoError(f"{location.url()} is a Blueno dataset version (it has a {MANIFEST_NAME}): pull it with "
                          f"`blueno data pull {location.url()}` instead")
    escaping = sorted(n for n in names if not _is_relative_inside(n))
    if escaping:
        raise BluenoError(f"{location.url()} has objects whose names leave the folder ({escaping[0]!r}); "
                          "nothing was downloaded")
    task.start("downloading", len(names), sum(b.size or 0 for b in blobs))

    def download(item: tuple[str, Any]) -> None:
        relpath, blob = item
        if not blob.crc32c:
            raise BluenoError(f"gs://{location.bucket}/{blob.name} has no crc32c checksum to verify it against")
        _download_verified(blob, into / relpath, blob.crc32c, blob.size, task, "Cloud Storage's own checksum")
        task.advance(files=1, current=relpath)

    with _errors(f"download {location.url()}"):
        _parallel(sorted(names.items()), download, task, workers)
    return into


def remote_ls(workspace: Workspace, url: str | None = None) -> list[dict[str, Any]]:
    """Every complete dataset version under ``gs://bucket/prefix`` (the GUI's bucket browser uses this)."""
    location = parse_url(configured_url(workspace, url))
    with _errors(f"list {location.url()}"):
        bucket = client(workspace).bucket(location.bucket)
        base = location.key()
        start = len(base) + 1 if base else 0
        rows = []
        for blob in bucket.list_blobs(prefix=base + "/" if base else None, **_call()):
            parts = blob.name[start:].split("/")
            if len(parts) == 3 and parts[2] == MANIFEST_NAME and parts[0] != "models":
                manifest = json.loads(blob.download_as_bytes(**_call()))
                rows.append({
                    "ref": f"{parts[0]}@{parts[1]}", "url": location.url(parts[0], parts[1]),
                    "kind": manifest["kind"], "n_samples": manifest["n_samples"],
                    "n_files": len(manifest["files"]),
                    "size_bytes": sum(f["size"] for f in manifest["files"]),
                    "parent": manifest.get("parent"), "updated": blob.updated.timestamp(),
                })
    return sorted(rows, key=lambda r: (r["ref"].split("@")[0], -r["updated"]))


# -- run models -------------------------------------------------------------------------------


def upload_run_model(workspace: Workspace, store: Store, run_id: int) -> str | None:
    """Upload a finished run's model when a bucket is configured; record and return its gs:// URL.

    Returns None (doing nothing) when settings.toml has no ``[gcs] bucket``.
    """
    uploaded = upload_model_file(workspace, run_id)
    if uploaded is None:
        return None
    with store.write() as conn:
        conn.execute("UPDATE runs SET model_url = ? WHERE id = ?", (uploaded[0], run_id))
    return uploaded[0]


def upload_model_file(workspace: Workspace, run_id: int) -> tuple[str, str] | None:
    """Upload a run's model file, checksum-verified, without touching the database: (gs:// URL, crc32c).

    A trainer calls this and reports the URL as an event; None when no bucket is configured.
    """
    base = workspace.settings().get("gcs", {}).get("bucket")
    if not base:
        return None
    location = parse_url(base)
    path = workspace.run_dir(run_id) / "model.keras"
    if not path.is_file():
        raise BluenoError(f"run {run_id} has no model file at {path} to upload")
    crc = file_crc32c(path)
    key = location.key("models", f"run-{run_id}", path.name)
    url = f"gs://{location.bucket}/{key}"
    with _errors(f"upload {url}"):
        bucket = client(workspace).bucket(location.bucket)
        blob = bucket.get_blob(key, **_call())
        if blob is None or blob.crc32c != crc:
            generation = blob.generation if blob is not None else 0
            blob = bucket.blob(key)
            blob.upload_from_filename(str(path), checksum="crc32c", if_generation_match=generation, **_call())
            if blob.crc32c != crc:
                raise BluenoError(f"{url}: the uploaded crc32c {blob.crc32c} does not match the file's {crc}")
    return url, crc


def pull_run_model(workspace: Workspace, store: Store, run_id: int, *, task: Task | None = None) -> Path:
    """Fetch a run's model back from its recorded gs:// URL into models/run-<id>/, checksum-verified."""
    row = store.query_one("SELECT model_url FROM runs WHERE id = ?", (run_id,))
    if row is None:
        raise BluenoError(f"no run {run_id}. `blueno runs ls` lists them.")
    if not row["model_url"]:
        raise BluenoError(f"run {run_id} has no model in Cloud Storage (no [gcs] bucket when it finished?)")
    location = parse_url(row["model_url"])
    dest = workspace.run_dir(run_id) / Path(location.prefix).name
    with _errors(f"download {row['model_url']}"):
        blob = client(workspace).bucket(location.bucket).get_blob(location.prefix, **_call())
        if blob is None:
            raise BluenoError(f"{row['model_url']} no longer exists in the bucket")
        if not (dest.is_file() and file_crc32c(dest) == blob.crc32c):
            _download_verified(blob, dest, blob.crc32c, blob.size, ensure_task(task))
    return dest


def download_version(workspace: Workspace, folder: Path, base_url: str, name: str, version: str,
                     manifest: dict[str, Any], *, workers: int = WORKERS) -> list[str]:
    """A version's files from ``gs://…`` into ``folder`` (a cluster node's cache), each crc32c-checked.

    Only files missing or different travel; nothing is registered (the node
    has no workspace database).  Credentials are the node's own: ``workspace``
    is the node's copy, so Application Default Credentials or the emulator.
    """
    unsafe = [f["path"] for f in manifest["files"] if not _is_relative_inside(f["path"])]
    if unsafe:
        raise BluenoError(f"the manifest of {name}@{version} lists paths outside the dataset folder "
                          f"({unsafe[0]!r}); refusing to download it.")
    location = parse_url(base_url)
    with _errors(f"download {location.url(name, version)}"):
        bucket = client(workspace).bucket(location.bucket)
        fetched = _download_into(bucket, location.key(name, version), folder, manifest, ensure_task(None), workers)
    write_manifest(folder, manifest)
    return fetched
