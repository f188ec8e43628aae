"""Hostile inputs: small files that declare huge ones, special files, symlinks out of the source.

Every case runs the command a user types, ``blueno data import``, as a child process and asserts:
exit status 2 with a message naming the file; the child's peak resident memory (``wait4``'s rusage)
under ``PEAK_RSS_BOUND``; no file written past ``WRITE_BOUND`` (the child runs with RLIMIT_FSIZE, so a
bigger write would kill it with SIGXFSZ instead of exiting 2); the database rows (``iterdump``) and the
``data/`` tree exactly as they were.  The inputs are generated here; none is larger than a few MB on disk.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blueno import BluenoError
from blueno.datasets.kinds import IMAGE_SUFFIXES
from blueno.limits import copy_exactly
from blueno.workspace import Workspace

PEAK_RSS_BOUND = 200 << 20  # bytes: the child starts at ~50 MB; every bomb below would need >= 250 MB
WRITE_BOUND = 64 << 20  # bytes per file the child may write (RLIMIT_FSIZE)
TIME_BOUND_S = 60.0  # a FIFO that hung the import would hit this
BIG = 250_000_000  # elements of the bombs: 250 MB as int8, far over PEAK_RSS_BOUND if ever loaded
REPO = Path(__file__).resolve().parents[2]


def tree(workspace: Workspace) -> tuple[list[str], list[tuple[str, int]]]:
    import sqlite3

    conn = sqlite3.connect(workspace.db_path)
    try:
        rows = list(conn.iterdump())
    finally:
        conn.close()
    files = sorted((str(p.relative_to(workspace.root)), p.stat().st_size if p.is_file() else -1)
                   for p in workspace.data_dir.rglob("*"))
    return rows, files


# The import runs as the grandchild of a small launcher, not as a child of pytest: Linux keeps a
# process's peak RSS across exec, so a child forked straight from a pytest that has loaded
# TensorFlow would report pytest's 500 MB.  The launcher exec'd fresh, so what it forks starts
# small, and wait4() gives that one process's own peak.
LAUNCHER = """
import os, resource, sys
limit = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
sys.stdout.flush()
print(f"\\nPEAK-RSS-KB {usage.ru_maxrss} EXIT {os.waitstatus_to_exitcode(status)}", flush=True)
"""


def import_child(workspace: Workspace, path: Path, *flags: str) -> tuple[int, str, int, float]:
    """(exit status, output, peak RSS in bytes, seconds) of ``blueno data import PATH`` in a child."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    command = ["-P", "-m", "blueno", "--home", str(workspace.root), "data", "import", str(path), *flags]
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(WRITE_BOUND), *command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=workspace.root, start_new_session=True,
    )
    try:
        output = proc.communicate(timeout=TIME_BOUND_S)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"importing {path} hung for {TIME_BOUND_S} s")
    output, _, figures = output.rpartition("\nPEAK-RSS-KB ")
    peak_kb, _, code = figures.split()
    return int(code), output, int(peak_kb) * 1024, time.monotonic() - started


def assert_refused(workspace: Workspace, path: Path, *names: str, flags: tuple[str, ...] = ()) -> str:
    before = tree(workspace)
    code, output, peak, seconds = import_child(workspace, path, *flags)
    assert code == 2, f"exit {code} (SIGXFSZ is {-25}), output:\n{output}"
    assert "Traceback" not in output, output
    for name in names or (path.name,):
        assert name in output, f"{name!r} not named in:\n{output}"
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak >> 20} MiB over {PEAK_RSS_BOUND >> 20} MiB:\n{output}"
    assert tree(workspace) == before
    print(f"{path.name}: refused in {seconds:.2f} s, peak {peak >> 20} MiB: {output.strip().splitlines()[-1]}")
    return output


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws").ensure()
    workspace.open_store().close()
    (workspace.data_dir / "keep").mkdir()  # a tree with something in it, that must stay as it is
    (workspace.data_dir / "keep" / "file.bin").write_bytes(b"x" * 10)
    return workspace


