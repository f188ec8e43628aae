"""Per-sample array folders: where the arrays are and where their labels come from; detection and scan.

The layer above :mod:`~blueno.datasets.kinds`: :func:`detect_kind` and
:func:`scan` are what importing calls; they add these layouts to the kinds'.

A lab's processed data rarely looks like ``labels.csv`` beside ``*.npy`` in one
folder.  The layouts found here, all imported as kind ``npy_folder``:

* arrays at the top, or in one sub-folder (``arrays/``), with the labels CSV
  beside that sub-folder (or at the top): ``processed-lower/{arrays/, labels.csv}``;
* a labels CSV named explicitly (``labels=``: ``--labels FILE``), anywhere;
* ``positives.csv`` and ``negatives.csv`` (at the top or in one sub-folder, or
  the folder named by ``labels=``): the label is which file lists the id
  (1 positive, 0 negative), written into the version as ``labels.csv``;
* ``.npz`` arrays instead of ``.npy`` (one array per file).

Labels that come from outside the folder, or from the positives/negatives
pair, are written into the version as ``labels.csv`` (:attr:`Scan.generated`),
so the version holds everything it needs and its hash covers the labels.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blueno import BluenoError
from blueno.datasets import kinds
from blueno.datasets.kinds import (
    ARRAY_SUFFIXES,
    LABELS_FILE,
    InvalidDataset,
    Scan,
    _majority,
    _member_header,
    _shape_problems,
    npy_header,
    read_labels,
    sort_labels,
)
from blueno.datasets.manifest import walk_files
from blueno.limits import DEFAULT, ImportLimits

POSITIVES, NEGATIVES = "positives.csv", "negatives.csv"
POSITIVE_LABEL, NEGATIVE_LABEL = "1", "0"


@dataclass
class Labels:
    """Where the labels come from: a CSV in the folder (``relpath``) or generated text."""

    relpath: str  # the labels file's path inside the version
    source: Path  # the file read (for the pair: the positives file)
    generated: bytes | None = None  # written into the version instead of copied
    described: str = ""  # how messages name it


def arrays_folder(root: Path, files: list[str]) -> str | None:
    """``""`` for arrays at the top, the one sub-folder holding arrays, or None when there is none.

    Raises :class:`InvalidDataset` when several sub-folders hold arrays (which one is meant?).
    """
    if any("/" not in f and f.lower().endswith(ARRAY_SUFFIXES) for f in files):
        return ""
    folders = sorted({f.rsplit("/", 1)[0] for f in files if "/" in f and f.lower().endswith(ARRAY_SUFFIXES)})
    if not folders:
        return None
    if len(folders) > 1:
        raise InvalidDataset(str(root), [(", ".join(folders[:5]), "several folders hold arrays: import each one "
                                          "on its own, or keep one folder of arrays beside the labels CSV")])
    return folders[0]


def is_array_folder(root: Path) -> bool:
    """Whether ``root`` is a per-sample array folder in one of this module's layouts."""
    files = walk_files(root)
    try:
        folder = arrays_folder(root, files)
    except InvalidDataset:
        return True  # scan it, so the user hears why it is ambiguous
    return folder is not None  # without labels the scan says where to put them


def _pair(root: Path, files: list[str], base: str = "") -> tuple[Path, Path] | None:
    """The positives/negatives files in ``root`` (at the top or in one sub-folder)."""
    by_folder: dict[str, set[str]] = {}
    for f in files:
        folder, _, name = f.rpartition("/")
        if name.lower() in (POSITIVES, NEGATIVES) and folder.count("/") < 1 + base.count("/"):
            by_folder.setdefault(folder, set()).add(name.lower())
    complete = sorted(folder for folder, names in by_folder.items() if len(names) == 2)
    if not complete:
        half = sorted(f"{folder + '/' if folder else ''}{next(iter(n))}" for folder, n in by_folder.items())
        if half:
            missing = NEGATIVES if POSITIVES in {Path(h).name.lower() for h in half} else POSITIVES
            raise InvalidDataset(str(root), [(half[0], f"has no {missing} beside it: the label is which file "
                                              f"lists the id, so both {POSITIVES} and {NEGATIVES} are needed")])
        return None
    folder = root / complete[0] if complete[0] else root
    names = {p.name.lower(): p for p in folder.iterdir()}
    return names[POSITIVES], names[NEGATIVES]


