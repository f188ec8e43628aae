"""Limits on what a dataset import may cost, checked before the cost is paid.

A small hostile file can declare a huge one: a zip or tar whose members
expand a thousandfold, an ``.npz`` whose label array holds billions of
elements, a PNG declaring 30000 × 30000 pixels, a FIFO or a symlink to
``/dev/zero`` named ``labels.csv``.  Every check here reads only headers
(archive directories, ``.npy`` headers, image headers, ``lstat``) and raises
or reports before anything is decompressed, decoded or written.  The import
layouts call these functions; they do not depend on how a kind is detected.

The defaults suit a desktop: a flag (``blueno data import --max-ratio``,
``--max-files``, ``--max-pixels``) raises them for a legitimately unusual dataset.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from blueno import BluenoError

CHUNK = 1 << 20
# The decoders Pillow may use on a dataset image, whatever its name says.  Pillow would otherwise pick
# any of ~40 by content (EPS runs Ghostscript; rarely used decoders are where the bugs are).
IMAGE_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class ImportLimits:
    """What one import may expand to, hold and decode; each limit is named in the message that enforces it."""

    max_ratio: float = 100.0  # declared (uncompressed) bytes per byte of archive
    max_files: int = 1_000_000  # members of an archive, files of a folder
    max_pixels: int = 50_000_000  # per image (7000 × 7000); Pillow refuses twice this by itself
    free_margin: int = 512 << 20  # bytes that must stay free on the workspace's disk after an import
    max_label_chars: int = 1024  # itemsize of a text label or id array, in characters
    max_classes: int = 100_000  # distinct labels: more is not a classification dataset


DEFAULT = ImportLimits()


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.1f} MiB" if n < (1 << 30) else f"{n / (1 << 30):,.1f} GiB"


# -- special files and symlinks ---------------------------------------------------------------


def check_source(path: Path) -> None:
    """Refuse a source that is neither a regular file nor a folder (a FIFO, a device, a socket)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # detect_kind says it does not exist
    except OSError as exc:
        raise BluenoError(f"{path} cannot be read: {exc.strerror}.") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BluenoError(
            f"{path} is not a regular file or a folder (a FIFO, device or socket): Blueno imports only "
            "files it can read to the end. Copy the data into a regular file."
        )


def special_files(root: Path, relpaths: Iterable[str]) -> list[tuple[str, str]]:
    """(file, problem) for each path under ``root`` that is not a regular file inside ``root``.

    A symlink is followed only when it stays inside ``root`` (after resolving) and
    ends at a regular file: a link to ``/dev/zero`` or to ``~/.ssh/id_rsa`` is refused.
    """
    problems = []
    real_root = root.resolve()
    for relpath in relpaths:
        path = root / relpath
        try:
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = path.resolve(strict=True)
                if not target.is_relative_to(real_root):
                    problems.append((relpath, f"is a symlink to {target}, outside the folder being "
                                              "imported; copy the file in instead"))
                    continue
                info = target.stat()
        except (OSError, RuntimeError) as exc:  # a dangling or looping link
            problems.append((relpath, f"cannot be read: {getattr(exc, 'strerror', None) or exc}"))
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append((relpath, "is not a regular file (a FIFO, device or socket); Blueno does not "
                                      "read it"))
    return problems


def check_file_count(source: Path, count: int, limits: ImportLimits = DEFAULT) -> None:
    if count > limits.max_files:
        raise BluenoError(
            f"{source} was not imported: it holds {count:,} files, more than the limit of "
            f"{limits.max_files:,}. Pass --max-files {count} if that is really the dataset."
        )


# -- disk space and archive expansion -----------------------------------------------------------


def check_free_space(folder: Path, needed: int, source: Path | str, limits: ImportLimits = DEFAULT) -> None:
    """Refuse to write ``needed`` bytes under ``folder`` unless ``free_margin`` stays free afterwards."""
    free = shutil.disk_usage(folder).free
    if needed + limits.free_margin > free:
        raise BluenoError(
            f"{source} was not imported: it needs {_mib(needed)} in {folder.parent}, which has "
            f"{_mib(free)} free (Blueno keeps {_mib(limits.free_margin)} free for the database). "
            "Free some space, or move the workspace (--home) to a larger disk."
        )


