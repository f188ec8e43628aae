"""The dataset layouts Blueno understands: detect, validate and load each one.

A *scan* checks a candidate dataset without loading it whole: ``.npy`` headers
and sizes, ``.npz`` member headers and CRCs, each image decoded on its own, a
CSV read row by row.  Every problem is collected with the file it concerns, so
the user gets the full list at once instead of fixing one error per attempt.
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from blueno import BluenoError
from blueno.datasets.manifest import walk_files
from blueno.datasets.stream import (
    ArrayFile,
    FileStack,
    cache_member,
    cached_table,
    npy_rows,
    read_npy_into,
)
from blueno.limits import (
    DEFAULT,
    IMAGE_FORMATS,
    ImportLimits,
    array_problem,
    image_problem,
    is_plain_name,
    label_counts,
)

KINDS = ("npy_folder", "npz", "image_folder", "csv", "arrays")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
LABELS_FILE = "labels.csv"
MAX_PROBLEMS_SHOWN = 20
# What a loader returns: samples, their ids, and labels as int64 indices into the manifest's class_names.
# Loaders take (root, manifest, cache=None) and return x read on demand (blueno.datasets.stream) where
# they can; ``cache`` is the version's folder for one-time conversions (CSV, compressed .npz).
Samples = tuple[np.ndarray, list[str], np.ndarray]
X_KEYS = ("x", "X")
Y_KEYS = ("y", "Y")


class InvalidDataset(BluenoError):
    """A dataset that cannot be imported, with every problem found, by file."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = [f"  {name}: {message}" for name, message in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"  … and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        count = len(self.problems)
        super().__init__(
            f"{source} was not imported: {count} problem{'s' if count != 1 else ''}\n" + "\n".join(shown)
        )


@dataclass
class Scan:
    """What a validated dataset holds, before it is copied and hashed."""

    kind: str
    root: Path  # manifest paths are relative to this folder
    files: list[str]
    n_samples: int
    sample_shape: tuple[int, ...]
    dtype: str
    classes: dict[str, int]
    class_names: list[str]
    options: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    generated: dict[str, bytes] = field(default_factory=dict)  # files written into the version, not copied


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Class order: numerically when every label is an integer (so "10" follows "9"), else by text."""
    unique = set(labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def class_indices(labels: Sequence[str] | np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Labels as int64 indices into ``class_names``."""
    unique, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    position = {name: i for i, name in enumerate(class_names)}
    mapping = np.array([position[str(u)] for u in unique], dtype=np.int64)
    return mapping[inverse.reshape(-1)]


def _label_strings(y: np.ndarray) -> np.ndarray | None:
    """Array labels as a numpy text array (vectorised: no Python object per label); None when they are not
    class labels (floats with fractions, objects)."""
    if y.dtype.kind in "iub":
        return y.astype(np.int64).astype(str)
    if y.dtype.kind == "U":
        return y
    if y.dtype.kind == "S":
        return np.char.decode(y, "utf-8")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64).astype(str)
    return None


# -- detection ----------------------------------------------------------------


def detect_kind(path: Path) -> str:
    """The kind of dataset at ``path`` (``archive`` for something to extract first), or why it is none."""
    if not path.exists():
        raise BluenoError(f"{path} does not exist. Check the path (is the drive mounted?).")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return "npz"
        if name.endswith(".csv"):
            return "csv"
        if name.endswith(ARCHIVE_SUFFIXES):
            return "archive"
        if name.endswith(".npy"):
            raise BluenoError(
                f"{path} is a single array without labels. Put one .npy array per sample in a folder "
                f"with a {LABELS_FILE} (columns id,label), or save x and y arrays in one .npz."
            )
        raise BluenoError(
            f"{path} is not a dataset Blueno can import: expected a folder, an .npz, a .csv, "
            "a .zip or a .tar.gz."
        )
    files = walk_files(path)
    if not files:
        raise BluenoError(f"{path} is an empty folder: there is nothing to import.")
    top = [f for f in files if "/" not in f]
    if any(f.lower().endswith(".npy") for f in top):
        return "npy_folder"
    if any(f.lower().endswith(IMAGE_SUFFIXES) for f in files if "/" in f):
        return "image_folder"
    if len(files) == 1 and files[0].lower().endswith((".npz", ".csv")):
        return "npz" if files[0].lower().endswith(".npz") else "csv"
    suffixes = Counter(Path(f).suffix.lower() or "(no suffix)" for f in files)
    found = ", ".join(f"{n} {s}" for s, n in suffixes.most_common(5))
    raise BluenoError(
        f"{path} holds no dataset Blueno recognises (found {found}). Expected .npy or .npz arrays (at the "
        f"top or in one sub-folder) with a {LABELS_FILE} or positives.csv and negatives.csv, one sub-folder "
        "of PNG/JPEG images per class, or a single .npz or .csv."
    )


