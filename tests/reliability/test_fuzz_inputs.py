"""Case 11: random grids and random files, through the commands a user types.

Whatever the input, the command answers with an exit status and a message, never a traceback, and a
refused input leaves the database and ``data/`` exactly as they were.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_datasets import write_npy_folder

from blueno.cli import main as cli_main
from blueno.grid_toml import write_toml
from blueno.workspace import Workspace

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def database(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def workspace_state(workspace: Workspace) -> tuple[list[str], list[tuple[str, int]]]:
    """Every row of the database and every file (with its size) under data/ and models/."""
    files = sorted((str(p.relative_to(workspace.root)), p.stat().st_size if p.is_file() else -1)
                   for folder in (workspace.data_dir, workspace.models_dir) for p in folder.rglob("*"))
    return database(workspace.db_path), files


def run_cli(*argv: str) -> tuple[int | None, str, BaseException | None]:
    """The command as ``blueno`` runs it: its exit status and output, or the exception that escaped it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return cli_main(list(argv)), out.getvalue(), None
        except BaseException as exc:  # noqa: BLE001 - a traceback the user would have seen
            return None, out.getvalue(), exc


# -- grids ---------------------------------------------------------------------------------------

_scalar = st.one_of(st.booleans(), st.integers(-5, 10**7), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=6))
_value = st.one_of(
    _scalar, st.lists(_scalar, max_size=4),
    st.dictionaries(st.sampled_from(["log", "linear", "num", "step", "choice", "uniform", "odd"]),
                    st.one_of(_scalar, st.lists(_scalar, max_size=3)), max_size=3),
)
_param = st.sampled_from(["epochs", "batch_size", "learning_rate", "optimizer", "monitor", "duration", "steps",
                          "hidden_units", "filters", "dropout", "grandchildren", "exit_code", "nonsense"])
_grid = st.fixed_dictionaries(
    {"dataset": st.sampled_from(["digits", "digits@000000", "nope", "", "digits@"])},
    optional={
        "name": st.text(max_size=8),
        "max_failures": _scalar,
        "priority": _scalar,
        "mode": st.sampled_from(["grid", "random", "other"]),
        "samples": _scalar,
        "params": st.dictionaries(_param, _value, max_size=4),
        "models": st.one_of(
            st.dictionaries(st.sampled_from(["standin", "mlp", "cnn2d", "resnet2d", "cnn3d", "missing"]),
                            st.dictionaries(_param, _value, max_size=3), max_size=2),
            st.lists(st.sampled_from(["standin", "mlp", "missing"]), max_size=2)),
        "split": st.dictionaries(st.sampled_from(["validation", "test", "seed", "x"]), _scalar, max_size=3),
        "preprocessing": st.lists(st.dictionaries(st.sampled_from(["transform", "params"]), _value, max_size=2),
                                  max_size=2),
    },
)


@st.composite
def grid_texts(draw: st.DrawFn) -> str:
    """Grids as a user might write them: mostly well-formed TOML, some of it cut or garbled.

    A third start from a valid stand-in grid with one value drawn at random, so that both outcomes,
    queued and refused, are exercised.
    """
    if draw(st.integers(0, 2)) == 0:
        standin = {"index": draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=3)), "duration": 0.0}
        standin[draw(st.sampled_from(["duration", "steps", "exit_code", "grandchildren", "ignore_sigterm"]))] = \
            draw(st.one_of(_value, st.integers(0, 3), st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        name = draw(st.one_of(st.sampled_from(["sweep", "lr sweep", "ünïcode"]), st.text(max_size=8)))
        document = {"name": name, "dataset": "digits", "models": {"standin": standin}}
    else:
        document = draw(_grid)
    text = write_toml(document)
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "text"]))
    if damage == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=10)) + text[at:]
    elif damage == "text":
        text = draw(st.text(max_size=200))
    return text


@pytest.mark.slow
def test_that_random_grids_are_queued_or_refused_with_a_message_and_a_refusal_changes_nothing(
    batch_workspace: Workspace, tmp_path: Path
) -> None:
    outcomes = {"queued": 0, "refused": 0, "traceback": 0, "changed while refusing": 0}
    home = ["--home", str(batch_workspace.root)]

    @SETTINGS
    @given(grid_texts())
    def queue_add(text: str) -> None:
        path = tmp_path / "grid.toml"
        path.write_text(text)
        before = database(batch_workspace.db_path)
        status, out, exc = run_cli(*home, "queue", "add", str(path))
        if exc is not None or status not in (0, 2):
            outcomes["traceback"] += 1
            raise AssertionError(f"queue add gave {exc!r} / status {status} for:\n{text}\n{out}")
        if status == 2:
            outcomes["refused"] += 1
            assert "blueno: error:" in out and "Traceback" not in out
            if database(batch_workspace.db_path) != before:
                outcomes["changed while refusing"] += 1
                raise AssertionError(f"a refused grid changed the database:\n{text}")
        else:
            outcomes["queued"] += 1

    queue_add()
    print(f"\nCASE 11 (grids): {sum(outcomes.values())} random grids through `blueno queue add`: "
          f"{outcomes['queued']} queued, {outcomes['refused']} refused with a message, {outcomes['traceback']} "
          f"tracebacks, {outcomes['changed while refusing']} refusals that changed the database")
    assert outcomes["traceback"] == 0 and outcomes["changed while refusing"] == 0
    assert outcomes["refused"] > 0 and outcomes["queued"] > 0  # the fuzz reached both outcomes