def check_expansion(
    archive: Path, declared: int, members: int, into: Path, limits: ImportLimits = DEFAULT
) -> None:
    """Before extracting: the members' declared sizes against the ratio limit, the member cap and free space."""
    check_file_count(archive, members, limits)
    size = max(archive.stat().st_size, 1)
    if declared > limits.max_ratio * size:
        raise BluenoError(
            f"{archive} was not imported: its members declare {_mib(declared)}, {declared / size:,.0f} times "
            f"the archive's {_mib(size)} (the limit is {limits.max_ratio:g}×; a decompression bomb looks "
            f"like this). If the data really is that compressible, pass --max-ratio "
            f"{math.ceil(declared / size)}."
        )
    check_free_space(into, declared, archive, limits)


def copy_exactly(src: BinaryIO, dst: Path, size: int, archive: Path, member: str) -> None:
    """Copy a member's stream to ``dst``, writing at most its declared ``size``; refuse a mismatch."""
    written = 0
    with open(dst, "wb") as out:
        while written <= size:
            chunk = src.read(min(CHUNK, size - written + 1))
            if not chunk:
                break
            written += len(chunk)
            if written > size:
                break
            out.write(chunk)
    if written != size:
        raise BluenoError(
            f"{archive} was not imported: member {member!r} declares {size:,} bytes but "
            f"{'holds more' if written > size else f'holds {written:,}'}; the archive is corrupt or crafted."
        )


MAX_TAR_READ = 64 << 20  # one read by tarfile: headers are 512 bytes, data comes in 1 MiB chunks


class BoundedStream:
    """A decompressed archive stream that refuses to expand past ``max_ratio`` × the archive's size.

    tarfile reads a GNU long name or a pax header whole, in one read, before the
    member it describes is seen: a 1 MB .tar.gz can declare a 1 GB "name".  This
    stream refuses any single read over ``MAX_TAR_READ`` and any position past
    the ratio limit, before the bytes are decompressed into memory.
    """

    def __init__(self, archive: Path, limits: ImportLimits = DEFAULT) -> None:
        import bz2
        import gzip
        import lzma

        self.archive = archive
        self.limit = int(limits.max_ratio * max(archive.stat().st_size, 1))
        with open(archive, "rb") as f:
            magic = f.read(6)
        opener = (gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic[:3] == b"BZh"
                  else lzma.open if magic == b"\xfd7zXZ\x00" else open)
        self.raw: BinaryIO = opener(archive, "rb")  # type: ignore[assignment]

    def read(self, size: int = -1) -> bytes:
        position = self.raw.tell()
        allowed = self.limit - position
        if size is None or size < 0 or size > MAX_TAR_READ:
            if size is not None and size > MAX_TAR_READ:
                raise BluenoError(
                    f"{self.archive} was not imported: it holds a header of {size:,} bytes (a long name or "
                    "pax record that size is a decompression bomb, not a dataset)."
                )
            size = allowed + 1
        data = self.raw.read(min(size, allowed + 1))
        if len(data) > allowed:
            raise BluenoError(
                f"{self.archive} was not imported: it expands past {_mib(self.limit)}, the --max-ratio limit "
                "for its size (a decompression bomb looks like this). If the data really is that "
                "compressible, pass --max-ratio with a larger value."
            )
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.raw.tell() + offset if whence == 1 else None
        if target is None:
            raise OSError("seeking from the end of a compressed stream is not supported")
        if target > self.limit:
            raise BluenoError(
                f"{self.archive} was not imported: a member reaches past {_mib(self.limit)}, more than "
                "--max-ratio allows (a decompression bomb looks like this)."
            )
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()


# -- arrays ------------------------------------------------------------------------------------


