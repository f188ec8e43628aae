"""Importing a dataset: detect, validate, copy and hash, then publish in one rename.

Nothing half-imported stays behind: files are copied (and hashed in the same
pass) into a scratch folder inside ``data/``, checked, and only then renamed
to ``data/<name>/<version>/`` and recorded in the database.  Any error or a
cancel removes the scratch folder; the source is only ever read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tarfile
import threading
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from blueno import BluenoError
from blueno.datasets.kinds import ARCHIVE_SUFFIXES, InvalidDataset, Scan
from blueno.datasets.layouts import detect_kind, scan
from blueno.datasets.manifest import (
    MANIFEST_FORMAT,
    any_file,
    copy_with_crc32c,
    file_crc32c,
    file_entry,
    manifest_hash,
    short_version,
    verify_files,
    walk_files,
    write_manifest,
)
from blueno.datasets.registry import (
    DatasetVersion,
    check_name,
    find,
    insert_version,
    verify,
    version_folder,
    write_stamp,
)
from blueno.datasets.task import Task, ensure_task
from blueno.limits import (
    DEFAULT,
    BoundedStream,
    ImportLimits,
    check_expansion,
    check_file_count,
    check_free_space,
    check_source,
    copy_exactly,
    special_files,
)
from blueno.store import Store
from blueno.workspace import Workspace

SCRATCH_PREFIX = ".tmp-"


@dataclass
class ImportResult:
    version: DatasetVersion
    existed: bool  # the same content was already imported under this name
    ignored: list[str] = field(default_factory=list)  # files in the source that are not part of the dataset


def sweep_scratch(workspace: Workspace) -> list[str]:
    """Remove the scratch folders (``data/.tmp-*``) of processes that died; see :meth:`Workspace.sweep_scratch`."""
    return workspace.sweep_scratch()


@contextmanager
def scratch_folder(workspace: Workspace, purpose: str) -> Iterator[Path]:
    """A fresh folder in ``data/`` (same filesystem, so publishing is a rename), always removed after.

    Its name carries this process's pid, so a later sweep knows whether its creator is alive.
    """
    workspace.ensure()  # also sweeps the scratch folders of processes that died
    folder = workspace.data_dir / f"{SCRATCH_PREFIX}{purpose}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, so the same cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def publish(staged: Path, target: Path, manifest: dict[str, Any]) -> bool:
    """Move a finished version folder into place with one rename (writing its manifest first).

    Returns True when this call put ``staged`` there.  A folder already there
    that matches the manifest is kept (another process published the same
    version first); one that does not match is moved aside and replaced.
    """
    write_manifest(staged, manifest)
    if target.exists():
        if verify_files(target, manifest["files"], "", extra=any_file).ok:
            return False
        aside = staged.parent / "replaced"
        with contextlib.suppress(OSError):
            target.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.rename(target)
    except OSError:
        if not verify_files(target, manifest["files"], "", extra=any_file).ok:
            raise
        return False
    return True


def default_name(path: Path) -> str:
    name = path.name
    for suffix in (*ARCHIVE_SUFFIXES, ".npz", ".csv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name


def build_manifest(found: Scan, files: list[dict[str, Any]], **lineage: Any) -> dict[str, Any]:
    """The manifest; everything in it is part of the version's identity (no times, no local paths)."""
    return {
        "format": MANIFEST_FORMAT, "kind": found.kind, "files": sorted(files, key=lambda f: f["path"]),
        "n_samples": found.n_samples, "sample_shape": list(found.sample_shape), "dtype": found.dtype,
        "classes": found.classes, "class_names": found.class_names, "options": found.options,
        "parent": lineage.get("parent"), "transform": lineage.get("transform"),
    }