def belongs(kind: str, relpath: str) -> bool:
    """Whether a file at ``relpath`` would be part of a dataset of this kind (for extra-file checks)."""
    name = relpath.lower()
    if kind == "npy_folder":
        return "/" not in name and name.endswith(".npy")
    if kind == "image_folder":
        return "/" in name and name.endswith(IMAGE_SUFFIXES)
    return False


def scan(
    path: Path, kind: str, *, label_col: str | None = None, id_col: str | None = None,
    limits: ImportLimits = DEFAULT,
) -> Scan:
    """Validate the dataset at ``path`` as ``kind``; raise :class:`InvalidDataset` listing every problem.

    Folders of per-sample arrays (``npy_folder``) are scanned one layer up, by
    :func:`blueno.datasets.layouts.scan`, which knows their layouts.
    """
    if path.is_dir() and kind in ("npz", "csv"):
        path = path / walk_files(path)[0]
    if kind == "npz":
        return _scan_npz(path, limits)
    if kind == "image_folder":
        return _scan_image_folder(path, limits)
    if kind == "csv":
        return _scan_csv(path, label_col, id_col)
    raise BluenoError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")


def _majority(values: dict[str, Any]) -> Any:
    return Counter(values.values()).most_common(1)[0][0]


def _shape_problems(shapes: dict[str, tuple[int, ...]], what: str) -> list[tuple[str, str]]:
    """Files whose sample shape differs from the most common one."""
    if not shapes:
        return []
    common = _majority(shapes)
    count = sum(1 for s in shapes.values() if s == common)
    return [
        (name, f"{what} shape {shape} differs from {common}, the shape of {count} others")
        for name, shape in shapes.items() if shape != common
    ]


# -- a folder of .npy arrays with labels.csv ---------------------------------------


def _read_header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the .npy at the start of ``stream``; refuses pickled objects."""
    if np.lib.format.read_magic(stream) == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        raise ValueError("holds Python objects (pickled), which Blueno does not load")
    return tuple(shape), dtype, stream.tell()


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file from its header; ValueError if it is not a whole array."""
    with open(path, "rb") as f:
        shape, dtype, offset = _read_header(f)
    expected = math.prod(shape) * dtype.itemsize
    actual = path.stat().st_size - offset
    if actual != expected:
        raise ValueError(f"truncated or corrupt: the header promises {expected} data bytes, found {actual}")
    return shape, dtype