def array_problem(
    name: str, shape: tuple[int, ...], dtype: np.dtype, n_samples: int | None, what: str,
    limits: ImportLimits = DEFAULT,
) -> str | None:
    """Why a per-sample 1-D array (labels, ids) with this header cannot be loaded, or None.

    Called with the header only, so a 10⁹-element array is refused before it is read.
    """
    if len(shape) != 1:
        return f"must hold one {what} per sample (a 1-D array), not shape {shape}"
    if n_samples is not None and shape[0] != n_samples:
        return f"has {shape[0]:,} {what}s but there are {n_samples:,} samples: their lengths must match"
    if dtype.kind in "US":
        chars = dtype.itemsize // (4 if dtype.kind == "U" else 1)
        if chars > limits.max_label_chars:
            return f"holds text of up to {chars:,} characters per {what} (the limit is {limits.max_label_chars})"
    elif dtype.kind not in "iubf":
        return f"must be integers or text, not {dtype}"
    return None


def label_counts(y: np.ndarray, limits: ImportLimits = DEFAULT) -> tuple[dict[str, int], str | None]:
    """Labels → counts, computed on the array (no Python object per element); or a problem."""
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            return {}, f"must be integer or text labels (got {y.dtype} with fractions, NaN or infinities)"
        y = y.astype(np.int64)
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "S":
        y = np.char.decode(y, "utf-8", "replace")
    values, counts = np.unique(y, return_counts=True)
    if len(values) > limits.max_classes:
        return {}, f"has {len(values):,} distinct labels; a classification dataset has at most {limits.max_classes:,}"
    return {str(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}, None


# -- images ------------------------------------------------------------------------------------


def image_problem(path: Path, limits: ImportLimits = DEFAULT) -> str | None:
    """Why an image cannot be decoded safely, read from its header (before any pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        return f"declares more than {Image.MAX_IMAGE_PIXELS * 2:,} pixels (a decompression bomb)"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return f"is not a readable image: {exc}"
    if width * height > limits.max_pixels:
        return (f"declares {width} × {height} = {width * height / 1e6:,.0f} Mpx, more than the limit of "
                f"{limits.max_pixels / 1e6:,.0f} Mpx; downscale it, or pass --max-pixels")
    return None


def is_plain_name(value: object) -> bool:
    """One file name (no folder part, not ``.``/``..``, no NUL): what a label id or an option may be."""
    return (isinstance(value, str) and bool(value) and value not in (".", "..") and "/" not in value
            and "\\" not in value and "\x00" not in value and os.sep not in value)


MAX_SAMPLE_ELEMENTS = 1 << 31  # one sample of a pulled manifest (a 1290³ volume): beyond is a crafted shape
FILE_OPTIONS = ("labels", "file")  # manifest options that name a file inside the version folder


def manifest_problems(manifest: object, kinds: Iterable[str]) -> list[str]:
    """What makes a manifest from elsewhere (a bucket) unsafe to load: files named by options that are
    paths, unknown kinds, dtypes holding objects, shapes that are not sizes."""
    if not isinstance(manifest, dict):
        return ["it is not a JSON object"]
    problems = []
    if manifest.get("kind") not in set(kinds):
        problems.append(f"kind {manifest.get('kind')!r} is not one Blueno loads")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("size"), int)
            and not isinstance(f.get("size"), bool) and f["size"] >= 0 for f in files):
        problems.append("files must list each file's path and size")
    options = manifest.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        problems.append("options must map names to text")
    else:
        problems += [f"option {key} = {options[key]!r} is not a plain file name" for key in FILE_OPTIONS
                     if key in options and not is_plain_name(options[key])]
        arrays = options.get("arrays", "")
        if arrays and not all(is_plain_name(part) for part in arrays.split("/")):
            problems.append(f"option arrays = {arrays!r} is not a folder of the version")
        if options.get("suffix", ".npy") not in (".npy", ".npz"):
            problems.append(f"option suffix = {options['suffix']!r} is not .npy or .npz")
    shape = manifest.get("sample_shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        problems.append(f"sample_shape {shape!r} is not a list of sizes")
    elif math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        problems.append(f"sample_shape {shape} is larger than any sample Blueno loads")
    if not isinstance(manifest.get("n_samples"), int) or manifest["n_samples"] < 0:
        problems.append("n_samples is not a count")
    try:
        if np.dtype(manifest.get("dtype")).hasobject:
            problems.append("dtype holds Python objects")
    except TypeError:
        problems.append(f"dtype {manifest.get('dtype')!r} is not a numpy dtype")
    names = manifest.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append("class_names must be a list of text")
    return problems