def import_path(
    workspace: Workspace,
    store: Store,
    path: str | Path,
    *,
    name: str | None = None,
    label_col: str | None = None,
    id_col: str | None = None,
    link: bool = False,
    task: Task | None = None,
    source: str | None = None,
    move: bool = False,
    limits: ImportLimits = DEFAULT,
    labels: str | Path | None = None,
) -> ImportResult:
    """Import one folder, file or archive as a dataset version (see the module docstring).

    ``labels`` names the labels CSV of a folder of per-sample arrays (or a
    folder holding positives.csv and negatives.csv), wherever it is; it is
    copied into the version as ``labels.csv``.  ``move`` is for folders Blueno
    itself wrote in ``data/`` (the demo): they are hashed in place and renamed
    instead of copied.  ``limits`` bound what a hostile source can cost
    (:mod:`blueno.limits`); they are checked on headers first.
    """
    task = ensure_task(task)
    path = Path(path).expanduser().absolute()
    labels_path = Path(labels).expanduser().absolute() if labels is not None else None
    name = check_name(name or default_name(path))
    check_source(path)
    kind = detect_kind(path)
    with scratch_folder(workspace, "import") as scratch:
        root = path
        if kind == "archive":
            if link:
                raise BluenoError(f"{path} is an archive: it has to be extracted, so it cannot be --link'ed.")
            root = extract_archive(path, scratch / "extracted", task, limits)
        try:
            every = walk_files(root) if root.is_dir() else []
            nested = root != path and every and all(f.lower().endswith(ARCHIVE_SUFFIXES) for f in every)
            kind = detect_kind(root) if root != path and not nested else kind
            if kind == "archive" or nested:
                raise BluenoError(f"{path} holds only another archive; extract it and import the inner one.")
            if root.is_dir():
                check_file_count(path, len(every), limits)
                if special := special_files(root, every):
                    raise InvalidDataset(str(path), special)
            found = scan(root, kind, label_col=label_col, id_col=id_col, limits=limits, labels=labels_path)
        except InvalidDataset as exc:
            raise InvalidDataset(str(path), exc.problems) from None
        except BluenoError as exc:  # name the archive, not the scratch folder it was extracted to
            raise BluenoError(str(exc).replace(str(root), str(path))) from None
        if link and found.generated:
            raise BluenoError(
                f"{path} was not imported: its labels ({', '.join(found.generated)}) are made from files outside "
                "the folder or from positives.csv and negatives.csv, so they must be written into a copy; "
                "import it without --link, or put a labels.csv beside the arrays"
            )
        in_place = link or (move and found.root == path and not found.ignored and not found.generated)
        total = sum((found.root / f).stat().st_size for f in found.files)
        if not in_place:
            check_free_space(workspace.data_dir, total, path, limits)
        task.start("hashing" if in_place else "copying", len(found.files), total)
        entries = []
        staged = found.root if in_place else scratch / "version"
        for relpath, content in found.generated.items():
            (staged / relpath).parent.mkdir(parents=True, exist_ok=True)
            (staged / relpath).write_bytes(content)
            entries.append(file_entry(relpath, len(content), file_crc32c(staged / relpath)))
        for relpath in found.files:
            src = found.root / relpath
            if in_place:
                crc = file_crc32c(src, task)
            else:
                crc = copy_with_crc32c(src, staged / relpath, task)
            entries.append(file_entry(relpath, src.stat().st_size, crc))
            task.advance(files=1, current=relpath)
        manifest = build_manifest(found, entries)
        full_hash = manifest_hash(manifest)
        version = short_version(full_hash)
        existing = find(store, workspace, name, version)
        if existing is not None and (existing.linked or verify(workspace, existing).ok):
            return ImportResult(existing, existed=True, ignored=found.ignored)
        target = found.root if link else version_folder(workspace, name, version)
        created = publish(staged, target, manifest) if not link else False
        try:
            imported = insert_version(
                store, workspace, name=name, version=version, full_hash=full_hash, manifest=manifest,
                path=target, linked=link, source=source or str(path),
            )
        except BaseException:
            if created:
                _unpublish(store, workspace, name, version, target, scratch)
            raise
        if not link and not created and not target.exists():  # the process that published it took it back
            publish(staged, target, manifest)
        write_stamp(workspace, imported)
        return ImportResult(imported, existed=existing is not None, ignored=found.ignored)