def read_labels(
    path: Path, label_col: str | None, id_col: str | None, problems: list[tuple[str, str]]
) -> tuple[list[str], list[str], dict[str, str]]:
    """(ids, labels, the columns chosen) from a labels CSV; problems are appended, not raised."""
    name = path.name
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append((name, f"cannot be read as CSV: {exc}"))
        return [], [], {}
    columns = ", ".join(header) or "none"
    id_name = id_col or ("id" if "id" in header else (header[0] if header else ""))
    if label_col is None:
        others = [h for h in header if h != id_name]
        label_col = "label" if "label" in header else (others[0] if len(others) == 1 else None)
        if label_col is None:
            problems.append((name, f"has no 'label' column (columns: {columns}); name it with --label-col"))
            return [], [], {}
    missing = [(wanted, flag) for wanted, flag in ((id_name, "--id-col"), (label_col, "--label-col"))
               if wanted not in header]
    if missing:
        problems += [(name, f"has no column {w!r} (columns: {columns}); choose one with {flag}")
                     for w, flag in missing]
        return [], [], {}
    id_index, label_index = header.index(id_name), header.index(label_col)
    ids, labels, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append((name, f"line {line} has {len(row)} cells, the header has {len(header)}"))
            continue
        sample, label = row[id_index].strip(), row[label_index].strip()
        if not sample:
            problems.append((name, f"line {line} has an empty {id_name!r}"))
        elif not is_plain_name(sample):
            problems.append((name, f"line {line}: id {sample!r} is a path, not a file name (without .npy)"))
        elif not label:
            problems.append((name, f"line {line}: id {sample!r} has an empty {label_col!r}"))
        elif sample in seen:
            problems.append((name, f"line {line}: id {sample!r} appears twice"))
        else:
            seen.add(sample)
            ids.append(sample)
            labels.append(label)
    return ids, labels, {"id_col": id_name, "label_col": label_col}


def sample_path(root: Path, options: dict[str, Any], sample: str) -> Path:
    """Where sample ``sample``'s array is in a version (older manifests: ``<id>.npy`` at the top).

    The folder and suffix come from the manifest, which may have come from a
    bucket: anything but a folder of the version and .npy/.npz is refused.
    """
    folder, suffix = options.get("arrays", ""), options.get("suffix", ".npy")
    if not is_relative_folder(folder) or suffix not in ARRAY_SUFFIXES:
        raise BluenoError(f"{root}: the manifest's arrays folder {folder!r} or suffix {suffix!r} is not one of "
                          "its own folders and .npy/.npz")
    return (root / folder if folder else root) / f"{sample}{suffix}"


ARRAY_SUFFIXES = (".npy", ".npz")


def is_relative_folder(folder: object) -> bool:
    """``""`` or a path of plain names inside the version (``arrays``, ``data/arrays``)."""
    return folder == "" or (isinstance(folder, str) and all(is_plain_name(p) for p in folder.split("/")))