# -- files -----------------------------------------------------------------------------------------

KINDS = ["npy folder", "npz", "csv", "zip", "tar.gz", "tar", "damaged zip", "damaged tar.gz", "damaged npz",
         "damaged npy folder", "damaged csv"]


def valid_sources(root: Path) -> dict[str, bytes]:
    """Well-formed files of each kind, to damage."""
    folder = write_npy_folder(root / "valid")
    archive = root / "valid.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"valid/{f.name}")
    tgz = root / "valid.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(folder, "valid")
    npz = root / "valid.npz"
    np.savez(npz, x=np.random.default_rng(0).random((12, 3)), y=np.arange(12) % 3)
    return {"zip": archive.read_bytes(), "tar.gz": tgz.read_bytes(), "npz": npz.read_bytes(),
            "npy": (folder / "s000.npy").read_bytes(), "csv": b"id,a,b,label\n1,0.5,1,x\n2,1.5,2,y\n3,2,3,x\n"}


def damage(data: bytes, draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["flip", "cut", "splice"]))
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if how == "cut":
        return data[:at]
    return data[:at] + draw(st.binary(max_size=64)) + data[at:]


@st.composite
def dropped_files(draw: st.DrawFn, valid: dict[str, bytes]) -> tuple[str, bytes, bytes]:
    """(kind, main bytes, labels.csv bytes for a folder)."""
    kind = draw(st.sampled_from(KINDS))
    labels = draw(st.one_of(st.just(b"id,label\ns000,cat\n"), st.binary(max_size=64)))
    if kind.startswith("damaged"):
        base = kind.removeprefix("damaged ").replace(" folder", "")
        return kind, damage(valid[base], draw), labels
    return kind, draw(st.binary(max_size=2048)), labels


def materialize(kind: str, data: bytes, labels: bytes, where: Path) -> Path:
    if kind.endswith("npy folder"):
        folder = where / "dropped"
        folder.mkdir()
        (folder / "s000.npy").write_bytes(data)
        (folder / "labels.csv").write_bytes(labels)
        return folder
    suffix = kind.removeprefix("damaged ")
    path = where / f"dropped.{suffix}"
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_that_random_bytes_as_arrays_tables_and_archives_are_refused_with_a_message_and_change_nothing(
    workspace: Workspace, store, tmp_path: Path
) -> None:
    valid = valid_sources(tmp_path)
    outcomes = {"imported": 0, "refused": 0, "traceback": 0, "changed while refusing": 0}
    home = ["--home", str(workspace.root)]

    @SETTINGS
    @given(dropped_files(valid))
    def data_import(dropped: tuple[str, bytes, bytes]) -> None:
        kind, data, labels = dropped
        with tempfile.TemporaryDirectory(dir=tmp_path) as where:
            path = materialize(kind, data, labels, Path(where))
            before = workspace_state(workspace)
            status, out, exc = run_cli(*home, "data", "import", str(path))
        if exc is not None or status not in (0, 2):
            outcomes["traceback"] += 1
            raise AssertionError(f"data import of a {kind} gave {exc!r} / status {status}:\n{out}")
        if status == 2:
            outcomes["refused"] += 1
            assert "blueno: error:" in out and "Traceback" not in out
            if workspace_state(workspace) != before:
                outcomes["changed while refusing"] += 1
                raise AssertionError(f"a refused {kind} changed the workspace:\n{out}")
        else:
            outcomes["imported"] += 1

    data_import()
    print(f"\nCASE 11 (files): {sum(outcomes.values())} random or damaged files through `blueno data import` "
          f"({', '.join(KINDS)}): {outcomes['imported']} imported, {outcomes['refused']} refused with a message, "
          f"{outcomes['traceback']} tracebacks, {outcomes['changed while refusing']} refusals that changed the "
          "workspace")
    assert outcomes["traceback"] == 0 and outcomes["changed while refusing"] == 0