def _unpublish(store: Store, workspace: Workspace, name: str, version: str, target: Path, scratch: Path) -> None:
    """Take back a folder this process published when its row could not be written.

    Only a folder this process renamed into place, and only while no row names
    it: another import of the same data may have recorded it in the meantime.
    """
    try:
        if find(store, workspace, name, version) is not None:
            return
    except Exception:  # noqa: BLE001 - the database is what failed: keep the folder, a later import reuses it
        return
    with contextlib.suppress(OSError):
        target.rename(scratch / "unpublished")  # the scratch folder's removal deletes it
    with contextlib.suppress(OSError):
        target.parent.rmdir()


# -- archives ---------------------------------------------------------------------------


def safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path if it stays inside the extraction folder; refuse the archive otherwise."""
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or (member.parts and ":" in member.parts[0]):
        raise BluenoError(
            f"{archive} was not imported: its member {name!r} points outside the archive's folder "
            "(a path-traversal archive). Nothing was extracted."
        )
    return member


def extract_archive(archive: Path, into: Path, task: Task, limits: ImportLimits = DEFAULT) -> Path:
    """Extract a .zip or .tar(.gz) after checking every member; returns the dataset's root folder.

    Every member's path and type, their count and their declared sizes (against
    the ratio limit and free space) are checked before the first byte is
    written, and no member is written past its declared size.
    """
    into.mkdir(parents=True)
    lower = archive.name.lower()
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                for info in infos:
                    safe_member_path(archive, info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise BluenoError(
                            f"{archive} was not imported: member {info.filename!r} is a symlink."
                        )
                declared = sum(i.file_size for i in infos)
                check_expansion(archive, declared, len(infos), into, limits)
                task.start("extracting", len(infos), declared)
                for info in infos:
                    target = into / safe_member_path(archive, info.filename)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src:
                        copy_exactly(src, target, info.file_size, archive, info.filename)
                    task.advance(files=1, nbytes=info.file_size, current=info.filename)
        else:
            stream = BoundedStream(archive, limits)  # a header cannot expand past the ratio either
            with contextlib.closing(stream), tarfile.open(fileobj=stream, mode="r:") as tf:  # type: ignore[arg-type]
                members = _tar_members(archive, tf, into, limits)
                files = [m for m in members if m.isfile()]
                task.start("extracting", len(files), sum(m.size for m in files))
                for member in files:
                    target = into / safe_member_path(archive, member.name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    assert src is not None
                    with src:
                        copy_exactly(src, target, member.size, archive, member.name)
                    task.advance(files=1, nbytes=member.size, current=member.name)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, NotImplementedError) as exc:
        raise BluenoError(f"{archive} is not a readable archive: {exc}") from None
    if not walk_files(into):
        raise BluenoError(f"{archive} is an empty archive: there is nothing to import.")
    entries = [p for p in into.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def _tar_members(archive: Path, tf: tarfile.TarFile, into: Path, limits: ImportLimits) -> list[tarfile.TarInfo]:
    """The members, read one header at a time so that a bomb is refused at the header that crosses a limit.

    (``getmembers`` would first decompress the whole stream to list them.)
    """
    members: list[tarfile.TarInfo] = []
    declared = 0
    room = shutil.disk_usage(into).free - limits.free_margin
    while (member := tf.next()) is not None:
        safe_member_path(archive, member.name)
        if not (member.isfile() or member.isdir()):
            raise BluenoError(
                f"{archive} was not imported: member {member.name!r} is a link or device, "
                "which a dataset archive should not contain."
            )
        members.append(member)
        declared += member.size if member.isfile() else 0
        if (len(members) > limits.max_files or declared > room
                or declared > limits.max_ratio * max(archive.stat().st_size, 1)):
            check_expansion(archive, declared, len(members), into, limits)  # raises, naming the limit
    check_expansion(archive, declared, len(members), into, limits)
    return members