def _ids_of(path: Path, id_col: str | None, problems: list[tuple[str, str]]) -> list[str]:
    """The ids listed in one file of the pair (its id column: id_col, 'id', or the first)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append((path.name, f"cannot be read as CSV: {exc}"))
        return []
    header = [h.strip() for h in rows[0]] if rows else []
    column = id_col or ("id" if "id" in header else (header[0] if header else ""))
    if column not in header:
        problems.append((path.name, f"has no column {column!r} (columns: {', '.join(header) or 'none'}); "
                                    "choose the id column with --id-col"))
        return []
    index = header.index(column)
    return [row[index].strip() for row in rows[1:] if len(row) > index and row[index].strip()]


def _pair_labels(positives: Path, negatives: Path, id_col: str | None,
                 problems: list[tuple[str, str]]) -> Labels:
    """A generated ``labels.csv`` (id,label) from the positives/negatives pair."""
    pos, neg = _ids_of(positives, id_col, problems), _ids_of(negatives, id_col, problems)
    both = sorted(set(pos) & set(neg))
    problems += [(f"{positives.name}, {negatives.name}", f"id {i!r} is in both files") for i in both[:20]]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "label"])
    for ids, label in ((pos, POSITIVE_LABEL), (neg, NEGATIVE_LABEL)):
        writer.writerows([i, label] for i in ids)
    return Labels(LABELS_FILE, positives, text.getvalue().encode(),
                  f"{positives.parent.name}/{{{positives.name}, {negatives.name}}}")


def find_labels(root: Path, files: list[str], arrays: str, labels: Path | None,
                id_col: str | None, problems: list[tuple[str, str]]) -> Labels:
    """The labels source of an array folder (see the module docstring for the search order)."""
    if labels is not None:
        labels = labels.expanduser().absolute()
        if labels.is_dir():
            pair = _pair(labels, walk_files(labels))
            if pair is None:
                raise InvalidDataset(str(labels), [(labels.name, f"holds neither {POSITIVES} and {NEGATIVES} "
                                                    "nor is a labels CSV: name the CSV file itself")])
            return _pair_labels(*pair, id_col, problems)
        if not labels.is_file():
            raise InvalidDataset(str(labels), [(labels.name, "does not exist: check the labels path")])
        try:
            inside = labels.relative_to(root.absolute()).as_posix()
        except ValueError:
            return Labels(LABELS_FILE, labels, labels.read_bytes(), str(labels))
        return _inside(root, inside)
    top = [f for f in files if "/" not in f and f.lower().endswith(".csv")
           and f.lower() not in (POSITIVES, NEGATIVES)]
    beside = [f for f in files if arrays and f.startswith(arrays + "/") and f.count("/") == arrays.count("/") + 1
              and f.lower().endswith(".csv")]
    for candidates in (top, beside):
        chosen = next((f for f in candidates if f.rsplit("/", 1)[-1] == LABELS_FILE), None)
        chosen = chosen or (candidates[0] if len(candidates) == 1 else None)
        if chosen:
            return _inside(root, chosen)
    pair = _pair(root, files, arrays)
    if pair is not None:
        return _pair_labels(*pair, id_col, problems)
    several = f" (found {', '.join(top[:5])}: name one with --labels)" if top else ""
    raise InvalidDataset(str(root), [(LABELS_FILE, f"is missing{several}: write one with an id column (the "
                                      f"array file name without its suffix) and a label column, beside the "
                                      f"arrays folder, or give {POSITIVES} and {NEGATIVES}, or name a labels "
                                      "CSV anywhere with --labels")])


def _inside(root: Path, relpath: str) -> Labels:
    """A labels CSV in the folder: used in place at the top, copied to the top from a sub-folder.

    A version names its labels file by a plain file name (a manifest from a
    bucket may name nothing else), so ``arrays/labels.csv`` becomes ``labels.csv``.
    """
    if "/" not in relpath:
        return Labels(relpath, root / relpath, described=relpath)
    return Labels(LABELS_FILE, root / relpath, (root / relpath).read_bytes(), relpath)


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the one array in a per-sample ``.npz``, from its header."""
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if n.endswith(".npy")]
        if len(members) != 1:
            raise ValueError(f"holds {len(members)} arrays ({', '.join(members[:4]) or 'none'}); a per-sample "
                             ".npz holds exactly one (np.savez(path, sample))")
        bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"member {bad} fails its CRC check")
        return _member_header(archive, members[0])


