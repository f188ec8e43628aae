"""Samples read from disk when a batch asks for them, so a dataset never has to fit in memory.

Every loader returns ``x`` as something indexed like an array (``x[indices]``
gives an ``ndarray``, and it has ``shape``, ``dtype`` and ``len``) but read on
demand: :class:`ArrayFile` reads rows of a C-order ``.npy`` (or an ``.npz``
member stored uncompressed) with ``os.pread`` — sorted, adjacent rows in one
call, no memory map, so the trainer's resident memory is its batches, not the
file, and the page cache stays the kernel's; :class:`FileStack` loads one file
per sample (``.npy`` files, images decoded on demand).  ``os.pread`` and
decoding release the GIL, so ``tf.data`` workers read batches in parallel.

What cannot be read row by row (a compressed ``.npz`` member, a CSV table) is
converted once into ``.npy`` files in a cache folder of the workspace keyed by
the version's manifest hash (versions never change, so neither does the
cache), written to a temporary name and renamed when complete, and checked
against the manifest's shape and dtype each time it is opened.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ROWS = 4096  # rows converted at a time into a cache file


def _header(stream: Any) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(stream)
    return tuple(shape), dtype, fortran, stream.tell()


class _LazyRows:
    """Indexing like an ndarray's, reading only the rows asked for; ``read_rows`` does the reading.

    Anything else an ndarray offers (``x.max()``, ``x.astype``) reads the
    whole array, as the loaders did before they streamed.
    """

    shape: tuple[int, ...]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):  # rows first, then the rest of the key on what was read
            first, rest = (key[0], key[1:]) if key else (slice(None), ())
            picked = self[first]
            return picked[rest] if isinstance(first, (int, np.integer)) else picked[(slice(None), *rest)]
        if isinstance(key, slice):
            return self.read_rows(np.arange(*key.indices(len(self))))
        if isinstance(key, (int, np.integer)):
            return self.read_rows(np.array([key]))[0]
        return self.read_rows(np.asarray(key))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.read_rows(np.arange(len(self)))
        return whole if dtype is None else whole.astype(dtype)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)


class ArrayFile(_LazyRows):
    """Rows of an array stored in C order at ``offset`` of a file, read with ``pread`` on demand."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = Path(path), offset, tuple(shape), np.dtype(dtype)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = 0

    @classmethod
    def open_npy(cls, path: Path) -> ArrayFile | None:
        """The ``.npy`` at ``path``; None when it is stored in Fortran order (not row by row)."""
        with open(path, "rb") as f:
            shape, dtype, fortran, offset = _header(f)
        if dtype.hasobject:
            raise ValueError(f"{path} holds Python objects (pickled), which Blueno does not load")
        return None if fortran and len(shape) > 1 else cls(path, offset, shape, dtype)

    @classmethod
    def open_npz_member(cls, path: Path, member: str) -> ArrayFile | None:
        """An array inside an ``.npz`` stored without compression; None when compressed or Fortran-ordered."""
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
            if info.compress_type != zipfile.ZIP_STORED:
                return None
            with archive.open(info) as f:
                shape, dtype, fortran, header_bytes = _header(f)
        with open(path, "rb") as raw:  # where the member's data starts: after its local file header
            raw.seek(info.header_offset)
            local = raw.read(30)
            name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        if fortran and len(shape) > 1:
            return None
        return cls(path, info.header_offset + 30 + name_length + extra_length + header_bytes, shape, dtype)

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), os.getpid()
        return self._fd

    def read_rows(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows in the order given; runs of adjacent rows are read in one call."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows of {self.path}")
        rows = np.where(rows < 0, rows + len(self), rows)
        result = np.empty((len(rows), *self.shape[1:]), self.dtype) if out is None else out
        flat = result.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), self.row_bytes)
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        fd = self._file()
        scratch = None
        for run in np.split(np.arange(len(rows)), breaks):
            if not len(run):
                continue
            first, count = int(sorted_rows[run[0]]), len(run)
            positions = order[run]
            contiguous = count == 1 or bool(np.all(np.diff(positions) == 1))
            if contiguous:  # straight into the result
                target = memoryview(flat[positions[0] : positions[0] + count].reshape(-1))
            else:
                if scratch is None or len(scratch) < count * self.row_bytes:
                    scratch = np.empty(count * self.row_bytes, np.uint8)
                target = memoryview(scratch[: count * self.row_bytes])
            self._read_into(fd, target, self.offset + first * self.row_bytes)
            if not contiguous:
                flat[positions] = np.frombuffer(target, np.uint8).reshape(count, self.row_bytes)
        return result

    def _read_into(self, fd: int, target: memoryview, position: int) -> None:
        done = 0
        while done < len(target):
            got = os.preadv(fd, [target[done:]], position + done)
            if got == 0:
                raise OSError(f"{self.path} ended early: it is truncated (run `blueno data verify`)")
            done += got

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class FileStack(_LazyRows):
    """One file per sample (``.npy`` files, images), read and decoded when a batch asks for it."""

    def __init__(self, paths: Sequence[Path], shape: tuple[int, ...], dtype: Any,
                 read: Callable[[Path], np.ndarray],
                 read_into: Callable[[Path, np.ndarray], bool] | None = None) -> None:
        self.paths = list(paths)
        self.shape = (len(self.paths), *shape)
        self.dtype = np.dtype(dtype)
        self._read, self._read_into = read, read_into

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        for i, row in enumerate(rows):
            path = self.paths[int(row)]
            if self._read_into is None or not self._read_into(path, out[i]):
                out[i] = self._read(path)
        return out