# -- generators ----------------------------------------------------------------------------------


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def zeros_member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], descr: str = "|i1") -> None:
    """An array member of ``prod(shape)`` zero bytes, deflated while streamed (never held in memory)."""
    itemsize = np.dtype(descr).itemsize
    with zf.open(name, "w", force_zip64=True) as out:
        out.write(npy_header(shape, descr))
        left = int(np.prod(shape)) * itemsize
        chunk = bytes(1 << 22)
        while left:
            out.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def npz(path: Path, members: dict[str, tuple[tuple[int, ...], str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, (shape, descr) in members.items():
            zeros_member(zf, f"{key}.npy", shape, descr)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR declares ``width × height`` (1-bit grey) with a tiny IDAT: a pixel bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def jpeg_header_only(path: Path, width: int, height: int) -> Path:
    """A real 8 × 8 JPEG whose SOF0 marker is patched to declare ``width × height``."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


BOMB_IMAGES: dict[str, Callable[[Path, int, int], Path]] = {
    ".png": png_header_only, ".jpg": jpeg_header_only, ".jpeg": jpeg_header_only,
}


def image_folder(root: Path, suffix: str, bomb: tuple[int, int]) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((5, 5, 3), i, np.uint8)).save(root / label / f"{i}.png")
    BOMB_IMAGES[suffix](root / "b" / f"bomb{suffix}", *bomb)
    return root


def npy_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(3):
        np.save(root / f"s{i}.npy", np.zeros((2, 2), np.float32))
    (root / "labels.csv").write_text("id,label\ns0,a\ns1,b\ns2,a\n")
    return root


def tar_with_declared(path: Path, size: int) -> Path:
    """A .tar whose only member's header declares ``size`` bytes, with no data behind it."""
    info = tarfile.TarInfo("data/huge.npy")
    info.size = size
    path.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT))
    return path


# -- npz: labels and ids read from their headers ----------------------------------------------------


def test_an_npz_whose_labels_declare_far_more_samples_is_refused_from_the_header(ws, tmp_path):
    path = npz(tmp_path / "ylong.npz", {"x": ((4, 3), "<f4"), "y": ((BIG,), "|i1")})
    assert "has 250,000,000 labels but there are 4 samples" in assert_refused(ws, path, "ylong.npz:y")


@pytest.mark.parametrize("ids", [((BIG,), "|i1"), ((4,), "<U2000000"), ((4, 2), "<i8")])
def test_an_npz_with_oversized_ids_is_refused_from_the_header(ws, tmp_path, ids):
    path = npz(tmp_path / "ids.npz", {"x": ((4, 3), "<f4"), "y": ((4,), "|i1"), "ids": ids})
    assert_refused(ws, path, "ids.npz:ids")


def test_an_npz_bomb_with_matching_x_and_y_is_refused_by_the_ratio(ws, tmp_path):
    path = npz(tmp_path / "both.npz", {"x": ((BIG,), "|i1"), "y": ((BIG,), "|i1")})
    output = assert_refused(ws, path, "both.npz")
    assert "decompression bomb" in output and "--max-ratio" in output


def test_labels_of_the_wrong_type_are_refused(ws, tmp_path):
    path = npz(tmp_path / "ytype.npz", {"x": ((4, 3), "<f4"), "y": ((4,), "<c8")})
    assert_refused(ws, path, "ytype.npz:y")


# -- archives: declared sizes, ratio, members, nesting, free space ------------------------------------


def _bomb_zip(path: Path, inner: str = "data/x.npz") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zeros_member(zf, inner, (BIG,))
    return path


def test_a_zip_bomb_is_refused_before_anything_is_extracted(ws, tmp_path):
    assert "decompression bomb" in assert_refused(ws, _bomb_zip(tmp_path / "bomb.zip"), "bomb.zip")


def test_a_tar_gz_bomb_is_refused_at_the_header(ws, tmp_path):
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("data/zeros.npy")
        info.size = BIG

        class Zeros(io.RawIOBase):
            left = BIG

            def readable(self) -> bool:
                return True

            def readinto(self, buffer):  # type: ignore[override]
                n = min(len(buffer), self.left)
                buffer[:n] = bytes(n)
                self.left -= n
                return n

        tf.addfile(info, io.BufferedReader(Zeros()))
    assert "decompression bomb" in assert_refused(ws, path, "bomb.tar.gz")


def test_a_tar_header_declaring_terabytes_is_refused_by_ratio_and_then_by_free_space(ws, tmp_path):
    path = tar_with_declared(tmp_path / "declared.tar", 10 ** 13)
    assert "decompression bomb" in assert_refused(ws, path, "declared.tar")
    output = assert_refused(ws, path, "declared.tar", flags=("--max-ratio", "1e15"))
    assert "free" in output and "--home" in output


@pytest.mark.parametrize(("kind", "size"), [(tarfile.GNUTYPE_LONGNAME, BIG), (tarfile.XHDTYPE, BIG),
                                             (tarfile.GNUTYPE_LONGNAME, 40 << 20)])  # under one read's cap
def test_a_tar_gz_whose_long_name_or_pax_header_is_a_bomb_is_refused_before_it_is_read(ws, tmp_path, kind, size):
    """tarfile reads a long name or pax record whole before the member it describes: up to 250 MB here."""
    path = tmp_path / "header.tar.gz"
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = kind, size
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tf:
        assert tf.fileobj is not None
        tf.fileobj.write(header.tobuf(format=tarfile.GNU_FORMAT))
        chunk = b"a" * (1 << 22)
        for start in range(0, size, len(chunk)):
            tf.fileobj.write(chunk[: min(len(chunk), size - start)])
        tf.fileobj.write(bytes(-size % 512))
        tf.offset = 0  # (the closing blocks tarfile adds are not needed for the test)
    output = assert_refused(ws, path, "header.tar.gz")
    assert "decompression bomb" in output


def test_the_member_count_is_capped_and_the_flag_raises_it(ws, tmp_path):
    path = tmp_path / "many.zip"
    source = npy_folder(tmp_path / "many")
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(source.iterdir()):
            zf.write(f, f"many/{f.name}")
    output = assert_refused(ws, path, "many.zip", flags=("--max-files", "3"))
    assert "4 files" in output and "--max-files 4" in output
    code, output, _, _ = import_child(ws, path, "--max-files", "4")
    assert code == 0, output


@pytest.mark.parametrize("outer", ["zip", "tar.gz"])
def test_nested_archives_are_not_opened(ws, tmp_path, outer):
    source = npy_folder(tmp_path / "inner")
    inner = Path(shutil.make_archive(str(tmp_path / "inner"), "zip", source))
    path = tmp_path / f"outer.{outer}"
    if outer == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(inner, "inner.zip")
    else:
        with tarfile.open(path, "w:gz") as tf:
            tf.add(inner, "inner.zip")
    assert "another archive" in assert_refused(ws, path, f"outer.{outer}")


def test_an_image_bomb_inside_an_archive_is_named(ws, tmp_path):
    folder = image_folder(tmp_path / "pics", ".png", (30000, 30000))
    path = tmp_path / "pics.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(folder, "pics")
    assert_refused(ws, path, "pics.tar", "b/bomb.png")


def test_a_member_is_never_written_past_its_declared_size(tmp_path):
    with pytest.raises(BluenoError, match="declares 10 bytes but holds more"):
        copy_exactly(io.BytesIO(b"y" * 1000), tmp_path / "out", 10, tmp_path / "a.zip", "m")
    assert (tmp_path / "out").stat().st_size <= 10
    with pytest.raises(BluenoError, match="declares 10 bytes but holds 4"):
        copy_exactly(io.BytesIO(b"yyyy"), tmp_path / "out", 10, tmp_path / "a.zip", "m")


# -- images in every supported format -------------------------------------------------------------


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
@pytest.mark.parametrize("size", [(30000, 30000), (8000, 7500)])  # Pillow's own bomb error; over Blueno's limit
def test_an_image_declaring_too_many_pixels_is_refused_from_its_header(ws, tmp_path, suffix, size):
    assert suffix in BOMB_IMAGES, f"add a pixel-bomb generator for {suffix}"
    folder = image_folder(tmp_path / "imgs", suffix, size)
    output = assert_refused(ws, folder, f"b/bomb{suffix}")
    assert "pixels" in output or "Mpx" in output


@pytest.mark.parametrize("pil_format", ["GIF", "TIFF", "BMP", "EPS-header"])
def test_an_image_in_another_format_under_a_png_or_jpeg_name_is_refused(ws, tmp_path, pil_format):
    """Only the PNG and JPEG decoders run on a dataset image, whatever the content says it is."""
    folder = image_folder(tmp_path / "imgs", ".png", (8, 8))
    (folder / "b" / "bomb.png").unlink()
    target = folder / "b" / "disguised.jpg"
    if pil_format == "EPS-header":  # Pillow hands EPS to Ghostscript
        target.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 5 5\nshowpage\n")
    else:
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(target, pil_format)
    assert "not a readable image" in assert_refused(ws, folder, "b/disguised.jpg")


# -- special files and symlinks ----------------------------------------------------------------------


def test_a_fifo_named_labels_csv_is_refused_without_hanging(ws, tmp_path):
    folder = npy_folder(tmp_path / "fifo")
    (folder / "labels.csv").unlink()
    os.mkfifo(folder / "labels.csv")
    assert "not a regular file" in assert_refused(ws, folder, "labels.csv")


def test_a_fifo_given_as_the_source_is_refused(ws, tmp_path):
    os.mkfifo(tmp_path / "table.csv")
    assert "not a regular file" in assert_refused(ws, tmp_path / "table.csv")


@pytest.mark.parametrize("name", ["labels.csv", "s1.npy"])
def test_a_symlink_to_dev_zero_is_refused(ws, tmp_path, name):
    folder = npy_folder(tmp_path / "zero")
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    assert_refused(ws, folder, name)


def test_a_source_file_linked_to_dev_zero_is_refused(ws, tmp_path):
    (tmp_path / "data.npz").symlink_to("/dev/zero")
    assert_refused(ws, tmp_path / "data.npz")


def test_a_symlink_out_of_the_source_is_refused_and_one_inside_it_is_followed(ws, tmp_path):
    folder = npy_folder(tmp_path / "links")
    secret = tmp_path / "secret.npy"
    shutil.move(folder / "s2.npy", secret)
    (folder / "s2.npy").symlink_to(secret)
    assert "outside the folder" in assert_refused(ws, folder, "s2.npy")
    (folder / "s2.npy").unlink()
    shutil.move(secret, folder / ".s2-real.npy")
    (folder / "s2.npy").symlink_to(folder / ".s2-real.npy")
    code, output, _, _ = import_child(ws, folder)
    assert code == 0, output


# -- CSV tables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_non_finite_csv_features_are_refused_with_their_line(ws, tmp_path, value):
    path = tmp_path / "table.csv"
    path.write_text(f"a,b,label\n1,2,x\n3,{value},y\n5,6,x\n")
    assert "line 3, column 'b'" in assert_refused(ws, path, "table.csv")