def load_sample(path: Path) -> np.ndarray:
    """One sample's array from its ``.npy`` or single-array ``.npz`` (see :mod:`~blueno.datasets.layouts`)."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return data[data.files[0]]
    return np.load(path, allow_pickle=False)


def _checked_labels(root: Path, options: dict[str, str]) -> tuple[list[str], list[str]]:
    """The labels file of a stored version, refused when it names anything but files of its own folder."""
    problems: list[tuple[str, str]] = []
    if not is_plain_name(options.get("labels")):
        raise BluenoError(f"{root}: the manifest's labels file {options.get('labels')!r} is not a file name")
    ids, labels, _ = read_labels(root / options["labels"], options["label_col"], options["id_col"], problems)
    if problems:
        raise InvalidDataset(str(root), problems)
    return ids, labels


def load_npy_folder(root: Path, manifest: dict[str, Any], cache: Path | None = None) -> Samples:
    """The samples in the order of the labels file, each file read when a batch needs it."""
    options = manifest["options"]
    ids, labels = _checked_labels(root, options)
    npy = options.get("suffix", ".npy") == ".npy"  # .npz samples: decompressed by load_sample
    x = FileStack([sample_path(root, options, sample) for sample in ids], tuple(manifest["sample_shape"]),
                  manifest["dtype"], load_sample, read_npy_into if npy else None)
    return x, ids, class_indices(labels, manifest["class_names"])


# -- .npz with x and y ---------------------------------------------------------------


def _npz_keys(names: Iterable[str]) -> dict[str, str]:
    keys = {n[:-4] if n.endswith(".npy") else n: n for n in names}
    return keys


def _scan_npz(path: Path, limits: ImportLimits = DEFAULT) -> Scan:
    """Headers first: ``x``, ``y`` and ``ids`` are checked for shape, type and size before ``y`` is read."""
    name = path.name
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidDataset(str(path), [(name, f"is not a readable .npz file: {exc}")]) from None
    with archive:
        keys = _npz_keys(archive.namelist())
        x_key = next((k for k in X_KEYS if k in keys), None)
        y_key = next((k for k in Y_KEYS if k in keys), None)
        if x_key is None or y_key is None:
            found = ", ".join(sorted(keys)) or "none"
            raise InvalidDataset(str(path), [(name, f"needs arrays named x and y (found: {found}); "
                                              "save with np.savez(path, x=samples, y=labels)")])
        headers = {}
        for key in (x_key, y_key, "ids"):
            if key not in keys:
                continue
            try:
                headers[key] = _member_header(archive, keys[key])
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                problem = (f"{name}:{key}", f"is not a readable array: {exc}")
                raise InvalidDataset(str(path), [problem]) from None
        x_shape, x_dtype = headers[x_key]
        if len(x_shape) == 0:
            raise InvalidDataset(str(path), [(f"{name}:{x_key}", "must hold samples along its first axis, "
                                                                 "not a single value")])
        problems = [(f"{name}:{key}", problem) for key, what in ((y_key, "label"), ("ids", "id"))
                    if key in headers and (problem := array_problem(name, *headers[key], x_shape[0], what, limits))]
        if problems:
            raise InvalidDataset(str(path), problems)
        declared = sum(archive.getinfo(keys[k]).file_size for k in headers)
        compressed = max(path.stat().st_size, 1)
        if declared > limits.max_ratio * compressed:
            raise InvalidDataset(str(path), [(name, (
                f"declares {declared:,} bytes of arrays, {declared / compressed:,.0f} times its size (the "
                f"limit is {limits.max_ratio:g}×, a decompression bomb looks like this); pass --max-ratio "
                f"{math.ceil(declared / compressed)} if it is real"))])
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InvalidDataset(str(path), [(name, f"is corrupt: {exc}")]) from None
        if bad is not None:
            raise InvalidDataset(str(path), [(name, f"is corrupt: member {bad} fails its CRC check")])
    try:
        with np.load(path, allow_pickle=False) as data:
            y = data[y_key]
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidDataset(str(path), [(f"{name}:{y_key}", f"is not a readable array: {exc}")]) from None
    classes, problem = label_counts(y, limits)
    if problem:
        raise InvalidDataset(str(path), [(f"{name}:{y_key}", problem)])
    return Scan(
        kind="npz", root=path.parent, files=[name], n_samples=int(x_shape[0]), sample_shape=tuple(x_shape[1:]),
        dtype=str(x_dtype), classes=classes, class_names=sort_labels(classes),
        options={"file": name, "x": x_key, "y": y_key},
    )


def _member_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array inside an .npz, read from its header only."""
    info = archive.getinfo(member)
    with archive.open(info) as f:
        shape, dtype, offset = _read_header(f)
    if info.file_size - offset != math.prod(shape) * dtype.itemsize:
        raise ValueError("truncated: its size does not match its header")
    return shape, dtype


def load_npz(root: Path, manifest: dict[str, Any], cache: Path | None = None) -> Samples:
    """x read in place when stored uncompressed; a compressed x is extracted once into ``cache``."""
    options = manifest["options"]
    path = root / options["file"]
    with zipfile.ZipFile(path) as archive:
        member = _npz_keys(archive.namelist())[options["x"]]
    x: Any = ArrayFile.open_npz_member(path, member)
    with np.load(path, allow_pickle=False) as data:
        if x is None and cache is not None:
            x = cache_member(cache, path, member, (manifest["n_samples"], *manifest["sample_shape"]),
                             manifest["dtype"])
        elif x is None:
            x = data[options["x"]]
        labels = _label_strings(data[options["y"]])
        labels = np.array([], dtype=str) if labels is None else labels
        ids = [str(i) for i in data["ids"]] if "ids" in data else [str(i) for i in range(len(labels))]
    return x, ids, class_indices(labels, manifest["class_names"])


# -- one sub-folder of images per class ---------------------------------------------------