def read_npy_into(path: Path, out: np.ndarray) -> bool:
    """Read an ``.npy`` straight into ``out`` when it holds exactly that (shape, dtype, C order); else False."""
    with open(path, "rb", buffering=0) as f:
        shape, dtype, fortran, _ = _header(f)
        if shape != out.shape or dtype != out.dtype or (fortran and out.ndim > 1) or not out.flags.c_contiguous:
            return False
        target = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < len(target):
            got = f.readinto(target[done:])
            if not got:
                raise OSError(f"{path} ended early: it is truncated (run `blueno data verify`)")
            done += got
    return True


def npy_rows(path: Path) -> ArrayFile | np.ndarray:
    """An ``.npy`` read row by row; memory-mapped when it is in Fortran order."""
    return ArrayFile.open_npy(path) or np.load(path, mmap_mode="r", allow_pickle=False)


def _cached(path: Path, shape: tuple[int, ...], dtype: str) -> ArrayFile | None:
    """The cache file if it is complete and matches what the manifest says; None otherwise."""
    if not path.is_file():
        return None
    try:
        rows = ArrayFile.open_npy(path)
    except (OSError, ValueError):
        return None
    if rows is None or rows.shape != tuple(shape) or rows.dtype != np.dtype(dtype):
        return None
    if path.stat().st_size != rows.offset + rows.shape[0] * rows.row_bytes:
        return None
    return rows


def cache_member(cache: Path, archive_path: Path, member: str, shape: tuple[int, ...], dtype: str) -> ArrayFile:
    """A compressed ``.npz`` member extracted once into ``cache`` (the zip CRC is checked as it streams)."""
    target = cache / f"{Path(member).stem}.npy"
    if (rows := _cached(target, shape, dtype)) is not None:
        return rows
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(archive_path) as archive, archive.open(member) as source, open(partial, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    rows = _cached(target, shape, dtype)
    if rows is None:
        raise ValueError(f"{archive_path}:{member} does not hold the {dtype} array {shape} its manifest says")
    return rows


def cache_rows(cache: Path, name: str, shape: tuple[int, ...], dtype: str,
               chunks: Callable[[], Any]) -> ArrayFile:
    """A table converted once into ``cache/name.npy``: ``chunks()`` yields row blocks in order."""
    target = cache / f"{name}.npy"
    if (rows := _cached(target, shape, dtype)) is not None:
        return rows
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
        filled = 0
        for block in chunks():
            out[filled : filled + len(block)] = block
            filled += len(block)
        if filled != shape[0]:
            raise ValueError(f"{name}: {filled} rows converted, the manifest says {shape[0]}")
        out.flush()
        del out
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return _cached(target, shape, dtype) or ArrayFile.open_npy(target)  # type: ignore[return-value]


def cached_table(cache: Path, path: Path, label_col: str, id_col: str | None,
                 shape: tuple[int, ...]) -> tuple[ArrayFile, list[str], list[str]]:
    """A validated CSV table converted once into ``cache``: x (float32 features), ids and labels."""
    ids_path, labels_path = cache / "ids.npy", cache / "labels.npy"
    found: dict[str, list[str]] = {"ids": [], "labels": []}

    def chunks() -> Iterable[np.ndarray]:
        found["ids"].clear()
        found["labels"].clear()
        yield from _table_chunks(path, label_col, id_col, found)

    if not (ids_path.is_file() and labels_path.is_file()):
        (cache / "x.npy").unlink(missing_ok=True)  # convert all three together
    x = cache_rows(cache, "x", shape, "float32", chunks)
    if found["ids"]:  # converted just now: keep the labels and ids beside x
        np.save(labels_path, np.asarray(found["labels"], dtype=str))
        np.save(ids_path, np.asarray(found["ids"], dtype=str))
    ids = [str(i) for i in np.load(ids_path, allow_pickle=False)]
    labels = [str(label) for label in np.load(labels_path, allow_pickle=False)]
    if len(labels) != len(x) or len(ids) != len(x):
        raise ValueError(f"the cache {cache} is inconsistent: remove it and train again")
    return x, ids, labels


def _table_chunks(path: Path, label_col: str, id_col: str | None, found: dict[str, list[str]]
                  ) -> Iterable[np.ndarray]:
    """The feature rows of a validated table, ``CHUNK_ROWS`` at a time; ids and labels into ``found``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        label_index = header.index(label_col)
        id_index = header.index(id_col) if id_col else None
        features = [i for i in range(len(header)) if i not in (label_index, id_index)]
        block: list[list[float]] = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            block.append([float(row[i]) for i in features])
            found["labels"].append(row[label_index].strip())
            found["ids"].append(row[id_index].strip() if id_index is not None else str(line - 1))
            if len(block) == CHUNK_ROWS:
                yield np.asarray(block, dtype=np.float32)
                block = []
        if block:
            yield np.asarray(block, dtype=np.float32)