def scan_array_folder(root: Path, label_col: str | None, id_col: str | None,
                      labels: Path | None = None) -> Scan:
    """Validate a per-sample array folder; raise :class:`InvalidDataset` listing every problem by file."""
    problems: list[tuple[str, str]] = []
    files = walk_files(root)
    arrays_dir = arrays_folder(root, files)
    if arrays_dir is None:
        raise InvalidDataset(str(root), [(root.name, "holds no .npy or .npz arrays, neither at the top nor in "
                                          "one sub-folder")])
    prefix = arrays_dir + "/" if arrays_dir else ""
    in_folder = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix):]]
    suffixes = Counter(Path(f).suffix.lower() for f in in_folder if f.lower().endswith(ARRAY_SUFFIXES))
    suffix = suffixes.most_common(1)[0][0]
    if len(suffixes) > 1:
        problems += [(f, f"is {Path(f).suffix}, but the others are {suffix}: keep one format")
                     for f in in_folder if f.lower().endswith(ARRAY_SUFFIXES) and not f.lower().endswith(suffix)]
    arrays = {Path(f).name[: -len(suffix)]: f for f in in_folder if f.lower().endswith(suffix)}
    source = find_labels(root, files, arrays_dir, labels, id_col, problems)
    if source.generated is not None:
        tmp_label_col, tmp_id_col = ("label", "id") if source.source.name.lower() == POSITIVES else (
            label_col, id_col)
        ids, label_values, options = _read_generated(source, tmp_label_col, tmp_id_col, problems)
    else:
        ids, label_values, options = read_labels(source.source, label_col, id_col, problems)
    problems = [(source.described if name == source.source.name else name, message) for name, message in problems]
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes = []
    for name in arrays.values():
        try:
            shapes[name], dtype = npy_header(root / name) if suffix == ".npy" else _npz_header(root / name)
            dtypes.append(dtype)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            problems.append((name, f"is not a readable {suffix} array: {exc}"))
    problems += _shape_problems(shapes, "array")
    if options:
        labelled = set(ids)
        problems += [(source.described, f"id {i!r} has no array {prefix}{i}{suffix}") for i in ids if i not in arrays]
        problems += [(name, f"has no label in {source.described}") for s, name in arrays.items() if s not in labelled]
    if problems:
        raise InvalidDataset(str(root), problems)
    kept = {source.relpath if source.generated is None else "", *arrays.values()}
    version_options = {**options, "labels": source.relpath}
    if arrays_dir:
        version_options["arrays"] = arrays_dir
    if suffix != ".npy":
        version_options["suffix"] = suffix
    return Scan(
        kind="npy_folder", root=root, files=sorted(f for f in kept if f), n_samples=len(ids),
        sample_shape=_majority(shapes) if shapes else (),
        dtype=str(np.result_type(*dtypes)) if dtypes else "float32",
        classes=dict(Counter(label_values)), class_names=sort_labels(label_values),
        options=version_options, ignored=[f for f in files if f not in kept],
        generated={source.relpath: source.generated} if source.generated is not None else {},
    )


def _read_generated(source: Labels, label_col: str | None, id_col: str | None,
                    problems: list[tuple[str, str]]) -> tuple[list[str], list[str], dict[str, str]]:
    """``read_labels`` on labels held in memory (a copied or generated labels.csv)."""
    import tempfile

    assert source.generated is not None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / source.source.name
        path.write_bytes(source.generated)
        return read_labels(path, label_col, id_col, problems)


def detect_kind(path: Path) -> str:
    """The kind of dataset at ``path``: the kinds' own detection, then the array-folder layouts."""
    try:
        return kinds.detect_kind(path)
    except BluenoError:
        if path.is_dir() and is_array_folder(path):
            return "npy_folder"
        raise


def scan(path: Path, kind: str, *, label_col: str | None = None, id_col: str | None = None,
         labels: Path | None = None, limits: ImportLimits = DEFAULT) -> Scan:
    """Validate the dataset at ``path`` as ``kind``; raise :class:`InvalidDataset` listing every problem.

    ``labels`` names the labels CSV (or the folder of positives.csv and
    negatives.csv) of an array folder, wherever it is.
    """
    if kind == "npy_folder":
        return scan_array_folder(path, label_col, id_col, labels)
    if labels is not None:
        raise BluenoError(f"{path} is a {kind} dataset, which holds its own labels: a separate labels file "
                          "applies to a folder of per-sample arrays only")
    return kinds.scan(path, kind, label_col=label_col, id_col=id_col, limits=limits)