def _image_array(path: Path) -> np.ndarray:
    """Decode one image fully (a truncated file fails here); palette and 1-bit become RGB(A) / L."""
    from PIL import Image

    with Image.open(path, formats=IMAGE_FORMATS) as image:  # only the decoders a dataset image needs
        image.load()
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode == "1":
            image = image.convert("L")
        return np.asarray(image)


def _scan_image_folder(root: Path, limits: ImportLimits = DEFAULT) -> Scan:
    from PIL import Image, UnidentifiedImageError

    problems: list[tuple[str, str]] = []
    files = walk_files(root)
    images = [f for f in files if "/" in f and f.lower().endswith(IMAGE_SUFFIXES)]
    problems += [(f, "is not a PNG or JPEG image") for f in files if "/" in f and f not in images]
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for name in images:
        if problem := image_problem(root / name, limits):  # the header, before any pixel is decoded
            problems.append((name, problem))
            continue
        try:
            array = _image_array(root / name)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            problems.append((name, f"is not a readable image: {exc}"))
            continue
        shapes[name], dtypes[name] = array.shape, str(array.dtype)
    problems += _shape_problems(shapes, "image")
    ids = [str(Path(f).with_suffix("")) for f in images]
    problems += [(f, f"has the same id as another image ({i})") for f, i in zip(images, ids, strict=True)
                 if ids.count(i) > 1]
    if problems:
        raise InvalidDataset(str(root), problems)
    labels = [f.split("/", 1)[0] for f in images]
    return Scan(
        kind="image_folder", root=root, files=images, n_samples=len(images),
        sample_shape=_majority(shapes), dtype=_majority(dtypes), classes=dict(Counter(labels)),
        class_names=sort_labels(labels), ignored=[f for f in files if "/" not in f],
    )


def load_image_folder(root: Path, manifest: dict[str, Any], cache: Path | None = None) -> Samples:
    """Images decoded when a batch needs them (in parallel, by the trainer's input pipeline)."""
    images = [f["path"] for f in manifest["files"]]
    x = FileStack([root / name for name in images], tuple(manifest["sample_shape"]), manifest["dtype"],
                  _image_array)
    ids = [str(Path(f).with_suffix("")) for f in images]
    return x, ids, class_indices([f.split("/", 1)[0] for f in images], manifest["class_names"])


# -- a CSV table: one sample per row, a label column, numeric features -----------------------


def _read_table(
    path: Path, label_col: str | None, id_col: str | None, problems: list[tuple[str, str]],
    keep_rows: bool = True,
) -> tuple[list[str], list[str], list[list[float]], dict[str, str]]:
    """(ids, labels, feature rows, options) read row by row; problems appended.

    With ``keep_rows`` false (validation) the features are checked and dropped,
    so a large table is never held in memory; ``options["n_features"]`` says how many.
    """
    name = path.name
    ids: list[str] = []
    labels: list[str] = []
    rows: list[list[float]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            columns = ", ".join(header) or "none"
            label_col = label_col or ("label" if "label" in header else None)
            if label_col is None or label_col not in header:
                wanted = f"column {label_col!r}" if label_col else "'label' column"
                problems.append((name, f"has no {wanted} (columns: {columns}); name it with --label-col"))
                return ids, labels, rows, {}
            if id_col is not None and id_col not in header:
                problems.append((name, f"has no column {id_col!r} (columns: {columns}); fix --id-col"))
                return ids, labels, rows, {}
            id_col = id_col or ("id" if "id" in header else None)
            label_index = header.index(label_col)
            id_index = header.index(id_col) if id_col else None
            features = [i for i, h in enumerate(header) if i not in (label_index, id_index)]
            if not features:
                problems.append((name, f"has no feature columns besides {label_col!r}"))
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    problems.append((name, f"line {line} has {len(row)} cells, the header has {len(header)}"))
                    continue
                label = row[label_index].strip()
                if not label:
                    problems.append((name, f"line {line} has an empty {label_col!r}"))
                values = []
                for i in features:
                    try:
                        value = float(row[i])
                    except ValueError:
                        problems.append(
                            (name, f"line {line}, column {header[i]!r}: {row[i]!r} is not a number")
                        )
                        continue
                    if not math.isfinite(value):
                        problems.append((name, f"line {line}, column {header[i]!r}: {row[i].strip()!r} is not "
                                               "a finite number; fill or drop missing values before importing"))
                    values.append(value)
                ids.append(row[id_index].strip() if id_index is not None else str(line - 1))
                labels.append(label)
                if keep_rows:
                    rows.append(values)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append((name, f"cannot be read as CSV: {exc}"))
        return ids, labels, rows, {}
    return ids, labels, rows, {"file": name, "label_col": label_col, "id_col": id_col or "",
                               "n_features": str(len(features))}


def _scan_csv(path: Path, label_col: str | None, id_col: str | None) -> Scan:
    problems: list[tuple[str, str]] = []
    ids, labels, _, options = _read_table(path, label_col, id_col, problems, keep_rows=False)
    if not problems and not ids:
        problems.append((path.name, "has a header but no rows"))
    if not problems and len(set(ids)) != len(ids):
        problems += [(path.name, f"id {i!r} appears {n} times") for i, n in Counter(ids).items() if n > 1]
    if problems:
        raise InvalidDataset(str(path), problems)
    return Scan(
        kind="csv", root=path.parent, files=[path.name], n_samples=len(ids),
        sample_shape=(int(options.pop("n_features")),), dtype="float32", classes=dict(Counter(labels)),
        class_names=sort_labels(labels), options=options,
    )


def load_csv(root: Path, manifest: dict[str, Any], cache: Path | None = None) -> Samples:
    """Features converted once into ``cache`` (x, y and ids as .npy); without a cache, read whole."""
    options = manifest["options"]
    path = root / options["file"]
    if cache is None:
        ids, labels, rows, _ = _read_table(path, options["label_col"], options["id_col"] or None, [])
        return np.asarray(rows, dtype=np.float32), ids, class_indices(labels, manifest["class_names"])
    shape = (manifest["n_samples"], *manifest["sample_shape"])
    x, ids, labels = cached_table(cache, path, options["label_col"], options["id_col"] or None, shape)
    return x, ids, class_indices(labels, manifest["class_names"])


# -- arrays: what derive writes (x.npy memory-mapped, y.npy as class indices, ids.npy) --------


def load_arrays_kind(root: Path, manifest: dict[str, Any], cache: Path | None = None) -> Samples:
    x = npy_rows(root / "x.npy")
    y = np.load(root / "y.npy", allow_pickle=False)
    ids = [str(i) for i in np.load(root / "ids.npy", allow_pickle=False)]
    return x, ids, y


LOADERS = {
    "npy_folder": load_npy_folder,
    "npz": load_npz,
    "image_folder": load_image_folder,
    "csv": load_csv,
    "arrays": load_arrays_kind,
}


def iter_batches(kind: str, root: Path, manifest: dict[str, Any], size: int) -> Iterable[Samples]:
    """(x, ids, y) in batches of ``size`` samples; per-sample files are read only when needed."""
    if kind in ("npy_folder", "image_folder"):
        if kind == "npy_folder":
            options = manifest["options"]
            ids, labels = _checked_labels(root, options)
            paths = [sample_path(root, options, i) for i in ids]
        else:
            paths = [root / f["path"] for f in manifest["files"]]
            ids = [str(Path(f["path"]).with_suffix("")) for f in manifest["files"]]
            labels = [f["path"].split("/", 1)[0] for f in manifest["files"]]
        for start in range(0, len(ids), size):
            chunk = paths[start : start + size]
            x = np.empty((len(chunk), *manifest["sample_shape"]), dtype=manifest["dtype"])
            for i, path in enumerate(chunk):
                x[i] = load_sample(path) if kind == "npy_folder" else _image_array(path)
            y = class_indices(labels[start : start + size], manifest["class_names"])
            yield x, ids[start : start + size], y
        return
    x, ids, y = LOADERS[kind](root, manifest)
    for start in range(0, len(ids), size):
        yield np.asarray(x[start : start + size]), ids[start : start + size], y[start : start + size]
